"""Splitting a network between a device and a server: every single-tensor cut, priced.

A *cut* ``c`` runs slots ``0..c-1`` of the layer table on the device and ``c..L-1`` on the
server. It is a split point when exactly one tensor is live across it (a tensor lives from its
producer to its last reader; the network output until the end): that tensor is all the server
needs. ``c = 0`` sends the input (all on the server), ``c = L`` keeps everything on the device.
Views (``identity``, ``flatten``, ``dropout``, a ``select``'s choice) and inactive slots carry
their input's tensor on; a ``zero`` edge is a constant the server makes itself, never sent.

Each side is priced by the same cost model as ``predict``, on a copy of the layer table with the
other side's slots made inactive (a column per (candidate, cut) pair, all cuts in one vectorized
call):

- fusion: a layer after the cut is no longer folded into a producer before it (the suffix starts
  a new chain, as a runtime running the suffix as its own graph would); the prefix keeps its own
  chains;
- layout: the suffix's entering tensor arrives plain (NCHW, as sent), so a blocked consumer pays
  the conversion of that tensor (its real size);
- ``network_overhead_ms``: each side that runs anything pays its profile's once per forward pass;
- the residual correction (a LightGBM model of whole networks) is applied as its ratio on the
  whole network, ``corrected / layer sum``, scaling each side of that profile: all-local equals
  ``predict``'s latency exactly, and a booster trained on whole networks is never asked about a
  fragment it has never seen.

Transfer: the live tensor's elements times the batch times the dtype's bytes over the uplink, the
network output back over the downlink, plus one round-trip time; nothing when all runs locally.
The compute itself stays float32 (the profiles describe float32 runtimes); ``dtype`` is the
encoding on the wire only.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from ._errors import ConstraintError
from .costmodel import Boundary, latency_ms
from .lowering import FIELDS, LayerTable, lower
from .profile import load_profile

DTYPE_SIZES = {"float32": 4, "float16": 2, "int8": 1}
PASS_OPS = ("identity", "select", "flatten", "dropout")  # views: carry their input's tensor on
MAX_COLUMNS = 4096  # (candidate, cut) pairs priced per call: bounds the copied table's memory

_BANDWIDTH_UNITS = {"bps": 1e-6, "kbps": 1e-3, "Kbps": 1e-3, "Mbps": 1.0, "Gbps": 1e3,
                    "B/s": 8e-6, "kB/s": 8e-3, "KB/s": 8e-3, "MB/s": 8.0, "GB/s": 8e3}
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?"


class Link(NamedTuple):
    """The network between device and server: bandwidths in Mbit/s (10^6 bits a second), the
    round-trip time paid once per split request, and the encoding of the tensors sent."""

    uplink_mbps: float
    downlink_mbps: float
    rtt_ms: float = 0.0
    dtype: str = "float32"

    @classmethod
    def of(cls, uplink, downlink=None, rtt="0ms", dtype="float32") -> "Link":
        """A checked ``Link`` from strings with units (``"20Mbps"``, ``"30ms"``) or numbers (Mbit/s, ms)."""
        up = parse_bandwidth(uplink, "--uplink")
        down = up if downlink is None else parse_bandwidth(downlink, "--downlink")
        if dtype not in DTYPE_SIZES:
            raise ConstraintError(f"--dtype {dtype!r}: the tensors sent are encoded as one of "
                                  f"{', '.join(DTYPE_SIZES)} (the compute stays float32)")
        return cls(up, down, parse_rtt(rtt), dtype)

    def up_ms(self, nbytes):
        return np.asarray(nbytes, dtype=np.float64) * 8.0 / (self.uplink_mbps * 1e3)

    def down_ms(self, nbytes):
        return np.asarray(nbytes, dtype=np.float64) * 8.0 / (self.downlink_mbps * 1e3)

    def describe(self) -> str:
        return (f"uplink {self.uplink_mbps:g} Mbit/s, downlink {self.downlink_mbps:g} Mbit/s, "
                f"rtt {self.rtt_ms:g} ms, tensors sent as {self.dtype}")


def parse_bandwidth(text, flag: str = "--uplink") -> float:
    """Mbit/s from ``20Mbps``, ``500kbps``, ``1.5Gbps``, ``12.5MB/s`` (bytes) or a positive number (Mbit/s)."""
    units = ", ".join(_BANDWIDTH_UNITS)
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
    else:
        m = re.fullmatch(_NUMBER + r"([A-Za-z/]+)", str(text))
        if not m or m.group(3) not in _BANDWIDTH_UNITS:
            sign = " (a bandwidth is positive)" if str(text).strip().startswith("-") else ""
            raise ConstraintError(f"{flag} {text!r} is not a bandwidth{sign}; write a positive number and its unit "
                                  f"with no space, like 20Mbps, 500kbps or 12.5MB/s (units: {units})")
        mant, exp, unit = m.groups()
        v = float(f"{mant}e{exp}" if exp else mant) * _BANDWIDTH_UNITS[unit]
    if not math.isfinite(v) or v <= 0:
        raise ConstraintError(f"{flag} must be a positive, finite bandwidth such as 20Mbps, got {text!r}")
    return v


def parse_rtt(text) -> float:
    """Milliseconds from ``30ms``, ``0.03s``, ``500us`` or a number >= 0 (ms)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
    else:
        m = re.fullmatch(_NUMBER + r"([a-z]*)", str(text))
        if not m or m.group(3) not in {**_TIME_UNITS, "": 1.0}:
            raise ConstraintError(f"--rtt {text!r} is not a time; write a number >= 0 and its unit with no space, "
                                  f"like 30ms or 0.03s (units: {', '.join(_TIME_UNITS)})")
        mant, exp, unit = m.groups()
        v = float(f"{mant}e{exp}" if exp else mant) * _TIME_UNITS.get(unit, 1.0)
    if not math.isfinite(v) or v < 0:
        raise ConstraintError(f"--rtt must be a finite time >= 0 such as 30ms, got {text!r}")
    return v


