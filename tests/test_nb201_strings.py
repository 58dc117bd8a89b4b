"""NAS-Bench-201 architecture strings against spaces/nb201.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import augur_nas as an
from augur_nas import nb201

ROOT = Path(__file__).resolve().parents[1]
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space():
    return an.load_space(ROOT / "spaces" / "nb201.yaml")


def test_every_architecture_round_trips(space):
    X = space.enumerate()
    assert len(X) == 15625
    strings = [nb201.decode(space, x) for x in X]
    assert len(set(strings)) == 15625
    for x, s in zip(X[::97], strings[::97]):
        np.testing.assert_array_equal(nb201.encode(space, s), x)


def test_a_known_architecture_prices_like_its_yaml(space):
    x = nb201.encode(space, BEST)
    names = {g.name: g.options[x[i]] for i, g in enumerate(space.genes)}
    assert names["cells.nb201.edge[3<-0]"] == "identity"
    assert names["cells.nb201.edge[1<-0]"] == "relu_conv_bn(kernel=3)"
    assert nb201.decode(space, x) == BEST
    macs = an.analyze(space.decode(x))["totals"]["macs"]
    assert macs == an.analyze_batch(space, x[None])["macs"][0]


@pytest.mark.parametrize("bad, words", [
    ("nor_conv_3x3~0", "not a NAS-Bench-201 architecture string"),
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_5x5"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "earlier node"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "missing 1->2"),
    ("|none-0|+|none~0|none~1|+|none~0|none~1|none~2|", "op~input"),
])
def test_bad_strings_name_the_problem(space, bad, words):
    with pytest.raises(an.SpecError, match=words.replace("(", r"\(")):
        nb201.encode(space, bad)


def test_a_space_without_cells_is_refused():
    with pytest.raises(an.SpecError, match="NAS-Bench-201 style cell"):
        nb201.encode(an.load_space(ROOT / "spaces" / "mobile.yaml"), BEST)
