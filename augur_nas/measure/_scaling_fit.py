"""Fitting a profile's ``latency.scaling`` (costmodel/_scaling.py): how each group of layers
grows with the batch and shrinks with intra-op threads, from ONNX Runtime's own per-node times.

The fixed calibration set (augur_nas/data/calibration_set.yaml, never the zoo) is exported at
batch 1 and at larger batches and profiled per node (``_ort_node_profile``: the fused kernels,
the memory-bound ops, the layout conversions, attributed to our layers) at one thread and at the
target thread count. Every visit is repeated (``visits``) and the smaller time counts: on a
shared machine a kernel is only ever slowed down. Each layer of each network gives a sample
``(group, t1, t_b, b, mb)``; the one-thread batch samples fit ``per_call_ms``, ``rate`` and
``spill_coef`` per group, the N-thread samples at batch 1 (against the one-thread time) fit
``par_call_ms`` and ``par_share``; a batch's further images split evenly over the threads
(``par_image_share`` = 1/N, costmodel/_scaling.py). Only ratios are fitted, so the profile's own
kernel models (what another phase measures) stay as they are: the batch model starts from their
one-image price.
"""

from __future__ import annotations

import tempfile
import time
from typing import NamedTuple

import numpy as np

from .._errors import MeasurementError
from ..costmodel import latency_ms
from ..costmodel._ops import BYTES_PER_MB
from ..costmodel._scaling import (
    FALLBACK,
    GROUPS,
    GroupScale,
    ScalingModel,
    group_of,
    spill_bytes_mb,
    spill_ratio,
)
from ..io.onnx import export_onnx
from ..lowering import lower
from ._calibset import calibration_set
from ._devcheck import anchor_times
from ._ortnodes import attribute
from ._probes import calibration_networks
from ._profiling import _OrtNet, profile_anchors, profiled_runs
from ._settings import RuntimeSettings

FIT_BATCHES = (1, 8, 32)
CACHE_GRID_MB = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
SPILL_GRID = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5)
# the per-MB spill (ms per MB-doubling): a memory-bound op at 10-20 GB/s takes 0.05-0.1 ms per MB,
# and its time per image measured up to 2.5x at 32-64 MB working sets (4-5 doublings past the cache)
SPILL_MS_GRID = tuple(np.round(np.geomspace(0.0005, 0.08, 16), 5))
MIN_SAMPLES = 200  # layers x batches of a first visit before a deadline may cut it short
MIN_MS = 0.002  # node times are whole microseconds: below this a ratio is noise


class ScaleSample(NamedTuple):
    """One layer (or layout conversion) of one calibration network at one batch and thread count."""

    group: str
    key: tuple     # (network, slot or node): the same layer at every batch and thread count
    batch: int
    threads: int
    ms: float      # the layer's time for the whole batch
    mb: float      # activation MB per image (input + output; the bytes a layout conversion streams)


def layer_samples(label, table, att: dict, model0, batch: int, threads: int) -> list:
    """The samples of one network's attributed node times (``_ortnodes.attribute``)."""
    out = []
    r = table.rows
    for s, nodes in att.items():
        if s == "network":
            continue
        if s == "layout":
            out += [ScaleSample("layout", (label, node), batch, threads, ms, nb / BYTES_PER_MB / batch)
                    for node, _, ms, nb in nodes if nb > 0]
            continue
        kind = table.ops[s]
        fam = model0.family(kind)[0]
        if fam == "free":
            continue
        mb = float(r["in_elems"][s, 0] + r["out_elems"][s, 0]) * 4 / BYTES_PER_MB
        out.append(ScaleSample(group_of(kind, fam), (label, s), batch, threads, sum(n[2] for n in nodes), mb))
    return out


def _mean_of_two(a: float, b: float) -> float:
    return (a + b) / 2


def cpu_node_profile(net, settings, workdir, model0, target_s: float = 0.15, min_runs: int = 4, max_runs: int = 40,
                     cpu_time: bool = True):
    """Per-node times of one network attributed to its layers (as ``_profiling._ort_node_profile``),
    scaled so that they add up to the median *CPU* time of the profiled runs. On a shared machine
    a longer kernel is more often preempted, so wall-clock node times make a batch of 32 look
    slower per image than it is; at one intra-op thread the process's CPU time is the kernels'
    own. With more threads the CPU time counts every thread (and their spinning), so the node
    times are left as measured there."""
    cpus, times, graph = profiled_runs(net, settings, workdir, target_s, min_runs, max_runs, clock=time.process_time,
                                       want_graph=True, pace=_mean_of_two)
    if settings.threads == 1 and cpu_time:
        total = sum(v[0] for v in times.values())
        f = float(np.median(cpus)) * 1e3 / total if total > 0 else 1.0
        times = {k: (v[0] * f,) + tuple(v[1:]) for k, v in times.items()}
    priced = [model0.family(op)[0] != "free" and net.table.rows["mask"][s, 0] for s, op in enumerate(net.table.ops)]
    return attribute(times, net.table, net.owner, priced, graph, layout_bucket=True)


