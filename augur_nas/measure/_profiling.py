"""``augur-nas profile``: measure a runtime's own kernels and fit a device profile.

ONNX Runtime (``profile_onnxruntime``), in four phases that share the time budget:

A. **kernel grid**: one-kernel models (``_probes.kernel_grid``: dense k x k and 1x1 convs with
   their BatchNorm and ReLU, stems on 3 channels, grouped 3x3 convs of group widths 4 to 32, depthwise convs with BatchNorm and ReLU6, fc),
   each run in its own session with per-node profiling; the fused kernel's time is the robust
   mean of many runs (amortised over ``PROBE_TARGET_S`` of work).
B. **refinement**: the GEMM models are fitted, the (family, n-bin, m-bin) cells where the fit is
   worst get more probes, and every probe is timed a second time later on (the smaller of the
   two visits counts: the machine only ever slows a kernel down); then 1x1 expansion convs with
   and without each fused activation that ONNX Runtime applies in a pass of its own
   (``_ortrules.PASS_ACTS``: ReLU6, HardSigmoid, ...), whose differences give each pass's rate.
C. **calibration networks** (``_probes.calibration_networks``): per-node profiles in place (the
   memory-bound ops, the layout changes, the fused kernels between real neighbours), end-to-end
   latency by the ``measure`` protocol without profiling, and peak memory in child processes.
D. **fit**: GEMM models (breakpoints by cross-validation; they price kernels as they run in
   place: ``_fitting.fit_gemm``'s in-place terms; the passes of fused activations taken off their
   kernels' times first and priced back by ``latency.fused_pass``), per-kind memory-bound models
   (each with its own cache knee and, a join broadcast per channel, a per-plane term: ``fit_kind``),
   per-node and per-call overheads (end-to-end minus the sum of node times against the number
   of nodes), the memory model; the profile records the fit statistics and the runtime settings.

numpy (``profile_numpy``) is the paper's method: BLAS GEMM timings on the grid, a depthwise conv
as a batch of tiny GEMMs, element-wise numpy for the memory-bound layers; no fusion.
torch (``profile_torch``) times ``torch.nn.functional`` kernels eagerly (no fusion) and calibrates
on the same networks through the ONNX interpreter.

Nothing is written until the end: the caller saves the profile atomically (``save_profile``), so
an interrupted run leaves the previous file as it was.
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .._errors import MeasurementError
from .._totals import DTYPE_BYTES
from ..analysis import totals
from ..costmodel import FusionRules, LatencyModel, LayoutRules, MemoryModel, OpModel, latency_ms, nnls
from ..costmodel._latency import PASS_FAMILIES, fused_pass_ms, gemm_choice, is_strided, pass_family, scaled_fused_pass
from ..costmodel._memory import fc_weight_bytes
from ..costmodel._ops import BYTES_PER_MB, Spill, channel_spans
from ..fingerprint import machine_fingerprint
from ..io.onnx import export_onnx
from ..lowering import lower
from ..models import load_space_dict
from ..nb201 import space as nb201_space
from ..ops import kinds_where
from ..profile import Profile
from ._fitting import MIN_KIND, W_BREAK_SETS, error_stats, fit_bytes, fit_gemm, fit_kind, fit_memory, fit_spill
from ._memory import measure_memories
from ._ortrules import DEFAULT_FUSED_ACTS, DEFAULT_LAYOUT, PASS_ACTS, detect_rules
from ._ortnodes import attribute, cleanup, graph_edges, layer_of, node_times, owners
from ._probes import (ACT_PAIR_SHAPES, act_pair_probe, calibration_networks, kernel_grid, large_networks, pair_out_mb,
                      refine_probes)
from ._protocol import held_core, time_runners
from ._runners import OrtRunner
from ._settings import RuntimeSettings, require, runtime_version

PROBE_TARGET_S = 0.08  # kernel work per probe visit
# the activation kinds (the op table's ReLU and activation types) whose output a GEMM sample records
OPS_ACTS = kinds_where(table_type="relu") + kinds_where(table_type="activation")
# ONNX Runtime's fusions and NCHWc layout where the profiler could not read them from the runtime
# (``_ortrules.detect_rules`` reads them on the machine; these are the AVX2 defaults): convs and
# pools run blocked, activations and BatchNorm follow their input, add and concat are blocked
# when all inputs are, everything else (LRN, softmax, a broadcast multiply, a zero edge, fc) runs plain
ORT_FUSE = [
    {"into": ["conv", "dwconv"], "fold": ["batchnorm", "scale"], "join": ["add"], "act": list(DEFAULT_FUSED_ACTS)},
    {"into": ["fc"], "act": ["relu"]},
]
ORT_LAYOUT = DEFAULT_LAYOUT
# weightless ops ORT computes once per input (common-subexpression elimination)
ORT_CSE = ["relu", "relu6", "sigmoid", "tanh", "hsigmoid", "hswish", "swish", "maxpool", "avgpool", "globalpool",
           "zero", "identity", "dropout"]  # identity, dropout: ORT removes them first (see `duplicates`)
GEMM_VARIANTS = ("conv", "conv_1x1", "conv_narrow", "conv_plain", "conv_plain_s2", "dwconv", "dwconv_s2", "fc")
NARROW_BELOW = 8
MAX_MEMORY_NETS = 32
ANCHOR_SEED = 20261122  # the speed anchors: calibration_networks(default_rng(ANCHOR_SEED), 5)
MAX_NETWORKS = 90
# the speed anchors are timed for this long before phase A too; a build whose anchors moved by more
# than DRIFT_WARN between then and phase C says so: the shared host this was built on alternates
# between two speeds ~1.25x apart that do not slow every kernel alike (tiny kernels more), and the
# fit of a record measured in the slow state (kernel_diagnosis_raw_1253, anchors 1.19x the quiet
# build's) priced NAS-Bench-201 samples 1.12x and the zoo 0.96x of their quiet times
ANCHOR_START_S = 3.0
DRIFT_WARN = 0.08
IN_PLACE = True  # GEMM models price kernels in place (probes and in-place node times fitted together)
# the layout conversions get a cache knee (``Spill``, fitted: ~0.5 MB, 3x the rate above it, on
# 947 in-place conversions); the memory-bound kinds share none: one knee for all of them came out
# at 1 MB and 3x, which the multiplies and adds bear out but not the pools and concats (their rate
# grows ~1.5x above 2 MB), and it priced an inception network's pools and concats 15-20% too slow
# on two records (experiments/kernel_diagnosis.py records of 06:27 and 09:25, under load)
OPS_SPILL = False
# fused activations' passes (``latency.fused_pass``, a rate per producer family) fitted from the act
# pairs and taken off the GEMM samples: on one record (1408, provisional) large 1x1 expansions in
# place went from 0.78 to 1.03 of their time and the zoo from 84% to 87% within ±10%, but the
# seed-0 space samples from 86% to 82% (experiments/fused_pass.md). Rates per family (1x1,
# depthwise, dense) did not change that: the profiler's depthwise and dense pairs cost 0.9-1.0 of
# the 1x1 rate per MB, and with the pass after 1x1 convs only the samples still fell (the 1x1
# GEMM model, fitted without the expansions' pass, prices resnet's ReLU 1x1 convs lower); a second
# record (1536, loaded) moved the other way (zoo 77 -> 74%, samples 80 -> 83%;
# experiments/fused_pass_families.md). On since 2026-11-29 16:31, after 1x1 convs only
# (``FUSED_PASS_FAMILIES``): refitting the 16:31 benchmark build's record without the pass put
# 81% of the zoo and 81% of the samples within ±10% against 87% / 90% with it (mobile samples 21
# -> 30 of 30; README, "A new machine"); False refits a record as before the form
FUSED_PASS = True
# each memory-bound kind gets its own cache knee and, a join broadcast per channel (squeeze-excite's
# multiply), a per-plane term (``_fitting.fit_kind``): the one-line bytes model, fitted on relative
# errors, priced the calibration networks' multiplies at 0.54-0.66 of their total time and their
# pools and concats at 0.25-0.8 (the large tensors, on 8 records; experiments/kernel_spans.md)
OPS_FORMS = True
# ... and where it is on, the producer families whose pass comes off their GEMM samples and is
# priced back (the others' rates are 0: their passes stay inside their GEMM models, as before the
# form). The 1x1 family is the one whose samples mix activations (expansions with ReLU6, projections
# and resnet's 1x1 convs without), so its GEMM model cannot learn the pass on average; the
# depthwise probes and nearly every depthwise conv in place carry ReLU6 or HardSwish. On the
# seed-2 part record (in place, never validation) the 1x1-only form left every part level
# (1x1 expansions 0.78 -> 1.03, depthwise 1.15 -> 1.14; with every family 1.19), and it did not
# lose zoo or samples on records 1536 and 1556, but it lost both on 1408
# (experiments/fused_pass_families.md)
FUSED_PASS_FAMILIES = ("conv_1x1",)
NO_SPILL = Spill()
# samples of the NAS-Bench-201 space (``augur_nas.nb201``, packaged) profiled among the random
# calibration networks, one after each batch of six: their cells (ReLU-Conv-BN on 16-64 channels at
# 32x32..8x8, many tiny nodes) are unlike the random `cell` networks', whose small convolutions ran
# ~10% slower in place and taught the GEMM models to price NB201's so (a quiet record of 12:53:
# NB201 samples of another seed 1.07-1.16x their time against 0.94-1.05 for mobile and resnet
# samples; with NB201 samples of seed 1 in the fit, 1.01-1.09; experiments/own_share.md). Seed 0
# samples the spaces for validation: never here.
NB201_SAMPLES = 6
NB201_SEED = 1
# ImageNet-scale ResNets (``_probes.large_network``) profiled among the calibration networks, one
# after each batch: the random networks' weights fit in L2, so in place their convs never paid for
# weights that a 10-30 M parameter network streams from L3 on every run, and the 16:09 build
# priced the resnet samples -7.6 % (median; -10 to -16 % for those with 7-10 M parameters per GMAC)
LARGE_NETWORKS = 6
LARGE_SEED = 2
# a plain (unblocked) conv of stride 2 gets a GEMM model of its own (``conv_plain_s2``): RegNet's
# grouped 3x3 that opens each stage reads four input pixels per output pixel outside the blocked
# layout, and in place (ImageNet-scale RegNet-like networks of seed 2, not the zoo) it took
# 1.3-1.6x the time of the stride-1 layers of the same shapes, which one `conv_plain` model
# priced within 10 %
PLAIN_STRIDED = True
# the GEMM models are fitted and priced on channels padded to whole blocks (``LayoutRules.padded``)
PAD_CHANNELS = True


def anchor_networks():
    """The speed anchors: five fixed calibration networks (one of each style) and one
    ImageNet-scale network (``LARGE_ANCHOR``)."""
    small = [(f"anchor_{lab.split('_', 1)[1]}", m, spec)
             for lab, m, spec in calibration_networks(np.random.default_rng(ANCHOR_SEED), 5, 4e8)]
    return small + [(LARGE_ANCHOR, load_space_dict(LARGE_ANCHOR_SPEC, source="<anchor_large>"), LARGE_ANCHOR_SPEC)]


# A speed anchor whose weights (43 MB) stream from the outer caches on every run. The five small
# anchors keep theirs in L2, and they did not see the host state in which a neighbour contends for
# the memory system: at 18:36-18:48 on 2026-11-29 they ran 1.08-1.16x their build's time while a
# ResNet-50 ran 1.41x (66.9 ms against 47.4) and every network of more than ~20 M parameters 1.2-1.4x.
# It takes no part in the speed factor (the median of the small ones); ``memory_factor`` reports it.
LARGE_ANCHOR = "anchor_large"
LARGE_ANCHOR_SPEC = {
    "name": "anchor_large", "input": {"channels": 3, "resolution": 192},
    "layers": [{"conv_bn_act": {"out": 48, "kernel": 7, "stride": 2, "act": "relu"}},
               {"maxpool": {"kernel": 3, "stride": 2, "pad": 1}},
               {"stage": {"depth": 2, "block": {"bottleneck": {"mid": 48}}}},
               {"stage": {"depth": 3, "block": {"bottleneck": {"mid": 96, "stride": 2}}}},
               {"stage": {"depth": 4, "block": {"bottleneck": {"mid": 192, "stride": 2}}}},
               {"stage": {"depth": 2, "block": {"bottleneck": {"mid": 384, "stride": 2}}}},
               {"globalpool": {"mode": "avg"}}, {"fc": {"out": 1000}}]}
MEMORY_WARN = 0.10  # the large anchor slower than the small ones by more than this: say so
LARGE_ANCHOR_WEIGHTS_MB = 43  # its fp32 weights, as the warnings say (tests check it against the spec)


def profile_anchors(profile):
    """``(anchors_ref, anchor_items)``: a profile's speed anchors, ``{label: ms when it was
    built}``, and the ``(label, model)`` pairs to time again (none for a profile without them)."""
    anchors_ref = (profile.fit.get("anchors") or {}).get("latency_ms") or {}
    if not anchors_ref:
        return {}, []
    return anchors_ref, [(lab, m) for lab, m, _ in anchor_networks() if lab in anchors_ref]


def anchor_speed(anchor_ms: dict, anchors_ref: dict):
    """``(median ratio, {label: ratio})`` of the anchors' latencies now (``{label: ms}``) to those
    when the profile was built: above 1, the machine runs slower now. None without a common anchor."""
    ratios = {lab: float(anchor_ms[lab]) / ref for lab, ref in anchors_ref.items() if lab in anchor_ms and ref > 0}
    small = [r for lab, r in ratios.items() if lab != LARGE_ANCHOR]
    if not small:
        return None
    return float(np.median(small)), ratios


def memory_contention(ratios: dict, speed: float) -> str | None:
    """A warning when the large anchor (``LARGE_ANCHOR``, ``ratios``: ``anchor_speed``'s) ran
    more than ``MEMORY_WARN`` slower, relative to its build, than the small ones (``speed``):
    something else on the host uses the memory system, so networks that stream their weights
    run slower than the speed factor says. None otherwise (or without the anchor)."""
    big = ratios.get(LARGE_ANCHOR)
    if big is None or not speed or big / speed <= 1 + MEMORY_WARN:
        return None
    return (f"the large speed anchor ({LARGE_ANCHOR_WEIGHTS_MB} MB of weights) ran {big:.2f}x its time at profile time while the small ones "
            f"ran {speed:.2f}x: another process or a neighbour on the host is using the memory system, so networks "
            f"that stream their weights from memory (tens of MB) run up to {big / speed:.2f}x slower than predicted "
            f"now; time networks again when `augur-nas check` shows both factors alike")


class Budget:
    def __init__(self, total_s: float):
        self.t0 = time.monotonic()
        self.total = float(total_s)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed()

    def until(self, fraction: float) -> float:
        """Deadline (monotonic) at ``fraction`` of the budget."""
        return self.t0 + self.total * fraction


def _say(progress, msg):
    if progress is not None:
        progress(msg)


def hardware_facts() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    ram = int(line.split()[1]) // 1024
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = ",".join(x for x in ("avx", "avx2", "fma", "avx512f", "avx512_vnni") if x in have)
                    break
    except OSError:
        pass
    return {"processor": cpu, "cores": os.cpu_count() or 1, "ram_mb": ram, "notes": f"ISA: {flags}" if flags else ""}


# --------------------------------------------------------------------------------------------- samples


def _variant(kind, n, k, groups, in_c, layout=None, strided=False):
    """The GEMM model family of a layer, by the rule that prices it (``gemm_choice``, with every
    conv variant a profile may fit). ``in_c`` is per group; ``strided``: the layer's stride is 2
    or more (``is_strided``; a depthwise conv of stride 2 has a model of its own)."""
    if kind == "dwconv":
        return "dwconv_s2" if strided else kind
    if kind == "fc":
        return kind
    fam = {"gemm": "conv", "narrow": "conv_narrow", "pointwise": "conv_1x1",
           "narrow_below": layout.narrow_below if layout is not None else NARROW_BELOW}
    if layout is not None and layout.channels:
        fam["plain"] = "conv_plain"
        if PLAIN_STRIDED:
            fam["plain_strided"] = "conv_plain_s2"
    g = max(int(groups), 1)
    for name, sel in gemm_choice(fam, layout, kind, int(n), int(k), g, max(int(in_c), 1) * g, strided):
        if bool(sel):
            return name
    return "conv"


def _gemm_sample(table, s, t_ms, source, layout=None, net=None):
    """A GEMM kernel's sample; with ``net`` (an ``_OrtNet``) also ``act_mb``: the output MB of each
    activation kind fused into its kernel (``_fused_act_mb``)."""
    r = table.rows
    kind = table.ops[s]
    n, m, k, g, cin = (int(r[f][s, 0]) for f in ("n", "m", "k", "groups", "in_c"))
    cin = cin // max(g, 1)
    strided = bool(is_strided(r["in_h"][s, 0], r["out_h"][s, 0]))
    out = {"family": _variant(kind, n, k, g, cin, layout, strided), "kind": kind, "n": n, "m": m, "k": k, "groups": g,
           "in_c": cin, "strided": strided, "t": float(t_ms), "source": source}
    if net is not None:
        out["act_mb"] = _fused_act_mb(net, s)
    return out


def _fused_act_mb(net, s) -> dict:
    """``{activation kind: MB of its output}`` of the activations fused into slot ``s``'s kernel
    (every fused kind is recorded; the fit takes off the pass of those that pay one)."""
    out = {}
    r = net.table.rows
    for j, op in enumerate(net.table.ops):
        if net.fused[j] and net.owner[j] == s and j != s and op in OPS_ACTS:
            out[op] = out.get(op, 0.0) + float(r["out_elems"][j, 0]) * DTYPE_BYTES / BYTES_PER_MB
    return out


# --------------------------------------------------------------------------------------------- ONNX Runtime


class _OrtNet:
    """A model, its ONNX file and its one-candidate layer table, for profiling."""

    def __init__(self, label, model, workdir, rules):
        self.label = label
        self.model = model
        self.path = os.path.join(workdir, f"{abs(hash(label)) % 10**10}_{len(label)}.onnx")
        export_onnx(model, self.path)
        self.table = lower(model, np.zeros((1, model.n_genes), dtype=np.int64))
        self.owner, self.fused = owners(self.table, rules)

    def remove(self):
        cleanup(self.path)


def profiled_runs(net, settings, workdir, target_s, min_runs, max_runs, clock=time.perf_counter,
                  want_graph=False, pace=min):
    """``(per-run seconds by clock, node times, optimized graph or None)`` of ``net`` run under ONNX
    Runtime's profiler: two untimed runs, then enough runs for about ``target_s`` seconds (their
    ``pace`` of the two, within ``min_runs``..``max_runs``); the node times skip the two first runs
    and, where three or more runs held their core, the runs that did not (``_protocol.OWN_SHARE``:
    another process took turns on this one's core, which doubled the node times of large
    networks in the profiles of a shared machine and taught the kernel models that large kernels
    run slower in place than they do, issue 11)."""
    prefix = os.path.join(workdir, "prof")
    opt = os.path.join(workdir, "opt.onnx") if want_graph else None
    runner = OrtRunner(net.path, settings, profiling_prefix=prefix, optimized_path=opt)
    prof = None
    try:
        first, second = _run_s(runner), _run_s(runner)
        runs = int(np.clip(target_s / max(pace(first, second), 1e-6), min_runs, max_runs))
        per_run, held = [], []
        for _ in range(runs):
            t, c, c_cpu = clock(), time.perf_counter(), time.process_time()
            runner.run()
            per_run.append(clock() - t)
            held.append(held_core(time.process_time() - c_cpu, time.perf_counter() - c))
        prof = runner.end_profiling()
        times = node_times(prof, skip_runs=2, keep=held if getattr(runner, "on_cpu", False) else None)
        graph = graph_edges(opt) if want_graph else None
    finally:
        runner.close()
        cleanup(prof)
        cleanup(opt)
    return per_run, times, graph


def _run_s(runner) -> float:
    t = time.perf_counter()
    runner.run()
    return time.perf_counter() - t


def _ort_node_profile(net: _OrtNet, settings, workdir, latency_model, target_s=PROBE_TARGET_S,
                      min_runs=5, max_runs=200, want_graph=False):
    """Per-node times of one network, attributed to its layers. Returns (attributed, times, wall_ms)."""
    walls, times, graph = profiled_runs(net, settings, workdir, target_s, min_runs, max_runs, want_graph=want_graph)
    priced = [latency_model.family(op)[0] != "free" and net.table.rows["mask"][s, 0] for s, op in enumerate(net.table.ops)]
    att = attribute(times, net.table, net.owner, priced, graph, layout_bucket=True)
    return att, times, float(np.median(walls)) * 1e3


def _probe_once(spec, settings, workdir, model0):
    model = load_space_dict(spec, source=f"<probe {spec['name']}>")
    net = _OrtNet(spec["name"], model, workdir, model0.fuse)
    try:
        att, times, _ = _ort_node_profile(net, settings, workdir, model0)
    finally:
        net.remove()
    # the GEMM slot of the probe: the one its kernel node is attributed to
    out = []
    for s, nodes in att.items():
        if isinstance(s, str) or not (net.table.ops[s] in ("conv", "dwconv", "fc")):
            continue
        t = sum(ms for _, _, ms, _ in nodes)
        out.append(_gemm_sample(net.table, s, t, "probe", model0.layout, net))
    return out


def profile_onnxruntime(name: str, settings: RuntimeSettings, budget_s: float = 480.0, seed: int = 0,
                        progress=None, workdir: str | None = None, n_networks: int | None = None,
                        max_network_macs: float = 1.5e9):
    """Measure ONNX Runtime on this machine and return ``(Profile, report)``."""


    require("onnxruntime")
    budget = Budget(budget_s)
    rng = np.random.default_rng(seed)
    # a provisional model: which kinds are free, the fusion rules
    report = {"phases_s": {}}
    own_dir = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="augur-profile-") if own_dir else None
    workdir = tmp.name if own_dir else workdir
    try:
        # the runtime's layout and fusion rules on this processor, read from its optimised graphs
        rules = detect_rules(settings, workdir)
        _say(progress, f"ONNX Runtime's rules here: blocks of {rules.layout['block']} channels, "
                       f"{rules.layout.get('channels')}, fused activations {rules.fused_acts}")
        model0 = _ort_model({}, OpModel(), {}, (0.0, 0.0), rules=rules._asdict())
        report["rules"] = rules._asdict()
        return _profile_ort(name, settings, budget, rng, progress, workdir, model0, report, n_networks,
                            max_network_macs)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _probe_phase(specs, settings, workdir, model0, deadline, progress, label):
    samples = {}
    done = 0
    for i, (fam, spec) in enumerate(specs):
        if time.monotonic() > deadline:
            break
        try:
            got = _probe_once(spec, settings, workdir, model0)
        except MeasurementError:
            continue
        samples[spec["name"]] = got
        done += 1
        if progress is not None and (done % 10 == 0 or done == len(specs)):
            _say(progress, f"{label}: {done}/{len(specs)} kernels")
    return samples


def _profile_ort(name, settings, budget, rng, progress, workdir, model0, report, n_networks, max_network_macs=1.5e9):
    """Phases A (kernel grid), B (refinement, second visit), C (calibration networks: node
    profiles, end to end, peak memory), then the fit (D, ``fit_ort``)."""
    anchors_start = _anchors_at_start(settings, workdir, model0, progress,
                                      time_s=min(ANCHOR_START_S, max(0.3, 0.01 * budget.total)))
    t_a = time.monotonic()
    _say(progress, f"phase A: kernel probes on the grid (budget {budget.total:.0f} s in all)")
    visit1, specs = _probe_grid(settings, budget, rng, progress, workdir, model0)
    report["phases_s"]["A_grid"] = round(time.monotonic() - t_a, 1)
    t_b = time.monotonic()
    probe_samples = _refine_and_revisit(visit1, specs, settings, budget, rng, progress, workdir, model0, report)
    act_pairs = _act_pairs(settings, workdir, model0, budget, progress)
    report["phases_s"]["B_refine"] = round(time.monotonic() - t_b, 1)
    # per-node profiling lengthens each node by a few microseconds (its bookkeeping): chains of
    # small kernels timed both ways give that overhead, taken off every node time before fitting
    delta = _profiler_overhead(settings, workdir, model0)
    _say(progress, f"phase C: the profiler adds {1000 * delta:.1f} us per node ({budget.elapsed():.0f} s)")
    t_c = time.monotonic()
    _say(progress, f"phase C: calibration networks: node profiles in place ({budget.elapsed():.0f} s)")
    np_ = _NodeProfiles()
    _profile_calibration_networks(np_, settings, budget, rng, progress, workdir, model0,
                                  n_networks or MAX_NETWORKS, max_network_macs)
    measured_nets = [n for n in np_.nets if n.label in np_.node_sum]
    timing, anchors = _time_end_to_end(measured_nets, settings, budget, progress, workdir, model0)
    e2e = {lab: tm.median_ms for lab, tm in timing.items()}
    mem = _peak_memories(measured_nets, settings, budget, progress)
    for n in measured_nets:
        n.remove()
    report["phases_s"]["C_networks"] = round(time.monotonic() - t_c, 1)
    _say(progress, f"phase C done: {len(measured_nets)} networks; fitting")
    drift = build_drift({"anchors_start_ms": anchors_start, "anchors_ms": anchors})
    if drift is not None:
        _say(progress, f"speed anchors at the end / at the start: {drift['end_over_start']:.3f}"
                       + (f" (more than {DRIFT_WARN:.0%} apart: fit.anchors.build_drift.warning)" if "warning" in drift else ""))

    raw = {"probes": probe_samples, "act_pairs": act_pairs, "in_situ": np_.insitu, "kinds": np_.kind_samples, "layout": np_.layout_samples,
           "e2e_ms": e2e, "noise": {k: v.noise for k, v in timing.items()},
           "specs": {n.label: n.spec for n in measured_nets},
           "node_sum_ms": np_.node_sum, "nodes": np_.n_nodes, "profiler_delta_ms": delta, "anchors_ms": anchors,
           "anchors_start_ms": anchors_start, "memory": {k: v for k, v in mem.items() if "peak_rss_mb" in v}, "fusion_check": np_.fusion_check,
           "revisit": report["probe_revisit_median_abs_log_diff"], "rules": report.get("rules")}
    report["raw"] = raw
    return fit_ort(raw, name, settings, budget, report)


def _probe_grid(settings, budget, rng, progress, workdir, model0):
    """Phase A: kernel probes on the grid, 40 at a time, until 30% of the budget. Returns the
    samples of each probe by name and ``{name: (family, spec)}``."""
    visit1, specs = {}, {}
    while time.monotonic() < budget.until(0.30):
        grid = kernel_grid(rng, 40)
        got = _probe_phase(grid, settings, workdir, model0, budget.until(0.30), None, "phase A")
        visit1.update(got)
        specs.update({spec["name"]: (fam, spec) for fam, spec in grid if spec["name"] in got})
        _say(progress, f"phase A: {len(visit1)} kernels timed ({budget.elapsed():.0f} s)")
    return visit1, specs


def _refine_and_revisit(visit1, specs, settings, budget, rng, progress, workdir, model0, report) -> list:
    """Phase B: more probes in the worst-fitted cells, then a second visit of every probe in a new
    order; each sample keeps the smaller of its two times. Returns the probe samples."""
    flat = [s for v in visit1.values() for s in v]
    worst = _worst_cells(flat, count=4)
    _say(progress, "phase B: more probes in the worst-fitted cells: "
                   + ", ".join(f"{f} n {nr[0]:.0f}-{nr[1]:.0f} m {mr[0]:.0f}-{mr[1]:.0f}" for f, nr, mr in worst))
    while worst and time.monotonic() < budget.until(0.40):
        extra = []
        for fam, nr, mr in worst:
            extra += refine_probes(rng, _PROBE_FAMILY[fam], nr, mr, 3)
        got = _probe_phase(extra, settings, workdir, model0, budget.until(0.40), None, "phase B")
        visit1.update(got)
        specs.update({spec["name"]: (fam, spec) for fam, spec in extra if spec["name"] in got})
    # second visit of every probe, in a new order, while the budget allows
    order = list(specs)
    rng.shuffle(order)
    _say(progress, f"phase B: second visit of {len(order)} kernels ({budget.elapsed():.0f} s)")
    visit2 = _probe_phase([specs[k] for k in order], settings, workdir, model0, budget.until(0.52), None,
                          "phase B (second visit)")
    probe_samples = []
    revisits = []
    for key, got in visit1.items():
        again = visit2.get(key)
        for i, s in enumerate(got):
            s = dict(s)
            if again and i < len(again):
                revisits.append(abs(np.log(again[i]["t"] / s["t"])))
                s["t"] = min(s["t"], again[i]["t"])
            probe_samples.append(s)
    report["probe_revisit_median_abs_log_diff"] = round(float(np.median(revisits)), 4) if revisits else None
    return probe_samples


def _act_pairs(settings, workdir, model0, budget, progress, shapes=None) -> list:
    """Phase B's end: each pass-paying activation the runtime fuses (``PASS_ACTS``) timed on the
    producers of each family (``ACT_PAIR_SHAPES``: 1x1 expansions, depthwise and dense convs) with
    and without it, interleaved; a second visit if the budget allows (the smaller time counts).
    Returns ``[{kind, family, mb, t_plain, t_act}]``: the producer's family and output MB and the
    two kernel times (ms) of each pair."""
    acts = [a for a in (model0.fuse.groups[0]["act"] if model0.fuse else ()) if a in PASS_ACTS]
    if not acts:
        return []
    shapes = ACT_PAIR_SHAPES if shapes is None else shapes
    todo = [(fam, shape) for fam, group in shapes.items() for shape in group]
    best: dict = {}
    for visit in range(2):
        if visit and time.monotonic() > budget.until(0.55):
            break
        for fam, shape in todo:
            for act in (None, *acts):
                try:
                    t = _probe_once(act_pair_probe(fam, shape, act), settings, workdir, model0)[0]["t"]
                except (MeasurementError, IndexError):
                    continue
                best[(fam, shape, act)] = min(t, best.get((fam, shape, act), t))
    pairs = [{"kind": act, "family": fam, "mb": pair_out_mb(shape, DTYPE_BYTES, BYTES_PER_MB),
              "t_plain": best[(fam, shape, None)], "t_act": best[(fam, shape, act)]}
             for fam, shape in todo for act in acts if (fam, shape, None) in best and (fam, shape, act) in best]
    _say(progress, f"phase B: {len(pairs)} pairs of 1x1, depthwise and dense convs with and without "
                   f"{', '.join(acts)} ({budget.elapsed():.0f} s)")
    return pairs


@dataclass
class _NodeProfiles:
    """What phase C's node profiles of the calibration networks gave: the networks, GEMM samples
    in place, memory-bound kinds' and layout conversions' samples, each network's sum of node
    times and node count, and the fusion rules' check against ORT's graph."""
    nets: list = field(default_factory=list)
    insitu: list = field(default_factory=list)
    kind_samples: list = field(default_factory=list)
    layout_samples: list = field(default_factory=list)
    net_bucket: list = field(default_factory=list)
    node_sum: dict = field(default_factory=dict)
    n_nodes: dict = field(default_factory=dict)
    fusion_check: dict = field(default_factory=lambda: {"chains": 0, "mismatched": 0, "examples": []})


def _profile_calibration_networks(acc: _NodeProfiles, settings, budget, rng, progress, workdir, model0,
                                  n_networks: int, max_network_macs: float) -> None:
    """Phase C, first part: per-node profiles of random calibration networks (and, after each
    batch, one of ``nb201_samples()`` and one of ``_probes.large_networks``) until 78% of the budget or ``n_networks``; a network that
    cannot be exported or run is skipped."""
    deadline_nodes = budget.until(0.78)
    idx = 0
    nb201 = nb201_samples(NB201_SAMPLES)
    large = large_networks(np.random.default_rng(LARGE_SEED), LARGE_NETWORKS)
    # a few networks even past the deadline: the end-to-end fit needs some, and a tiny budget
    # would otherwise end with none on a busy machine
    min_nets = min(3, n_networks)
    while (time.monotonic() < deadline_nodes or (len(acc.nets) < min_nets and idx < 30)) \
            and len(acc.nets) < n_networks:
        # batches of 6: one network of each style of random_network (the sixth, `modern`, teaches the
        # shuffle, slice, LayerNorm and GELU kinds)
        batch = calibration_networks(np.random.default_rng([int(rng.integers(1 << 30)), idx]), 6, max_network_macs)
        batch = [(f"calib{idx + i}_{label.split('_', 1)[1]}", model, spec) for i, (label, model, spec) in enumerate(batch)]
        idx += len(batch)
        if nb201:
            batch.append(nb201.pop(0))
        if large:
            batch.append(large.pop(0))
        for label, model, spec in batch:
            if (time.monotonic() > deadline_nodes and len(acc.nets) >= min_nets) or len(acc.nets) >= n_networks:
                break
            _profile_network(acc, label, model, spec, settings, workdir, model0, progress)
        _say(progress, f"phase C: {len(acc.nets)} networks profiled ({budget.elapsed():.0f} s)")
    if not acc.nets:
        raise MeasurementError("profile: no calibration network could be measured; give a larger --budget-s")


def nb201_samples(count: int, seed: int = NB201_SEED) -> list:
    """``[(label, model, spec)]``: ``count`` architectures of the NAS-Bench-201 space (``seed``)."""
    space = nb201_space()
    out = []
    for i, x in enumerate(space.sample(count, seed=seed)):
        model = space.decode(x)
        out.append((f"space{i}_nb201", model, model.spec))
    return out


def _profile_network(acc: _NodeProfiles, label, model, spec, settings, workdir, model0, progress) -> None:
    """One calibration network's node profile into ``acc`` (skipped, with a line, if it cannot be
    exported or run)."""
    try:
        net = _OrtNet(label, model, workdir, model0.fuse)
        net.spec = spec
        att, times, _ = _ort_node_profile(net, settings, workdir, model0, target_s=0.2, min_runs=5,
                                          max_runs=60, want_graph=True)
    except Exception as exc:  # noqa: BLE001 - an exporter or runtime limitation: skip the network
        _say(progress, f"  skipped {label}: {str(exc).splitlines()[0][:120]}")
        return
    acc.nets.append(net)
    acc.node_sum[net.label] = sum(v[0] for v in times.values())
    acc.n_nodes[net.label] = len(times)
    _check_fusion(net, times, acc.fusion_check)
    _add_node_samples(acc, net, att, model0)


def _add_node_samples(acc: _NodeProfiles, net, att: dict, model0) -> None:
    """The samples of one network's attributed node times: layout conversions, the network's own
    bucket, GEMM kernels in place and memory-bound kinds."""
    for s, nodes in att.items():
        if s == "layout":
            acc.layout_samples += [(b / 1e6, ms) for _, _, ms, b in nodes if b > 0]
            continue
        own = sum(ms for _, _, ms, _ in nodes)
        reorders = sum(1 for _, _, _, r in nodes if r)
        if s == "network":
            acc.net_bucket.append((net.label, own, len(nodes)))
            continue
        kind = net.table.ops[s]
        fam = model0.family(kind)[0]
        if kind in ("conv", "dwconv", "fc"):
            samp = _gemm_sample(net.table, s, own, "in-situ", model0.layout, net)
            samp["reorders"] = reorders
            samp["net"] = net.label  # a record refitted offline can leave a network's samples out
            acc.insitu.append(samp)
        elif fam == "bytes":
            r = net.table.rows
            moved = float(r["in_elems"][s, 0] + r["out_elems"][s, 0]) * 4
            planes = float(channel_spans(kind, r["in_elems"][s, 0], r["out_elems"][s, 0], r["out_c"][s, 0]))
            acc.kind_samples.append({"kind": kind, "mb": moved / BYTES_PER_MB, "t": own, "reorders": reorders,
                                     "net": net.label, "spans": planes})


def _anchor_nets(workdir, model0) -> list:
    """The speed anchors as ONNX files in ``workdir`` (an anchor the runtime cannot load is left out)."""
    nets = []
    for lab, model, _ in anchor_networks():
        try:
            nets.append(_OrtNet(lab, model, workdir, model0.fuse))
        except Exception:  # noqa: BLE001
            continue
    return nets


def _anchors_at_start(settings, workdir, model0, progress, time_s: float = ANCHOR_START_S) -> dict:
    """``{label: ms}``: the speed anchors timed for a few seconds before phase A, so that the fit
    can tell whether the machine's speed changed while it was measured (``build_drift``)."""
    nets = _anchor_nets(workdir, model0)
    runners = {n.label: OrtRunner(n.path, settings) for n in nets}
    try:
        got = time_anchors(runners, time_s, budget_s=time_s)
    finally:
        for r in runners.values():
            r.close()
        for n in nets:
            n.remove()
    _say(progress, f"speed anchors at the start: {', '.join(f'{k[7:]} {v:.3f} ms' for k, v in got.items())}")
    return got


