"""Static analysis from the layer table: MACs, params, bytes, and peak memory with buffer reuse.

Conventions (float32, batch 1):
- ``macs``: multiply-accumulates of conv and fc layers (the paper's "FLOPs" are MACs). The
  per-type figures of other layers count element operations as the paper's tables do
  (BatchNorm 3 per element, LRN ``size`` per element, the rest 1), reported as ``ops`` in totals.
- ``params``: learnable parameters; BatchNorm running mean/var are not params but are counted
  in ``weights_bytes``.
- ``activation_bytes``: every tensor the network materialises (the input included), with
  in-place layers (activations, BatchNorm, Scale, Dropout whose input has no other reader)
  sharing their input's buffer, as Caffe's deploy files and ONNX Runtime do. No reuse: this is
  what a framework that keeps every blob (Caffe) holds.
- ``workspace_bytes``: the largest im2col buffer (1x1/stride-1 convs need none); one buffer is
  shared by all layers.
- ``peak_memory_bytes``: weights + the largest sum, over the execution order, of the tensors
  alive at one step (a tensor lives from its producer to its last reader) + that step's
  workspace: the memory of a runtime that frees and reuses buffers.
"""

from __future__ import annotations

import numpy as np

from ._totals import TOTAL_KEYS  # noqa: F401  (the figures of totals(), read from here)
from ._totals import input_elems, network_totals, peak_activation, shares_input_buffer, table_sums
from .lowering import DTYPE_BYTES, REGISTRY, LayerTable, lower
from .space import SearchSpace


def peak_memory(table: LayerTable, shares=None) -> dict:
    """Activation, workspace and peak bytes per candidate ([B] arrays)."""
    rows = table.rows
    if shares is None:
        shares = shares_input_buffer(table.ops, table.inputs)
    peak, size = peak_activation(table.ops, table.inputs, shares, rows["mask"], rows["out_elems"],
                                 rows["workspace_elems"], table.select_pos, input_elems(table))
    ws = rows["workspace_elems"] * DTYPE_BYTES
    return {
        "activation_bytes": size.sum(axis=0),
        "workspace_bytes": ws.max(axis=0) if table.L else np.zeros(table.B),
        "peak_activation_bytes": peak,
    }


def totals(table: LayerTable) -> dict:
    """Whole-network figures for every candidate of the table, each a ``[B]`` array (the rule of
    ``_totals``, the same as the fast path's)."""
    rows = table.rows
    shares = shares_input_buffer(table.ops, table.inputs)
    in_elems = input_elems(table)
    peak, _ = peak_activation(table.ops, table.inputs, shares, rows["mask"], rows["out_elems"],
                              rows["workspace_elems"], table.select_pos, in_elems)
    return network_totals(table_sums(table.ops, rows, shares), in_elems, peak)


def analyze_batch(space, X) -> dict:
    """``totals`` of candidates ``X`` of a space (lowering included)."""
    return totals(lower(space, X))


def _as_model(model):
    if isinstance(model, SearchSpace):
        if model.n_genes and model.size != 1:
            raise TypeError("analyze() takes a concrete model; decode a candidate first (space.decode(x))")
        return model
    raise TypeError(f"analyze() takes a model from augur_nas.load_model, not {type(model).__name__}")


def analyze(model) -> dict:
    """The analysis of one concrete model, as printed by ``augur-nas analyze --json``."""
    model = _as_model(model)
    x = np.zeros((1, model.n_genes), dtype=np.int64)
    table = lower(model, x)
    t = {k: _num(v[0]) for k, v in totals(table).items()}
    rows = table.rows
    layers, by_type = [], {}
    for s in range(table.L):
        typ = table.types[s]
        if typ is None or not rows["mask"][s, 0]:
            continue
        gemm = REGISTRY[table.ops[s]].gemm
        layer = {
            "name": table.names[s], "type": typ, "op": table.ops[s],
            "out_shape": [int(rows["out_c"][s, 0]), int(rows["out_h"][s, 0]), int(rows["out_w"][s, 0])],
            "macs": _num(rows["macs"][s, 0]), "params": int(rows["params"][s, 0]),
            "weights_bytes": int(rows["weight_elems"][s, 0]) * DTYPE_BYTES,
            "out_bytes": int(rows["out_elems"][s, 0]) * DTYPE_BYTES,
            "workspace_bytes": int(rows["workspace_elems"][s, 0]) * DTYPE_BYTES,
            "gemm": ({"n": int(rows["n"][s, 0]), "m": int(rows["m"][s, 0]), "k": int(rows["k"][s, 0]),
                      "groups": int(rows["groups"][s, 0])} if gemm else None),
        }
        layers.append(layer)
        bt = by_type.setdefault(typ, {"count": 0, "macs": 0, "params": 0})
        bt["count"] += 1
        bt["macs"] += layer["macs"]
        bt["params"] += layer["params"]
    in_shape = [model.program.in_channels] + [int(v) for v in (_first_in(table))]
    return {
        "model": model.name,
        "input": in_shape,
        "totals": t,
        "by_type": by_type,
        "layers": layers,
        "conventions": {
            "macs": "multiply-accumulates of conv and fc layers; per-type figures of other layers count element operations as the paper does",
            "dtype": "float32, batch 1",
        },
    }


def _first_in(table):
    for s, ins in enumerate(table.inputs):
        if ins[0] == -1:
            return table.rows["in_h"][s, 0], table.rows["in_w"][s, 0]
    return (0, 0)


def _num(v):
    f = float(v)
    return int(f) if f.is_integer() else f
