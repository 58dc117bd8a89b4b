"""The latency model of a device: which model family prices each op kind, and the sum.

Every layer slot of a layer table is priced by the family its op kind maps to:

- ``{gemm: NAME}``: ``groups`` GEMMs of ``(n, m, k)`` priced by the ``PiecewiseGemm`` NAME (conv,
  dwconv; Caffe runs a batch of b images as b rounds of those GEMMs, so the time is b times
  that of one image). ``fc`` is one GEMM whose m is the batch (Caffe's InnerProduct multiplies
  the whole batch at once, so its weights stream once per batch).
- ``bytes``: the memory-bound ``OpModel`` (per-kind cost per MB moved plus a per-layer overhead).
- ``free``: costs nothing (dropout at inference, flatten, the aliases identity/select/zero).

Every priced layer also pays ``layer_overhead_ms`` (a launch or synchronisation on a GPU).
All of it is vectorized over the ``[L, B]`` table: the loop runs over op kinds, never candidates.

Optional, for runtimes that are not layer-by-layer (all default to the plain sum above):

- ``fuse``: the runtime's graph fusions (``FusionRules``): a layer folded into the kernel that
  produces its input (BatchNorm, activation, residual add after a conv) costs nothing itself.
- ``network_overhead_ms``: paid once per forward pass (a runtime's per-call cost).
- ``layout``: the runtime's blocked layout and the conversions it inserts (``LayoutRules``);
  each conversion is charged to the layer that needs it.
- ``cse``: weightless kinds the runtime computes once per input (common-subexpression
  elimination): a second identical ReLU or pool on the same tensor costs nothing.
- ``fused_pass``: ``{activation kind: ms per MB of its output}``: an activation fused into its
  producer's kernel that the runtime applies in a pass of its own over the kernel's output
  (ONNX Runtime's NCHWc convs apply ReLU inside the kernel, Clip/ReLU6 and the other activations
  afterwards: +14-26% on a 1x1 expansion conv, experiments/join_rules.md). The rate may depend
  on the family of the kernel that produces the activation's input (``PASS_FAMILIES``:
  ``{relu6: {conv_1x1: r1, dwconv: r2, conv: r3}}``; after a depthwise conv whose output
  leaves L2 the pass cost 0.3-0.6 of the 1x1 rate per MB, elsewhere about the same,
  experiments/fused_pass_families.md); one number is the same rate for every family. The pass is charged to the fused activation's slot (it knows whether it is fused and
  its chain's producer family, in a segment of the fast path too: the entering ``Boundary``
  carries both), without a layer overhead. Without the key a fused activation costs nothing.
- a GEMM kind may choose its model per layer: ``{gemm: conv, pointwise: conv1x1, narrow:
  conv_narrow, narrow_below: 8}`` prices 1x1 kernels with ``conv1x1`` and layers with fewer
  than ``narrow_below`` input channels per group (a stem on RGB) with ``conv_narrow``.
- ``one_kernel: true`` in a GEMM kind's family: a grouped or depthwise layer is one kernel (a
  GPU launches it once), priced as one GEMM of ``n * groups`` outputs instead of ``groups`` GEMMs
  (each of which would pay the model's per-call floor: a ResNeXt block's 32 groups priced 32
  launches, 3.5-4.9x the measured time on an H200, experiments/gpu_profile.md).
"""

from __future__ import annotations

import numpy as np

from .._errors import ProfileError
from .._totals import input_elems
from ..lowering import DTYPE_BYTES, REGISTRY
from ..ops import FREE_KINDS, GEMM_KINDS
from . import _check
from ._fusion import Boundary, FusionRules, LayoutRules, duplicates
from ._gemm import PiecewiseGemm
from ._ops import BYTES_PER_MB, OpModel, channel_spans
from ._residual import residual_sums
from ._scaling import ScalingModel, group_of

