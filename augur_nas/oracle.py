"""The cost oracle: predicted latency, memory, MACs and params of candidates on a device.

``Oracle(space, device, batch=1)`` binds a search space (or a model) to a device profile;
``evaluate(X)`` prices a batch of encodings ``X[B, G]`` at once (vectorized over candidates, in
chunks of ``chunk`` candidates to bound memory) and returns ``[B]`` arrays. ``constraints(...)``
builds the constraint function of a constrained search (values <= 0 are feasible).

``evaluate(X, reference=True)`` prices through the full layer table instead of the segment
tabulation of the hot path: slower, and the reference anyone can check the fast path against
(they agree to 1e-9 relative; ``tests/test_fast_path.py``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._errors import ConstraintError, ShapeError
from ._segments import NARROW_BATCH, GridCache, gene_rows, segment_sums
from ._totals import DTYPE_BYTES, network_totals
from .analysis import totals
from ._split import split_latency as _split_latency
from .costmodel import latency_ms, memory_mb, residual_sums
from .costmodel._memory import fc_weight_bytes
from .costmodel._residual import SUM_KEYS
from .lowering import REGISTRY, _TotalsSink, lower
from .models import load_space
from .profile import Profile, load_profile

DEFAULT_CHUNK = 131072


class Costs(NamedTuple):
    """What a pricing path gives for a chunk of candidates, each ``[B]``."""

    latency_ms: np.ndarray
    by_kind: dict  # op kind -> [B] latency (ms) of its layers
    memory_mb: np.ndarray
    macs: np.ndarray
    params: np.ndarray


def _table_costs(space, X, profile, batch, breakdown=True) -> Costs:
    """The reference path: lower a chunk to the full layer table and price it."""
    table = lower(space, X)
    tot = totals(table)
    lat, by_kind = latency_ms(table, profile, batch)
    mem = memory_mb(table, profile, batch, tot)
    return Costs(lat, by_kind, mem, tot["macs"], tot["params"])


def segment_pricer(profile, batch, breakdown, residual=True):
    """``seg_fn`` of ``segment_sums``: a segment's small layer table priced by the latency model
    (and the workspace and fc-weight terms the memory model needs; with ``residual`` and a
    profile that has one, the residual's sums; with ``breakdown`` the latency per op kind). The
    one pricer of the oracle's fast path and of the exact front (``exact``: no breakdown, no
    residual sums)."""
    model, name = profile.latency, profile.name
    model_ws_sum = profile.memory.workspace == "sum"
    residual = getattr(profile, "residual", None) if residual else None
    need_fc = profile.memory.fc_weights_coef is not None
    stateful = bool(model.fuse or model.layout)

    def seg_fn(table, entry=None):
        fused = exit_bound = None
        if stateful:
            # fusion chains and layouts run across segment boundaries: the entering tensor's state
            # is part of the grid key, and the exit's is handed on with the exit shapes
            st, n_reorder, fused, exit_bound = model.slot_costs(table, batch, name, entry, None, exit_state=True)
        else:
            st, n_reorder = model.slot_costs(table, batch, name, None, None)
        out = {"latency_ms": st.sum(axis=0)}
        if model_ws_sum:
            out["workspace_sum_elems"] = table.rows["workspace_elems"].sum(axis=0)
        if breakdown:
            out.update({f"latency_ms.{k}": v for k, v in model.breakdown(table, st).items()})
        if residual is not None:
            out.update(residual_sums(table, model, st, fused, n_reorder))
        if need_fc:
            out["fc_weight_bytes"] = fc_weight_bytes(table)
        return out, exit_bound

    return seg_fn


def boundary_projector(model):
    """``project`` of ``segment_sums``: a boundary state cut to what a segment can see
    (``Boundary.relevant``): fewer distinct entry states, the same prices. ``None``: the
    profile carries no boundary state."""
    fusion, layout = bool(model.fuse), bool(model.layout)
    if not (fusion or layout):
        return None
    return lambda readers, b: b.relevant(readers, fusion, layout)


def _is_linear(mem) -> bool:
    """Every term of the memory model is a sum over layers (no peak, no largest workspace)."""
    return mem.activations == "caffe" and mem.batch_activations == "caffe" and mem.workspace in ("sum", "none")


def _linear_memory(terms, need_fc):
    """``derive`` of ``segment_sums``: the additive memory terms of a grid row as one field
    (``MemoryTerms.linear_mb`` of its sums), gathered once instead of term by term. In a linear
    model both activation terms price the same (``caffe``) activations."""
    def derive(res):
        return {"memory_linear_mb": terms.linear_mb(
            weights=res["weight_elems"] * DTYPE_BYTES, fc_weights=res.get("fc_weight_bytes", 0.0) if need_fc else 0.0,
            activations=res["activation_elems"] * DTYPE_BYTES, batch_activations=res["activation_elems"] * DTYPE_BYTES,
            workspace=res.get("workspace_sum_elems", 0.0) * DTYPE_BYTES)}
    return derive


DISTINCT_SPACE = 4  # a batch is made distinct first when the space has at most this many times
# more candidates than the batch (NAS-Bench-201: 15,625 in all, so 100,000 samples repeat)


WHOLE_SPACE = 2**16  # a space of at most this many candidates is priced whole once an Oracle is
# asked a second time (NAS-Bench-201: 15,625): later calls, one candidate at a time included, read it


def _fast_costs(space, X, profile, batch, breakdown=True, cache=None, XT=None) -> Costs:
    """``_segment_costs`` of the distinct rows of ``X`` when a small space makes repeats likely,
    spread back to every row (identical rows have identical costs). A small space asked again
    through a cache is priced whole once, and every later row is read from that table. ``XT``:
    the gene rows of ``X`` (``_gene_rows_pay``)."""
    whole = _whole_space(space, profile, batch, breakdown, cache)
    if whole is not None:
        return _take_costs(whole, _space_keys(space, X))
    got = _distinct_rows(space, X)
    if got is None:
        return _segment_costs(space, X, profile, batch, breakdown, cache, XT=XT)
    rows, inv = got
    c = _segment_costs(space, X[rows], profile, batch, breakdown, cache, priced_for=len(X))
    return _take_costs(c, inv)


def _as_batch(X) -> np.ndarray:
    """``X`` as an array of encodings, one encoding as a batch of one."""
    X = np.asarray(X)
    return X[None, :] if X.ndim == 1 else X


def _gene_rows_pay(space, B: int) -> bool:
    """Whether a batch of ``B`` goes to ``segment_sums`` whole with narrow gene rows: a large
    batch of a space too large to be made distinct or priced whole (mobile, not NAS-Bench-201)."""
    return B >= NARROW_BATCH and _space_total(space, max(WHOLE_SPACE, DISTINCT_SPACE * B)) is None


def _take_costs(c: Costs, rows) -> Costs:
    """The costs of ``rows`` of ``c``."""
    return Costs(np.take(c.latency_ms, rows), {k: np.take(v, rows) for k, v in c.by_kind.items()},
                 np.take(c.memory_mb, rows), np.take(c.macs, rows), np.take(c.params, rows))


def _space_total(space, limit: int) -> int | None:
    """How many candidates ``space`` has, or None when that is more than ``limit``."""
    total = 1
    for sz in space._sizes.tolist():
        total *= sz
        if total > limit:
            return None
    return total


def _radix(space) -> np.ndarray:
    """Each gene's place value in a candidate's number (the last gene counts by ones)."""
    sizes = space._sizes
    radix = np.ones(len(sizes), dtype=np.int64)
    for i in range(len(sizes) - 2, -1, -1):
        radix[i] = radix[i + 1] * sizes[i + 1]
    return radix


def _space_keys(space, X) -> np.ndarray:
    """Each encoding's number among all the space's candidates (mixed radix of the genes)."""
    if not len(space._sizes):
        return np.zeros(X.shape[0], dtype=np.int64)
    return X.astype(np.int64, copy=False) @ _radix(space)


def _whole_space(space, profile, batch, breakdown, cache) -> Costs | None:
    """The costs of every candidate of a small space, by number (``_space_keys``), kept in the
    Oracle's cache: priced on the cache's second call (its first may be a lone candidate)."""
    if cache is None or cache.whole is False:
        return None
    if cache.whole is not None:
        return cache.whole
    total = _space_total(space, WHOLE_SPACE)
    if total is None or cache.calls < 1:
        return None
    radix = _radix(space)
    every = (np.arange(total, dtype=np.int64)[:, None] // radix) % space._sizes  # [total, G]
    try:
        cache.whole = _segment_costs(space, every, profile, batch, breakdown, cache, priced_for=total)
    except ShapeError:
        # some candidate of the space has shapes that do not work: price each call's own
        # candidates instead, so that only a call holding such a candidate is refused
        cache.whole = False
        return None
    return cache.whole


def _distinct_rows(space, X):
    """``(one row of each distinct encoding, each row's index into them)``, or None when the space
    is too large for repeats to be likely (or there are few): a key per row from the genes'
    option counts, made distinct by marking a table of all the space's keys (no sort)."""
    B = X.shape[0]
    total = _space_total(space, DISTINCT_SPACE * B)
    if total is None:
        return None
    key = _space_keys(space, X)
    rep = np.full(total, -1, dtype=np.int64)
    rep[key] = np.arange(B)  # a representative row of each key (the last of its repeats)
    keys = np.flatnonzero(rep >= 0)
    if len(keys) > 0.9 * B:
        return None
    rank = np.zeros(total, dtype=np.intp)
    rank[keys] = np.arange(len(keys))
    return rep[keys], rank[key]


def _segment_costs(space, X, profile, batch, breakdown=True, cache=None, priced_for=None, XT=None) -> Costs:
    """The same figures through segment tabulation (``_segments``): each block of the network is
    priced once per distinct (input shape, block genes) combination of the chunk. With a residual,
    the whole-network sums its features need are gathered with the latency and the booster
    corrects the chunk at once."""
    model, mem = profile.latency, profile.memory
    residual = getattr(profile, "residual", None)
    need_fc = mem.fc_weights_coef is not None
    terms = mem.terms(batch)
    linear = _is_linear(mem)
    if linear:
        derive = _linear_memory(terms, need_fc)
        keep = {"latency_ms", "macs", "params", "memory_linear_mb"}
    else:
        derive = None
        keep = {"latency_ms", "macs", "params", "weight_elems", "workspace_sum_elems",
                "activation_elems" if mem.activations == "caffe" else "peak_activation_bytes",
                "activation_elems" if mem.batch_activations == "caffe" else "peak_activation_bytes",
                "workspace_elems" if mem.workspace == "max" else ""}
        if need_fc:
            keep.add("fc_weight_bytes")
    if residual is not None:
        keep.update(SUM_KEYS)
    prog = space.program
    r, in_elems = segment_sums(space, X, lambda n: _TotalsSink(prog, n), peak="peak" in (mem.activations, mem.batch_activations),
                               seg_fn=segment_pricer(profile, batch, breakdown), keep=keep, cache=cache,
                               derive=derive, checked=True, project=boundary_projector(model), priced_for=priced_for,
                               XT=XT)
    zero = np.zeros(len(in_elems))
    get = lambda k: r.get(k, zero)  # noqa: E731
    by_kind = {k.split(".", 1)[1]: v for k, v in r.items() if k.startswith("latency_ms.")}
    lat = get("latency_ms") + model.network_overhead_ms
    if residual is not None:
        lat = residual.apply(lat, {k: get(k) for k in SUM_KEYS}, in_elems, batch)
    if linear:
        # the network input is an activation too (``_totals.network_totals``)
        in_bytes = in_elems * DTYPE_BYTES
        mem_mb = terms.constant_mb + get("memory_linear_mb") + terms.linear_mb(activations=in_bytes,
                                                                                batch_activations=in_bytes)
        return Costs(lat, by_kind, mem_mb, get("macs"), get("params"))
    tot = network_totals(r, in_elems, get("peak_activation_bytes"))
    tot["workspace_sum_bytes"] = get("workspace_sum_elems") * DTYPE_BYTES
    if need_fc:
        tot["fc_weights_bytes"] = get("fc_weight_bytes")
    return Costs(lat, by_kind, mem.predict(None, tot, batch), tot["macs"], tot["params"])


class Oracle:
    """Predicted costs of a space's candidates on one device."""

    def __init__(self, space, device, batch: int = 1, chunk: int = DEFAULT_CHUNK):
        if isinstance(space, str):
            space = load_space(space)
        self.space = space
        self.profile: Profile = load_profile(device)
        self.batch = _positive_int(batch, "batch")
        self.chunk = _positive_int(chunk, "chunk")
        # segment grids priced for this space and profile, kept from one call to the next
        # (``_segments.segment_sums``), one ``GridCache`` per (profile, batch, breakdown)
        self._grid_caches: dict = {}

    @property
    def device(self) -> str:
        return self.profile.name

    @property
    def threads(self) -> int | None:
        """The intra-op thread count the profile's predictions are for (None: the profile does not say)."""
        return self.profile.threads

    def __repr__(self) -> str:
        return f"Oracle(space={self.space.name!r}, device={self.device!r}, batch={self.batch})"

    # ------------------------------------------------------------------------------ evaluate

    def _encodings(self, X) -> np.ndarray:
        return self.space.check_encodings(_as_batch(X))

    def _checked(self, X, reference: bool) -> tuple:
        """``(X checked, its gene rows or None)``: a large batch of a large space, priced on the
        fast path, is checked while its gene rows are built (``_segments.gene_rows``: one pass
        over the batch instead of two)."""
        X = _as_batch(X)
        if not reference and _gene_rows_pay(self.space, X.shape[0]):
            return gene_rows(self.space, X)
        return self.space.check_encodings(X), None

    def evaluate(self, X, batch: int | None = None, breakdown: bool = True, reference: bool = False) -> dict:
        """``latency_ms``, ``memory_mb``, ``macs``, ``params`` and, with ``breakdown``, the latency
        of each op kind as ``latency_ms.<kind>`` (``[B]`` arrays).

        With ``reference`` every chunk is lowered to the full layer table and priced from it (the
        reference path, no segment grids): the same figures to 1e-9 relative, much slower; there
        to check the hot path against."""
        X, XT = self._checked(X, reference)
        batch = self.batch if batch is None else _positive_int(batch, "batch")
        B = X.shape[0]
        out = {"latency_ms": np.zeros(B), "memory_mb": np.zeros(B), "macs": np.zeros(B),
               "params": np.zeros(B, dtype=np.int64)}
        kinds: dict[str, np.ndarray] = {}
        for lo in range(0, B, self.chunk):
            hi = min(B, lo + self.chunk)
            # the segment grids are priced once per Oracle and kept, so after the first call even a
            # single candidate only gathers its segments' sums
            cache = self._grid_caches.setdefault((id(self.profile), batch, bool(breakdown)), GridCache())
            if reference:
                got = _table_costs(self.space, X[lo:hi], self.profile, batch, breakdown)
            else:
                got = _fast_costs(self.space, X[lo:hi], self.profile, batch, breakdown, cache,
                                  None if XT is None else XT[:, lo:hi])
            out["latency_ms"][lo:hi] = got.latency_ms
            out["memory_mb"][lo:hi] = got.memory_mb
            out["macs"][lo:hi] = got.macs
            out["params"][lo:hi] = got.params
            for k, v in (got.by_kind.items() if breakdown else ()):
                kinds.setdefault(k, np.zeros(B))[lo:hi] = v
        for k, v in kinds.items():
            out[f"latency_ms.{k}"] = v
        return out

    def latency(self, X, batch: int | None = None) -> np.ndarray:
        """Predicted latency (ms) of a batch of ``batch`` images, per candidate."""
        return self.evaluate(X, batch, breakdown=False)["latency_ms"]

    def memory(self, X, batch: int | None = None) -> np.ndarray:
        """Predicted process memory (MB, 2^20 bytes), per candidate."""
        return self.evaluate(X, batch, breakdown=False)["memory_mb"]

    def throughput(self, X, batch: int | None = None) -> np.ndarray:
        """Images per second when running batches of ``batch`` images back to back."""
        b = self.batch if batch is None else _positive_int(batch, "batch")
        return b * 1000.0 / self.latency(X, b)

    def explain(self, x, batch: int | None = None) -> list:
        """Per-layer prediction of one candidate: name, type, op, GEMM dims, predicted ms."""
        X = self._encodings(x)
        if X.shape[0] != 1:
            raise ConstraintError(f"explain() takes one candidate, got {X.shape[0]}")
        b = self.batch if batch is None else _positive_int(batch, "batch")
        table = lower(self.space, X)
        st = self.profile.latency.slot_times(table, b, self.profile.name)[:, 0]
        total = float(st.sum())
        r = table.rows
        layers = []
        for s in range(table.L):
            if table.types[s] is None or not r["mask"][s, 0]:
                continue
            gemm = None
            if REGISTRY[table.ops[s]].gemm:
                gemm = {d: int(r[d][s, 0]) for d in ("n", "m", "k", "groups")}
            ms = float(st[s])
            layers.append({"name": table.names[s], "type": table.types[s], "op": table.ops[s], "gemm": gemm,
                           "ms": ms, "share": ms / total if total > 0 else 0.0})
        return layers

    def split_latency(self, X, server, link, batch: int | None = None) -> dict:
        """The best split of each candidate between this device and ``server`` (an ``Oracle``, a
        profile or its name) over ``link`` (``augur_nas.planner.Link``): ``[B]`` arrays ``total_ms``,
        ``cut`` (layer slots run on this device: 0 all on the server, ``n_slots`` all here),
        ``device_ms``, ``transfer_ms``, ``server_ms``, ``local_ms`` (equal to ``latency``),
        ``server_only_ms``, ``n_points``, ``n_slots``; see ``augur_nas.planner``."""
        b = self.batch if batch is None else _positive_int(batch, "batch")
        srv = server.profile if isinstance(server, Oracle) else server
        return _split_latency(self.space, self._encodings(X), self.profile, srv, link, b)

    # ---------------------------------------------------------------------------- constraints

    def constraints(self, latency_ms=None, memory_mb=None, params=None, macs=None) -> "Constraints":
        """A callable ``c(x)`` returning ``value - limit`` per given limit (<= 0 is feasible).

        ``c(x)`` on one encoding returns a list of floats (what Optuna's ``constraints_func``
        expects, e.g. stored with ``trial.set_user_attr("constraints", c(x))``); on ``X[B, G]`` it
        returns a ``[B, C]`` array. ``c.names`` lists the constrained quantities.
        """
        limits = {}
        for name, v in (("latency_ms", latency_ms), ("memory_mb", memory_mb), ("params", params), ("macs", macs)):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) or v <= 0:
                raise ConstraintError(f"the {name} limit must be a positive finite number, got {v!r}")
            limits[name] = float(v)
        if not limits:
            raise ConstraintError("constraints() needs at least one limit: latency_ms, memory_mb, params or macs")
        return Constraints(self, limits)


class Constraints:
    """``value - limit`` of each constrained quantity (<= 0 feasible)."""

    def __init__(self, oracle: Oracle, limits: dict):
        self.oracle = oracle
        self.limits = limits
        self.names = list(limits)

    def __call__(self, x):
        X = np.asarray(x)
        single = X.ndim == 1
        res = self.oracle.evaluate(X, breakdown=False)
        vals = np.stack([np.asarray(res[k], dtype=np.float64) - lim for k, lim in self.limits.items()], axis=1)
        return vals[0].tolist() if single else vals

    def feasible(self, X) -> np.ndarray:
        """Whether each candidate meets every limit."""
        v = self(np.atleast_2d(np.asarray(X)))
        return (v <= 0).all(axis=1)

    def __repr__(self) -> str:
        return f"Constraints({', '.join(f'{k} <= {v:g}' for k, v in self.limits.items())}, device={self.oracle.device!r})"


def _positive_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise ConstraintError(f"{what} must be a positive whole number, got {v!r}")
    return int(v)