# ------------------------------------------------------------------------------------ liveness


class Cuts(NamedTuple):
    """Per cut ``c`` (0..L) and candidate, ``[L + 1, B]``: how many tensors are live across it,
    the elements and producing slot (-1: the network input) of the one live tensor where there is
    one, and whether ``c`` is a distinct split point (one live tensor, the slot before it makes a
    new tensor, work left after it). ``output_elems`` ``[B]``: the network output's size."""

    live: np.ndarray
    elems: np.ndarray
    producer: np.ndarray
    valid: np.ndarray
    output_elems: np.ndarray


def _tensors(table):
    """``(src [L + 1, B], produces [L + 1, B])``: the tensor each slot's output is (index s + 1;
    tensor id = producing slot + 1, 0 the input, L + 1 a constant zero) and whether slot s + 1
    makes a new one."""
    rows = table.rows
    mask = rows["mask"]
    L, B = mask.shape
    cols = np.arange(B)
    src = np.zeros((L + 1, B), dtype=np.int64)
    produces = np.zeros((L + 1, B), dtype=bool)
    produces[0] = True
    for s, (op, ins) in enumerate(zip(table.ops, table.inputs)):
        if op == "select" and s in table.select_pos and len(ins) > 1:
            pos = np.asarray(table.select_pos[s])
            src[s + 1] = np.stack([src[i + 1] for i in ins])[pos, cols]
        elif op in PASS_OPS:
            src[s + 1] = src[ins[0] + 1]
        elif op == "zero":
            src[s + 1] = L + 1
        else:
            src[s + 1] = np.where(mask[s], s + 1, src[ins[0] + 1])
            produces[s + 1] = mask[s]
    return src, produces


