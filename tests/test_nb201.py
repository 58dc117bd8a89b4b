"""NAS-Bench-201 strings: encode/decode round trips, errors, and the built-in space equals spaces/nb201.yaml."""

import os

import numpy as np
import pytest

from augur_nas import SpecError, analyze, analyze_batch, load_space, nb201

from conftest import ROOT


def test_example_string_round_trip():
    x = nb201.encode(nb201.EXAMPLE)
    assert x.tolist() == [3, 3, 4, 1, 3, 1]
    assert nb201.decode(x) == nb201.EXAMPLE


def test_every_encoding_round_trips():
    X = nb201.space().enumerate()
    assert len(X) == 15625
    for x in X[::97]:
        assert nb201.encode(nb201.decode(x)).tolist() == x.tolist()


def test_op_order_matches_the_yaml_space_options():
    s = load_space(os.path.join(ROOT, "spaces", "nb201.yaml"))
    for g in s.genes:
        assert list(g.options) == list(nb201.AUGUR_OPS)
    assert [g.name for g in s.genes] == [f"cells.nb201.edge[{j}<-{i}]" for j, i in nb201.EDGES]


def test_builtin_space_prices_like_the_yaml():
    s, y = nb201.space(), load_space(os.path.join(ROOT, "spaces", "nb201.yaml"))
    X = s.sample(64, seed=3)
    a, b = analyze_batch(s, X), analyze_batch(y, X)
    for k in ("macs", "params"):
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_model_of_a_string():
    m = nb201.model("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    r_zero = analyze(m)
    r_conv = analyze(nb201.model("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"))
    assert m.size == 1
    assert r_conv["totals"]["macs"] > r_zero["totals"]["macs"] * 5
    # NB201 reports 220.11 MFLOPs (multiply-accumulates) for the all-3x3 cell on CIFAR
    assert r_conv["totals"]["macs"] == 220119680


@pytest.mark.parametrize("bad, words", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 nodes"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op `conv`"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "2 incoming"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must come from node 0"),
    ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "must be `op~i`"),
])
def test_bad_strings(bad, words):
    with pytest.raises(SpecError, match=words.replace("`", ".")):
        nb201.encode(bad)


def test_bad_encoding():
    with pytest.raises(SpecError, match="6 integers"):
        nb201.decode([0, 1, 5, 0, 0, 0])


def test_encode_text_by_stage_names_and_nb201_strings():
    s = load_space(os.path.join(ROOT, "spaces", "mobile.yaml"))
    labels = s.gene_labels
    assert "s3.depth" in labels and "s3[1].mbconv.kernel" in labels and "input.resolution" in labels
    x = s.encode_text("s3.depth=3, s3[1].mbconv.kernel=7, input.resolution=224")
    assert s.genes[labels.index("s3.depth")].options[x[labels.index("s3.depth")]] == 3
    assert s.genes[labels.index("s3[1].mbconv.kernel")].options[x[labels.index("s3[1].mbconv.kernel")]] == 7
    assert s.genes[0].options[x[0]] == 224
    # the key-path names still work (stored studies use them)
    kp = s.gene_names[labels.index("s3.depth")]
    assert kp.startswith("layers[") and s.encode({kp: 3}).tolist() == s.encode({"s3.depth": 3}).tolist()
    assert nb201.space().encode_text(nb201.EXAMPLE).tolist() == [3, 3, 4, 1, 3, 1]
    y = load_space(os.path.join(ROOT, "spaces", "nb201.yaml"))
    assert y.encode_text(nb201.EXAMPLE).tolist() == [3, 3, 4, 1, 3, 1]
    with pytest.raises(SpecError, match="no gene `foo`"):
        s.encode_text("foo=3")
    with pytest.raises(SpecError, match="gene=value"):
        s.encode_text("s3.depth")
    with pytest.raises(SpecError, match="not of mobile"):
        s.encode_text(nb201.EXAMPLE)
