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

from .lowering import DTYPE_BYTES, REGISTRY, LayerTable, lower

TOTAL_KEYS = ("macs", "ops", "params", "weights_bytes", "activation_bytes", "workspace_bytes", "peak_memory_bytes")


ALIAS_OPS = ("identity", "select", "zero", "flatten", "dropout")


def shares_input_buffer(prog) -> list:
    """Per slot, statically: does it write into its input's buffer when active? (Views and
    in-place layers whose input has no other reader; never the network input.)"""
    cached = getattr(prog, "_shares_buffer", None)
    if cached is None:
        consumers: dict = {}
        for n in prog.nodes:
            for i in set(n.inputs):
                consumers[i] = consumers.get(i, 0) + 1
        cached = prog._shares_buffer = [
            n.op in ALIAS_OPS or REGISTRY[n.op].table_type is None
            or (REGISTRY[n.op].inplace and consumers.get(n.inputs[0], 0) == 1 and n.inputs[0] != -1)
            for n in prog.nodes
        ]
    return cached


def peak_activation(ops, inputs, shares, mask, out_elems, ws_elems, select_pos, entry_elems, keep_last=True):
    """Largest live activation + workspace bytes over the execution of a run of slots.

    ``inputs`` are local slot indices, -1 for the one tensor entering the run (the network
    input, or a segment's entry) of ``entry_elems`` elements. Arrays are ``[L, B]``; a tensor
    lives from its producer to its last reader, the run's last output until the end.
    """
    L = len(ops)
    B = mask.shape[1] if L else len(np.atleast_1d(entry_elems))
    cols = np.arange(B)
    # each slot's output buffer as a flat index (buffer * B + column) into the [L + 1, B] arrays
    # below: one element per column, so no repeats within a step. numpy's 2-D fancy indexing and
    # cumsum along axis 0 cost several times more on these arrays
    buf = np.empty((L + 1, B), dtype=np.int64)
    buf[0] = cols
    size = np.zeros((L + 1, B), dtype=np.float64)
    size[0] = np.broadcast_to(entry_elems, (B,)) * DTYPE_BYTES
    for s in range(L):
        ins = inputs[s]
        first = ins[0] + 1
        if ops[s] == "select":
            src = np.array([i + 1 for i in ins])[select_pos[s]]
            buf[s + 1] = buf.reshape(-1)[src * B + cols]
        elif shares[s]:
            buf[s + 1] = buf[first]
        else:
            buf[s + 1] = np.where(mask[s], (s + 1) * B + cols, buf[first])
            size[s + 1] = np.where(mask[s], out_elems[s], 0) * DTYPE_BYTES
    last = np.empty((L + 1, B), dtype=np.int64)  # per buffer: its last reader + 1
    last[:] = np.arange(L + 1, dtype=np.int64)[:, None]
    last[0] = 0
    last_flat = last.reshape(-1)
    for s in range(L):
        sel = mask[s]
        for i in inputs[s]:
            at = buf[i + 1]
            last_flat[at] = np.where(sel, s + 1, last_flat[at])
    if keep_last:
        last_flat[buf[-1]] = L + 1
    delta = np.zeros((L + 3, B), dtype=np.float64)
    delta[:L + 1] += size
    delta_flat = delta.reshape(-1)
    for b in range(L + 1):
        delta_flat[(last[b] + 1) * B + cols] -= size[b]
    for t in range(1, L + 1):  # the running sum (np.cumsum's order)
        delta[t] += delta[t - 1]
    live = delta[1:L + 1]
    if not L:
        return size[0], size
    return (live + ws_elems * DTYPE_BYTES).max(axis=0), size


def peak_memory(table: LayerTable, shares=None) -> dict:
    """Activation, workspace and peak bytes per candidate ([B] arrays)."""
    rows = table.rows
    if shares is None:
        shares = [op in ALIAS_OPS or REGISTRY[op].table_type is None for op in table.ops]
        consumers: dict = {}
        for ins in table.inputs:
            for i in set(ins):
                consumers[i] = consumers.get(i, 0) + 1
        shares = [sh or (REGISTRY[op].inplace and consumers.get(ins[0], 0) == 1 and ins[0] != -1)
                  for sh, op, ins in zip(shares, table.ops, table.inputs)]
    peak, size = peak_activation(table.ops, table.inputs, shares, rows["mask"], rows["out_elems"],
                                 rows["workspace_elems"], table.select_pos, _input_elems(table))
    ws = rows["workspace_elems"] * DTYPE_BYTES
    return {
        "activation_bytes": size.sum(axis=0),
        "workspace_bytes": ws.max(axis=0) if table.L else np.zeros(table.B),
        "peak_activation_bytes": peak,
    }


def _input_elems(table: LayerTable):
    for s, ins in enumerate(table.inputs):
        if ins[0] == -1:
            return table.rows["in_c"][s] * table.rows["in_h"][s] * table.rows["in_w"][s]
    return np.zeros(table.B)


def totals(table: LayerTable) -> dict:
    """Whole-network figures for every candidate of the table, each a ``[B]`` array."""
    rows = table.rows
    gemm = np.array([REGISTRY[o].gemm for o in table.ops], dtype=bool)
    macs = rows["macs"][gemm].sum(axis=0)
    mem = peak_memory(table)
    weights = rows["weight_elems"].sum(axis=0) * DTYPE_BYTES
    return {
        "macs": macs,
        "ops": rows["macs"].sum(axis=0),
        "params": rows["params"].sum(axis=0),
        "weights_bytes": weights,
        "activation_bytes": mem["activation_bytes"],
        "workspace_bytes": mem["workspace_bytes"],
        "peak_memory_bytes": weights + mem["peak_activation_bytes"],
    }


def analyze_batch(space, X) -> dict:
    """``totals`` of candidates ``X`` of a space (lowering included)."""
    return totals(lower(space, X))


def _as_model(model):
    from .space import SearchSpace

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