def cut_points(table, output: int) -> Cuts:
    """The live tensors across every cut of every candidate of a full layer table (see ``Cuts``)."""
    rows = table.rows
    mask = rows["mask"]
    L, B = mask.shape
    cols = np.arange(B)
    src, produces = _tensors(table)
    last = np.full((L + 2, B), -1, dtype=np.int64)  # last reading slot of each tensor id
    for s, (op, ins) in enumerate(zip(table.ops, table.inputs)):
        if op in PASS_OPS or op == "zero":
            continue  # a view does not read; its readers read its source
        act = mask[s]
        for i in set(ins):
            t = src[i + 1]
            last[t[act], cols[act]] = s
    last[src[output + 1], cols] = L  # the output is live to the end
    elems = np.zeros((L + 1, B), dtype=np.float64)
    elems[0] = _input_elems(table)
    elems[1:] = rows["out_elems"]
    start = np.broadcast_to(np.arange(L + 1)[:, None], (L + 1, B))
    real = produces & (last[:L + 1] >= start)
    grid = np.broadcast_to(cols, (L + 1, B))
    acc = np.zeros((3, L + 2, B), dtype=np.float64)
    for k, val in enumerate((1.0, elems, start - 1.0)):
        v = np.broadcast_to(val, (L + 1, B))[real]
        np.add.at(acc[k], (start[real], grid[real]), v)
        np.add.at(acc[k], (last[:L + 1][real] + 1, grid[real]), -v)
    live, cut_elems, producer = np.cumsum(acc, axis=1)[:, :L + 1]
    live = np.rint(live).astype(np.int64)
    work_after = np.flip(np.cumsum(np.flip(produces[1:], 0), axis=0), 0) > 0  # [L, B]: a slot >= c makes a tensor
    valid = live == 1
    valid[1:] &= produces[1:]
    valid[:L] &= work_after
    valid[L] = True
    out_elems = elems[np.clip(src[output + 1], 0, L), cols]
    return Cuts(live, np.where(live == 1, cut_elems, 0.0), np.rint(producer).astype(np.int64), valid, out_elems)


def _input_elems(table) -> np.ndarray:
    rows = table.rows
    out = np.zeros(table.B, dtype=np.float64)
    for s, ins in enumerate(table.inputs):
        if -1 in ins:
            out = np.maximum(out, (rows["in_c"][s] * rows["in_h"][s] * rows["in_w"][s]).astype(np.float64))
    return out


# ------------------------------------------------------------------------------------ pricing


def _side_table(table, cand, keep) -> LayerTable:
    """A copy of the table's columns ``cand`` with the slots outside ``keep`` ``[L, P]`` made
    inactive (their counts zeroed, as the lowering leaves an inactive slot)."""
    rows = {}
    for f, v in table.rows.items():
        v = v[:, cand]
        if f == "mask":
            v = v & keep
        elif f in FIELDS:
            v = v * keep
        rows[f] = v
    sel = {s: np.asarray(p)[cand] for s, p in table.select_pos.items()}
    return LayerTable(table.names, table.ops, table.types, table.inputs, rows, table.source, sel)


def _raw_ms(profile, tab, batch, entry=None) -> np.ndarray:
    model = profile.latency
    st = model.slot_costs(tab, batch, profile.name, entry)[0]
    return st.sum(axis=0) + model.network_overhead_ms


def _ratio(profile, table, batch) -> np.ndarray:
    """``[B]``: the residual-corrected whole-network latency over the layer sum (1 without a residual)."""
    if getattr(profile, "residual", None) is None:
        return np.ones(table.B)
    corrected = latency_ms(table, profile, batch)[0]
    raw = profile.latency.predict(table, batch, profile.name)[0]
    return np.where(raw > 0, corrected / np.where(raw > 0, raw, 1.0), 1.0)


class _Priced(NamedTuple):
    device_ms: np.ndarray
    server_ms: np.ndarray
    device_mb: np.ndarray | None


def _stateless(profile) -> bool:
    """Is every slot's time independent of the others' (no fusion, layout or CSE rules)? Then a
    side's time is a sum of the whole network's slot times."""
    model = profile.latency
    return not (model.fuse or model.layout or model.cse)


