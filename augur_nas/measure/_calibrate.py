"""``augur-nas calibrate``: adapt a profile to another machine from end-to-end timings.

A profile's layer sum is linear in its coefficients, so a network's predicted latency splits
exactly into per-family contributions: the work (multiply-adds, bytes moved) of each GEMM model
(``conv``, ``conv_1x1``, ``conv_narrow`` stems, ``dwconv``, ``fc``), of the pools, of the other
memory-bound ops and of the layout conversions, and ``call``: every per-call cost (the GEMM
models' constant terms, the ops' and conversions' ``overhead_ms``, the per-layer/per-call
overheads). On another processor each family runs at its own speed ratio (AVX-512 speeds up
dense convolutions more than a large fc that streams its weights from memory; a faster clock and
dispatch shrink the per-call costs far more than the work), so the calibration fits one factor
per family:

    measured_i  ~  sum_f  c_f * T_if          (T_if: family f's contribution to network i)

by least squares on log ratios (predicted / measured), with a ridge prior pulling every
``log(c_f / s)`` towards 0, ``s`` the common speed ratio (the median of measured / predicted):
``lam`` pseudo-observations per family, so a family few networks exercise stays near ``s`` instead
of fitting noise, and, the prior being on log ratios, cannot slide to nothing either. ``lam`` is chosen by leave-one-out over the calibration networks (a large ``lam`` is one
global factor: chosen when the families do not help). The factors are multiplied into the
profile's coefficients (its GEMM models, op models, conversion and overheads), so the corrected
profile prices networks exactly as before, on every path of the oracle, and records what was done
in ``calibration`` and ``provenance``.

The end-to-end timings come from the fixed calibration set timed here (``calibrate_local``, the
profile's speed anchors timed with it and recorded as the new profile's anchors) or from a CSV
measured on another device (``calibrate_from_measurements``).
"""

from __future__ import annotations

import copy
import datetime
import tempfile
import time
from dataclasses import dataclass, field

from typing import NamedTuple

import numpy as np

from .._errors import MeasurementError, ProfileError
from ..costmodel import LatencyModel, latency_ms
from ..costmodel._latency import scaled_fused_pass
from ..costmodel._gemm import FEATURES
from ..fingerprint import machine_fingerprint
from ..lowering import lower
from ..profile import Profile, load_profile
from ._calibset import CalibrationInputError, calibration_set, read_measurements
from ._devcheck import no_fingerprint_message
from ._ortrules import OrtRules, detect_rules, with_rules
from ._profiling import anchor_networks
from ._protocol import time_runners
from ._runners import make_runner, prepare
from ._settings import RuntimeSettings

LAMBDAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e6)  # ridge strengths tried, in pseudo-observations per family
CLIP = 10.0  # a family's factor stays within [s / CLIP, s * CLIP]
GN_ITERATIONS = 100  # Gauss-Newton steps of the log fit (within 1e-4 of its limit after 40 on the calibration set)
MIN_NETWORKS = 4


@dataclass
class Fit:
    """Per-family factors and how well they predict networks they were not fitted on."""

    scales: dict  # family -> factor
    global_scale: float
    lam: float
    loo_pred: np.ndarray  # leave-one-out predictions, ms
    measured: np.ndarray
    families: list
    contributions: dict = field(default_factory=dict)  # family -> share of the base prediction (median)


# --------------------------------------------------------------------------------------------- families


POOL_KINDS = ("maxpool", "avgpool", "globalpool")


def families(latency) -> list:
    """The correctable families of a latency model: the work of its GEMM models (``conv``,
    ``conv_1x1``, ``conv_narrow``, ``dwconv``, ``fc``: each a kernel family of the runtime), of the
    pools, of the other memory-bound ops and of the layout conversions, and ``call``: every per-call
    cost (each GEMM model's constant term, each op's and conversion's ``overhead_ms``, the per-layer
    and per-call overheads). Per-call costs get one factor of their own because they move with the
    processor's clock and the runtime's dispatch, not with its vector width: from an AVX2 EPYC to an
    AVX-512 Xeon the multiply-adds sped up 3.5x and the per-call parts far more, which one factor
    per family shared between its two parts cannot follow (tiny NB201 cells came out +50% slow).
    (Finer families, a factor per GEMM term or per memory-bound kind, fitted the 24 calibration
    networks better and predicted unseen networks worse: too many factors for 24 timings.)"""
    out = list(dict.fromkeys(gemm_family(latency, name) for name in latency.gemm)) + ["pool", "memory"]
    if latency.layout is not None:
        out.append("layout")
    out.append(CALL)
    return out