def time_anchors(runners: dict, time_s: float, budget_s: float) -> dict:
    """``{label: median ms}`` of the speed anchors' ``runners`` timed briefly: six interleaved
    rounds of about ``time_s / 40`` s each, no waiting for a quiet machine (``augur-nas check``
    and the start of a profile build both read the speed this way)."""
    timing = time_runners(runners, rounds=6, round_s=max(0.01, time_s / 40), warmup_s=0.05,
                          budget_s=budget_s, max_wait_s=0.0, quiet=None, common_min=None)
    return {lab: t.median_ms for lab, t in timing.items()}


def build_drift(raw: dict) -> dict | None:
    """How the machine's speed moved while a profile was measured: the speed anchors at the end
    (phase C, the profile's reference) against the start (before phase A), median and per anchor;
    a ``warning`` when they differ by more than ``DRIFT_WARN``. None for a record without both."""
    start, end = raw.get("anchors_start_ms") or {}, raw.get("anchors_ms") or {}
    sp = anchor_speed(end, start) if start and end else None
    if sp is None:
        return None
    out = {"end_over_start": round(sp[0], 4), "per_anchor": {k: round(v, 4) for k, v in sorted(sp[1].items())},
           "start_ms": {k: round(float(v), 4) for k, v in sorted(start.items())}}
    if abs(sp[0] - 1.0) > DRIFT_WARN:
        way = "slower" if sp[0] > 1 else "faster"
        out["warning"] = (f"the machine ran {abs(sp[0] - 1):.0%} {way} at the end of profiling than at its start (the "
                          f"speed anchors, median of {len(sp[1])}): the kernels were timed at one speed and the "
                          f"calibration networks at another, so the profile mixes the two. Other processes or a "
                          f"neighbour on the host change its speed; run `augur-nas check --device PROFILE` until the "
                          f"speed factor holds still and build the profile again")
    big = sp[1].get(LARGE_ANCHOR)
    if big is not None:
        out["memory_end_over_start"] = round(big, 4)
        if "warning" not in out and abs(np.log(big / sp[0])) > np.log(1 + MEMORY_WARN):
            out["warning"] = (f"the large speed anchor ({LARGE_ANCHOR_WEIGHTS_MB} MB of weights) ran {big:.2f}x its start time at the end of "
                              f"profiling while the small ones ran {sp[0]:.2f}x: the load on the machine's memory system "
                              f"changed while the profile was measured (a neighbour on the host), so the kernels of "
                              f"large networks were timed in two states. Run `augur-nas check --device PROFILE` until "
                              f"the speed and memory factors hold still and build the profile again")
    return out


