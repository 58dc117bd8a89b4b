"""ONNX Runtime's own kernels, timed in place: per-node profiling attributed to our layers.

A session with ``enable_profiling`` records, for every run, the duration of every node of the
*optimised* graph: the fused kernels (``Conv`` carrying its BatchNorm, activation and residual
sum, named after the last layer it absorbed, with ``_nchwc`` appended when ORT converted it to
its blocked NCHWc layout), the memory-bound ops that stayed on their own, and the layout
changes ORT inserts (``ReorderInput`` / ``ReorderOutput``) around ops that work in plain NCHW.

``node_times`` reduces the profile to a robust per-node time (the interquartile mean of the
timed runs: durations are whole microseconds, so a median would be coarse for small kernels).
``attribute`` assigns every node to one layer of our model: a kernel to the layer that owns
its chain (the conv of ``conv -> bn -> relu``), a layout change to the plain-NCHW op it serves
(read from the optimised graph, which the session writes out), and what serves no priced layer
(the input's and the output's reorders, a flatten) to the network.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .._errors import MeasurementError
from .._imports import optional
from ..costmodel._fusion import TRANSPARENT

_SUFFIXES = ("_kernel_time",)
REORDER_OPS = ("ReorderInput", "ReorderOutput")


def node_times(profile_path: str, skip_runs: int = 0, keep=None) -> dict:
    """``{node name: (time_ms, op_type, n_runs, first input bytes)}`` from an ORT profile JSON file.
    ``keep`` (bool per run after the ``skip_runs`` first): the runs a node's time is taken from,
    where a node ran once per run and at least three of them are kept (else all runs)."""
    with open(profile_path, encoding="utf-8") as f:
        events = json.load(f)
    durs: dict = {}
    ops: dict = {}
    sizes: dict = {}
    for e in events:
        if e.get("cat") != "Node":
            continue
        name = e.get("name", "")
        if not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        durs.setdefault(node, []).append(float(e.get("dur", 0)))
        args = e.get("args", {})
        ops[node] = args.get("op_name", "")
        if node not in sizes:
            sizes[node] = _first_input_bytes(args)
    out = {}
    for node, d in durs.items():
        d = np.asarray(d[skip_runs:] if len(d) > skip_runs else d, dtype=np.float64)
        if keep is not None and len(keep) == len(d) and int(np.sum(keep)) >= 3:
            d = d[np.asarray(keep, dtype=bool)]
        out[node] = (iq_mean(d) / 1000.0, ops[node], len(d), sizes[node])
    return out


def _first_input_bytes(args) -> float:
    """Bytes of a node's first input (float32), from the profile's ``input_type_shape``."""
    try:
        shapes = args.get("input_type_shape") or []
        dims = list(shapes[0].values())[0]
        return float(np.prod(dims)) * 4.0
    except (IndexError, AttributeError, TypeError, ValueError):
        return 0.0


def iq_mean(v) -> float:
    """Mean of the values between the 25th and 75th percentiles (robust, not quantised)."""
    v = np.sort(np.asarray(v, dtype=np.float64))
    if len(v) < 4:
        return float(np.median(v))
    lo, hi = int(np.floor(len(v) * 0.25)), int(np.ceil(len(v) * 0.75))
    return float(v[lo:hi].mean())


def graph_edges(optimized_path: str):
    """``(producer, consumers, nodes)`` of the optimised graph: tensor -> node name, tensor ->
    [node names], node name -> (op_type, inputs, outputs)."""
    onnx = optional("onnx", "reading ONNX Runtime's optimised graph", MeasurementError)
    m = onnx.load(optimized_path, load_external_data=False)
    producer, consumers, nodes = {}, {}, {}
    for i, n in enumerate(m.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        nodes[name] = (n.op_type, list(n.input), list(n.output))
        for o in n.output:
            producer[o] = name
        for t in n.input:
            consumers.setdefault(t, []).append(name)
    outputs = {o.name for o in m.graph.output}
    return producer, consumers, nodes, outputs


def layer_of(node: str, names: dict):
    """Our layer (slot index) a node of the optimised graph is named after, or None."""
    base = node[:-6] if node.endswith("_nchwc") else node
    if base.startswith("fused "):  # ORT names a fused Gemm/Conv "fused <name>"
        base = base[6:]
    if base in names:
        return names[base]
    # a node ORT fused from a pattern is named "<the pattern's last node>/<Fusion>/" (swish's
    # x * sigmoid(x) becomes "<swish layer>/QuickGeluFusion/"): that node is the layer's; by the
    # suffix rule below its time went to the layer named by the dotted prefix (the conv before
    # the swish), and the swish layer had no time at all
    head = base.split("/", 1)[0]
    if "/" in base and head in names:
        return names[head]
    # exporters may add a suffix to a layer's name for helper nodes (`fc.flatten`)
    best = None
    for sep in (".", "_", "/"):
        if sep in base:
            head = base.rsplit(sep, 1)[0]
            if head in names and (best is None or len(head) > len(best)):
                best = head
    return names[best] if best is not None else None


def attribute(times: dict, table, owner, priced, graph=None, layout_bucket: bool = False) -> dict:
    """Assign node times to layers: ``{slot or "network": [(node, op, ms, is_reorder)]}``.

    ``owner[s]`` is the slot whose model prices slot ``s`` (itself, or the producer it is fused
    into); ``priced[s]`` whether slot ``s``'s kind has a cost model (not free). ``graph`` is
    ``graph_edges`` of the optimised model (needed to attribute layout changes). With
    ``layout_bucket``, layout changes and zero edges go to ``"layout"`` as ``(node, op, ms, bytes)``.
    """
    names = {n: i for i, n in enumerate(table.names)}
    readers: dict = {}
    for j, ins in enumerate(table.inputs):
        for i in ins:
            readers.setdefault(i, []).append(j)
    out: dict = {}

    def slot_for(node):
        s = layer_of(node, names)
        if s is None and graph is not None and node in graph[2]:
            s = _slot_of_output(node, graph, names)
        if s is None:
            return "network"
        # a `zero` edge runs as a multiply by 0 in ONNX (as in NAS-Bench-201's code): its cost
        # goes to the join that reads it (whose input bytes count the zero tensor)
        hops = 0
        while table.ops[s] in ("zero", "select", "identity") and readers.get(s) and hops < 8:
            s = readers[s][0]
            hops += 1
        s = owner[s]
        return s if priced[s] else "network"

    for node, (ms, op, _, nbytes) in times.items():
        if layout_bucket and (op in REORDER_OPS or _is_zero(node, names, table)):
            # layout conversions and zero edges (a multiply by 0): streaming passes over a tensor,
            # priced by the layout model (a zero edge streams its input in and out)
            moved = nbytes if op in REORDER_OPS else 2 * nbytes
            out.setdefault("layout", []).append((node, op, ms, moved))
            continue
        if op in REORDER_OPS and graph is not None:
            target = _reorder_target(node, op, graph, slot_for)
        else:
            target = slot_for(node)
        out.setdefault(target, []).append((node, op, ms, op in REORDER_OPS))
    return out


def _slot_of_output(node, graph, names):
    """The layer a node ORT fused under a name of its own (``Gelu`` from the Erf pattern) writes:
    its output tensor keeps the name our exporter gave the layer, or a layout change right after
    it (ReorderOutput) carries that name on."""
    producer, consumers, nodes, outputs = graph
    for out in nodes[node][2]:
        s = layer_of(out, names)
        if s is not None:
            return s
        for c in consumers.get(out, []):
            if c in nodes and nodes[c][0] in REORDER_OPS:
                for o in nodes[c][2]:
                    s = layer_of(o, names)
                    if s is not None:
                        return s
    return None


def _is_zero(node, names, table) -> bool:
    s = layer_of(node, names)
    return s is not None and table.ops[s] == "zero"


def _reorder_target(node, op, graph, slot_for):
    producer, consumers, nodes, outputs = graph
    if node not in nodes:
        return "network"
    _, ins, outs = nodes[node]
    if op == "ReorderInput":  # NCHW -> NCHWc: serves the plain op that produced its input
        src = producer.get(ins[0]) if ins else None
        return slot_for(src) if src is not None else "network"
    # ReorderOutput (NCHWc -> NCHW): serves the plain op that reads its output
    readers = consumers.get(outs[0], []) if outs else []
    for r in readers:
        t = slot_for(r)
        if t != "network":
            return t
    return "network"


def owners(table, rules) -> tuple:
    """``(owner [L], fused [L])`` for a one-candidate table: the slot whose kernel runs each slot."""
    L = len(table.ops)
    mask = table.rows["mask"]
    if rules:
        fused, stage, group = rules.chain_stages(table.ops, table.inputs, mask, getattr(table, "select_pos", None))
        fused = fused[:, 0]
    else:
        fused = np.zeros(L, dtype=bool)
        stage = np.full((L, 1), -1)
    owner = list(range(L))

    def resolve(i):
        # through transparent slots (select: its chosen input)
        while i >= 0 and table.ops[i] in TRANSPARENT:
            sp = getattr(table, "select_pos", {}) or {}
            if table.ops[i] == "select" and i in sp:
                i = table.inputs[i][int(np.asarray(sp[i])[0])]
            else:
                i = table.inputs[i][0]
        return i

    for s in range(L):
        if not fused[s]:
            continue
        cands = [resolve(i) for i in table.inputs[s]]
        chain = [i for i in cands if i >= 0 and stage[i, 0] >= 0]
        src = chain[0] if chain else cands[0]
        owner[s] = owner[src] if src >= 0 else s
    return owner, fused


def cleanup(path: str | None):
    if path and os.path.exists(path):
        try:
            os.unlink(path)
        except OSError:
            pass
