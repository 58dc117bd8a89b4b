"""One rule each: the totals, the buffer sharing, the input size and the memory formula are
written once (_totals.py, MemoryModel.terms) and every path reads them."""

from pathlib import Path

import numpy as np
import pytest

import augur_nas as an
from augur_nas._segments import Grid, GridCache, fast_totals
from augur_nas._totals import input_elems, network_totals, shares_input_buffer
from augur_nas.analysis import totals
from augur_nas.costmodel import MemoryModel
from augur_nas.oracle import Costs, Oracle, _fast_costs, _table_costs
from augur_nas.profile import load_profile

SPEC = {"input": {"channels": 3, "resolution": {"choice": [16, 24]}},
        "layers": [{"conv": {"name": "c1", "out": {"choice": [8, 16]}, "kernel": 3}},
                   {"relu": {"name": "r1"}},
                   {"conv": {"name": "c2", "out": 8, "kernel": 1}},
                   {"relu": {"name": "r2", "inputs": ["c2"]}},
                   {"add": {"name": "j", "inputs": ["c2", "r2"]}},
                   {"globalpool": {"mode": "avg"}}, {"flatten": {}}, {"fc": {"out": 10}}]}


def test_buffer_sharing_rule():
    ops = ["conv", "relu", "conv", "relu", "add", "globalpool", "flatten", "fc"]
    inputs = [[-1], [0], [1], [2], [2, 3], [4], [5], [6]]
    # r1 is c1's only reader: in place; r2 is not c2's only reader (the add reads c2 too): a new
    # tensor; flatten is a view whoever reads its input
    assert shares_input_buffer(ops, inputs) == [False, True, False, False, False, False, True, False]
    # never in place on the network input
    assert shares_input_buffer(["relu"], [[-1]]) == [False]


def test_every_path_gives_the_same_totals():
    space = an.load_space_dict(SPEC, source="t.yaml")
    X = space.enumerate()
    table = an.lower(space, X)
    ref = totals(table)
    # the stem conv reads the network input: 3 x 16 x 16 or 3 x 24 x 24
    assert sorted(set(input_elems(table).tolist())) == [3 * 16 * 16, 3 * 24 * 24]
    np.testing.assert_array_equal(input_elems(table), 3 * table.rows["in_h"][0] * table.rows["in_w"][0])
    for k, v in fast_totals(space, X).items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)
    # the figures are the rule's: activations = the input + every tensor not sharing a buffer
    rows = table.rows
    own = ~np.array(shares_input_buffer(table.ops, table.inputs))
    act = (rows["out_elems"][own].sum(axis=0) + input_elems(table)) * 4
    np.testing.assert_array_equal(ref["activation_bytes"], act)
    # and network_totals is what assembles them
    again = network_totals({"activation_elems": rows["out_elems"][own].sum(axis=0)}, input_elems(table))
    np.testing.assert_array_equal(again["activation_bytes"], act)


def test_layer_table_has_one_orientation():
    space = an.load_space_dict(SPEC, source="t.yaml")
    table = an.lower(space, space.enumerate())
    assert table.macs is table.rows["macs"]
    assert table.macs.shape == (table.L, table.B) and table.mask.shape == (table.L, table.B)


@pytest.mark.parametrize("batch", [1, 4])
def test_memory_terms_are_the_formula(batch):
    m = MemoryModel(framework_overhead_mb=50, weight_copies=2, weights_coef=1.5, activation_coef=0.5,
                    workspace="sum", workspace_coef=0.25, fc_weights_coef=0.75, batch_activation_coef=0.3)
    t = m.terms(batch)
    MB = 2**20
    tot = {"weights_bytes": np.array([10.0 * MB]), "fc_weights_bytes": np.array([2.0 * MB]),
           "activation_bytes": np.array([4.0 * MB]), "workspace_sum_bytes": np.array([8.0 * MB]),
           "workspace_bytes": np.array([1.0 * MB]), "peak_memory_bytes": np.array([12.0 * MB])}
    want = 50 + 2 * (1.5 * (10 - 2) + 0.75 * 2) + 0.5 * 4 + 0.3 * (batch - 1) * 4 + 0.25 * 8
    assert m.predict(None, tot, batch)[0] == pytest.approx(want, rel=1e-12)
    assert t.mb(10.0 * MB, 2.0 * MB, 4.0 * MB, 4.0 * MB, 8.0 * MB) == pytest.approx(want, rel=1e-12)
    assert MemoryModel(workspace="none").terms(1).workspace == 0.0


def test_pricing_records_and_grid_cache():
    space = an.load_space(Path(__file__).resolve().parents[1] / "spaces" / "mobile.yaml")
    X = space.sample(300, seed=4)
    prof = load_profile("x86-2core-ort")
    fast, ref = _fast_costs(space, X, prof, 1), _table_costs(space, X, prof, 1)
    assert isinstance(fast, Costs) and isinstance(ref, Costs)
    np.testing.assert_allclose(fast.memory_mb, ref.memory_mb, rtol=1e-9)
    oracle = Oracle(space, "tk1-gpu")
    oracle.evaluate(space.sample(5000, seed=1))
    (cache,) = oracle._grid_caches.values()
    assert isinstance(cache, GridCache) and cache.grids and cache.calls == 1
    assert all(isinstance(g, Grid) for g in cache.grids.values())
    assert cache.bytes == sum(g.nbytes for g in {id(g): g for g in cache.grids.values()}.values())
