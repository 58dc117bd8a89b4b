"""The zoo against the paper (Table 1 counts, FLOPs rows, Table 4 weights), exact parameter
counts, and golden per-layer tables (tests/golden/NAME.json, made by make_golden.py)."""

from __future__ import annotations

import json

import pytest

from conftest import (GOLDEN, MOBILENET_V2_MACS, PAPER_LAYER_COUNTS, PAPER_LAYER_TOTALS, PAPER_MACS_M,
                      PAPER_MEMORY_MIB, PARAMS, TOL_CONV_MACS, TOL_FC_MACS, TOL_TOTAL_OPS, TOL_WEIGHTS,
                      ZOO_MODELS, ZOO_PROTOTXT, MiB, paper_problems, zoo_analysis)

PAPER_MODELS = sorted(PAPER_LAYER_COUNTS)
LAYER_KEYS = ("name", "type", "op", "out_shape", "macs", "params", "weights_bytes", "out_bytes",
              "workspace_bytes", "gemm")
REGENERATE = ("if a counting convention changed on purpose, regenerate with "
              "`python3 tests/golden/make_golden.py` and say so in the commit")


def test_zoo_is_complete():
    for name in ("alexnet", "vgg16", "googlenet", "resnet50", "resnet18", "mobilenet_v2", "nin"):
        assert name in ZOO_MODELS
        assert (GOLDEN / f"{name}.json").exists(), f"no golden table for {name}"
    for name in ("alexnet", "vgg16", "googlenet", "resnet50"):
        assert name in ZOO_PROTOTXT


# --------------------------------------------------------------------------------------------- paper


def test_packaged_paper_figures():
    """augur_nas/data/paper_tables.yaml holds the published figures these tests check against."""
    assert PAPER_LAYER_COUNTS == {
        "alexnet": {"conv": 5, "pool": 3, "lrn": 2, "relu": 7, "fc": 3},
        "vgg16": {"conv": 13, "pool": 5, "relu": 15, "fc": 3},
        "googlenet": {"conv": 57, "pool": 14, "lrn": 2, "relu": 57, "fc": 1, "concat": 9},
        "resnet50": {"conv": 53, "pool": 2, "batchnorm": 53, "relu": 49, "fc": 1, "scale": 53, "eltwise": 16},
    }
    assert PAPER_LAYER_TOTALS == {"alexnet": 20, "vgg16": 36, "googlenet": 140, "resnet50": 227}
    assert {m: (v["conv"], v["fc"]) for m, v in PAPER_MACS_M.items()} == {
        "alexnet": (666, 59), "vgg16": (15360, 124), "googlenet": (1585, 1), "resnet50": (3866, 2)}
    assert {m: v["weights"] for m, v in PAPER_MEMORY_MIB.items()} == {
        "alexnet": 233, "vgg16": 528, "googlenet": 26, "resnet50": 97}


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_table1_layer_counts(name):
    bt = zoo_analysis(name)["by_type"]
    got = {typ: bt.get(typ, {}).get("count", 0) for typ in PAPER_LAYER_COUNTS[name]}
    assert got == PAPER_LAYER_COUNTS[name]
    assert sum(got.values()) == PAPER_LAYER_TOTALS[name]
    # nothing else the paper would count: only free layers (dropout, softmax, reshape) remain
    assert set(bt) - set(got) <= {"dropout", "softmax", "reshape"}


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_conv_and_fc_macs_match_the_paper(name):
    bt = zoo_analysis(name)["by_type"]
    conv, fc = bt["conv"]["macs"] / 1e6, bt["fc"]["macs"] / 1e6
    assert conv == pytest.approx(PAPER_MACS_M[name]["conv"], rel=TOL_CONV_MACS)
    assert fc == pytest.approx(PAPER_MACS_M[name]["fc"], rel=TOL_FC_MACS)
    t = zoo_analysis(name)["totals"]
    assert t["macs"] == bt["conv"]["macs"] + bt["fc"]["macs"]
    # all layers' operations against the FLOPs rows' totals
    assert t["ops"] / 1e6 == pytest.approx(PAPER_MACS_M[name]["total"], rel=TOL_TOTAL_OPS)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_weights_match_table4(name):
    w = zoo_analysis(name)["totals"]["weights_bytes"] / MiB
    assert w == pytest.approx(PAPER_MEMORY_MIB[name]["weights"], rel=TOL_WEIGHTS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_exact_parameter_counts(name):
    assert zoo_analysis(name)["totals"]["params"] == PARAMS[name]


def test_mobilenet_v2_macs():
    macs = zoo_analysis("mobilenet_v2")["totals"]["macs"]
    assert macs == pytest.approx(MOBILENET_V2_MACS, rel=1e-3)
    assert macs == 300_774_272  # torchvision's conv + linear MACs, exactly


@pytest.mark.parametrize("name", PAPER_MODELS + ["mobilenet_v2", "resnet18"])
def test_no_paper_problems(name):
    # the same check make_golden.py runs before it writes anything
    assert paper_problems(name, zoo_analysis(name)) == []


# --------------------------------------------------------------------------------------------- golden


def _golden(name):
    return json.loads((GOLDEN / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_golden_per_layer_table(name):
    res, gold = zoo_analysis(name), _golden(name)
    assert res["model"] == gold["model"] and res["input"] == gold["input"]
    got = [{k: layer[k] for k in LAYER_KEYS} for layer in res["layers"]]
    want = [{k: layer[k] for k in LAYER_KEYS} for layer in gold["layers"]]
    assert [g["name"] for g in got] == [w["name"] for w in want], REGENERATE
    for g, w in zip(got, want):
        assert g == w, f"layer {w['name']}: {REGENERATE}"


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_golden_totals(name):
    res, gold = zoo_analysis(name), _golden(name)
    assert res["by_type"] == gold["by_type"], REGENERATE
    for key, want in gold["totals"].items():
        assert res["totals"][key] == want, f"{key}: {REGENERATE}"


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_golden_is_consistent(name):
    """The frozen tables add up: per-layer sums are the by-type and whole-network figures."""
    gold = _golden(name)
    layers, t = gold["layers"], gold["totals"]
    assert sum(layer["params"] for layer in layers) == t["params"]
    assert sum(layer["weights_bytes"] for layer in layers) == t["weights_bytes"]
    assert sum(layer["macs"] for layer in layers if layer["gemm"]) == t["macs"]
    assert sum(layer["macs"] for layer in layers) == t["ops"]
    assert max(layer["workspace_bytes"] for layer in layers) == t["workspace_bytes"]
    for layer in layers:
        g = layer["gemm"]
        c, h, w = layer["out_shape"]
        assert layer["out_bytes"] == 4 * c * h * w
        if g:
            assert layer["macs"] == g["n"] * g["groups"] * g["k"] * g["m"]
            assert g["n"] * g["groups"] == c and (layer["type"] == "fc" or g["m"] == h * w)
    for typ, v in gold["by_type"].items():
        assert v["count"] == sum(1 for layer in layers if layer["type"] == typ)


@pytest.mark.parametrize("name", ZOO_PROTOTXT)
def test_prototxt_twin_matches_golden(name):
    """The Caffe prototxt and the YAML of a model give the same layers (names may differ)."""
    res, gold = zoo_analysis(name, "prototxt"), _golden(name)
    keys = [k for k in LAYER_KEYS if k != "name"]

    def rows(layers):
        return sorted(json.dumps([layer[k] for k in keys]) for layer in layers)

    assert rows(res["layers"]) == rows(gold["layers"])
    assert res["totals"] == gold["totals"]
    assert res["input"] == gold["input"]