def _time_end_to_end(measured_nets, settings, budget, progress, workdir, model0):
    """End to end, without profiling, interleaved; with them the speed anchors (fixed networks that
    `validate` measures again, to tell how fast the machine runs then against now). Returns the
    calibration networks' timings and the anchors' median ms."""
    _say(progress, f"phase C: end-to-end latency of {len(measured_nets)} networks, interleaved ({budget.elapsed():.0f} s)")
    runners = {n.label: OrtRunner(n.path, settings) for n in measured_nets}
    anchor_nets = _anchor_nets(workdir, model0)
    runners.update({n.label: OrtRunner(n.path, settings) for n in anchor_nets})
    try:
        left = max(3.0, budget.until(0.90) - time.monotonic())
        timing = time_runners(runners, rounds=10, round_s=0.02, warmup_s=0.05, budget_s=left,
                              max_wait_s=min(60.0, max(0.0, budget.left() * 0.3)))
    finally:
        for r in runners.values():
            r.close()
        runners.clear()
    anchors = {n.label: timing.pop(n.label).median_ms for n in anchor_nets if n.label in timing}
    for n in anchor_nets:
        n.remove()
    return timing, anchors


def _peak_memories(measured_nets, settings, budget, progress) -> dict:
    """Peak RSS of up to MAX_MEMORY_NETS networks spread over the weights, in child processes."""
    by_w = sorted(measured_nets, key=lambda n: float(totals(n.table)["weights_bytes"][0]))
    pick = by_w if len(by_w) <= MAX_MEMORY_NETS else [by_w[int(i)] for i in np.linspace(0, len(by_w) - 1, MAX_MEMORY_NETS)]
    _say(progress, f"phase C: peak memory of {len(pick)} networks in child processes ({budget.elapsed():.0f} s)")
    return measure_memories({n.label: n.path for n in pick}, settings, jobs=2)


