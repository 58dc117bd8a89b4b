"""The op table (augur_nas/ops.py) is the one list of op kinds: every kind the space language
builds and every kind the lowering handles has exactly one record, and the facts other modules
use are the table's."""

import numpy as np
import pytest

import augur_nas as an
from augur_nas import ops
from augur_nas.analysis import totals
from augur_nas.costmodel import FREE_BY_DEFAULT, GEMM_KINDS
from augur_nas.costmodel._fusion import TRANSPARENT
from augur_nas.costmodel._residual import residual_sums
from augur_nas.lowering import REGISTRY
from augur_nas.profile import load_profile
from augur_nas.space._compile import ALIASES, JOINS, PRIMITIVES


def test_every_language_op_kind_has_exactly_one_record_and_vice_versa():
    # the language's primitives are the table's kinds, less the spellings of another kind; `select`
    # is built by the language for a choice, never written in a file
    built = {ALIASES.get(k, k) for k in PRIMITIVES} | {"select"}
    assert built == set(ops.OPS)
    assert set(ALIASES) == set(ops.SPELLINGS) and all(v in ops.OPS for v in ops.SPELLINGS.values())
    assert not set(ops.SPELLINGS) & set(ops.OPS)  # a spelling is never a kind of its own
    # one handler per record, carrying the record itself
    assert set(REGISTRY) == set(ops.OPS)
    for kind, handler in REGISTRY.items():
        assert handler.op is ops.OPS[kind]
        assert handler.op.kind == kind


def test_records_are_consistent():
    for kind, rec in ops.OPS.items():
        assert rec.residual in ("gemm", "pool", "join", "act", "other"), kind
        assert rec.alias in (None, "first", "chosen"), kind
        assert (rec.residual == "gemm") == rec.gemm, kind
        assert (rec.residual == "join") == rec.join, kind
        if rec.table_type is None:  # never counted: free, and a view of an input
            assert rec.free and rec.alias is not None, kind
        assert not (rec.gemm and (rec.free or rec.alias or rec.inplace)), kind


def test_other_modules_read_the_table():
    assert set(FREE_BY_DEFAULT) == {"dropout", "flatten", "identity", "select", "zero"}
    assert GEMM_KINDS == ("conv", "dwconv", "fc")
    assert set(TRANSPARENT) == {"select", "identity", "dropout"}
    assert JOINS == {"add", "mul", "concat"}
    assert ops.OPS["dwconv"].table_type == "conv" and ops.OPS["relu6"].table_type == "relu"
    assert ops.OPS["layernorm"].residual == "act" and not ops.OPS["layernorm"].inplace


def test_compiled_nodes_take_their_table_type_from_the_table():
    space = an.load_space_dict({"input": {"channels": 3, "resolution": 32}, "layers": [
        {"conv": {"out": 8, "kernel": 3}}, {"relu6": {}}, {"silu": {}}, {"shuffle": {"groups": 2}},
        {"dropout": {}}, {"globalpool": {"mode": "avg"}}, {"flatten": {}}, {"fc": {"out": 10}}]}, source="t.yaml")
    for n in space.program.nodes:
        assert n.table_type == ops.OPS[n.op].table_type, n.op
    assert [n.op for n in space.program.nodes][2] == "swish"  # the spelling is built as its kind


def test_residual_counts_follow_the_table_groups():
    """A layer of each kind is counted in its op-table group (one layer of each here)."""
    space = an.load_space_dict({"input": {"channels": 3, "resolution": 32}, "layers": [
        {"conv": {"out": 8, "kernel": 3}}, {"maxpool": {"kernel": 2}}, {"layernorm": {}}, {"lrn": {}},
        {"globalpool": {"mode": "avg"}}, {"fc": {"out": 10}}]}, source="t.yaml")
    table = an.lower(space, np.zeros((1, 0), dtype=np.int64))
    model = load_profile("tk1-gpu").latency
    st = model.slot_times(table, 1, "tk1-gpu")
    sums = residual_sums(table, model, st, None)
    assert sums["res.n_pool"][0] == 2 and sums["res.n_act"][0] == 1 and sums["res.n_other"][0] == 1
    assert sums["res.n_kxk"][0] == 1 and sums["res.n_fc"][0] == 1


def test_buffer_sharing_follows_the_table():
    """In-place kinds share a buffer only as the single reader; views always; LayerNorm never."""
    def act_bytes(layers):
        space = an.load_space_dict({"input": {"channels": 3, "resolution": 8}, "layers": layers}, source="t.yaml")
        return totals(an.lower(space, np.zeros((1, 0), dtype=np.int64)))["activation_bytes"][0]

    conv = {"conv": {"out": 4, "kernel": 1}}
    base = act_bytes([conv])  # input 3x8x8 + conv 4x8x8
    assert base == (3 + 4) * 64 * 4
    assert act_bytes([conv, {"relu": {}}]) == base  # in place
    assert act_bytes([conv, {"dropout": {}}]) == base  # a view
    assert act_bytes([conv, {"layernorm": {}}]) == base + 4 * 64 * 4  # a new tensor


def test_unknown_op_kind_is_reported_not_dropped():
    import dataclasses

    from augur_nas._errors import UnsupportedOpError
    from augur_nas.lowering import _static_info

    space = an.load_space_dict({"input": {"channels": 3, "resolution": 8},
                                "layers": [{"conv": {"out": 4, "kernel": 1}}]}, source="t.yaml")
    node = dataclasses.replace(space.program.nodes[0], op="mystery")
    prog = dataclasses.replace(space.program, nodes=[node])  # a fresh program: nothing derived yet
    with pytest.raises(UnsupportedOpError, match="mystery"):
        _static_info(prog)