# the op table's facts, under the names the cost model has always exported
FREE_BY_DEFAULT = FREE_KINDS
# the families of a fused activation's producer whose pass may cost differently per MB
# (``pass_family``): a 1x1 conv, a depthwise conv, any other conv (k x k, a stem on RGB, grouped)
PASS_FAMILIES = ("conv_1x1", "dwconv", "conv")


class LatencyModel:
    """GEMM models by name, the memory-bound op model, the op-kind map and a per-layer overhead."""

    def __init__(self, gemm: dict, ops: OpModel | None = None, kinds: dict | None = None,
                 layer_overhead_ms: float = 0.0, fuse: FusionRules | list | None = None,
                 network_overhead_ms: float = 0.0, layout: LayoutRules | None = None, cse=(),
                 scaling: ScalingModel | None = None, fused_pass: dict | None = None):
        self.gemm = dict(gemm)
        # how a layer's time grows with the batch and the threads (None: b times one image)
        self.scaling = scaling
        self.ops = ops if ops is not None else OpModel()
        self.kinds = dict(kinds or {})
        self.layer_overhead_ms = float(layer_overhead_ms)
        self.network_overhead_ms = float(network_overhead_ms)
        for name in ("layer_overhead_ms", "network_overhead_ms"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be finite and non-negative")
        self.fuse = fuse if isinstance(fuse, FusionRules) else FusionRules(fuse or ())
        self.layout = layout if layout else None
        self.cse = tuple(cse or ())
        # {kind: {family: ms per MB}}, every family of PASS_FAMILIES (one number: all of them)
        self.fused_pass = {str(k): _per_family(v, k) for k, v in (fused_pass or {}).items()}
        for kind, fam in self.kinds.items():
            _parse_family(fam, self.gemm, kind, None, "latency.kinds")

    def family(self, kind: str):
        """``("gemm", name)``, ``("bytes", None)`` or ``("free", None)`` for an op kind."""
        fam = self.kinds.get(kind)
        if fam is not None:
            return _parse_family(fam, self.gemm, kind, None, "latency.kinds")
        if kind in FREE_BY_DEFAULT:
            return ("free", None)
        if kind in GEMM_KINDS:
            for name in (kind, "conv"):
                if name in self.gemm:
                    return ("gemm", name)
            if self.gemm:
                return ("gemm", next(iter(self.gemm)))
            return ("bytes", None)
        return ("bytes", None)

    # ------------------------------------------------------------------------------ predict

    def fused(self, table, entry: Boundary | None = None) -> np.ndarray | None:
        """``[L, B]``: the layers the runtime folds into their producer's kernel (``None``
        without fusion rules). ``entry``: the fusion state of the tensor that enters a partial
        table (a segment of the fast path), see ``FusionRules.chain_stages``."""
        if not self.fuse:
            return None
        fused, _, _ = self.fuse.chain_stages(table.ops, table.inputs, table.rows["mask"],
                                             getattr(table, "select_pos", None), entry)
        return fused

    def duplicates(self, table) -> np.ndarray | None:
        """``[L, B]``: the earlier slot a layer recomputes (``cse`` kinds), -1 if none; None without ``cse``."""
        if not self.cse:
            return None
        return duplicates(table.ops, table.inputs, table.rows, self.cse)

    def free_kinds(self) -> tuple:
        return tuple(k for k in REGISTRY if self.family(k)[0] == "free")

    def slot_times(self, table, batch: int = 1, profile: str | None = None,
                   fused: np.ndarray | None = None) -> np.ndarray:
        """Time (ms) of every layer slot of every candidate of a whole network's table, ``[L, B]``
        (slot-major, as table.rows).

        Layers fused into their producer (``fuse`` rules; ``fused`` overrides the analysis)
        cost 0 and pay no layer overhead; layout conversions (``layout`` rules) are charged to the
        layer that needs them."""
        return self.slot_costs(table, batch, profile, None, fused)[0]

    def slot_costs(self, table, batch: int = 1, profile: str | None = None, entry: Boundary | None = None,
                   fused: np.ndarray | None = None, exit_state: bool = False):
        """``(slot times [L, B], layout conversions [L, B] or None)``, see ``slot_times``.

        ``entry`` may be a ``Boundary`` (a segment of the fast path: the fusion and layout state
        of its entering tensor, per row); with ``exit_state`` two more items come back: the
        fusion mask and the ``Boundary`` of the table's last slot (what the next segment enters
        with)."""
        rows = table.rows
        mask = rows["mask"]
        L, B = mask.shape
        out = np.zeros((L, B), dtype=np.float64)
        batch = int(batch)
        fusion_exit = None
        pfam = None  # the producer family of each slot's chain, where the pass rates differ by it
        by_fam = self.fuse and self._pass_by_family()
        if self.fuse and (exit_state or (by_fam and any(op in self.fused_pass for op in table.ops))) \
                and (fused is None or by_fam):
            got = self.fuse.chain_stages(table.ops, table.inputs, mask, getattr(table, "select_pos", None), entry,
                                         with_zero=True, family=pass_families(table) if by_fam else None)
            fused = got[0] if fused is None else fused
            pfam = got[4] if by_fam else None
            fusion_exit = (got[1][L - 1], got[2][L - 1], got[3][L], pfam[L - 1] if by_fam else -1)
        elif fused is None:
            fused = self.fused(table, entry)
        alias = self.duplicates(table)
        absorbed = fused
        if alias is not None:
            absorbed = (alias >= 0) if fused is None else (fused | (alias >= 0))
        by_kind: dict[str, list] = {}
        for s, op in enumerate(table.ops):
            by_kind.setdefault(op, []).append(s)
        for kind, slots in by_kind.items():
            fam, name = self.family(kind)
            if fam == "free":
                continue
            idx = np.asarray(slots, dtype=np.int64)
            msk = mask[idx]
            if absorbed is not None:
                msk = msk & ~absorbed[idx]
            if not msk.any():
                continue
            if self.scaling is not None:
                t = self._scaled_time(kind, fam, name, rows, idx, msk, table.names, batch, profile)
            elif fam == "gemm":
                n, m, k, groups = rows["n"][idx], rows["m"][idx], rows["k"][idx], rows["groups"][idx]
                names = [table.names[s] for s in slots]
                mm = m * batch if kind == "fc" else m
                t = self._gemm_time(kind, name, n, mm, k, groups, rows, idx, msk, names, profile)
                t = t * self.gemm_calls(kind, groups) * (1 if kind == "fc" else batch)
            else:
                moved = (rows["in_elems"][idx] + rows["out_elems"][idx]).astype(np.float64) * DTYPE_BYTES
                t = self.ops.time_ms(kind, moved, batch, _spans(kind, rows, idx))
            t = t + self.layer_overhead_ms
            out[idx] = np.where(msk, t, 0.0)
        if self.fused_pass and fused is not None:
            out += self._fused_pass_ms(rows, by_kind, fused, batch, pfam)
        count = None
        layout_exit = None
        if self.layout is not None:
            lay_entry = entry if entry is not None else 0  # 0: a plain-layout network input
            got = self.layout.reorders(table.ops, table.inputs, rows, fused, getattr(table, "select_pos", None),
                                       lay_entry, self.free_kinds(), alias, exit_state=exit_state)
            moved, count = got[0], got[1]
            if exit_state:
                layout_exit = got[3]
            if self.scaling is not None:
                out += self.scaling.scale("layout", self.layout.cost(moved, count), batch, moved / BYTES_PER_MB)
            else:
                out += self.layout.cost(moved * batch, count)
        if not exit_state:
            return out, count
        return out, count, fused, _exit_boundary(B, fusion_exit, layout_exit)

    def _pass_by_family(self) -> bool:
        """Whether some activation's pass rate differs by its producer's family."""
        return any(len(set(r.values())) > 1 for r in self.fused_pass.values())

    def _fused_pass_ms(self, rows, by_kind: dict, fused: np.ndarray, batch: int, pfam=None) -> np.ndarray:
        """``[L, B]``: the pass over its output (``fused_pass``) of every fused activation that
        pays one, on its own slot, at the rate of its producer's family (``pfam`` ``[L, B]``,
        ``chain_stages``; None or -1: the first family's, e.g. where every family has one rate);
        the same formula prices the fast path's segments."""
        out = np.zeros(fused.shape, dtype=np.float64)
        for kind, by_family in self.fused_pass.items():
            rates = np.array([by_family[f] for f in PASS_FAMILIES], dtype=np.float64)
            if kind not in by_kind or not rates.any():
                continue
            idx = np.asarray(by_kind[kind], dtype=np.int64)
            mb = rows["out_elems"][idx].astype(np.float64) * DTYPE_BYTES / BYTES_PER_MB
            rate = rates[0] if pfam is None else rates[np.maximum(pfam[idx], 0)]
            t = fused_pass_ms(rate, mb)
            t = self.scaling.scale(group_of(kind, "bytes"), t, batch, mb) if self.scaling is not None else t * batch
            out[idx] = np.where(fused[idx] & rows["mask"][idx], t, 0.0)
        return out

    def _scaled_time(self, kind, fam, name, rows, idx, msk, all_names, batch, profile):
        """A slot group's time with ``scaling``: the one-image time (fc at m = 1) scaled to the
        batch and threads by the layer's group."""
        moved = (rows["in_elems"][idx] + rows["out_elems"][idx]).astype(np.float64) * DTYPE_BYTES
        if fam == "gemm":
            n, m, k, groups = rows["n"][idx], rows["m"][idx], rows["k"][idx], rows["groups"][idx]
            names = [all_names[s] for s in idx]
            t1 = self._gemm_time(kind, name, n, m, k, groups, rows, idx, msk, names, profile) * self.gemm_calls(kind, groups)
        else:
            t1 = self.ops.time_ms(kind, moved, 1, _spans(kind, rows, idx))
        return self.scaling.scale(group_of(kind, fam), t1, batch, moved / BYTES_PER_MB)

    def one_kernel(self, kind: str) -> bool:
        """Whether a layer of ``kind`` runs its groups as one kernel (``one_kernel: true`` in its
        family; a GPU launches a grouped or depthwise conv once): it is then priced as one GEMM
        of ``n * groups`` outputs, not ``groups`` GEMMs of ``n`` as Caffe runs them."""
        fam = self.kinds.get(kind)
        return isinstance(fam, dict) and bool(fam.get("one_kernel"))

    def gemm_calls(self, kind: str, groups):
        """How many times a layer's GEMM is paid: once per group, or once (``one_kernel``)."""
        return 1 if self.one_kernel(kind) else groups

    def _gemm_time(self, kind, name, n, m, k, groups, rows, idx, msk, names, profile):
        """One GEMM's time per slot (the slots ``idx`` of ``rows``), with the kind's per-layer
        model choice (``gemm_choice``)."""
        fam = self.kinds.get(kind)
        # the model is chosen on the layer's own sizes, priced on those its kernel works on
        n_p, k_p, factor = (n, k, 1.0) if self.layout is None or not self.layout.pad_channels else \
            self.layout.padded(kind, n, k, groups, rows["in_c"][idx])
        if self.one_kernel(kind):
            n_p = n_p * np.maximum(groups, 1)
        if not (isinstance(fam, dict) and len(fam) > 1):
            return self.gemm[name].predict(n_p, m, k_p, mask=msk, names=names, profile=profile) * factor
        t = np.zeros(msk.shape, dtype=np.float64)
        strided = is_strided(rows["in_h"][idx], rows["out_h"][idx]) if ("strided" in fam or "plain_strided" in fam) else False
        for model_name, sel in gemm_choice(fam, self.layout, kind, n, k, groups, rows["in_c"][idx], strided):
            sel = sel & msk
            if not sel.any():
                continue
            model = self.gemm[model_name]
            if model.outside == "raise":  # on the whole arrays: its message names the layer and candidate
                t = np.where(sel, model.predict(n_p, m, k_p, mask=sel, names=names, profile=profile), t)
            else:  # only the GEMMs this model prices (a cell's conv slots: a fifth of its rows each)
                t[sel] = model.predict(*(np.broadcast_to(v, sel.shape)[sel] for v in (n_p, m, k_p)))
        return t * factor

    def predict(self, table, batch: int = 1, profile: str | None = None, network: bool = True,
                fused: np.ndarray | None = None):
        """``(total [B], {op kind: [B]})`` in ms.

        ``network`` adds ``network_overhead_ms`` to the total (not to any kind): pass False when
        the table is a part of a network (a segment of the fast path)."""
        st = self.slot_times(table, batch, profile, fused)
        total = st.sum(axis=0)
        if network and self.network_overhead_ms:
            total = total + self.network_overhead_ms
        return total, self.breakdown(table, st)

    def breakdown(self, table, st: np.ndarray) -> dict:
        """``{op kind: [B]}`` sums of slot times ``st`` ``[L, B]`` (priced kinds only)."""
        by_kind: dict[str, np.ndarray] = {}
        ops = np.asarray(table.ops)
        for kind in dict.fromkeys(table.ops):
            if self.family(kind)[0] == "free":
                continue
            by_kind[kind] = st[ops == kind].sum(axis=0)
        return by_kind

    # ------------------------------------------------------------------------------ plain data

    def to_dict(self) -> dict:
        d = {"layer_overhead_ms": _check.plain(self.layer_overhead_ms)}
        if self.network_overhead_ms:
            d["network_overhead_ms"] = _check.plain(self.network_overhead_ms)
        if self.fuse:
            d["fuse"] = self.fuse.to_list()
        if self.layout is not None:
            d["layout"] = self.layout.to_dict()
        if self.cse:
            d["cse"] = list(self.cse)
        if self.scaling is not None:
            d["scaling"] = self.scaling.to_dict()
        if self.fused_pass:
            d["fused_pass"] = {k: fused_pass_entry(v) for k, v in sorted(self.fused_pass.items())}
        if self.kinds:
            d["kinds"] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in sorted(self.kinds.items())}
        d["gemm"] = {name: g.to_dict() for name, g in self.gemm.items()}
        d["ops"] = self.ops.to_dict()
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None, key: str = "latency") -> "LatencyModel":
        _check.mapping(d, source, key, required=("gemm", "ops"),
                       optional=("layer_overhead_ms", "network_overhead_ms", "fuse", "layout", "cse", "kinds", "scaling",
                                 "fused_pass"))
        _check.mapping(d["gemm"], source, f"{key}.gemm")
        gemm = {str(name): PiecewiseGemm.from_dict(g, source, f"{key}.gemm.{name}") for name, g in d["gemm"].items()}
        ops = OpModel.from_dict(d["ops"], source, f"{key}.ops")
        kinds = {}
        if d.get("kinds") is not None:
            _check.mapping(d["kinds"], source, f"{key}.kinds")
            for kind, fam in d["kinds"].items():
                _parse_family(fam, gemm, str(kind), source, f"{key}.kinds")
                kinds[str(kind)] = fam
        overhead = _check.number(d.get("layer_overhead_ms", 0.0), source, f"{key}.layer_overhead_ms")
        net = _check.number(d.get("network_overhead_ms", 0.0), source, f"{key}.network_overhead_ms")
        fuse = FusionRules.from_list(d["fuse"], source, f"{key}.fuse", tuple(REGISTRY)) if d.get("fuse") is not None else None
        layout = LayoutRules.from_dict(d["layout"], source, f"{key}.layout", tuple(REGISTRY)) \
            if d.get("layout") is not None else None
        cse = d.get("cse") or []
        if not isinstance(cse, list) or not all(isinstance(k, str) and k in REGISTRY for k in cse):
            raise _check.err(f"`{key}.cse` must be a list of op kinds", source, f"{key}.cse")
        scaling = ScalingModel.from_dict(d["scaling"], source, f"{key}.scaling") if d.get("scaling") is not None else None
        fused_pass = _fused_pass_from(d.get("fused_pass"), source, f"{key}.fused_pass")
        return cls(gemm, ops, kinds, overhead, fuse, net, layout, cse, scaling, fused_pass)

    def __eq__(self, other) -> bool:
        return isinstance(other, LatencyModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"LatencyModel(gemm={sorted(self.gemm)}, ops={self.ops!r}, layer_overhead_ms={self.layer_overhead_ms})"


def _spans(kind: str, rows, idx) -> np.ndarray:
    """The channel planes (``_ops.channel_spans``) of the slots ``idx`` of one kind."""
    return channel_spans(kind, rows["in_elems"][idx], rows["out_elems"][idx], rows["out_c"][idx])


def gemm_choice(fam: dict, layout, kind: str, n, k, groups, in_c, strided=False) -> list:
    """Which GEMM model of a kind's family ``fam`` (``{gemm, narrow, narrow_below, plain,
    plain_strided, pointwise, strided}``) prices each layer: ``[(model name, mask)]``, disjoint masks
    that cover every layer. Precedence: plain (a conv the runtime cannot run in its blocked layout
    runs another kernel, e.g. RegNet's 8-channel groups on 16-wide blocks; needs ``layout``; of
    stride 2, ``plain_strided`` where the family has it: that kernel reads its four input pixels
    per output pixel unblocked, and in place it took 1.3-1.6x the time of a stride-1 layer of
    the same output shape), then narrow (fewer
    than ``narrow_below`` input channels per group: a stem on RGB, read plain and run blocked),
    then pointwise (a 1x1 kernel), then strided (``strided``: the layer's stride is 2 or more,
    ``is_strided``), else ``fam["gemm"]``. ``in_c`` counts all groups' channels. The profiler sorts
    its samples by the same rule (``_profiling._variant``)."""
    n, k, groups, in_c, strided = np.broadcast_arrays(*(np.asarray(v) for v in (n, k, groups, in_c, strided)))
    g = np.maximum(groups, 1)
    cin = np.maximum(in_c // g, 1)
    rules = []
    if "plain" in fam and layout is not None:
        plain = ~np.asarray(layout.blockable_dims(kind, in_c, n * g, groups), dtype=bool)
        if "plain_strided" in fam:
            rules.append((fam["plain_strided"], plain & strided.astype(bool)))
        rules.append((fam["plain"], plain))
    if "narrow" in fam:
        rules.append((fam["narrow"], cin < int(fam.get("narrow_below", 8))))
    if "pointwise" in fam:
        rules.append((fam["pointwise"], k == cin))
    if "strided" in fam:
        rules.append((fam["strided"], strided.astype(bool)))
    taken = np.zeros(n.shape, dtype=bool)
    out = []
    for name, sel in rules:
        sel = sel & ~taken
        out.append((name, sel))
        taken = taken | sel
    out.append((fam["gemm"], ~taken))
    return out


def is_strided(in_h, out_h):
    """Whether a layer's stride is 2 or more, from its input and output heights (a stride-s layer
    with padding has ``out = ceil(in / s)``): ``in >= 2 * out - 1`` and ``out < in``. A depthwise
    conv of stride 2 reads four input pixels per output pixel, and ONNX Runtime's kernel pays for
    them: in place it ran ~1.4x slower than a stride-1 model of its output size predicted
    (experiments/part_diagnosis.py, space samples of seed 2)."""
    in_h, out_h = np.asarray(in_h), np.asarray(out_h)
    return (in_h >= 2 * out_h - 1) & (out_h < in_h)


def fused_pass_ms(rate_ms_per_mb, out_mb):
    """The one formula of a fused activation's pass: its rate times its output's MB (the
    latency model prices it so; the profiler takes it off the GEMM samples before their fit)."""
    return rate_ms_per_mb * np.asarray(out_mb, dtype=np.float64)


def pass_family(kind, k, cin):
    """The one rule of a fused activation's producer family: the index into ``PASS_FAMILIES``
    of a ``kind`` layer with ``k`` (the GEMM's depth) and ``cin`` input channels per group
    (arrays broadcast): a depthwise conv 1, a conv whose depth is its channels per group (1x1) 0,
    any other conv 2, anything else (an fc) -1. The profiler sorts its GEMM samples by it."""
    k, cin = np.broadcast_arrays(np.asarray(k), np.asarray(cin))
    if kind == "dwconv":
        return np.full(k.shape, 1, dtype=np.int8)
    if kind == "conv":
        return np.where(k == cin, 0, 2).astype(np.int8)
    return np.full(k.shape, -1, dtype=np.int8)


def pass_families(table) -> np.ndarray:
    """``[L, B]`` int8: ``pass_family`` of every slot of a table (-1 for non-producers)."""
    rows = table.rows
    out = np.full(rows["mask"].shape, -1, dtype=np.int8)
    for s, op in enumerate(table.ops):
        if op in GEMM_KINDS:
            out[s] = pass_family(op, rows["k"][s], rows["in_c"][s] // np.maximum(rows["groups"][s], 1))
    return out


def scaled_fused_pass(fused_pass: dict, factor: float) -> dict:
    """``{kind: {family: rate}}`` with every rate times ``factor`` (the end-to-end kernel scale,
    calibrate's memory correction)."""
    return {k: {f: float(r) * factor for f, r in _per_family(v, k).items()} for k, v in (fused_pass or {}).items()}


def fused_pass_entry(by_family: dict):
    """One kind's rates as a profile writes them: one number where every family has the same
    rate (the form of profiles before the families), else ``{family: rate}``."""
    vals = [by_family[f] for f in PASS_FAMILIES]
    if len(set(vals)) == 1:
        return _check.plain(vals[0])
    return {f: _check.plain(by_family[f]) for f in PASS_FAMILIES}


def _per_family(v, kind) -> dict:
    """A kind's ``fused_pass`` entry (one number, or ``{family: rate}`` naming every family) as
    ``{family: rate}``."""
    vals = dict(v) if isinstance(v, dict) else {f: v for f in PASS_FAMILIES}
    if set(vals) != set(PASS_FAMILIES) or not all(np.isfinite(float(r)) and float(r) >= 0 for r in vals.values()):
        raise ValueError(f"fused_pass: `{kind}` must be an op kind with a finite, non-negative ms per MB, "
                         f"or one for each of {', '.join(PASS_FAMILIES)}")
    if str(kind) not in REGISTRY:
        raise ValueError(f"fused_pass: `{kind}` is not an op kind")
    return {f: float(vals[f]) for f in PASS_FAMILIES}


def _fused_pass_from(d, source, key) -> dict:
    if d is None:
        return {}
    _check.mapping(d, source, key)
    out = {}
    for kind, rate in d.items():
        k = f"{key}.{kind}"
        if str(kind) not in REGISTRY:
            raise _check.err(f"`{k}`: `{kind}` is not an op kind (known: {', '.join(sorted(REGISTRY))})", source, k)
        if isinstance(rate, dict):
            _check.mapping(rate, source, k, required=PASS_FAMILIES)
            out[str(kind)] = {f: _check.number(rate[f], source, f"{k}.{f}", minimum=0) for f in PASS_FAMILIES}
        else:
            out[str(kind)] = _check.number(rate, source, k, minimum=0)
    return out


def _parse_family(fam, gemm: dict, kind: str, source, key):
    k = f"{key}.{kind}"
    if kind not in REGISTRY:
        raise _check.err(f"`{k}`: `{kind}` is not an op kind (known: {', '.join(sorted(REGISTRY))})", source, k)
    if fam in ("bytes", "free"):
        return (fam, None)
    if isinstance(fam, dict) and "gemm" in fam and set(fam) <= {"gemm", "pointwise", "narrow", "narrow_below", "plain", "plain_strided",
                                                     "strided", "one_kernel"}:
        name = fam["gemm"]
        for part in ("gemm", "pointwise", "narrow", "plain", "plain_strided", "strided"):
            if part in fam and fam[part] not in gemm:
                raise _check.err(f"`{k}` prices `{kind}` with the GEMM model `{fam[part]}`, which `latency.gemm` does not "
                                 f"define (it has: {', '.join(sorted(gemm)) or 'none'})", source, k)
        if "narrow_below" in fam:
            _check.number(fam["narrow_below"], source, f"{k}.narrow_below", minimum=1, integer=True)
        if "one_kernel" in fam and not isinstance(fam["one_kernel"], bool):
            raise _check.err(f"`{k}.one_kernel` must be true or false, not {fam['one_kernel']!r}", source, f"{k}.one_kernel")
        if kind not in GEMM_KINDS:
            raise _check.err(f"`{k}`: `{kind}` layers are not matrix multiplications; price them with `bytes` or "
                             f"`free` (GEMM kinds: {', '.join(GEMM_KINDS)})", source, k)
        return ("gemm", name)
    raise _check.err(f"`{k}` must be `bytes`, `free` or {{gemm: NAME}} (optionally with pointwise: NAME, narrow: NAME, "
                     f"narrow_below: N, plain: NAME, plain_strided: NAME, strided: NAME, one_kernel: true), not {_check._kind(fam)}", source, k)


def latency_ms(table, profile, batch: int = 1):
    """Predicted latency (ms) of every candidate of a layer table on a device.

    ``profile`` is a ``Profile`` (``augur_nas.profile.load_profile``) or a ``LatencyModel``.
    Returns ``(total, by_kind)``: a ``[B]`` array and a dict op kind -> ``[B]`` array. The total
    includes the model's ``network_overhead_ms`` and, when the profile holds one, its residual
    correction (``ResidualModel``); ``by_kind`` is the layer-sum model's own breakdown.
    """
    model, name = _latency_of(profile)
    if int(batch) < 1:
        raise ProfileError(f"batch must be a positive integer, got {batch}")
    batch = int(batch)
    residual = getattr(profile, "residual", None)
    if residual is None:
        return model.predict(table, batch, name)

    fused = model.fused(table)
    st, n_reorder = model.slot_costs(table, batch, name, fused=fused)
    total, by_kind = model.predict(table, batch, name, fused=fused)
    sums = residual_sums(table, model, st, fused, n_reorder)
    return residual.apply(total, sums, input_elems(table), batch), by_kind


def memory_mb(table, profile, batch: int = 1, tot: dict | None = None) -> np.ndarray:
    """Predicted process memory (MB, 2^20 bytes) of every candidate of a layer table, ``[B]``."""
    mem = getattr(profile, "memory", profile)
    return mem.predict(table, tot, int(batch))


def _latency_of(profile):
    if isinstance(profile, LatencyModel):
        return profile, None
    lat = getattr(profile, "latency", None)
    if isinstance(lat, LatencyModel):
        return lat, getattr(profile, "name", None)
    raise TypeError(f"expected a Profile or a LatencyModel, not {type(profile).__name__}")


def _exit_boundary(B, fusion_exit, layout_exit) -> Boundary:
    """The ``Boundary`` a segment hands on: its last slot's fusion fields and layout fields
    (the network input's values where the profile has no such rules)."""
    b = Boundary.start(B)._asdict()
    if fusion_exit is not None:
        b["stage"], b["group"], b["fzero"], b["pfam"] = fusion_exit
    if layout_exit is not None:
        b.update(layout_exit)
    return Boundary(**{k: np.asarray(v).astype(np.int64) for k, v in b.items()})