class _FitNet(NamedTuple):
    """A calibration network as the fit sees it: its label and its one-candidate layer table."""
    label: str
    table: object


class _KernelFit(NamedTuple):
    """The kernel models before the end-to-end scale: GEMM families (``conv`` first), the kinds
    they price, the memory-bound kinds' ``(a, c)`` and their default, the layout conversions'
    ``(a, c)``, and the statistics of each fit."""
    gemm: dict
    kinds: dict
    default: tuple
    op_kinds: dict
    reorder: tuple
    gemm_stats: dict
    op_stats: dict
    reorder_stats: dict
    rules: dict | None = None  # OrtRules as a dict (None: an old raw record: ORT_LAYOUT/ORT_FUSE)
    ops_spill: Spill = Spill()     # the memory-bound kinds' cache knee (``_fitting.fit_spill``)
    layout_spill: Spill = Spill()  # the layout conversions' cache knee
    fused_pass: dict | None = None  # a fused activation's pass, ms per MB of its output, by kind and producer family
    pass_stats: dict | None = None
    per_span: dict | None = None    # memory-bound kinds' ms per channel plane (``_ops.channel_spans``)
    kind_spill: dict | None = None  # memory-bound kinds' own cache knees (``Spill``)

    def op_model(self, scale: float = 1.0) -> OpModel:
        """The memory-bound kinds' ``OpModel``, every time coefficient times ``scale``."""
        return OpModel((self.default[0] * scale, self.default[1] * scale),
                       {k: (a * scale, c * scale) for k, (a, c) in self.op_kinds.items()}, self.ops_spill,
                       {k: v * scale for k, v in (self.per_span or {}).items()}, self.kind_spill)