def measure_scaling(model0, threads=(1,), batches=FIT_BATCHES, visits: int = 2, deadline: float | None = None,
                    progress=None, networks=None, settings: RuntimeSettings | None = None, cpu_time: bool = True) -> list:
    """Per-node samples of the calibration set at every (threads, batch), the smaller of ``visits``
    visits. ``model0``: the profile's ``LatencyModel`` (its fusion rules attribute the nodes);
    ``cpu_time``: one-thread node times scaled to the CPU time of their runs (``cpu_node_profile``)."""
    nets = calibration_set() if networks is None else networks
    # cheapest first: in a short budget, many networks (and every group) rather than a few large ones
    nets = sorted(nets, key=lambda cn: float(latency_ms(_one(cn.model), model0)[0][0]))
    best: dict = {}
    with tempfile.TemporaryDirectory(prefix="augur-scaling-") as wd:
        for visit in range(visits):
            done = 0
            for cn in nets:
                if deadline is not None and time.monotonic() > deadline and (visit > 0 or len(best) >= MIN_SAMPLES):
                    break
                done += 1
                net = _OrtNet(cn.name, cn.model, wd, model0.fuse)
                try:
                    for b in batches:
                        export_onnx(cn.model, net.path, batch=b)
                        for th in threads:
                            st = RuntimeSettings.from_dict(settings.to_dict() if settings else {}, threads=th, batch=b)
                            try:
                                att = cpu_node_profile(net, st, wd, model0, cpu_time=cpu_time)
                            except MeasurementError:
                                continue
                            for smp in layer_samples(cn.name, net.table, att, model0, b, th):
                                k = (smp.key, b, th)
                                if k not in best or smp.ms < best[k].ms:
                                    best[k] = smp
                finally:
                    net.remove()
            if progress:
                progress(f"scaling: visit {visit + 1} of {visits}: {done} of {len(nets)} networks, {len(best)} samples")
    return list(best.values())


def _one(model):
    return lower(model, np.zeros((1, model.n_genes), dtype=np.int64))


# --------------------------------------------------------------------------------------------- fit


class _Pairs(NamedTuple):
    t1: np.ndarray   # one image (or one thread) time
    tb: np.ndarray   # the batch's (or N threads') time
    b: np.ndarray
    mb: np.ndarray
    cell: np.ndarray  # index of the (network, batch) the layer belongs to


def _pairs(samples, group, threads_a, threads_b, same_batch: bool) -> _Pairs:
    """Matched samples: (batch 1, batch b) at one thread, or (1 thread, N threads) at one batch."""
    idx = {(s.key, s.batch, s.threads): s for s in samples if s.group == group}
    rows, cells = [], {}
    for (key, b, th), s in idx.items():
        if th != threads_b or (not same_batch and b == 1):
            continue
        ref = idx.get((key, b if same_batch else 1, threads_a))
        if ref is None or ref.ms < MIN_MS or s.ms < MIN_MS:
            continue
        rows.append((ref.ms, s.ms, b, s.mb, cells.setdefault((key[0], b), len(cells))))
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return _Pairs(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4].astype(np.int64))


def _wmedian(v, w) -> float:
    o = np.argsort(v)
    c = np.cumsum(w[o])
    return float(v[o][np.searchsorted(c, 0.5 * c[-1])])


def _cell_loss(p: _Pairs, pred) -> float:
    """The absolute log error of each (network, batch)'s sum over the group's layers, each cell
    weighted by the square root of its measured time per image: a network's latency is what is
    predicted, and one layer's noise should not decide a coefficient."""
    n = int(p.cell.max()) + 1
    meas, got, per_img = np.zeros(n), np.zeros(n), np.zeros(n)
    np.add.at(meas, p.cell, p.tb)
    np.add.at(got, p.cell, pred)
    np.add.at(per_img, p.cell, p.tb / p.b)
    return float(np.sum(np.sqrt(per_img) * np.abs(np.log(got / meas))))


def _layer_loss(p: _Pairs, pred) -> float:
    """The absolute log error of every layer, weighted by its measured time per image."""
    return float(np.sum(p.tb / p.b * np.abs(np.log(pred / p.tb))))