CALL = "call"  # the family of every per-call cost
CALL_FEATURE = "1"  # a GEMM model's per-call term


def gemm_family(latency, name: str) -> str:
    """The family of a GEMM model: its own name, except a kind's stride-2 variant (``strided``),
    which shares its base model's factor. The variant is fitted on this machine's in-place samples
    like its base, and a correction moves both alike; a factor of its own would be one more unknown
    for the ~24 calibration timings, which exercise strided depthwise layers in a few networks only."""
    for fam in latency.kinds.values():
        if isinstance(fam, dict) and fam.get("strided") == name and "gemm" in fam:
            return fam["gemm"]
        if isinstance(fam, dict) and fam.get("plain_strided") == name and "plain" in fam:
            return fam["plain"]
    return name


def family_of_kind(kind: str) -> str:
    """The family of a memory-bound op kind."""
    return "pool" if kind in POOL_KINDS else "memory"


def scaled_latency(latency, scales: dict):
    """A copy of a ``LatencyModel`` with each family's coefficients multiplied by its factor
    (families not in ``scales`` keep factor 1). ``call`` scales every per-call term; without a
    ``call`` factor (profiles calibrated before it existed, which ``uncorrected`` must still undo)
    a per-call term follows its family as it did then. ``overhead`` (those profiles' family of the
    per-layer and per-call overheads) multiplies them on top. Built through the model's plain data."""
    d = copy.deepcopy(latency.to_dict())
    f = lambda fam: float(scales.get(fam, 1.0))  # noqa: E731
    call = lambda fam: float(scales.get(CALL, f(fam)))  # noqa: E731
    for name, g in d["gemm"].items():
        fam = gemm_family(latency, name)
        per_term = np.array([call(fam) if t == CALL_FEATURE else f(fam) for t in g.get("features", FEATURES)])
        g["coef"] = (np.asarray(g["coef"], dtype=np.float64) * per_term).tolist()
    ops = d["ops"]
    ops["default"] = _scale_entry(ops["default"], f("memory"), call("memory"))
    for kind, e in (ops.get("kinds") or {}).items():
        fam = family_of_kind(kind)
        ops["kinds"][kind] = _scale_entry(e, f(fam), call(fam))
    if "layout" in d:
        d["layout"]["reorder"] = _scale_entry(d["layout"]["reorder"], f("layout"), call("layout"))
    # a fused activation's pass streams its output once, as a memory-bound op does: its family
    if d.get("fused_pass"):
        d["fused_pass"] = scaled_fused_pass(d["fused_pass"], f("memory"))
    for k in ("layer_overhead_ms", "network_overhead_ms"):
        if k in d:
            d[k] = float(d[k]) * f(CALL) * f("overhead")
    return LatencyModel.from_dict(d)


def _scale_entry(e, per_mb, call):
    """An op or conversion entry with its work scaled by ``per_mb`` and its per-call parts by
    ``call``: the overhead and the per-plane cost (a loop step per channel plane, which follows the
    clock and the dispatch as a call does, not the vector width); a cache knee is a shape, kept."""
    return {k: (v if k == "spill" else float(v) * (call if k in CALL_KEYS else per_mb)) for k, v in e.items()}


CALL_KEYS = ("overhead_ms", "per_span_ms")


def contributions(latency, tables_batches) -> np.ndarray:
    """``[N, F]``: each family's share (ms) of each network's layer sum (``(table, batch)`` pairs)."""
    fams = families(latency)
    out = np.zeros((len(tables_batches), len(fams)))
    for j, fam in enumerate(fams):
        one = scaled_latency(latency, {f: (1.0 if f == fam else 0.0) for f in fams})
        for i, (table, batch) in enumerate(tables_batches):
            out[i, j] = float(latency_ms(table, one, batch=batch)[0][0])
    return out


