"""``augur-nas measure``, ``profile``, ``fit-residual`` and ``validate``: measuring a runtime.

``measure`` times networks end to end (drift-robust protocol, median of interleaved rounds, the
measurement's own noise) and measures their peak memory; ``profile`` times a runtime's own
kernels and fits a device profile, written atomically; ``fit-residual`` trains the LightGBM
correction on measured samples of search spaces and stores it inside the profile; ``validate``
puts measured and predicted side by side.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import sys

import numpy as np

from .._atomic import atomic_write, check_out_file
from .._errors import MeasurementError
from .._format import print_json, table
from ..measure._calibrate import correct_profile
from ..measure._devcheck import warn_if_mismatch
from ..measure._measure import QUICK, estimate_s, measure_paths, noisy, stderr_progress
from ..measure._memory import GPU_MEMORY, on_cuda
from ..measure._profile_other import profile_numpy, profile_torch
from ..measure._profiling import plain_json, profile_onnxruntime
from ..measure._residual_fit import fit_residual
from ..measure._scaling_fit import FIT_BATCHES, add_scaling
from ..measure._settings import RuntimeSettings, require
from ..measure._validate import plot, validate
from ..models import load_space
from ..profile import Profile, load_profile, save_profile
from ._args import Once, fraction, nonneg_float, nonneg_int, positive_float, positive_int
from ._command import Command
from .._batch import parse_batch


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that every cleanup (children, temporary files) runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _trap_sigterm():
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tests calling main() from a thread)
        pass


def _settings(args, profile=None):
    base = profile.runtime_settings if profile is not None else {}
    return RuntimeSettings.from_dict(base, backend=getattr(args, "backend", None), threads=getattr(args, "threads", None),
                                     torch_device=getattr(args, "torch_device", None), batch=_batch_arg(args))


def _batch_arg(args):
    """``--batch N`` of measure (None where the command has no such option, or it is not given)."""

    b = getattr(args, "batch", None)
    return None if b is None else parse_batch(b)


def _load_profile(path):
    return load_profile(path)


# --------------------------------------------------------------------------------------------- measure


def cmd_measure(args) -> int:
    profile = _load_profile(args.device) if args.device else None
    settings = _settings(args, profile)
    _warn_mismatch(profile, settings, "measure")
    if settings.backend == "numpy":
        raise MeasurementError("the numpy backend times BLAS kernels for `augur-nas profile`; measure networks "
                               "with --backend onnxruntime or torch")
    if settings.backend == "torch":
        try:
            require("torch")
        except MeasurementError as exc:
            raise MeasurementError(f"{exc}; or measure with --backend onnxruntime") from None
    if args.quick:  # a first look in seconds: few short rounds, a short wait, no memory children
        args.rounds, args.round_ms, args.warmup_s = QUICK["rounds"], 1000.0 * QUICK["round_s"], QUICK["warmup_s"]
        args.max_wait_s, args.no_memory, args.spread_s, args.retries = QUICK["max_wait_s"], True, 0.0, 0
    _trap_sigterm()
    if not args.quiet:
        est = estimate_s(len(args.paths), args.rounds, args.round_ms / 1000.0, args.warmup_s, not args.no_memory,
                         args.spread_s)
        sys.stderr.write(f"augur-nas measure: {len(args.paths)} network(s), {args.rounds} rounds: at least ~{est:.0f} s "
                         f"plus export and loading" + ("" if args.max_wait_s == 0 else
                         f", and up to {args.max_wait_s:g} s of waiting while other processes keep the CPUs busy")
                         + ("" if args.quick else "; --quick for a first look in seconds") + "\n")
    res = measure_paths(args.paths, settings, rounds=args.rounds, round_s=args.round_ms / 1000.0,
                        warmup_s=args.warmup_s, spread_s=args.spread_s, memory=not args.no_memory,
                        progress=None if args.quiet else stderr_progress("augur-nas measure"), seed=args.seed,
                        retry_noise=args.max_noise, retries=args.retries, max_wait_s=args.max_wait_s)
    if args.json:
        print_json({"settings": settings.to_dict(), "protocol": _protocol_doc(args), "networks": res})
        return 0
    print(f"{settings.describe()}")
    print(f"protocol: warm-up {args.warmup_s:g} s, {args.rounds} interleaved rounds of ~{args.round_ms:g} ms per network"
          + (f", spread over >= {args.spread_s:g} s" if args.spread_s else "") + "; latency = median of round medians; "
          "noise = |median(1st half) - median(2nd half)| / median")
    rows = []
    for r in res:
        lat = r["latency"]
        sp = lat["spread_ms"]
        mem = r["memory"] or {}
        rows.append([r["label"], f"{lat['median_ms']:.3f}", f"{100 * lat['noise']:.1f}%",
                     f"{sp.get('min', 0):.3f}..{sp.get('max', 0):.3f}", f"{lat['rounds']}x{lat['iters_per_round']}",
                     f"{mem['peak_rss_mb']:.1f}" if "peak_rss_mb" in mem else "",
                     f"{mem['model_peak_mb']:.1f}" if "model_peak_mb" in mem else mem.get("error", ""),
                     "NOISY" if noisy(r, args.max_noise) else ""])
    table(["network", "latency ms", "noise", "round range ms", "rounds x iters", "peak RSS MB", "model MB", ""], rows)
    n_noisy = sum(noisy(r, args.max_noise) for r in res)
    if n_noisy:
        print(f"NOISY: {n_noisy} network(s) measured with split-half noise above {args.max_noise:.0%}: their latency is "
              f"uncertain by about that much (other processes were busy, or too few rounds: raise --rounds or "
              f"--spread-s, or measure on a quiet machine)")
    if not args.no_memory:
        print("memory: " + (GPU_MEMORY if on_cuda(settings) else
                            "peak RSS (VmHWM) of a child process that loads the network and runs it 3 times; "
                            "model MB = peak RSS - the process's RSS before loading (interpreter + runtime), MiB"))
    return 0


def _protocol_doc(args) -> dict:
    return {"warmup_s": args.warmup_s, "rounds": args.rounds, "round_ms": args.round_ms, "spread_s": args.spread_s,
            "statistic": "median of per-round medians",
            "noise": "|median(first half of rounds) - median(second half)| / median"}


# --------------------------------------------------------------------------------------------- profile


def cmd_profile(args) -> int:
    settings = _settings(args)
    out = args.output
    folder = os.path.dirname(os.path.abspath(out)) or "."
    if not os.path.isdir(folder):
        raise MeasurementError(f"cannot write {out}: the folder {folder} does not exist")
    check_out_file(out, "-o")
    if args.record:
        if settings.backend == "numpy" or args.from_profile:
            raise MeasurementError(f"--record {args.record}: only a kernel measurement with the onnxruntime or torch "
                                   f"backend keeps a raw record (this run: the {settings.backend} backend"
                                   f"{', --from-profile' if args.from_profile else ''}); leave --record out")
        check_out_file(args.record, "--record")
    _trap_sigterm()
    say = stderr_progress("augur-nas profile")
    scaling_s = _scaling_budget(args, settings)
    if args.from_profile:
        return _profile_from_base(args, settings, scaling_s, say)
    if settings.backend == "onnxruntime":
        # the batch phase's time comes out of the budget, so the default run stays within it
        profile, report = profile_onnxruntime(args.name, settings, budget_s=args.budget_s - scaling_s, seed=args.seed,
                                              progress=say, max_network_macs=args.max_network_macs)
    elif settings.backend == "numpy":
        profile, report = profile_numpy(args.name, settings, budget_s=args.budget_s, seed=args.seed, progress=say)
    else:
        profile, report = profile_torch(args.name, settings, budget_s=args.budget_s, seed=args.seed, progress=say)
    if args.record:  # refused above for numpy, whose report keeps no raw record
        atomic_write(args.record, gzip.compress(json.dumps(report["raw"], default=plain_json).encode("utf-8")))
    corr = None
    # the correction by default for ONNX Runtime; the torch interpreter runs the set too slowly to
    # time it in a fixed budget (ask for it with --correction-s)
    default_s = min(70.0, max(5.0, 0.15 * args.budget_s)) if settings.backend == "onnxruntime" else 0.0
    corr_s = args.correction_s if args.correction_s is not None else default_s
    if settings.backend in ("onnxruntime", "torch") and corr_s > 0:
        say(f"correction: the calibration set timed end to end (at most {corr_s:.0f} s)")
        profile, corr = correct_profile(profile, settings, budget_s=corr_s, progress=say, seed=args.seed)
    if scaling_s > 0:
        say(f"batch phase: the calibration set per node at batches {FIT_BATCHES} (at most {scaling_s:.0f} s)")
        profile, _ = add_scaling(profile, settings, scaling_s, progress=say)
        profile.fit = dict(profile.fit, budget_s=args.budget_s)  # the kernels had the rest of it
    header = (f"Device profile `{args.name}`, measured by `augur-nas profile --backend {settings.backend}` on this machine.\n"
              f"Runtime settings: {settings.describe()}.\nFormat: docs/profiles.md.")
    save_profile(profile, out, header=header)
    cal = profile.fit.get("calibration_networks", {}).get("latency", {})
    print(f"wrote {out}: profile `{args.name}` ({profile.runtime}) in {profile.fit.get('elapsed_s', 0):.0f} s"
          + (f"; calibration networks: {100 * cal.get('within_10pct', 0):.0f}% within ±10%, median |error| "
             f"{cal.get('median_abs_error_pct', 0):.1f}%" if cal else ""))
    drift = (profile.fit.get("anchors") or {}).get("build_drift") or {}
    if drift.get("warning"):
        print(f"WARNING: {drift['warning']}", file=sys.stderr)
    if corr is not None:
        loo, b = corr["leave_one_out"], corr["base"]
        why = "applied" if corr["applied"] else "not applied: not clearly better than the layer sum"
        print(f"correction ({corr['elapsed_s']:.0f} s, {why}, paired t {corr['decision']['paired_t']:g}):"
              f" calibration set {100 * b['within_10pct']:.0f}% within ±10% by the layer sum, "
              f"{100 * loo['within_10pct']:.0f}% with the per-family factors (leave-one-out)")
    return 0


def _scaling_budget(args, settings) -> float:
    """Seconds of the batch (and threads) phase: ``--scaling-s``, else 12% of the budget (30 to 90 s,
    at most a quarter of it) with ONNX Runtime; the other backends keep "b times one image"."""
    if args.threads_from and not args.from_profile:
        raise MeasurementError("--threads-from gives the thread coefficients of a one-thread profile's kernels: give that "
                               "profile with --from-profile P1.yaml (and --threads N)")
    if settings.backend != "onnxruntime":
        if args.scaling_s or args.from_profile:
            raise MeasurementError("--scaling-s and --from-profile measure ONNX Runtime's kernels per node; "
                                   f"the {settings.backend} backend keeps the batch rule of one image times b")
        return 0.0
    if args.scaling_s is not None:
        return float(args.scaling_s)
    # a small budget (a smoke test) keeps three quarters for the kernels
    return float(np.clip(0.12 * args.budget_s, min(30.0, 0.25 * args.budget_s), 90.0))


def _profile_from_base(args, settings, scaling_s, say) -> int:
    """``profile --threads N --from-profile P1``: P1's one-thread kernels with batch and N-thread
    coefficients measured on the calibration set (a minute, not a kernel grid)."""
    base = _load_profile(args.from_profile)
    if (base.threads or 1) != 1 or (base.runtime_settings or {}).get("backend") != "onnxruntime" or \
            (base.latency.scaling is not None and base.latency.scaling.threads != 1):
        raise MeasurementError(f"--from-profile {args.from_profile}: give a one-thread ONNX Runtime profile of this "
                               f"machine (it describes {base.threads or 'an unstated number of'} thread(s), "
                               f"{base.runtime})")
    _warn_mismatch(base, RuntimeSettings.from_dict(base.runtime_settings), "profile")
    target = Profile.from_dict(base.to_dict(), base.source)
    target.name = args.name
    target.description = base.description.replace("1 intra-op thread(s)", f"{settings.threads} intra-op thread(s)")
    threads_from = _load_profile(args.threads_from) if args.threads_from else None
    if threads_from is not None and (threads_from.threads or 1) != settings.threads:
        raise MeasurementError(f"--threads-from {args.threads_from} describes {threads_from.threads or 1} thread(s); "
                               f"give --threads {threads_from.threads or 1} or a profile measured at {settings.threads}")
    budget = scaling_s if args.scaling_s is not None else max(scaling_s, 120.0)
    say(f"batch and threads: the calibration set per node (at most {budget:.0f} s)")
    profile, rep = add_scaling(target, settings, budget, progress=say, base=base, threads_from=threads_from)
    cmd = ("augur-nas profile" + (f" --threads {settings.threads}" if settings.threads > 1 else "")
           + f" --from-profile {args.from_profile}" + (f" --threads-from {args.threads_from}" if args.threads_from else "")
           + (f" --scaling-s {args.scaling_s:g}" if args.scaling_s is not None else "") + f" --name {args.name} -o {args.output}")
    save_profile(profile, args.output, header=f"Device profile `{args.name}`: the kernels of `{base.name}` "
                 f"({base.provenance.get('source', base.provenance['method'])}) with the batch and "
                 f"{settings.threads}-thread model latency.scaling, by `{cmd}`.\nRuntime settings: "
                 f"{settings.describe()}.\nFormat: docs/profiles.md.")
    sc = profile.latency.scaling
    print(f"wrote {args.output}: profile `{args.name}` = `{base.name}` + scaling for {sc.threads} thread(s) "
          f"({rep['elapsed_s']:.0f} s)")
    for g, s in sc.groups.items():
        print(f"  {g:7s} batch: per call {1000 * s.per_call_ms:.1f} us, rate {s.rate:.3f}, spill {s.spill_coef:.2f}"
              f" per doubling past {sc.cache_mb:g} MB" + (f"; threads: x{s.par_share:.2f} + {1000 * s.par_call_ms:.1f} us, "
                                                          f"further images x{s.par_image_share:.2f}" if sc.threads > 1 else ""))
    conv = sc.groups.get("conv")
    if sc.threads > 1 and threads_from is None and conv is not None and conv.par_share > 0.9:
        say(f"warning: {sc.threads} threads ran the convs hardly faster than one (x{conv.par_share:.2f}): other processes "
            f"had the cores, and the profile will price {sc.threads} threads as one. Measure on a quiet machine, or "
            f"take the thread coefficients from a {sc.threads}-thread kernel profile (--threads-from)")
    return 0


# --------------------------------------------------------------------------------------------- fit-residual


def _runnable_profile(args, purpose: str = ""):
    """``(profile, runtime settings)`` of ``--device``, refused when its runtime cannot run networks."""
    profile = _load_profile(args.device)
    settings = _settings(args, profile)
    if settings.backend not in ("onnxruntime", "torch"):
        raise MeasurementError(f"the profile was measured with the {settings.backend} backend, which does not run "
                               f"networks; give --backend onnxruntime or torch{purpose}")
    _warn_mismatch(profile, settings, args.command)
    return profile, settings


def _warn_mismatch(profile, settings, command):
    """One paragraph on stderr when this machine is not the one the profile describes."""
    warn_if_mismatch(profile, settings, command)


def cmd_fit_residual(args) -> int:
    profile, settings = _runnable_profile(args)
    out = args.output or args.device
    if not (os.sep in out or out.lower().endswith((".yaml", ".yml"))):
        raise MeasurementError(f"--device {args.device} is a shipped profile name; give -o FILE to write the profile "
                               f"with its residual")
    check_out_file(out, "-o" if args.output else "--device")  # before the measurements, not after
    if args.save_measurements:
        check_out_file(args.save_measurements, "--save-measurements")
    spaces = []
    for p in args.space:
        path, _, n = p.rpartition(":") if p.rpartition(":")[2].isdigit() else (p, "", "")
        spaces.append((path, load_space(path), int(n) if n else args.samples))
    _trap_sigterm()
    say = None if args.quiet else stderr_progress("augur-nas fit-residual")
    saved = None
    if args.from_measurements:
        try:
            with open(args.from_measurements, encoding="utf-8") as f:
                saved = json.load(f)["measurements"]
        except (OSError, ValueError, KeyError) as exc:
            raise MeasurementError(f"cannot read measurements from {args.from_measurements}: {exc}") from None
    new, report = fit_residual(profile, spaces, args.samples, args.seed, settings, progress=say, rounds=args.rounds,
                               max_noise=args.max_noise, folds=args.folds, round_s=args.round_ms / 1000.0,
                               spread_s=args.spread_s, retries=args.retries, measurements=saved,
                               max_wait_s=args.max_wait_s)
    if args.save_measurements:
        atomic_write(args.save_measurements, json.dumps({"seed": args.seed, "spaces": args.space,
                                                         "settings": settings.to_dict(),
                                                         "measurements": report["measurements"]}))
    save_profile(new, out, header=f"Device profile `{new.name}` with a LightGBM residual (augur-nas fit-residual).\n"
                                  f"Format: docs/profiles.md.")
    cv = report["cv"]
    if args.json:
        print_json({"output": out, "cross_validation": cv, "trained": {k: v for k, v in new.residual.trained.items()
                                                                       if k != "architectures"}})
        return 0
    print(f"wrote {out}: residual trained on {new.residual.trained['used']} of {cv['networks']} measured networks "
          f"({', '.join(f'{p} x{n}' for p, _, n in spaces)}, seed {args.seed}); measurement noise <= {args.max_noise:.0%}")
    print(f"{cv['folds']}-fold cross-validation (out-of-fold predictions), over {cv['clean_networks']} clean networks:")
    for name in ("layer_sum", "layer_sum_with_residual", "macs_loglog"):
        a = cv["clean"][name]
        print(f"  {name:24s} within ±10%: {100 * a['within_10pct']:5.1f}%   within ±20%: {100 * a['within_20pct']:5.1f}%   "
              f"RMSPE {a['rmspe_pct']:5.1f}%   Spearman {a['spearman']:.3f}")
    return 0


# --------------------------------------------------------------------------------------------- validate


def cmd_validate(args) -> int:
    profile, settings = _runnable_profile(args, " to validate it against one")
    if not args.space and not args.models:
        raise MeasurementError("validate needs networks: --space SPACE --samples N, or model files")
    if args.space and args.samples == 0:
        raise MeasurementError("--samples 0 samples nothing of --space; give --samples N >= 1, or drop --space")
    if args.plot:
        check_out_file(args.plot, "--plot")
    spaces = [(p, load_space(p)) for p in (args.space or [])]
    _trap_sigterm()
    say = None if args.quiet else stderr_progress("augur-nas validate")
    rep = validate(profile, spaces, args.models, samples=args.samples, seed=args.seed, settings=settings,
                   rounds=args.rounds, round_s=args.round_ms / 1000.0, spread_s=args.spread_s,
                   memory=not args.no_memory, max_noise=args.max_noise, progress=say, retries=args.retries,
                   max_wait_s=args.max_wait_s)
    if args.plot:
        plot(rep, args.plot)
    if args.json:
        print_json(rep)
        return 0
    s = rep["summary"]
    if not s["networks"]:
        print(f"no network left to score: all {len(rep['networks'])} are in the residual's training set "
              f"(sample with another --seed)")
        return 0
    rows = []
    for r in rep["networks"]:
        rows.append([r["label"], f"{r['measured_ms']:.3f}", f"{100 * r['noise']:.1f}%", f"{r['predicted_ms']:.3f}",
                     f"{100 * (r['predicted_ms'] / r['measured_ms'] - 1):+.1f}%",
                     f"{r['measured_mb']:.0f}" if r.get("measured_mb") else "", f"{r['predicted_mb']:.0f}",
                     "trained on" if r["in_training"] else ("noisy" if r["noise"] > args.max_noise else "")])
    table(["network", "measured ms", "noise", "predicted ms", "error", "meas. MB", "pred. MB", ""], rows)
    print()
    print(f"{s['networks']} networks; {s['n_clean']} measured with noise <= {args.max_noise:.0%} "
          f"({s['excluded_noisy']} excluded); noise floor: median {s['noise_floor']['median_pct']:.1f}%, "
          f"p90 {s['noise_floor']['p90_pct']:.1f}%")
    for tag in ("clean", "all"):
        print(f"{'noise <= ' + format(args.max_noise, '.0%') if tag == 'clean' else 'all networks'}:")
        for name, a in s[tag].items():
            if a.get("n"):
                print(f"  {name:14s} within ±10%: {100 * a['within_10pct']:5.1f}%   ±20%: {100 * a['within_20pct']:5.1f}%"
                      f"   RMSPE {a['rmspe_pct']:5.1f}%   Spearman {a['spearman']:.3f}   (n={a['n']})")
    if "machine_speed" in s:
        f = s["machine_speed"]["ratio_now_to_profile"]
        print(f"machine speed: the profile's speed anchors ran {100 * (f - 1):+.1f}% {'slower' if f > 1 else 'faster'} "
              f"now than when the profile was built; measured latencies are normalized to the profile's speed "
              f"by the anchors timed in each batch")
        raw = (s.get("raw") or {}).get("clean") or {}
        for name, a in raw.items():
            if a.get("n"):
                print(f"  as timed: {name:14s} within ±10%: {100 * a['within_10pct']:5.1f}%   "
                      f"±20%: {100 * a['within_20pct']:5.1f}%")
    if "memory" in s:
        m = s["memory"]
        print(f"memory: {100 * m['within_15pct']:.1f}% within ±15% (median |error| {m['median_abs_error_pct']:.1f}%, "
              f"n={m['networks']}); measured: {m['measured']}")
    if s["excluded_in_training"]:
        print(f"not scored (in the residual's training set): {', '.join(s['excluded_in_training'])}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


# --------------------------------------------------------------------------------------------- register


def _timing_args(p, rounds=10, round_ms=50.0, spread=0.0):
    p.add_argument("--rounds", type=positive_int, default=rounds, help=f"interleaved timing rounds (default {rounds})")
    p.add_argument("--round-ms", type=positive_float, default=round_ms, metavar="MS",
                   help=f"work per network and round, in ms of runs (default {round_ms:g})")
    p.add_argument("--spread-s", type=nonneg_float, default=spread, metavar="S",
                   help="pause between rounds so that they cover at least S seconds (default: no pause)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--retries", type=nonneg_int, default=1, metavar="K",
                   help="measure networks noisier than --max-noise again, up to K times (default 1)")
    p.add_argument("--max-wait-s", type=nonneg_float, default=300.0, metavar="S",
                   help="before each round, wait while other processes keep the CPUs busy, at most S seconds in all "
                        "(default 300; 0: never wait)")


def _measure_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="model files: .yaml, .prototxt, .onnx or file.py:factory")
    p.add_argument("--backend", choices=("onnxruntime", "torch"), default=None,
                   help="runtime (default: the --device profile's, else onnxruntime)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default 1)")
    p.add_argument("--torch-device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--batch", default=None, metavar="N",
                   help="images per run (default 1): models are exported with an [N, C, H, W] input; an .onnx file "
                        "given must have that batch (`augur-nas export --batch N`)")
    p.add_argument("--device", action=Once, default=None, metavar="FILE", help="use the runtime settings recorded in this profile")
    p.add_argument("--warmup-s", type=nonneg_float, default=0.3, metavar="S", help="warm-up time per network (default 0.3)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    p.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    p.add_argument("--max-noise", type=fraction, default=0.05,
                   help="networks measured noisier than this are measured again (--retries, default 0.05)")
    p.add_argument("--quick", action="store_true",
                   help="a first look in seconds: 4 short rounds, a 5 s wait at most, no memory (not for fitting)")
    p.add_argument("--json", action="store_true")
    _timing_args(p, rounds=12, spread=10.0)


def _profile_arguments(p) -> None:
    p.add_argument("--backend", choices=("onnxruntime", "numpy", "torch"), default="onnxruntime")
    p.add_argument("--torch-device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--name", required=True, help="the profile's name")
    p.add_argument("--budget-s", type=positive_float, default=480.0, metavar="S",
                   help="time budget of the measurement, seconds (default 480)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-network-macs", type=positive_float, default=1.5e9, metavar="MACS",
                   help="largest calibration network (default 1.5e9)")
    p.add_argument("--correction-s", type=nonneg_float, default=None, metavar="S",
                   help="then time the fixed calibration set for at most S seconds and fit per-family corrections "
                        "(default with onnxruntime: 15%% of --budget-s, 5 to 70 s; with torch: none; 0: none); the whole "
                        "command takes about --budget-s + S + 30 s")
    p.add_argument("--record", default=None, metavar="FILE.json.gz",
                   help="onnxruntime and torch: also write everything the kernels' fit read (probes, in-place node samples, "
                        "end-to-end timings, anchors) as gzipped JSON, so that the fit can be redone offline "
                        "(experiments/kernel_diagnosis.py reads it)")
    p.add_argument("--scaling-s", type=nonneg_float, default=None, metavar="S",
                   help="onnxruntime: seconds of the batch phase (the calibration set per node at batches 1, 8, 32; "
                        "fits how each op family's time grows with the batch), taken out of --budget-s (default 12%% "
                        "of it, 30 to 90 s, at most a quarter; 0: none, a batch of b then costs b times one image)")
    p.add_argument("--from-profile", default=None, metavar="FILE",
                   help="with --threads N: take this one-thread profile's kernels and measure only how the batch "
                        "and N threads scale them (--scaling-s, default 120 s) instead of a kernel grid at N threads; "
                        "without --threads: add the batch phase to that profile")
    p.add_argument("--threads-from", default=None, metavar="FILE",
                   help="with --from-profile: fit the thread coefficients from this N-thread kernel profile of the "
                        "same machine (its per-layer prices beside the one-thread profile's) instead of timing N "
                        "threads now (a busy machine cannot time two threads)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the profile YAML to write")


def _fit_residual_arguments(p) -> None:
    p.add_argument("--device", action=Once, required=True, metavar="FILE", help="the profile (a YAML file)")
    p.add_argument("--space", required=True, action="append", metavar="SPACE[:N]",
                   help="a search space (repeatable); SPACE:N samples N architectures of it instead of --samples")
    p.add_argument("--samples", type=positive_int, required=True, metavar="N", help="architectures per space")
    p.add_argument("--seed", type=int, default=1000,
                   help="sampling seed (default 1000; use a seed other than validate's, whose default is 0)")
    p.add_argument("--folds", type=positive_int, default=5)
    p.add_argument("--max-noise", type=fraction, default=0.05,
                   help="train only on networks measured within this noise (default 0.05)")
    p.add_argument("--backend", choices=("onnxruntime", "torch"), default=None)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write here (default: overwrite --device)")
    p.add_argument("--save-measurements", default=None, metavar="FILE.json",
                   help="also write the end-to-end measurements of the sampled networks (to refit later)")
    p.add_argument("--from-measurements", default=None, metavar="FILE.json",
                   help="train on measurements saved by --save-measurements instead of measuring again")
    p.add_argument("--json", action="store_true")
    _timing_args(p, rounds=8, round_ms=30.0)


def _validate_arguments(p) -> None:
    p.add_argument("models", nargs="*", metavar="MODEL", help="model files to validate on")
    p.add_argument("--device", action=Once, required=True, metavar="NAME|FILE")
    p.add_argument("--space", action="append", metavar="SPACE", help="sample this search space (repeatable)")
    p.add_argument("--samples", type=nonneg_int, default=50, metavar="N", help="samples per space (default 50)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max-noise", type=fraction, default=0.05,
                   help="score networks measured within this noise (default 0.05); all are reported too")
    p.add_argument("--backend", choices=("onnxruntime", "torch"), default=None)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="predicted vs measured, with the ±10%% band")
    p.add_argument("--json", action="store_true")
    _timing_args(p, rounds=10)


MEASURE = Command("measure the latency (drift-robust protocol) and peak memory of networks",
                  _measure_arguments, cmd_measure)
PROFILE = Command("time a runtime's own kernels and write a device profile (atomically)",
                  _profile_arguments, cmd_profile)
FIT_RESIDUAL = Command("train the LightGBM latency residual on measured samples; store it in the profile",
                       _fit_residual_arguments, cmd_fit_residual)
VALIDATE = Command("measured vs predicted latency and memory, with the measurement's noise floor",
                   _validate_arguments, cmd_validate)