class _EndToEnd(NamedTuple):
    """measured = per_call + scale * (sum of kernel models) + per_node * (priced layers)."""
    per_call: float
    scale: float
    per_node: float


class _MemoryFit(NamedTuple):
    model: MemoryModel
    predicted_mb: list
    measured_mb: list


def fit_ort(raw, name, settings, budget=None, report=None):
    """Fit an ONNX Runtime profile to what ``_profile_ort`` measured (``raw``)."""
    report = report if report is not None else {"phases_s": {}}
    budget = budget or Budget(0)
    # per-node profiling lengthens every node a little (the profiler's own bookkeeping): the
    # median over the calibration networks of (sum of node times - plain end-to-end) / nodes,
    # taken off every node-level sample, puts them on the scale of a plain run
    delta = float(raw.get("profiler_delta_ms", 0.0))
    nets = _fit_nets(raw["specs"])
    t_d = time.monotonic()
    kf = _fit_kernel_models(raw, delta)
    kernels = _ort_model(kf.gemm, kf.op_model(), kf.kinds, kf.reorder, rules=kf.rules,
                         layout_spill=kf.layout_spill, fused_pass=kf.fused_pass)
    e2e = _fit_end_to_end(nets, kernels, raw["e2e_ms"])
    latency = _scaled_ort_model(kf, e2e)
    calib = _calibration_errors(nets, latency, raw["e2e_ms"], raw["noise"])
    mem = _fit_ort_memory(nets, raw["memory"])
    report["phases_s"]["D_fit"] = round(time.monotonic() - t_d, 1)
    report["elapsed_s"] = round(budget.elapsed(), 1)
    fit = _ort_fit_summary(raw, budget, report, kf, e2e, delta, calib, mem)
    return _ort_profile(name, settings, latency, mem.model, fit), report


def _fit_nets(specs: dict) -> list:
    """The calibration networks of ``raw["specs"]``, lowered again from their specs."""
    nets = []
    for lab, spec in specs.items():
        model = load_space_dict(spec, source=f"<{lab}>")
        nets.append(_FitNet(lab, lower(model, np.zeros((1, model.n_genes), dtype=np.int64))))
    return nets