# The batch fit's objective. "layer" is the default, chosen against the evidence of the
# calibration set alone and so on the zoo (the validation set): "network" (``_cell_loss``) fitted
# the calibration networks better in leave-one-network-out cross-validation (within ±15%: 71% and
# 73% against 58% and 62% on two measurements, load 2-5), but the profiles it gave priced the zoo's
# timings of experiments/batch_threads.json worse (63% within ±15%, against 78% and 69% for two
# "layer" fits; 68% without latency.scaling). Re-decide on a quiet machine (experiments/batch_nodes.py).
OBJECTIVES = {"layer": _layer_loss, "network": _cell_loss}
DEFAULT_OBJECTIVE = "layer"

PER_CALL_GRID_MS = (0.0, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.024, 0.032)
RATE_GRID = tuple(np.round(np.geomspace(0.01, 1.0, 25), 4))
# The spill forms the batch fit may choose (costmodel/_scaling.py). "both": each group the relative
# or the per-MB form, whichever fits its samples better. "relative" stays the default: on the
# calibration set the two tie (leave one network out, within ±15%: 60% and 75% for "both", 67%
# and 77% for "relative", layer and network objectives, 12:28 samples), and every fit with "both"
# (five: two sample sets, cache 0.5-4 MB) chose the per-MB form for every group and priced the
# zoo's batch timings worse (83-89% within ±15% against 88-91% relative, both before the arith group;
# experiments/batch_threads.json re-predicted).
SPILL_FORMS = ("relative", "both")
DEFAULT_SPILL_FORMS = "relative"


def _spill_forms(p: _Pairs, cache_mb: float, forms: str):
    """``(spill_coef, spill_ms_per_mb, relative factor, added ms)`` of each spill tried: the
    relative form (a share of the one-image time) and, with ``forms`` "both", the per-MB form
    (costmodel/_scaling.py); one of the two at a time, so that they do not trade off noise."""
    out = [(sc, 0.0, spill_ratio(sc, cache_mb, p.b, p.mb), 0.0) for sc in SPILL_GRID]
    if forms == "both":
        extra = spill_bytes_mb(cache_mb, p.b, p.mb)
        out += [(0.0, float(sa), 1.0, sa * extra) for sa in SPILL_MS_GRID]
    return out


def _batch_fit(p: _Pairs, cache_mb: float, free_rate: bool, objective: str = DEFAULT_OBJECTIVE,
               forms: str = DEFAULT_SPILL_FORMS):
    """``(loss, per_call_ms, rate, spill_coef, spill_ms_per_mb)`` by a grid search on
    ``OBJECTIVES[objective]``; the rate is searched where ``free_rate`` (fc: its weights stream
    once per batch) and 1 elsewhere (every further image repeats the work: what changes is the
    per-call part and the cache, and a free rate would soak up the noise of a shared machine)."""
    best = None
    spills = _spill_forms(p, cache_mb, forms)
    for c in PER_CALL_GRID_MS:
        rest = np.maximum(p.t1 - c, 0.0)
        for sc, sa, ratio, added in spills:
            grow = (p.b - 1) * rest * ratio
            for rate in (RATE_GRID if free_rate else (1.0,)):
                loss = OBJECTIVES[objective](p, p.t1 + rate * grow + added)
                if best is None or loss < best[0]:
                    best = (loss, float(c), float(rate), float(sc), float(sa))
    return best


def _thread_fit(p: _Pairs):
    """``(loss, par_call_ms, par_share)``: N-thread time against one-thread time at the same batch."""
    best = None
    w = p.tb / p.b
    for c in PER_CALL_GRID_MS:
        share = float(np.clip(_wmedian((p.tb - c) / p.t1, w), 0.05, 1.0))
        loss = _cell_loss(p, np.minimum(p.t1, c + share * p.t1))
        if best is None or loss < best[0]:
            best = (loss, float(c), share)
    return best


class ScalingFit(NamedTuple):
    model: ScalingModel
    n_samples: dict   # group -> (batch pairs, thread pairs)


