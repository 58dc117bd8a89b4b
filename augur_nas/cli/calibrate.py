"""``augur-nas check`` and ``augur-nas calibrate``: a profile on a machine it was not measured on.

``check`` compares the profile's fingerprint with this machine's and times its speed anchors for a
few seconds; ``calibrate`` fits per-family corrections of a profile from end-to-end timings of the
fixed calibration set, timed here (at most ``--budget-s``, 90 s by default) or read from a CSV
measured on another device (``--from-measurements``), and writes the corrected profile atomically
(Ctrl-C leaves the previous file as it was).
"""

from __future__ import annotations

import os
import sys

from .._errors import MeasurementError
from .._format import print_json
from ..fingerprint import build_command, describe, summary
from ..measure._calibrate import GRAPH_RULES_NEED_MEASUREMENTS, calibrate, require_fingerprint
from ..measure._calibset import CalibrationInputError
from ..measure._devcheck import check, warn_if_mismatch
from ..measure._measure import stderr_progress
from ..profile import load_profile, save_profile
from ._args import positive_float
from ._command import Command
from .measure import _settings, _trap_sigterm


def cmd_check(args) -> int:
    res = check(args.device, time_s=args.time_s, timing=not args.no_timing)
    if args.json:
        print_json(res.to_dict())
        return 0

    print(f"profile `{res.profile}`: {summary(res.profile_fingerprint)}")
    print(f"this machine: {summary(res.machine_fingerprint)}")
    if res.threads is not None:
        print(f"the profile describes {res.threads} intra-op thread(s)")
    if res.matches:
        print("matches: yes" + (f" ({len(res.differences)} minor difference(s))" if res.differences else ""))
    else:
        print("matches: no")
    for d in res.differences:
        print(f"  {d['severity']:5s}  {describe(d)} ({d['why']})")
    if res.speed_factor is not None:
        f = res.speed_factor
        print(f"speed factor: {f:.3f} (the profile's speed anchors take {f:.2f}x the time they took when it was built"
              f"; timed for {res.timing_s:.1f} s)")
    if res.memory_factor is not None:
        print(f"memory factor: {res.memory_factor:.3f} (the large anchor, whose weights stream from memory)")
    for w in res.warnings:
        print(f"warning: {w}")
    if res.note:
        print(f"note: {res.note}")
    if not res.matches:
        print(f"fix: augur-nas calibrate --device {args.device} -o NEW.yaml (about 90 s), or "
              f"{build_command(res.profile_fingerprint)}")
    return 0


def _check_output(out):
    folder = os.path.dirname(os.path.abspath(out)) or "."
    if not os.path.isdir(folder):
        raise MeasurementError(f"cannot write {out}: the folder {folder} does not exist")
    if os.path.isdir(out):
        raise MeasurementError(f"cannot write {out}: it is a folder; give the profile YAML file to write")


def cmd_calibrate(args) -> int:
    _check_output(args.output)
    base = load_profile(args.device)
    require_fingerprint(base)
    _trap_sigterm()
    say = None if args.quiet else stderr_progress("augur-nas calibrate")
    if args.from_measurements:
        profile, rep = calibrate(base, measurements=args.from_measurements, name=args.name,
                                 graph_rules=args.graph_rules)
    elif args.graph_rules:
        # refused before the machine check below, whose warning would precede the error
        raise CalibrationInputError(GRAPH_RULES_NEED_MEASUREMENTS)
    else:
        settings = _settings(args, base)
        warn_if_mismatch(base, settings, "calibrate")
        profile, rep = calibrate(base, settings=settings, budget_s=args.budget_s, name=args.name, progress=say,
                                 seed=args.seed)
    save_profile(profile, args.output, header=f"Device profile `{profile.name}`: `{base.name}` calibrated by "
                                              f"augur-nas calibrate.\nFormat: docs/profiles.md.")
    for w in rep.get("warnings", []):
        print(f"augur-nas calibrate: warning: {w}", file=sys.stderr)
    if args.json:
    
        print_json({"output": args.output, "profile": profile.name, "report": rep})
        return 0
    _print_report(args, base, profile, rep)
    return 0


def _print_report(args, base, profile, rep) -> None:
    loo, glob, b = rep["leave_one_out"], rep["global_scale_in_sample"], rep["base"]
    print(f"wrote {args.output}: profile `{profile.name}`, `{base.name}` corrected from "
          f"{profile.calibration.get('measurements')} in {rep.get('elapsed_s', 0):.0f} s")
    print(f"  the base profile: {100 * b['within_10pct']:.0f}% of the {b['networks']} networks within ±10% "
          f"(median |error| {b['median_abs_error_pct']:.1f}%)")
    print(f"  one global factor ({rep['global_scale']:.3f}), in sample: {100 * glob['within_10pct']:.0f}% within ±10%")
    print(f"  per-family factors, leave-one-out: {100 * loo['within_10pct']:.0f}% within ±10%, "
          f"{100 * loo['within_20pct']:.0f}% within ±20% (median |error| {loo['median_abs_error_pct']:.1f}%)")
    worst = sorted(loo["errors_pct"].items(), key=lambda kv: -abs(kv[1]))[:5]
    print("  largest leave-one-out errors: " + ", ".join(f"{n} {e:+.1f}%" for n, e in worst))
    if rep.get("graph_rules", {}).get("from_profile"):
        print(f"  graph rules: those of `{rep['graph_rules']['from_profile']}` (block "
              f"{rep['graph_rules']['layout'].get('block')})")
    fams = ", ".join(f"{k} {v:.3g}" for k, v in rep["families"].items())
    print(f"  factors (ridge {rep['ridge']:g}): {fams}")


def _check_arguments(p) -> None:
    p.add_argument("--device", required=True, metavar="NAME|FILE", help="the profile to check")
    p.add_argument("--time-s", type=positive_float, default=4.0, metavar="S",
                   help="time the profile's speed anchors for about S seconds (default 4)")
    p.add_argument("--no-timing", action="store_true", help="compare the fingerprints only")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _calibrate_arguments(p) -> None:
    p.add_argument("--device", required=True, metavar="NAME|FILE", help="the base profile")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the calibrated profile YAML to write")
    p.add_argument("--budget-s", type=positive_float, default=90.0, metavar="S",
                   help="time budget of the local measurement, seconds (default 90)")
    p.add_argument("--from-measurements", default=None, metavar="FILE.csv",
                   help="fit from end-to-end latencies measured on the target device (columns model,latency_ms; "
                        "optional batch,threads; models as in `augur-nas export --calibration-set` or paths)")
    p.add_argument("--graph-rules", default=None, metavar="NAME|FILE",
                   help="with --from-measurements: price the base with the graph rules (blocked layout, fused "
                        "activations) of this ONNX Runtime profile, one measured on a processor of the target's "
                        "kind (the target's own rules cannot be read from a CSV)")
    p.add_argument("--name", default=None, help="the new profile's name (default: BASE-calibrated)")
    p.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object (the output path and the report)")


CHECK = Command("does this machine match a profile? differences and the current speed factor", _check_arguments,
                cmd_check)
CALIBRATE = Command("adapt a profile to this machine (or to latencies measured elsewhere)", _calibrate_arguments,
                    cmd_calibrate)