def _fit_kernel_models(raw: dict, delta: float) -> _KernelFit:
    """GEMM families from probes and in-situ kernels, memory-bound kinds from their own nodes
    (and the layout changes serving them), layout conversions; the profiler's per-node cost
    ``delta`` comes off every node time before the fits."""
    rules = raw.get("rules")
    # off the samples, not off the fitted constants: a model whose constant came out below
    # ``delta`` (the dwconv model's, fitted on relative errors, is ~0) kept the profiler's cost in
    # its other terms, and so priced every small kernel of a tiny network (NAS-Bench-201) too slow
    # a fused activation's pass (``fused_pass``) comes off its kernel's time: the GEMM models
    # price the multiplication, the latency model adds the pass back by the same formula
    # the rates are fitted and recorded either way; FUSED_PASS says whether the model uses them
    rates, pass_stats = fit_fused_pass(raw.get("act_pairs") or [])
    fused_pass = {k: {f: (r if f in FUSED_PASS_FAMILIES else 0.0) for f, r in v.items()}
                  for k, v in rates.items()} if FUSED_PASS else {}
    pad = _layout_rules(rules, Spill())
    gemm, gemm_stats = _fit_gemm_families([_padded_sample(dict(s, t=_kernel_ms(s, delta, fused_pass), family=_plain_variant(s)), pad)
                                           for s in raw["probes"] + raw["in_situ"]])
    kinds = {"conv": {"gemm": "conv"}}
    if "conv_1x1" in gemm:
        kinds["conv"]["pointwise"] = "conv_1x1"
    if "conv_narrow" in gemm:
        kinds["conv"]["narrow"] = "conv_narrow"
        kinds["conv"]["narrow_below"] = int((rules or {}).get("layout", {}).get("narrow_below", NARROW_BELOW))
    if "conv_plain" in gemm and (rules or {}).get("layout", {}).get("channels"):
        kinds["conv"]["plain"] = "conv_plain"
        if "conv_plain_s2" in gemm:
            kinds["conv"]["plain_strided"] = "conv_plain_s2"
    if "dwconv" in gemm:
        kinds["dwconv"] = {"gemm": "dwconv", **({"strided": "dwconv_s2"} if "dwconv_s2" in gemm else {})}
    if "fc" in gemm:
        kinds["fc"] = {"gemm": "fc"}
    kind_samples = [dict(s, t=_less(s["t"], delta)) for s in _with_spans(raw["kinds"], raw.get("specs") or {})]
    ops_spill = _kinds_spill(kind_samples) if OPS_SPILL else Spill()
    default, op_kinds, op_stats = _fit_memory_bound_kinds(kind_samples, ops_spill)
    per_span, kind_spill = {}, {}
    if OPS_FORMS:
        op_kinds, per_span, kind_spill, op_stats = _fit_kind_forms(kind_samples, default)
    lay = [(v[0], _less(v[1], delta)) for v in raw.get("layout") or []]
    lay_mb, lay_t = np.array([v[0] for v in lay], dtype=np.float64), np.array([v[1] for v in lay], dtype=np.float64)
    layout_spill = fit_spill({"layout": (lay_mb, lay_t)}) if len(lay) >= 3 else Spill()
    priced = layout_spill.priced_bytes(lay_mb * BYTES_PER_MB) / BYTES_PER_MB
    reorder = fit_bytes(priced, lay_t) if len(lay) >= 3 else (0.0, 0.0)
    reorder_stats = error_stats(reorder[0] * priced + reorder[1], lay_t) if lay else {"n": 0}
    if lay:
        reorder_stats["spill"] = layout_spill.to_dict()
    return _KernelFit(gemm=gemm, kinds=kinds, default=default, op_kinds=op_kinds, reorder=reorder,
                      gemm_stats=gemm_stats, op_stats=op_stats, reorder_stats=reorder_stats, rules=rules,
                      ops_spill=ops_spill, layout_spill=layout_spill, fused_pass=fused_pass, pass_stats=pass_stats,
                      per_span=per_span, kind_spill=kind_spill)


def fit_fused_pass(pairs: list) -> tuple:
    """``({kind: {family: ms per MB}}, stats)``: each activation's pass rate after each producer
    family (``PASS_FAMILIES``), the median over its pairs of that family of (time with it - time
    without) / output MB, at least 0. A family without pairs takes the pointwise rate (a record
    from before the families timed 1x1 convs only; their pairs carry no ``family``). No pairs (a
    record from before the pairs): ``{}``, the fused activations priced at nothing as before."""
    by: dict = {}
    for p in pairs:
        fam = p.get("family", PASS_FAMILIES[0])
        by.setdefault(p["kind"], {}).setdefault(fam, []).append((p["t_act"] - p["t_plain"]) / p["mb"])
    rates, stats = {}, {}
    for kind, fams in sorted(by.items()):
        got = {f: max(0.0, float(np.median(v))) for f, v in fams.items()}
        first = got.get(PASS_FAMILIES[0], float(np.median([x for v in fams.values() for x in v])))
        rates[kind] = {f: got.get(f, max(0.0, first)) for f in PASS_FAMILIES}
        stats[kind] = {"pairs": sum(len(v) for v in fams.values()),
                       "ms_per_mb": {f: round(r, 6) for f, r in rates[kind].items()},
                       "per_pair_ms_per_mb": {f: [round(float(x), 6) for x in v] for f, v in sorted(fams.items())}}
    return rates, stats


def _padded_sample(s: dict, layout) -> dict:
    """A GEMM sample with the sizes its kernel works on (``LayoutRules.padded``, with
    ``PAD_CHANNELS``; a plain conv keeps its sizes by the same channel rules that made it plain):
    the same rule prices it, so the models learn the padded work."""
    if not layout.pad_channels or s.get("kind") not in ("conv", "dwconv"):
        return s
    g = max(int(s["groups"]), 1)
    n, k, f = layout.padded(s["kind"], s["n"], s["k"], g, max(int(s["in_c"]), 1) * g)
    return dict(s, n=int(n), k=int(k), groups=float(g * f))


def _plain_variant(s: dict) -> str:
    """A sample's GEMM family, a plain conv of stride 2 its own (``conv_plain_s2``, with
    ``PLAIN_STRIDED``): records from before the variant filed those under ``conv_plain``."""
    if PLAIN_STRIDED and s["family"] == "conv_plain" and s.get("strided"):
        return "conv_plain_s2"
    if not PLAIN_STRIDED and s["family"] == "conv_plain_s2":
        return "conv_plain"
    return s["family"]


def _kernel_ms(s: dict, delta: float, fused_pass: dict) -> float:
    """A GEMM sample's kernel time: without the profiler's per-node cost and the pass of each
    activation fused into it, at its own family's rate (``pass_family``; half of it stays at
    least: the multiplication takes some time)."""
    t = _less(s["t"], delta)
    fam = int(pass_family(s.get("kind", "conv"), s["k"], s["in_c"]))
    extra = sum(float(fused_pass_ms(fused_pass[k][PASS_FAMILIES[max(fam, 0)]], mb))
                for k, mb in (s.get("act_mb") or {}).items() if k in fused_pass)
    return max(t - extra, 0.5 * t)


def _less(t_ms: float, delta: float) -> float:
    """A node time without the profiler's per-node cost (at least a tenth of it stays: a kernel
    takes some time)."""
    return max(float(t_ms) - delta, 0.1 * float(t_ms))


def _fit_gemm_families(samples: list):
    """The piecewise GEMM model of each variant with four samples or more (``conv`` first, which
    must be there) and its statistics."""
    gemm, gemm_stats = {}, {}
    for fam in GEMM_VARIANTS:
        S = [s for s in samples if s["family"] == fam]
        if len(S) < 4:
            continue
        n = np.array([s["n"] for s in S], dtype=np.float64)
        m = np.array([s["m"] for s in S], dtype=np.float64)
        k = np.array([s["k"] for s in S], dtype=np.float64)
        g = np.array([s["groups"] for s in S], dtype=np.float64)
        t = np.array([s["t"] for s in S], dtype=np.float64)
        # an fc changes regime where its weights leave the caches, whatever its shape
        axis = {"n_axis": "nk", "n_sets": W_BREAK_SETS} if fam == "fc" else {}
        # the model prices kernels as they run in place (in networks), its shape taught by the
        # probes too (``fit_gemm``'s in-place terms)
        place = np.array([s["source"] == "in-situ" for s in S]) if IN_PLACE else None
        model, st = fit_gemm(n, m, k, t / g, seed=0, in_place=place, **axis)
        st["probes"] = sum(1 for s in S if s["source"] == "probe")
        st["in_situ"] = sum(1 for s in S if s["source"] == "in-situ")
        gemm[fam] = model
        gemm_stats[fam] = st
    if "conv" not in gemm:
        raise MeasurementError("profile: too few convolution timings to fit a model; give a larger --budget-s")
    return {"conv": gemm["conv"], **{k: v for k, v in gemm.items() if k != "conv"}}, gemm_stats


def _kinds_spill(kind_samples: list) -> Spill:
    """The memory-bound kinds' shared cache knee, each kind with its own ``(a, c)``."""
    by_kind = {}
    for s in kind_samples:
        by_kind.setdefault(s["kind"], []).append((s["mb"], s["t"]))
    return fit_spill({k: (np.array([v[0] for v in vs]), np.array([v[1] for v in vs])) for k, vs in by_kind.items()
                      if len(vs) >= MIN_KIND})