def _cumulative(profile, table, batch) -> np.ndarray:
    """``[L + 1, B]``: the layer sum of slots ``0..c-1`` of every candidate (a stateless profile)."""
    st = profile.latency.slot_costs(table, batch, profile.name)[0]
    out = np.zeros((table.L + 1, table.B))
    np.cumsum(st, axis=0, out=out[1:])
    return out


def _price_pairs(table, cand, cut, elems, device, server, batch, ratios, memory) -> _Priced:
    """Device time of the prefix, server time of the suffix (and the prefix's device memory) of each
    (candidate, cut) pair, ``MAX_COLUMNS`` pairs per vectorized call. A stateless profile's sides
    are partial sums of the whole network's slot times (the same numbers, one pricing)."""
    L = table.L
    P = len(cand)
    dev, srv = np.zeros(P), np.zeros(P)
    mem = np.zeros(P) if memory else None
    slots = np.arange(L)[:, None]
    sums = [_cumulative(p, table, batch) if _stateless(p) else None for p in (device, server)]
    for lo in range(0, P, MAX_COLUMNS):
        sl = slice(lo, min(P, lo + MAX_COLUMNS))
        c, k = cut[sl], cand[sl]
        pre = _side_table(table, k, slots < c[None, :]) if memory or sums[0] is None else None
        raw = sums[0][c, k] + device.latency.network_overhead_ms if sums[0] is not None else _raw_ms(device, pre, batch)
        dev[sl] = np.where(c > 0, raw * ratios[0][k], 0.0)
        if sums[1] is not None:
            raw = sums[1][L, k] - sums[1][c, k] + server.latency.network_overhead_ms
        else:
            post = _side_table(table, k, slots >= c[None, :])
            entry = Boundary.start(len(k))._replace(elems=np.asarray(elems[sl], dtype=np.int64))
            raw = _raw_ms(server, post, batch, entry)
        srv[sl] = np.where(c < L, raw * ratios[1][k], 0.0)
        if memory:
            mem[sl] = np.where(c > 0, device.memory.predict(pre, None, batch), 0.0)
    return _Priced(dev, srv, mem)


# ------------------------------------------------------------------------------------ the API


class SplitPoint(NamedTuple):
    """One split of one network: slots ``0..cut-1`` on the device, the rest on the server."""

    cut: int
    after: str  # the last slot run on the device ("(input)": none)
    kind: str  # all-server, split, all-local
    tensor_shape: tuple  # (C, H, W) of the tensor sent (the input for all-server; the output for all-local)
    elems: int
    bytes_sent: float
    device_ms: float
    uplink_ms: float
    rtt_ms: float
    server_ms: float
    downlink_ms: float
    total_ms: float
    device_memory_mb: float


def _profiles(device, server):
    return load_profile(device), load_profile(server)


def _link(link) -> Link:
    if not isinstance(link, Link):
        raise ConstraintError(f"link must be an augur_nas.planner.Link (e.g. Link.of('20Mbps', rtt='30ms')), "
                              f"not {type(link).__name__}")
    return link


def split_points(model, device, server, link: Link, batch: int = 1, x=None) -> list:
    """Every split point of one model (a space with no choices, or candidate ``x`` of a space) as
    ``SplitPoint`` records, all-server first and all-local last. Raises ``ConstraintError`` when
    the network has no single-tensor point between its input and its output."""
    link = _link(link)
    dev, srv = _profiles(device, server)
    x = np.zeros((1, model.n_genes), dtype=np.int64) if x is None else np.atleast_2d(np.asarray(x))[:1]
    table = lower(model, x)
    cuts = cut_points(table, model.program.output)
    cut = np.flatnonzero(cuts.valid[:, 0])
    if not ((cut > 0) & (cut < table.L)).any():
        live = cuts.live[1:table.L, 0]
        raise ConstraintError(
            f"{model.name} ({model.program.source or 'model'}) has no point between its input and its output where "
            f"the network is one tensor (every cut between its layers leaves {int(live.min()) if live.size else 0} "
            f"or more tensors live), so it cannot be split between a device and a server; run it whole on "
            f"either (augur-nas predict)")
    elems = cuts.elems[cut, 0]
    ratios = (_ratio(dev, table, batch), _ratio(srv, table, batch))
    priced = _price_pairs(table, np.zeros(len(cut), dtype=np.int64), cut, elems, dev, srv, batch, ratios, True)
    return [_point(table, cuts, int(c), priced, j, link, batch) for j, c in enumerate(cut)]


