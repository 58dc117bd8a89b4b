"""The modern-CNN primitives: channel shuffle, channel slice, gelu/silu, layernorm, stochastic
depth, and add/mul broadcasting a [C,1,1] input either way."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import augur_nas as an
from augur_nas.analysis import totals
from augur_nas._segments import fast_totals
from augur_nas.oracle import _fast_costs, _table_costs
from augur_nas.profile import load_profile

from conftest import ROOT


NET = """
name: modern
input: {channels: 3, resolution: 32}
layers:
  - conv: {out: 16, kernel: 3, pad: 1, bias: false, name: c1}
  - slice: {start: 0, end: 8, name: left}
  - slice: {start: 8, end: 16, inputs: [c1], name: right}
  - conv: {out: 8, kernel: 1, bias: false, name: rconv}
  - gelu: {name: act}
  - concat: {inputs: [left, act], name: cat}
  - shuffle: {groups: 2, name: shuf}
  - layernorm: {name: ln}
  - silu: {name: si}
  - stochastic_depth: {p: 0.1, name: sd}
  - globalpool: {name: gp}
  - conv: {out: 16, kernel: 1, name: gate}
  - mul: {inputs: [gate, cat], name: excite}
  - add: {inputs: [excite, gate], name: bias_add}
  - drop_path
  - fc: {out: 10, name: fc}
"""


def _layers(tmp_path, text=NET):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    model = an.load_model(str(p))
    return {row["name"]: row for row in an.analyze(model)["layers"]}


def test_shapes_params_and_types(tmp_path):
    rows = _layers(tmp_path)
    assert rows["left"]["type"] == "slice" and rows["left"]["out_shape"] == [8, 32, 32]
    assert rows["right"]["out_shape"] == [8, 32, 32]
    assert rows["cat"]["out_shape"] == [16, 32, 32]
    assert rows["shuf"]["type"] == "shuffle" and rows["shuf"]["out_shape"] == [16, 32, 32]
    assert rows["ln"]["type"] == "layernorm" and rows["ln"]["params"] == 32
    assert rows["act"]["type"] == "activation" and rows["si"]["type"] == "activation"
    # the gate [16,1,1] first, the feature map second: the product has the feature map's shape
    assert rows["excite"]["out_shape"] == [16, 32, 32]
    assert rows["bias_add"]["out_shape"] == [16, 32, 32]
    assert "sd" not in rows  # identity at inference: not a layer of the table
    assert rows["fc"]["gemm"]["k"] == 16 * 32 * 32


@pytest.mark.parametrize("layers, words", [
    ("  - conv: {out: 15, kernel: 3}\n  - shuffle: {groups: 2, name: sh}\n", ["sh", "shuffle", "divide", "15"]),
    ("  - conv: {out: 15, kernel: 3}\n  - slice: {start: 4, end: 20, name: sl}\n", ["sl", "slice", "[4, 20)", "15"]),
    ("  - conv: {out: 8, kernel: 3}\n  - slice: {start: 4, end: 4, name: sl}\n", ["sl", "non-empty"]),
    ("  - conv: {out: 16, kernel: 3, name: a}\n  - conv: {out: 16, kernel: 3, stride: 2, name: b}\n"
     "  - add: {inputs: [a, b], name: j}\n", ["`j`", "do not broadcast"]),
    ("  - conv: {out: 16, kernel: 3, name: a}\n  - globalpool: {name: g}\n  - conv: {out: 8, kernel: 1, name: b}\n"
     "  - mul: {inputs: [b, a], name: j}\n", ["`j`", "do not broadcast"]),
])
def test_bad_shapes_are_one_paragraph_exit_2(tmp_path, layers, words):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ninput: {channels: 3, resolution: 16}\nlayers:\n" + layers)
    r = subprocess.run([sys.executable, "-m", "augur_nas.cli", "analyze", str(p)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and str(p) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    for w in words:
        assert w in r.stderr


SPACE = """
name: modern_space
input: {channels: 3, resolution: {choice: [16, 24]}}
layers:
  - conv: {out: {choice: [16, 32]}, kernel: 3, pad: 1, name: c1}
  - choice:
      - [shuffle: {groups: {choice: [2, 4]}}]
      - [layernorm, gelu]
      - [slice: {start: 0, end: 8}]
      - [stochastic_depth: {p: 0.2}]
  - conv: {out: 24, kernel: 3, stride: 2, pad: 1, name: c2}
  - silu
  - globalpool: {name: gp}
  - fc: {out: 10}
"""


@pytest.mark.parametrize("device", ["tk1-gpu", "tx1-cpu", "x86-2core-ort"])
def test_fast_path_equals_layer_table_with_the_new_ops(tmp_path, device):
    p = tmp_path / "s.yaml"
    p.write_text(SPACE)
    space = an.load_space(str(p))
    X = space.sample(200, seed=0)
    ref = totals(an.lower(space, X))
    for key, v in fast_totals(space, X).items():
        np.testing.assert_array_equal(v, ref[key], err_msg=key)
    prof = load_profile(device)
    a = _table_costs(space, X, prof, 1)
    b = _fast_costs(space, X, prof, 1)
    for i in (0, 2, 3, 4):  # latency, memory, macs, params
        assert np.all(np.isfinite(a[i]))
        np.testing.assert_allclose(b[i], a[i], rtol=1e-9)