def fit_scaling(samples, threads: int = 1, batch_threads: int = 1, objective: str = DEFAULT_OBJECTIVE,
                forms: str = DEFAULT_SPILL_FORMS) -> ScalingFit:
    """The ``ScalingModel`` of the samples: batch coefficients from the samples at
    ``batch_threads`` threads (one cache size for all groups, the best total loss), thread
    coefficients (against one thread) when ``threads`` > 1."""
    samples = _merged_where_few(samples, batch_threads)
    pairs = {g: _pairs(samples, g, batch_threads, batch_threads, False) for g in GROUPS}
    usable = {g: p for g, p in pairs.items() if len(p.t1) >= 3}
    if not usable:
        raise MeasurementError("scaling: too few per-node samples at batch 1 and a larger batch to fit the batch model")
    best = None
    for cache in CACHE_GRID_MB:
        fits = {g: _batch_fit(p, cache, g == "fc", objective, forms) for g, p in usable.items()}
        loss = sum(f[0] for f in fits.values() if f is not None)
        if best is None or loss < best[0]:
            best = (loss, cache, fits)
    _, cache, fits = best
    groups = {g: GroupScale(f[1], f[2], f[3], spill_ms_per_mb=f[4]) for g, f in fits.items() if f is not None}
    counts = {g: [len(p.t1), 0] for g, p in usable.items()}
    if threads > 1:
        for g in list(groups):
            tp = _one_image(_pairs(samples, g, 1, threads, True))
            if len(tp.t1) >= 3:
                _, c, share = _thread_fit(tp)
                # a group without thread samples keeps par_share = par_image_share = 1: no gain
                groups[g] = groups[g]._replace(par_call_ms=c, par_share=share, par_image_share=1.0 / threads)
                counts[g][1] = len(tp.t1)
        groups = _threads_of_fallback(groups, {g for g, v in counts.items() if v[1]})
    return ScalingFit(ScalingModel(groups, cache, threads), {g: tuple(v) for g, v in counts.items()})


def _merged_where_few(samples, batch_threads: int) -> list:
    """``samples`` with a group too small to fit (``arith`` when a deadline cut the LRN network)
    counted in the group it falls back to: the profile then has no coefficients of its own for
    it and prices it with that group's, fitted on both (the rule before the split), rather than
    with coefficients fitted without it."""
    out = list(samples)
    for g, f in FALLBACK.items():
        if len(_pairs(out, g, batch_threads, batch_threads, False).t1) < 3:
            out = [s._replace(group=f) if s.group == g else s for s in out]
    return out


def _threads_of_fallback(groups: dict, fitted: set) -> dict:
    """``groups`` where a group without thread samples of its own (LRN: few layers) takes the
    thread coefficients of the group it falls back to (``_scaling.FALLBACK``), as it did when
    it was part of it."""
    out = dict(groups)
    for g, f in FALLBACK.items():
        if g in out and g not in fitted and f in fitted:
            src = out[f]
            out[g] = out[g]._replace(par_call_ms=src.par_call_ms, par_share=src.par_share,
                                     par_image_share=src.par_image_share)
    return out


def _one_image(p: _Pairs) -> _Pairs:
    """The batch-1 pairs of ``p`` where there are enough: ``par_share`` is a one-image kernel's
    share (the further images of a batch split evenly: ``par_image_share`` = 1/N)."""
    one = p.b == 1
    if one.sum() < 3:
        return p
    sub = _Pairs(*[v[one] for v in p])
    return sub._replace(cell=np.unique(sub.cell, return_inverse=True)[1])  # cells numbered 0..n-1 again


def profile_samples(latency, tables, threads: int) -> list:
    """Samples priced by a profile's own kernels at batch 1 (``threads``: the thread count the
    profile was measured at): set beside a one-thread profile's, they fit the thread coefficients
    from two profiles measured on the same machine (``thread_scaling_from_profiles``)."""
    out = []
    for label, table in tables:
        st = latency.slot_times(table, 1)[:, 0]
        r = table.rows
        for s, kind in enumerate(table.ops):
            fam = latency.family(kind)[0]
            if fam == "free" or not r["mask"][s, 0] or st[s] <= 0:
                continue
            mb = float(r["in_elems"][s, 0] + r["out_elems"][s, 0]) * 4 / BYTES_PER_MB
            out.append(ScaleSample(group_of(kind, fam), (label, s), 1, threads, float(st[s]), mb))
    return out


def thread_scaling_from_profiles(batch_model: ScalingModel, lat1, latn, tables, threads: int) -> ScalingModel:
    """``batch_model`` with thread coefficients fitted from the per-layer prices of a one-thread
    and an N-thread profile of the same machine over ``tables`` (``(label, table)`` pairs of the
    calibration networks): what the N-thread kernel grid measured, without its end-to-end fit."""
    samples = profile_samples(lat1, tables, 1) + profile_samples(latn, tables, threads)
    groups, fitted = dict(batch_model.groups), set()
    for g in list(groups):
        tp = _pairs(samples, g, 1, threads, True)
        if len(tp.t1) >= 3:
            _, c, share = _thread_fit(tp)
            groups[g] = groups[g]._replace(par_call_ms=c, par_share=share, par_image_share=1.0 / threads)
            fitted.add(g)
    return ScalingModel(_threads_of_fallback(groups, fitted), batch_model.cache_mb, threads)