def _point(table, cuts, c, priced, j, link, batch) -> SplitPoint:
    L = table.L
    rows = table.rows
    p = int(cuts.producer[c, 0])
    if p < 0:
        s0 = next(s for s, ins in enumerate(table.inputs) if -1 in ins)
        shape = tuple(int(rows[f][s0, 0]) for f in ("in_c", "in_h", "in_w"))
    else:
        shape = tuple(int(rows[f][p, 0]) for f in ("out_c", "out_h", "out_w"))
    size = DTYPE_SIZES[link.dtype]
    sent = float(cuts.elems[c, 0]) * batch * size
    local = c == L
    up = 0.0 if local else float(link.up_ms(sent))
    down = 0.0 if local else float(link.down_ms(cuts.output_elems[0] * batch * size))
    rtt = 0.0 if local else link.rtt_ms
    dev, srv = float(priced.device_ms[j]), float(priced.server_ms[j])
    return SplitPoint(c, "(input)" if c == 0 else table.names[c - 1],
                      "all-server" if c == 0 else "all-local" if local else "split", shape,
                      int(cuts.elems[c, 0]), 0.0 if local else sent, dev, up, rtt, srv, down,
                      dev + up + rtt + srv + down, float(priced.device_mb[j]))


def split_latency(space, X, device, server, link: Link, batch: int = 1) -> dict:
    """The best split of each candidate ``X[B, G]``: ``[B]`` arrays ``total_ms`` (the best total),
    ``cut`` (slots run on the device: 0 all on the server, ``n_slots`` all local), ``device_ms``,
    ``transfer_ms`` (uplink + rtt + downlink), ``server_ms``, ``local_ms`` (all on the device, as
    ``Oracle.evaluate``), ``server_only_ms`` (input sent, all on the server), ``n_points`` (split
    points considered) and ``n_slots``."""
    link = _link(link)
    dev, srv = _profiles(device, server)
    X = space.check_encodings(np.atleast_2d(np.asarray(X)))
    table = lower(space, X)
    L, B = table.L, table.B
    cuts = cut_points(table, space.program.output)
    cut, cand = np.nonzero(cuts.valid)
    elems = cuts.elems[cut, cand]
    ratios = (_ratio(dev, table, batch), _ratio(srv, table, batch))
    priced = _price_pairs(table, cand, cut, elems, dev, srv, batch, ratios, False)
    size = DTYPE_SIZES[link.dtype] * batch
    remote = cut < L
    transfer = np.where(remote, link.up_ms(elems * size) + link.down_ms(cuts.output_elems[cand] * size)
                        + link.rtt_ms, 0.0)
    total = priced.device_ms + transfer + priced.server_ms
    order = np.lexsort((total, cand))  # per candidate, ascending total: the first is the best
    first = order[np.r_[True, cand[order][1:] != cand[order][:-1]]]
    out = {"total_ms": total[first], "cut": cut[first], "device_ms": priced.device_ms[first],
           "transfer_ms": transfer[first], "server_ms": priced.server_ms[first],
           "local_ms": priced.device_ms[cut == L][np.argsort(cand[cut == L])],
           "server_only_ms": priced.server_ms[cut == 0][np.argsort(cand[cut == 0])] + transfer[cut == 0][
               np.argsort(cand[cut == 0])],
           "n_points": np.bincount(cand, minlength=B), "n_slots": np.full(B, L)}
    return out