def _fit_memory_bound_kinds(kind_samples: list, spill: Spill = NO_SPILL):
    """``(default, op_kinds, op_stats)``: ``(a, c)`` (ms per MB moved as ``spill`` prices it, ms)
    over all samples, of each kind (a rate through its own samples where it has fewer than
    ``MIN_KIND``: ``_rate_through``), and each kind's statistics."""
    by_kind = {}
    for s in kind_samples:
        by_kind.setdefault(s["kind"], []).append((float(spill.priced_bytes(s["mb"] * BYTES_PER_MB)) / BYTES_PER_MB, s["t"]))
    all_mb = np.array([v[0] for vs in by_kind.values() for v in vs]) if by_kind else np.zeros(0)
    all_t = np.array([v[1] for vs in by_kind.values() for v in vs]) if by_kind else np.zeros(0)
    default = fit_bytes(all_mb, all_t) if len(all_t) else (0.0, 0.0)
    op_kinds, op_stats = {}, {}
    for kind, vals in sorted(by_kind.items()):
        mb = np.array([v[0] for v in vals])
        t = np.array([v[1] for v in vals])
        coef = fit_bytes(mb, t) if len(vals) >= MIN_KIND else _rate_through(mb, t, default)
        op_kinds[kind] = coef
        op_stats[kind] = error_stats(coef[0] * mb + coef[1], t)
    return default, op_kinds, op_stats


def _rate_through(mb: np.ndarray, t: np.ndarray, default: tuple) -> tuple:
    """``(a, c)`` of a kind with too few samples for its own two terms: the default's overhead and
    the median rate through its own samples. The default rate is an average over cheap ops (adds,
    ReLUs, pools): with it, the one GELU sample of a build (erf per element, ~4x that rate: 0.061-0.066
    ms per MB on records 1304 and 1338) came out 80 % too fast, and so did every GELU of a ConvNeXt."""
    c = float(default[1])
    ok = mb > 0
    if not ok.any():
        return default
    return float(max(0.0, np.median((t[ok] - c) / mb[ok]))), c


def _fit_kind_forms(kind_samples: list, default: tuple):
    """``(op_kinds, per_span, kind_spill, op_stats)``: each kind with ``MIN_KIND`` samples or more
    fitted by ``fit_kind`` (its own knee and, for a join broadcast per channel, a per-plane term);
    fewer: the default's overhead and a rate through its own samples (``_rate_through``), no knee,
    no plane term."""
    by_kind: dict = {}
    for s in kind_samples:
        by_kind.setdefault(s["kind"], []).append((s["mb"], s["t"], s.get("spans", 0.0)))
    op_kinds, per_span, kind_spill, op_stats = {}, {}, {}, {}
    for kind, vals in sorted(by_kind.items()):
        mb, t, planes = (np.array([v[i] for v in vals], dtype=np.float64) for i in range(3))
        if len(vals) < MIN_KIND:
            op_kinds[kind] = coef = _rate_through(mb, t, default)
            op_stats[kind] = error_stats(coef[0] * mb + coef[1], t)
            continue
        f = fit_kind(mb, t, planes)
        op_kinds[kind] = (f.ms_per_mb, f.overhead_ms)
        if f.per_span_ms:
            per_span[kind] = f.per_span_ms
        if f.spill.ratio:
            kind_spill[kind] = f.spill
        op_stats[kind] = {**error_stats(f.predict(mb, planes), t), "spill": f.spill.to_dict(),
                          **({"per_span_ms": round(f.per_span_ms, 9)} if f.per_span_ms else {})}
    return op_kinds, per_span, kind_spill, op_stats


def _with_spans(kind_samples: list, specs: dict) -> list:
    """The samples with their channel planes (``spans``); a record from before the field gets them
    from its networks' specs, lowered again: the layer of the sample's network, kind and MB moved
    (none matches, or a sample without its network: 0)."""
    if all("spans" in s for s in kind_samples):
        return kind_samples
    by_key = {}
    for net in _fit_nets({lab: specs[lab] for lab in {s.get("net") for s in kind_samples if "spans" not in s} if lab in specs}):
        r = net.table.rows
        for i, kind in enumerate(net.table.ops):
            mb = float(r["in_elems"][i, 0] + r["out_elems"][i, 0]) * DTYPE_BYTES / BYTES_PER_MB
            by_key.setdefault((net.label, kind, round(mb, 6)),
                              float(channel_spans(kind, r["in_elems"][i, 0], r["out_elems"][i, 0], r["out_c"][i, 0])))
    return [s if "spans" in s else dict(s, spans=by_key.get((s.get("net"), s["kind"], round(s["mb"], 6)), 0.0))
            for s in kind_samples]


def _fit_end_to_end(nets: list, kernels, e2e_ms: dict) -> _EndToEnd:
    """The per-call and per-node overheads and the kernel scale, by NNLS on relative errors over
    the calibration networks (kernel times under per-node profiling and in isolation differ from a
    plain run by a roughly constant factor)."""
    K, Lc, Y = [], [], []
    for net in nets:
        K.append(float(latency_ms(net.table, kernels)[0][0]))
        fused = kernels.fused(net.table)
        alias = kernels.duplicates(net.table)
        live = net.table.rows["mask"][:, 0] & ~fused[:, 0] & (alias[:, 0] < 0)
        Lc.append(sum(1 for s_, op in enumerate(net.table.ops) if live[s_] and kernels.family(op)[0] != "free"))
        Y.append(e2e_ms[net.label])
    K, Lc, Y = (np.asarray(v, dtype=np.float64) for v in (K, Lc, Y))
    wts = 1.0 / Y
    per_call, scale, per_node = nnls(np.stack([np.ones_like(K), K, Lc], axis=1) * wts[:, None], Y * wts)
    return _EndToEnd(float(per_call), float(scale) if scale > 0 else 1.0, float(per_node))


def _scaled_ort_model(kf: _KernelFit, e2e: _EndToEnd):
    """The latency model: every kernel model times the scale, with the two overheads."""
    scale = e2e.scale
    gemm_scaled = {k: v.scaled(scale) for k, v in kf.gemm.items()}
    ops_scaled = kf.op_model(scale)
    return _ort_model(gemm_scaled, ops_scaled, kf.kinds, (kf.reorder[0] * scale, kf.reorder[1] * scale),
                      e2e.per_node, e2e.per_call, rules=kf.rules, layout_spill=kf.layout_spill,
                      fused_pass=scaled_fused_pass(kf.fused_pass, scale))


def _calibration_errors(nets: list, latency, e2e_ms: dict, noise: dict) -> dict:
    """Measured and predicted latency of each calibration network (in sample)."""
    calib = {}
    for net in nets:
        pred = float(latency_ms(net.table, latency)[0][0])
        calib[net.label] = {"measured_ms": round(e2e_ms[net.label], 4), "predicted_ms": round(pred, 4),
                            "error_pct": round((pred / e2e_ms[net.label] - 1) * 100, 2),
                            "noise_pct": round(noise[net.label] * 100, 2)}
    return calib


def _fit_ort_memory(nets: list, mem: dict) -> _MemoryFit:
    """The process's peak RSS from its fixed part, the weights (conv weights are re-packed by ONNX
    Runtime, fc matrices are not: two coefficients) and the peak of live activations."""
    W, WF, A, P = [], [], [], []
    for net in nets:
        mm = mem.get(net.label, {})
        if "peak_rss_mb" not in mm:
            continue
        tot = totals(net.table)
        W.append(float(tot["weights_bytes"][0]) / 2**20)
        WF.append(float(fc_weight_bytes(net.table)[0]) / 2**20)
        A.append(float(tot["peak_memory_bytes"][0] - tot["weights_bytes"][0]) / 2**20)
        P.append(mm["peak_rss_mb"])
    if len(P) >= 4:
        F, cw, ca, cf = fit_memory(W, A, P, WF)
    else:
        F, cw, ca, cf = (P[0] if P else 50.0), 1.0, 1.0, 1.0
    memory = MemoryModel(framework_overhead_mb=F, weight_copies=1, weights_coef=cw, activations="peak",
                         activation_coef=ca, workspace="none", fc_weights_coef=cf)
    return _MemoryFit(memory, [F + cw * (w - f) + cf * f + ca * a for w, f, a in zip(W, WF, A)], P)


def _ort_fit_summary(raw, budget, report, kf: _KernelFit, e2e: _EndToEnd, delta: float, calib: dict,
                     mem: _MemoryFit) -> dict:
    """The profile's ``fit`` section: method, budget, phases and the statistics of every fit."""
    return {
        "method": "per-node ONNX Runtime profiles of one-kernel probes (grid + refinement) and of random "
                  "calibration networks; GEMM models by NNLS with cross-validated breakpoints, pricing kernels in "
                  "place (probes and in-place node times fitted together, the in-place ones paying a per-call and "
                  "a per-weight-element term more: gemm.<family>.in_place_terms); per-node and per-call overheads "
                  "from end-to-end timings",
        "budget_s": round(float(budget.total), 1),
        "elapsed_s": report["elapsed_s"],
        "phases_s": report["phases_s"],
        "kernel_probes": len(raw["probes"]),
        "probe_revisit_median_abs_log_diff": raw.get("revisit"),
        "gemm": kf.gemm_stats,
        "ops": kf.op_stats,
        "layout_conversions": {**kf.reorder_stats, "note": "ReorderInput/ReorderOutput nodes and zero edges in place"},
        "end_to_end_calibration": {"per_layer_ms": round(e2e.per_node, 5), "per_call_ms": round(e2e.per_call, 4),
                                   "kernel_scale": round(float(e2e.scale), 4),
                                   "profiler_overhead_per_node_ms": round(delta, 5),
                                   "note": "measured = per_call + kernel_scale * sum(kernel models) + per_layer * "
                                           "priced layers, NNLS over the calibration networks"},
        "fusion_check": raw["fusion_check"],
        "fused_pass": {**(kf.pass_stats or {}), "applied": bool(kf.fused_pass), "note": "ms per MB of output of an activation fused into a conv that the runtime "
                                                 "applies in a pass of its own (policy _ortrules.PASS_ACTS), by the family "
                                                 "of the conv producing its input (1x1, depthwise, dense), from convs of "
                                                 "each family timed with and without it; taken off the GEMM samples of "
                                                 "that family before their fit, priced back by latency.fused_pass (times "
                                                 "kernel_scale)"},
        "anchors": {"seed": ANCHOR_SEED, "latency_ms": {k: round(v, 4) for k, v in (raw.get("anchors_ms") or {}).items()},
                    **({"build_drift": drift} if (drift := build_drift(raw)) else {}),
                    "note": "fixed networks (_probes.calibration_networks with this seed) timed with the calibration "
                            "networks; `validate` times them again to tell the machine's speed then from now; "
                            "build_drift: the same anchors before phase A against these"},
        "calibration_networks": {"latency": error_stats([v["predicted_ms"] for v in calib.values()],
                                                        [v["measured_ms"] for v in calib.values()]),
                                 "note": "in sample for the two overheads", "networks": calib},
        "memory": {"networks": len(mem.measured_mb), **error_stats(mem.predicted_mb, mem.measured_mb),
                   "measured": "peak RSS (VmHWM) of a child process that loads the network and runs it"},
    }