def add_scaling(profile, settings, budget_s: float, progress=None, base=None, threads_from=None):
    """``(profile, report)``: ``profile`` with a fitted ``latency.scaling``, measured for at most
    about ``budget_s`` seconds on the calibration set.

    Without ``base``: the profile's kernels were measured at ``settings.threads``; the batch
    coefficients are fitted at that thread count (no thread part). With ``base`` (a one-thread
    profile of this machine, ``profile --from-profile``): the new profile is ``base``'s kernels
    plus batch coefficients at one thread and, for ``settings.threads`` > 1, thread coefficients,
    so an N-thread profile costs a minute rather than a kernel grid. ``threads_from`` (an N-thread
    kernel profile of the same machine, ``--threads-from``): the thread coefficients come from its
    per-layer prices beside ``base``'s (nothing is timed at N threads; ``base``'s batch
    coefficients are kept when it has them)."""
    t0 = time.monotonic()
    n = int(settings.threads)
    src = base if base is not None else profile
    report = {"batches": list(FIT_BATCHES), "networks": "augur_nas/data/calibration_set.yaml"}
    if threads_from is not None and src.latency.scaling is not None:
        batch_model, counts = src.latency.scaling, {}
    else:
        threads = (1, n) if base is not None and n > 1 and threads_from is None else ((1,) if base is not None else (n,))
        # two visits when the budget allows (the smaller time counts); the deadline cuts the second
        samples = measure_scaling(src.latency, threads=threads, visits=2, deadline=t0 + budget_s, progress=progress,
                                  settings=settings)
        fit = fit_scaling(samples, n if len(threads) > 1 else 1, threads[0])
        batch_model, counts = fit.model, fit.n_samples
        report["threads_measured"] = list(threads)
    if threads_from is not None:
        batch_model = thread_scaling_from_profiles(batch_model, src.latency, threads_from.latency, _thread_tables(), n)
        report["threads_from"] = threads_from.name
    out = type(src).from_dict(src.to_dict(), src.source)
    if base is not None:
        out = _renamed(out, profile, settings)
    out.latency.scaling = batch_model
    report.update(elapsed_s=round(time.monotonic() - t0, 1), samples={g: list(v) for g, v in counts.items()})
    out.fit = dict(out.fit, scaling=report)
    if base is not None and n != int(base.threads or 1):
        out.fit = dict(out.fit, anchors=_anchors_at(base, settings))
    return out, report


ANCHOR_TIME_S = 10.0  # seconds to time the speed anchors at a new thread count


def _anchors_at(base, settings) -> dict:
    """``base``'s speed-anchor record with the anchors timed again at ``settings.threads``: a
    measurement with the new profile is brought to the anchors' speed (``measure``,
    ``validate``), and anchors timed at one thread would read two threads as a machine running
    twice as fast (every two-thread latency doubled)."""
    anchors = dict(base.fit.get("anchors") or {})
    _, items = profile_anchors(base)
    if items:
        anchors["latency_ms"] = {k: round(v, 4) for k, v in anchor_times(items, settings, ANCHOR_TIME_S).items()}
        anchors["threads"] = int(settings.threads)
    return anchors


THREAD_TABLE_SEED = 5


def _thread_tables() -> list:
    """The layer tables the thread coefficients are priced on: the calibration set and 30 random
    calibration networks (``_probes.calibration_networks``; never the zoo)."""
    tabs = [(cn.name, _one(cn.model)) for cn in calibration_set()]
    for label, model, _ in calibration_networks(np.random.default_rng(THREAD_TABLE_SEED), 30, 1.5e9):
        tabs.append((label, _one(model)))
    return tabs


def _renamed(out, profile, settings):
    """``out`` (a copy of the base) under ``profile``'s name and description, run with ``settings``."""
    base_name = out.name
    out.name = profile.name
    out.description = profile.description
    if int(settings.threads) == int(out.threads or 1):
        return out
    out.runtime_settings = dict(out.runtime_settings, threads=int(settings.threads))
    if out.fingerprint:
        out.fingerprint = dict(out.fingerprint, threads=int(settings.threads))
    out.provenance = dict(out.provenance, note=f"the one-thread kernels of `{base_name}` with batch and "
                          f"{settings.threads}-thread scaling (latency.scaling) fitted on the calibration set")
    return out
