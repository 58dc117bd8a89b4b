"""Network totals: one rule for the figures every pricing path reports.

The layer-table path (``analysis.totals``), the sink that sums a walk without a table
(``lowering._TotalsSink``) and the segment grids (``_segments``) all take from here:

- which slot writes into its input's buffer (``shares_input_buffer``): views (the op table's
  ``alias``), the free aliases, and in-place kinds whose input has no other reader (never the
  network input);
- the whole-network sums of a layer table (``table_sums``, the ``SUM_KEYS``);
- the network input's size (``input_elems``);
- liveness: the largest live activation over the execution order (``peak_activation``);
- the totals of ``analysis.TOTAL_KEYS`` from those sums (``network_totals``).

float32 throughout: ``DTYPE_BYTES`` bytes an element.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._derived import derived
from .ops import OPS

DTYPE_BYTES = 4  # float32 activations and weights

# whole-network sums of a table or a walk (elements, not bytes); workspace is a max, the rest sums
SUM_KEYS = ("macs", "ops", "params", "weight_elems", "activation_elems", "workspace_elems")
TOTAL_KEYS = ("macs", "ops", "params", "weights_bytes", "activation_bytes", "workspace_bytes", "peak_memory_bytes")


class BufferFacts(NamedTuple):
    """Static per-slot facts of a program for the totals."""

    shares: list  # writes into its input's buffer when active (``shares_input_buffer``)
    contexts: list  # its optional context: slots with equal contexts are active together


def shares_input_buffer(ops, inputs) -> list:
    """Per slot, statically: does it write into its input's buffer when active? Views and the free
    aliases always do; in-place kinds do when they are their input's only reader, never on the
    network input (``inputs``: each slot's input slots, -1 the network input)."""
    readers: dict = {}
    for ins in inputs:
        for i in set(ins):
            readers[i] = readers.get(i, 0) + 1
    out = []
    for op, ins in zip(ops, inputs):
        rec = OPS[op]
        out.append(rec.alias is not None or rec.table_type is None
                   or (rec.inplace and readers.get(ins[0], 0) == 1 and ins[0] != -1))
    return out


def buffer_facts(prog) -> BufferFacts:
    """The program's ``BufferFacts``, computed once."""
    d = derived(prog)
    if d.buffers is None:
        nodes = prog.nodes
        shares = shares_input_buffer([n.op for n in nodes], [n.inputs for n in nodes])
        ctx = [frozenset(n.conds) if n.when is None else ("when", i) for i, n in enumerate(nodes)]
        d.buffers = BufferFacts(shares, ctx)
    return d.buffers


def table_sums(ops, rows: dict, shares) -> dict:
    """The ``SUM_KEYS`` of a (masked) layer table's rows ``[L, B]``, each ``[B]``: MACs of
    the GEMM kinds, element operations of all, params, weight elements, the elements of every
    tensor that does not share its input's buffer, and the largest workspace."""
    B = rows["mask"].shape[1]
    gemm = [s for s, op in enumerate(ops) if OPS[op].gemm]
    act = [s for s, sh in enumerate(shares) if not sh]
    macs = rows["macs"]
    return {
        "macs": macs[gemm].sum(axis=0) if gemm else np.zeros(B),
        "ops": macs.sum(axis=0),
        "params": rows["params"].sum(axis=0),
        "weight_elems": rows["weight_elems"].sum(axis=0),
        "activation_elems": rows["out_elems"][act].sum(axis=0) if act else np.zeros(B, dtype=np.int64),
        "workspace_elems": (np.maximum(rows["workspace_elems"].max(axis=0), 0) if len(ops)
                            else np.zeros(B, dtype=np.int64)),
    }


def input_elems(table) -> np.ndarray:
    """Elements of the network input of every candidate of a full layer table, ``[B]`` (the
    largest input of the active slots that read it)."""
    rows = table.rows
    out = np.zeros(rows["mask"].shape[1], dtype=np.float64)
    for s, ins in enumerate(table.inputs):
        if ins and ins[0] == -1:
            out = np.maximum(out, (rows["in_c"][s] * rows["in_h"][s] * rows["in_w"][s]).astype(np.float64))
    return out


def network_totals(sums: dict, in_elems, peak_activation_bytes=None) -> dict:
    """The ``TOTAL_KEYS`` figures (bytes) from whole-network ``SUM_KEYS`` sums and the input size;
    ``peak_memory_bytes`` only when the largest live activation is given. A missing sum is 0."""
    in_elems = np.asarray(in_elems, dtype=np.float64)
    zero = np.zeros(in_elems.shape)
    get = lambda k: sums.get(k, zero)  # noqa: E731
    weights = get("weight_elems") * DTYPE_BYTES
    out = {
        "macs": get("macs"), "ops": get("ops"), "params": get("params"), "weights_bytes": weights,
        "activation_bytes": (get("activation_elems") + in_elems) * DTYPE_BYTES,
        "workspace_bytes": get("workspace_elems") * DTYPE_BYTES,
    }
    if peak_activation_bytes is not None:
        # the input alone is live before the first layer runs
        out["peak_memory_bytes"] = weights + np.maximum(peak_activation_bytes, in_elems * DTYPE_BYTES)
    return out


def peak_activation(ops, inputs, shares, mask, out_elems, ws_elems, select_pos, entry_elems, keep_last=True):
    """Largest live activation + workspace bytes over the execution of a run of slots, and the
    bytes of each tensor it materialises (``[L + 1, B]``, the entering tensor first).

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
        if OPS[ops[s]].alias == "chosen":  # a select: the buffer of the input its gene picks
            src = np.array([i + 1 for i in ins])[select_pos[s]]
            buf[s + 1] = buf.reshape(-1)[src * B + cols]
        elif shares[s]:
            buf[s + 1] = buf[first]
        elif mask[s].all():  # active in every column (most slots): no selection to make
            np.add(cols, (s + 1) * B, out=buf[s + 1])
            np.multiply(out_elems[s], DTYPE_BYTES, out=size[s + 1])
        else:
            buf[s + 1] = np.where(mask[s], (s + 1) * B + cols, buf[first])
            size[s + 1] = np.where(mask[s], out_elems[s], 0) * DTYPE_BYTES
    last = np.empty((L + 1, B), dtype=np.int64)  # per buffer: its last reader + 1
    last[:] = np.arange(L + 1, dtype=np.int64)[:, None]
    last[0] = 0
    last_flat = last.reshape(-1)
    for s in range(L):
        sel = mask[s]
        every = sel.all()
        for i in inputs[s]:
            at = buf[i + 1]
            last_flat[at] = s + 1 if every else np.where(sel, s + 1, last_flat[at])
    if keep_last:
        last_flat[buf[-1]] = L + 1
    delta = np.zeros((L + 3, B), dtype=np.float64)
    delta[:L + 1] += size
    delta_flat = delta.reshape(-1)
    # each buffer leaves the live set after its last reader: its flat index in ``delta``, for
    # all buffers at once (in place: ``last`` is not read again)
    last += 1
    last *= B
    last += cols
    for b in range(L + 1):
        delta_flat[last[b]] -= size[b]
    for t in range(1, L + 1):  # the running sum (np.cumsum's order)
        delta[t] += delta[t - 1]
    live = delta[1:L + 1]
    if not L:
        return size[0], size
    ws = np.broadcast_to(ws_elems, live.shape)
    for s in range(L):  # a layer's workspace is live while it runs (most layers have none)
        if ws[s].any():
            live[s] += ws[s] * DTYPE_BYTES
    return live.max(axis=0), size