# --------------------------------------------------------------------------------------------- fit


def _solve(T, y, lam, s):
    """The factors of the active families: least squares on log ratios (log predicted - log
    measured) with a ridge prior on each factor's log ratio to the common speed ratio ``s``.

    A factor is a speed ratio, so the prior is symmetric in log: twice as fast is as unlikely as
    twice as slow. A prior on the factor itself (the linear NNLS ridge this replaces) charges
    ``lam * (c - s)^2``: pulling a family to nothing costs at most ``lam * s^2``, so a weakly
    exercised family such as the per-call costs slid to the clip bound (``call`` 0.03 = s / 10 in
    the from-measurements fit of the Xeon run) whenever a few networks leaned that way. Each
    family's prior weighs ``lam`` pseudo-networks of its mean squared share of the base
    prediction, as the linear ridge weighed its mean squared relative contribution. Solved by
    damped Gauss-Newton in ``u = log(c / s)``, which keeps every factor positive."""
    share = T / np.maximum(T.sum(axis=1, keepdims=True), 1e-12)
    w = lam * np.mean(share ** 2, axis=0)
    u = np.zeros(T.shape[1])
    bound = np.log(CLIP)
    cost = lambda v: float(np.sum(np.log(T @ (s * np.exp(v)) / y) ** 2) + np.sum(w * v * v))  # noqa: E731
    for _ in range(GN_ITERATIONS):
        c = s * np.exp(u)
        pred = T @ c
        J = T * c / pred[:, None]  # d log pred_i / d u_f
        r = np.log(pred / y)
        step = np.linalg.solve(J.T @ J + np.diag(w) + 1e-12 * np.eye(len(u)), J.T @ r + w * u)
        t, now = 1.0, cost(u)
        while t > 1e-6 and cost(np.clip(u - t * step, -bound, bound)) > now:
            t /= 2  # damped: a full step may overshoot where the log is strongly curved
        u_next = np.clip(u - t * step, -bound, bound)
        done = np.max(np.abs(u_next - u)) < 1e-10
        u = u_next
        if done:
            break
    return s * np.exp(u)


def _global(T, y):
    return float(np.exp(np.median(np.log(y / np.maximum(T.sum(axis=1), 1e-12)))))