def _ort_profile(name, settings, latency, memory, fit: dict):
    """The ONNX Runtime profile of this machine."""
    hw = hardware_facts()
    hardware = {"processor": hw["processor"], "cores": int(hw["cores"]), "clock_ghz": 0.0, "peak_gflops": 0.0,
                "memory_bandwidth_gbs": 0.0, "ram_mb": int(hw["ram_mb"]), "unified_memory": True}
    if hw.get("notes"):
        hardware["notes"] = hw["notes"] + "; clock, peak and bandwidth not measured (0)"
    return Profile(
        name=name,
        description=f"{hw['processor']}, {hw['cores']} cores, running ONNX Runtime {runtime_version('onnxruntime')} "
                    f"(CPUExecutionProvider, {settings.threads} intra-op thread(s), {settings.graph_optimization}), "
                    f"float32, batch {settings.batch}.",
        hardware=hardware,
        runtime=f"onnxruntime-{runtime_version('onnxruntime')}-cpu",
        provenance={"method": "measured by augur-nas profile on this machine",
                    "source": "augur-nas profile --backend onnxruntime",
                    "date": datetime.date.today().isoformat(),
                    "note": "kernel times from ORT per-node profiling (fused kernels as ORT runs them); the fusion "
                            "rules are ORT's CPU rules (Conv+BN+activation, Conv+Add, Gemm+ReLU)"},
        latency=latency,
        memory=memory,
        fit=_plain(fit),
        runtime_settings=settings.to_dict(),
        fingerprint=machine_fingerprint(settings),
    )


_PROBE_FAMILY = {"conv": "kxk", "conv_1x1": "pw", "dwconv": "dw", "conv_narrow": "narrow", "fc": "fc"}


def _profiler_overhead(settings, workdir, model0) -> float:
    """Milliseconds per node that ORT's per-node profiling adds to node durations (median over
    chains of small kernels: (sum of profiled node times - plain end-to-end time) / nodes)."""
    chains = [
        (8, 8, [{"conv_bn_act": {"out": 8, "kernel": 1}}]),
        (16, 8, [{"conv_bn_act": {"out": 16, "kernel": 3}}]),
        (16, 16, [{"conv_bn_act": {"out": 16, "kernel": 1}}]),
        (64, 8, [{"dwconv": {"kernel": 3}}, {"batchnorm": {}}, {"relu6": {}}]),
        (16, 32, [{"avgpool": {"kernel": 3, "stride": 1, "pad": 1}}, {"conv": {"out": 16, "kernel": 1, "bias": False}}]),
    ]
    out = []
    for c, h, unit in chains:
        spec = {"name": f"chain{c}x{h}", "input": {"channels": c, "resolution": h}, "layers": unit * 30}
        net = _OrtNet(spec["name"], load_space_dict(spec, source="<chain>"), workdir, model0.fuse)
        try:
            _, times, _ = _ort_node_profile(net, settings, workdir, model0, target_s=0.1, min_runs=20, max_runs=200)
            runner = OrtRunner(net.path, settings)
            t = time_runners({"x": runner}, rounds=6, round_s=0.02, warmup_s=0.02, quiet=None)["x"]
            runner.close()
        finally:
            net.remove()
        out.append((sum(v[0] for v in times.values()) - t.median_ms) / max(len(times), 1))
    return max(0.0, float(np.median(out)))


def _layout_rules(rules, layout_spill, reorder=(0.0, 0.0)) -> LayoutRules:
    """The layout rules of a fit: read on the machine (``rules``; an old record: ORT_LAYOUT), the
    channels padded to whole blocks with ``PAD_CHANNELS``."""
    lay = dict((rules or {}).get("layout") or ORT_LAYOUT)
    return LayoutRules(lay["blocked"], lay["follow"], lay["joins"], lay["block"], lay["narrow_below"], reorder,
                       lay.get("channels"), layout_spill, lay.get("fused_joins", "blocked"), lay.get("from_blocked", ()),
                       PAD_CHANNELS)


def _ort_model(gemm, ops, kinds, reorder, per_layer=0.0, per_call=0.0, rules=None, layout_spill=None, fused_pass=None):
    """An ONNX Runtime latency model; ``rules`` (``OrtRules`` as a dict, as ``detect_rules`` read
    them on the machine) give the layout and the fused activations, else ORT_LAYOUT/ORT_FUSE;
    ``layout_spill`` the conversions' cache knee (``Spill``); ``fused_pass`` the fused activations'
    passes (ms per MB, by kind; only kinds the fusion rules fold)."""
    layout = _layout_rules(rules, layout_spill, reorder)
    fuse = ORT_FUSE
    if rules and rules.get("fused_acts") is not None:
        fuse = [dict(ORT_FUSE[0], act=list(rules["fused_acts"])), *ORT_FUSE[1:]]
    fused_pass = {k: v for k, v in scaled_fused_pass(fused_pass, 1.0).items() if k in fuse[0]["act"] and any(v.values())}
    return LatencyModel(gemm, ops, kinds, per_layer, FusionRules(fuse), per_call, layout, ORT_CSE, fused_pass=fused_pass)


def _check_fusion(net, times, acc):
    """Do ORT's nodes agree with the fusion rules? A chain (producer + the layers fused into it)
    should be one node; a layer outside any chain, of a priced kind, should have its own."""
    names = {n: i for i, n in enumerate(net.table.names)}
    named = {}
    for node in times:
        s = layer_of(node, names)
        if s is not None:
            named.setdefault(net.owner[s], set()).add(s)
    mask = net.table.rows["mask"][:, 0]
    for s in range(len(net.table.ops)):
        if not mask[s] or net.owner[s] != s or net.table.ops[s] not in ("conv", "dwconv", "fc"):
            continue
        members = [j for j in range(len(net.table.ops)) if net.owner[j] == s]
        acc["chains"] += 1
        # the chain's node is named after one member; a second named member means ORT split it
        if len(named.get(s, ())) > 1 or not named.get(s):
            acc["mismatched"] += 1
            if len(acc["examples"]) < 5:
                acc["examples"].append(f"{net.label}: {net.table.names[s]} + "
                                       f"{[net.table.names[j] for j in members if j != s]}: nodes "
                                       f"{sorted(net.table.names[j] for j in named.get(s, ()))}")


def _worst_cells(samples, count=4):
    """The (family, n range, m range) cells of the GEMM probes with the largest fit error."""
    cells = []
    for fam in ("conv", "conv_1x1", "dwconv"):
        S = [s for s in samples if s["family"] == fam]
        if len(S) < 8:
            continue
        n = np.array([s["n"] for s in S], dtype=float)
        m = np.array([s["m"] for s in S], dtype=float)
        k = np.array([s["k"] for s in S], dtype=float)
        g = np.array([s["groups"] for s in S], dtype=float)
        t = np.array([s["t"] for s in S], dtype=float)
        model, _ = fit_gemm(n, m, k, t / g, folds=3)
        err = np.abs(np.log(model.predict(n, m, k) * g / t))
        nb = np.array([0, 48, 96, 192, 384, 1e9]) if fam != "dwconv" else np.array([0, 1e9])
        mb = np.array([0, 120, 500, 2000, 6000, 1e9])
        for i in range(len(nb) - 1):
            for j in range(len(mb) - 1):
                sel = (n >= nb[i]) & (n < nb[i + 1]) & (m >= mb[j]) & (m < mb[j + 1])
                if sel.sum() >= 2:
                    nr = (max(nb[i], 8), min(nb[i + 1], 1024)) if fam != "dwconv" else None
                    cells.append((float(np.median(err[sel])), fam, nr, (max(mb[j], 4), min(mb[j + 1], 12544))))
    cells.sort(key=lambda c: -c[0])
    return [(fam, nr if nr else (1, 1), mr) for _, fam, nr, mr in cells[:count]]


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return round(f, 6) if np.isfinite(f) else None
    return v


def plain_json(v):
    """``json.dumps``' default for a raw record: numpy scalars and arrays."""
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON: {type(v).__name__}")