def _loo(T, y, lam):
    pred = np.zeros(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        s = _global(T[keep], y[keep])
        pred[i] = float(T[i] @ _solve(T[keep], y[keep], lam, s))
    return pred


def fit_factors(T, y, fams) -> Fit:
    """Per-family factors from contributions ``T`` ``[N, F]`` and measured latencies ``y`` ``[N]``."""
    T = np.asarray(T, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    active = T.sum(axis=0) > 1e-9
    Ta = T[:, active]
    best = None
    for lam in LAMBDAS:
        pred = _loo(Ta, y, lam)
        score = float(np.mean(np.log(pred / y) ** 2))
        if best is None or score < best[0] - 1e-12:
            best = (score, lam, pred)
    _, lam, loo_pred = best
    s = _global(Ta, y)
    x = _solve(Ta, y, lam, s)
    scales, k = {}, 0
    for j, fam in enumerate(fams):
        if active[j]:
            scales[fam] = float(x[k])
            k += 1
        else:
            scales[fam] = s  # not exercised by any network: the common ratio
    share = T / np.maximum(T.sum(axis=1, keepdims=True), 1e-12)
    contrib = {fam: round(float(np.median(share[:, j])), 4) for j, fam in enumerate(fams)}
    return Fit(scales, s, float(lam), loo_pred, y, list(fams), contrib)


def accuracy_rows(names, measured, predicted) -> dict:
    err = np.asarray(predicted) / np.asarray(measured) - 1
    return {"networks": len(err), "within_10pct": round(float(np.mean(np.abs(err) <= 0.10)), 4),
            "within_20pct": round(float(np.mean(np.abs(err) <= 0.20)), 4),
            "median_abs_error_pct": round(float(np.median(np.abs(err)) * 100), 2),
            "errors_pct": {n: round(float(e) * 100, 2) for n, e in zip(names, err)}}


# --------------------------------------------------------------------------------------------- profile


def require_fingerprint(base):
    if not base.fingerprint:
        raise CalibrationInputError(no_fingerprint_message(base) + "; calibrate adapts a measured profile")


def _tables(models_batches):
    return [(lower(m, np.zeros((1, m.n_genes), dtype=np.int64)), int(b)) for m, b in models_batches]


def corrected_profile(base, fit: Fit, name: str, fingerprint: dict, what: dict, runtime_settings: dict,
                      anchors: dict | None):
    """The base profile with the family factors multiplied into its coefficients."""
    latency = scaled_latency(base.latency, fit.scales)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    calibration = {
        "base": base.name, "base_fingerprint": dict(base.fingerprint or {}), "date": date,
        "families": {f: round(v, 5) for f, v in fit.scales.items()},
        "global_scale": round(fit.global_scale, 5), "ridge_pseudo_observations": fit.lam,
        "median_share_of_base_prediction": fit.contributions,
        "model": "measured ~ sum over families of factor * the family's part of the base layer sum (the per-call "
                 "costs of every family are the family `call`); least squares on log ratios, ridge on each factor's "
                 "log ratio to the global scale, strength chosen by leave-one-out",
        **what,
    }
    if base.calibration:
        calibration["previous"] = {k: base.calibration[k] for k in ("base", "families", "date") if k in base.calibration}
    fit_d = {"anchors": {"seed": base.fit.get("anchors", {}).get("seed"),
                         "latency_ms": {k: round(v, 4) for k, v in anchors.items()},
                         "note": "timed with the calibration set by augur-nas calibrate"}} if anchors else {}
    note = (f"per-family corrections of `{base.name}` fitted by augur-nas calibrate from {what.get('measurements')}"
            + ("; the base profile's residual was dropped (it was trained on the base machine)" if base.residual else ""))
    hw = dict(base.hardware)
    if fingerprint.get("origin") == "calibrated":
        where = fingerprint.get("cpu_model", hw["processor"])
        if fingerprint.get("gpu_model") not in (None, "none"):  # a CUDA profile describes the GPU, launched from the host
            where = gpu_processor(fingerprint["gpu_model"], where)
        hw.update({"processor": where, "cores": int(fingerprint.get("physical_cores") or hw["cores"])})
    return Profile(name=name, hardware=hw, runtime=base.runtime,
                   provenance={"method": f"calibrated from the profile `{base.name}` by augur-nas calibrate",
                               "source": "augur-nas calibrate", "date": date, "note": note},
                   latency=latency, memory=copy.deepcopy(base.memory),
                   description=f"`{base.name}` calibrated: {base.description}".strip(), fit=fit_d,
                   runtime_settings=runtime_settings, residual=None, fingerprint=fingerprint,
                   calibration=calibration)


def calibrate_from_measurements(base, measurements, name: str | None = None, source: str = "measurements",
                                graph_rules=None):
    """``(profile, report)`` from ``Measurement`` rows (``_calibset.read_measurements``).

    ``graph_rules`` (a profile, name or path) prices the base with that profile's graph rules
    before the factors are fitted (``rules_from_profile``): the device's own rules cannot be read
    from a CSV, and a base of another processor kind blocks, pads and fuses as its own processor
    did (on the Xeon of issue 11, the AVX2 base fitted to all 24 calibration timings put 68-71 % of
    the zoo within +-10 % with its own rules and 81-84 % with the AVX-512 profile's:
    experiments/from_measurements_stability.md)."""
    require_fingerprint(base)
    rules_note = None
    if graph_rules is not None:
        base, rules_note = _rules_from(base, graph_rules, source)
    if len(measurements) < MIN_NETWORKS:
        raise CalibrationInputError(f"{source}: {len(measurements)} measurement(s); calibrate needs at least "
                                    f"{MIN_NETWORKS} networks (the calibration set has 24) ({source})")
    threads = {m.threads for m in measurements if m.threads is not None}
    if len(threads) > 1:
        raise CalibrationInputError(f"{source}: the rows give different thread counts ({sorted(threads)}); a profile "
                                    f"describes one thread count, calibrate one per run ({source})")
    t0 = time.monotonic()
    T = contributions(base.latency, _tables([(m.model, m.batch) for m in measurements]))
    y = np.array([m.latency_ms for m in measurements])
    fams = families(base.latency)
    fit = fit_factors(T, y, fams)
    names = [m.name for m in measurements]
    base_pred = T.sum(axis=1)
    report = _report(fit, names, base_pred, T)
    settings = dict(base.runtime_settings)
    if threads:
        settings["threads"] = threads.pop()
    fp = {"origin": "external", "note": f"calibrated from latencies measured on another device ({source})"}
    if settings.get("backend"):
        fp["backend"] = str(settings["backend"])
    if settings.get("threads"):
        fp["threads"] = int(settings["threads"])
    what = {"measurements": f"end-to-end latencies of {len(y)} networks read from {source}",
            "networks": len(y), "leave_one_out": report["leave_one_out"]}
    if rules_note:
        what["graph_rules"] = report["graph_rules"] = rules_note
    prof = corrected_profile(base, fit, name or f"{base.name}-calibrated", fp, what, settings, None)
    report["elapsed_s"] = round(time.monotonic() - t0, 2)
    return prof, report


def _report(fit: Fit, names, base_pred, T) -> dict:
    fitted = T @ np.array([fit.scales[f] for f in fit.families])
    glob = base_pred * fit.global_scale
    return {"families": fit.scales, "global_scale": fit.global_scale, "ridge": fit.lam,
            "base": accuracy_rows(names, fit.measured, base_pred),
            "global_scale_in_sample": accuracy_rows(names, fit.measured, glob),
            "in_sample": accuracy_rows(names, fit.measured, fitted),
            "leave_one_out": accuracy_rows(names, fit.measured, fit.loo_pred)}


# --------------------------------------------------------------------------------------------- local


def time_calibration_set(base, settings, budget_s: float, progress=None, seed: int = 0):
    """End-to-end latencies (median ms, noise) of the calibration set and the base's speed anchors,
    timed interleaved on this machine within about ``budget_s`` seconds."""
    say = progress or (lambda m: None)
    t0 = time.monotonic()
    nets = calibration_set()
    anchors = [(lab, m) for lab, m, _ in anchor_networks()]
    with tempfile.TemporaryDirectory(prefix="augur-calibrate-") as d:
        say(f"exporting {len(nets)} calibration networks and {len(anchors)} speed anchors")
        prepared = prepare([(n.name, n.model) for n in nets] + anchors, d)
        runners = {}
        try:
            for n in prepared:
                runners[n.label] = make_runner(n, settings)
            left = budget_s - (time.monotonic() - t0)
            say(f"timing {len(runners)} networks, interleaved rounds ({left:.0f} s left of {budget_s:.0f} s)")
            timing = time_runners(runners, rounds=20, round_s=0.03, warmup_s=0.05, seed=seed,
                                  budget_s=max(2.0, 0.75 * left - 0.1 * len(runners)),
                                  max_wait_s=min(20.0, 0.1 * budget_s), quiet=0.3,
                                  progress=lambda r, tot, _: say(f"round {r}/{tot}") if r % 4 == 0 or r == tot else None)
        finally:
            for r in runners.values():
                r.close()
    anchor_labels = {lab for lab, _ in anchors}
    measured = {lab: t for lab, t in timing.items() if lab not in anchor_labels}
    anchor_ms = {lab: t.median_ms for lab, t in timing.items() if lab in anchor_labels}
    return nets, measured, anchor_ms


def calibrate_local(base, settings, budget_s: float = 90.0, name: str | None = None, progress=None, seed: int = 0):
    """``(profile, report)``: the calibration set timed on this machine, the factors fitted."""
    require_fingerprint(base)
    if settings.backend not in ("onnxruntime", "torch"):
        raise MeasurementError(f"the profile `{base.name}` was measured with the {settings.backend} backend, which "
                               f"does not run networks; calibrate profiles of onnxruntime or torch")
    t0 = time.monotonic()
    base, rules_note = _this_machines_rules(base, settings)
    names, measured, anchor_ms, y, T, fit = _timed_fit(base, settings, budget_s, progress, seed)
    report = _report(fit, names, T.sum(axis=1), T)
    report["noise_pct"] = {n: round(measured[n].noise * 100, 2) for n in names}
    busy = busy_warning(float(np.median([measured[n].noise for n in names])))
    if busy:
        report["warnings"] = [busy]
    if rules_note:
        report["graph_rules"] = rules_note
    fp = dict(machine_fingerprint(settings), origin="calibrated")
    what = {"measurements": f"the calibration set ({len(names)} networks) timed on this machine "
                            f"({settings.describe()})",
            "networks": len(names), "leave_one_out": report["leave_one_out"],
            "noise_median_pct": round(float(np.median([measured[n].noise for n in names])) * 100, 2),
            "measured_ms": {n: round(float(v), 4) for n, v in zip(names, y)}}
    if rules_note:
        what["graph_rules"] = rules_note
    if busy:
        what["warnings"] = [busy]
    prof = corrected_profile(base, fit, name or f"{base.name}-calibrated", fp, what, settings.to_dict(), anchor_ms)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    prof.calibration["elapsed_s"] = report["elapsed_s"]
    return prof, report


BUSY_NOISE = 0.02  # median split-half noise above which the timings are not the machine's own speed


def busy_warning(noise_median: float) -> str | None:
    """A warning when the calibration timings were noisy: on an idle core the median split-half
    noise of the set is 0.2-0.5%; with other processes on the core (8% measured with a load of 5 on
    2 cores) the small networks run inside whole time slices and the large ones across several, so
    the family ratios are distorted (the global factor came out 2.8x the idle one)."""
    if noise_median <= BUSY_NOISE:
        return None
    return (f"the calibration timings were noisy (median split-half noise {100 * noise_median:.1f}%, idle: under "
            f"{100 * BUSY_NOISE:.0f}%): other processes share this core, so the factors describe a busy machine; "
            f"calibrate again when the machine is idle")


GRAPH_RULES_NEED_MEASUREMENTS = ("--graph-rules goes with --from-measurements: calibrating on this machine reads its "
                                 "graph rules from ONNX Runtime itself; drop --graph-rules or give the CSV")


def rules_from_profile(profile) -> OrtRules:
    """The graph rules a profile prices with (its layout without the conversion cost, the
    activations fused into a convolution): what ``detect_rules`` read on its machine. The cost
    shapes the layout carries (``reorder``, a cache knee ``spill``) and ``pad_channels`` (how its
    GEMM models were fitted) are not rules of the runtime and stay with the profile they describe."""
    d = profile.latency.to_dict()
    if "layout" not in d:
        raise CalibrationInputError(f"the profile `{profile.name}` has no graph rules (no `latency.layout`: it was "
                                    f"not measured with ONNX Runtime's blocked layout); give --graph-rules a profile "
                                    f"of ONNX Runtime ({profile.name})")
    layout = {k: v for k, v in d["layout"].items() if k not in ("reorder", "spill", "pad_channels")}
    acts = next((c.get("act", []) for c in d.get("fuse") or [] if "conv" in c.get("into", [])), [])
    return OrtRules(layout, list(acts), 0)


def _rules_from(base, rules_profile, source):
    """``(base priced with the rules of rules_profile, note)``."""
    try:
        rp = load_profile(rules_profile)
    except ProfileError as exc:
        raise CalibrationInputError(f"--graph-rules: {exc}") from None
    if base.latency.layout is None:
        raise CalibrationInputError(f"{source}: --graph-rules was given but the base profile `{base.name}` has no "
                                    f"blocked layout to replace (it was not measured with ONNX Runtime); calibrate "
                                    f"it without --graph-rules ({source})")
    rules = rules_from_profile(rp)
    out = copy.copy(base)
    out.latency = with_rules(base.latency, rules)
    return out, {"layout": rules.layout, "fused_activations": rules.fused_acts, "from_profile": rp.name,
                 "note": f"the layout and fusion rules of the profile `{rp.name}` (measured on "
                         f"{(rp.fingerprint or {}).get('cpu_model', 'its machine')})"}


def _this_machines_rules(base, settings):
    """``(profile, note)``: an ONNX Runtime profile of another processor takes this machine's
    layout and fusion rules (read from ONNX Runtime's optimised graphs in under a second: blocks
    of 16 channels with AVX-512 where the base has 8, other fused activations) before the
    factors are fitted; other profiles, and a base that already has these rules, stay as they are."""
    if settings.backend != "onnxruntime" or base.latency.layout is None:
        return base, None
    with tempfile.TemporaryDirectory(prefix="augur-rules-") as d:
        rules = detect_rules(settings, d)
    latency = with_rules(base.latency, rules)
    if latency.to_dict() == base.latency.to_dict():
        return base, None
    out = copy.copy(base)
    out.latency = latency
    return out, {"layout": rules.layout, "fused_activations": rules.fused_acts,
                 "note": "the layout and fusion rules were read from ONNX Runtime on this machine"}


class _TimedFit(NamedTuple):
    names: list  # the calibration networks that were timed
    measured: dict  # name -> Timing
    anchor_ms: dict  # the speed anchors timed with them
    y: np.ndarray  # measured latency (ms) of ``names``
    T: np.ndarray  # their per-family layer-sum contributions
    fit: object  # the fitted factors


def _timed_fit(profile, settings, budget_s, progress, seed) -> _TimedFit:
    """The calibration set timed here and the per-family factors of ``profile`` fitted to it
    (calibrate and profile's correction step share it)."""
    nets, measured, anchor_ms = time_calibration_set(profile, settings, budget_s, progress, seed)
    names = [n.name for n in nets if n.name in measured]
    models = {n.name: n.model for n in nets}
    y = np.array([measured[n].median_ms for n in names])
    T = contributions(profile.latency, _tables([(models[n], settings.batch) for n in names]))
    return _TimedFit(names, measured, anchor_ms, y, T, fit_factors(T, y, families(profile.latency)))


def calibrate(base, settings=None, budget_s: float = 90.0, measurements=None, name: str | None = None,
              progress=None, seed: int = 0, graph_rules=None):
    """Adapt ``base`` (a Profile, name or path): from ``measurements`` (a CSV path or ``Measurement``
    rows) when given, priced with the graph rules of the profile ``graph_rules`` when given, else by
    timing the calibration set here (which reads this machine's rules itself). Returns
    ``(profile, report)``."""
    base = load_profile(base)
    if measurements is not None:
        src = measurements if isinstance(measurements, str) else "measurements"
        rows = read_measurements(measurements) if isinstance(measurements, str) else list(measurements)
        return calibrate_from_measurements(base, rows, name, src, graph_rules)
    if graph_rules is not None:
        raise CalibrationInputError(GRAPH_RULES_NEED_MEASUREMENTS)
    settings = settings or RuntimeSettings.from_dict(base.runtime_settings)
    return calibrate_local(base, settings, budget_s, name, progress, seed)


MIN_T = 2.0  # paired t of the per-network improvement above which profile's correction is applied


def clearly_better(base_pred, loo_pred, y) -> dict:
    """Whether per-family factors predict the calibration networks they were not fitted on clearly
    better than the layer sum: the paired t statistic of the per-network drop in squared log error
    (layer sum minus leave-one-out) is at least ``MIN_T`` (about 97.5% one-sided with 24
    networks). A profile built on this machine prices its kernels from thousands of this
    machine's samples; ten factors fitted to 24 end-to-end timings replace that shape only when
    the gain is larger than its spread over the networks. (With the old rule, any drop in the mean,
    the Xeon profile of 13:12 took factors whose leave-one-out mean squared log error was 1% below
    the layer sum's, t = 0.05, and lost 3 points on the zoo and on the space samples.)"""
    d = np.log(np.asarray(base_pred) / y) ** 2 - np.log(np.asarray(loo_pred) / y) ** 2
    spread = float(np.std(d, ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    t = float(np.mean(d)) / spread if spread > 0 else (float("inf") if np.mean(d) > 0 else 0.0)
    msle = lambda p: round(float(np.mean(np.log(np.asarray(p) / y) ** 2)), 6)  # noqa: E731
    # plain floats: the record is written to the profile's YAML
    return {"applied": bool(t >= MIN_T), "paired_t": round(float(t), 3), "min_t": MIN_T,
            "msle_layer_sum": msle(base_pred), "msle_leave_one_out": msle(loo_pred),
            "rule": "applied when the paired t of the per-network drop in squared log error (layer sum minus "
                    "leave-one-out) is at least min_t"}


def correct_profile(profile, settings, budget_s: float = 70.0, progress=None, seed: int = 0):
    """``(profile, report)``: a profile just built on this machine with per-family corrections from
    the calibration set timed here (``augur-nas profile``'s last step). The corrections are kept
    only when they predict the calibration networks clearly better (leave-one-out, ``clearly_better``)
    than the profile as it is; then the speed anchors are re-recorded with the timings the factors
    were fitted to."""
    t0 = time.monotonic()
    names, measured, anchor_ms, y, T, fit = _timed_fit(profile, settings, budget_s, progress, seed)
    report = _report(fit, names, T.sum(axis=1), T)
    decision = clearly_better(T.sum(axis=1), fit.loo_pred, y)
    keep = decision["applied"]
    out = copy.copy(profile)
    out.fit = dict(profile.fit)
    said = (f"per-family correction from the calibration set {'applied' if keep else 'not applied'}: leave-one-out "
            f"against the layer sum, paired t {decision['paired_t']:g} (applied from {MIN_T:g}), see calibration.decision")
    note = (profile.provenance or {}).get("note")
    out.provenance = dict(profile.provenance or {}, note=f"{note}; {said}" if note else said)
    if keep:
        out.latency = scaled_latency(profile.latency, fit.scales)
        if anchor_ms:
            out.fit["anchors"] = dict(profile.fit.get("anchors") or {},
                                      latency_ms={k: round(v, 4) for k, v in anchor_ms.items()})
    out.calibration = {
        "method": "per-family corrections from the calibration set timed on this machine right after the kernels "
                  "(augur-nas profile's last step)",
        **correction_fields(fit, report, decision), "networks": len(names),
        "noise_median_pct": round(float(np.median([measured[n].noise for n in names])) * 100, 2),
        "measured_ms": {n: round(float(v), 4) for n, v in zip(names, y)},
        # the speed those timings were made at: a later refit of the kernels (experiments/refit_profile.py)
        # can apply factors fitted to them only at their own speed
        "anchors_ms": {k: round(v, 4) for k, v in (anchor_ms or {}).items()},
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    report["applied"] = bool(keep)
    report["decision"] = decision
    report["elapsed_s"] = out.calibration["elapsed_s"]
    return out, report


def correction_fields(fit: Fit, report: dict, decision: dict) -> dict:
    """The record of a correction step's decision (``calibration`` of a profile): whether the
    factors were applied and why, the factors applied (none when not) and fitted, and how the
    layer sum and the leave-one-out fit did on the calibration set."""
    keep = bool(decision["applied"])
    return {"applied": keep, "decision": decision,
            "families": {f: round(v, 5) for f, v in fit.scales.items()} if keep else {},
            "fitted_families": {f: round(v, 5) for f, v in fit.scales.items()},
            "global_scale": round(fit.global_scale, 5), "ridge_pseudo_observations": fit.lam,
            "layer_sum_before": {k: report["base"][k] for k in ("within_10pct", "median_abs_error_pct")},
            "leave_one_out": report["leave_one_out"]}


def uncorrected(profile):
    """The profile's layer sum before its per-family corrections (``calibration.families``)."""
    fams = (profile.calibration or {}).get("families") or {}
    if not fams:
        return profile
    out = copy.copy(profile)
    out.latency = scaled_latency(profile.latency, {f: 1.0 / v for f, v in fams.items() if v > 0})
    out.residual = None
    return out
