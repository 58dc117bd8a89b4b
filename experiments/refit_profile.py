"""Refit a shipped ONNX Runtime profile from the raw record of its own build, with this checkout's fit.

    python experiments/refit_profile.py --record experiments/new_machine/profile_record.json.gz \\
        --profile augur_nas/device_profiles/x86-xeon-avx512-ort.yaml -o augur_nas/device_profiles/x86-xeon-avx512-ort.yaml

When the kernel model gains a form (2026-11-29: padded channels, a stride-2 plain conv model) the
shipped profile is brought to it from the measurements it was built from rather than from a new
build on a host that may be in another state (a new build at 18:36 ran in a contended state: the
large networks 1.2-1.4x slower than its anchors said). What is refitted: every kernel model and
the end-to-end constants (``_profiling.fit_ort`` on the record, as ``augur-nas profile`` fits).
What is kept from the profile: the batch phase (``latency.scaling``, ratios to the one-image time,
fitted after the kernels), the speed anchors and the fingerprint. The correction step is decided
again (``_calibrate.clearly_better``) on the calibration-set timings that build made
(``calibration.measured_ms``), exactly as ``augur-nas profile`` decides it. The provenance says so.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from augur_nas.costmodel import LatencyModel  # noqa: E402
from augur_nas.measure import _calibrate as C  # noqa: E402
from augur_nas.measure import _profiling as P  # noqa: E402
from augur_nas.measure._calibset import calibration_set  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402
from augur_nas.profile import load_profile, save_profile  # noqa: E402


def refit(record: str, profile_path: str):
    with gzip.open(record, "rt", encoding="utf-8") as f:
        raw = json.load(f)
    old = load_profile(profile_path)
    settings = RuntimeSettings.from_dict(old.runtime_settings)
    new, _ = P.fit_ort(raw, old.name, settings)
    d = new.latency.to_dict()
    base = old.latency.to_dict()
    if "scaling" in base:
        d["scaling"] = base["scaling"]
    out = copy.copy(old)
    out.latency = LatencyModel.from_dict(d)
    out.fit = dict(new.fit, anchors=old.fit.get("anchors"), scaling=old.fit.get("scaling"),
                   budget_s=old.fit.get("budget_s"), elapsed_s=old.fit.get("elapsed_s"))
    out.memory = old.memory
    # the correction step, decided again on the timings the build made
    names = [n.name for n in calibration_set()]
    measured = old.calibration["measured_ms"]
    y = np.array([measured[n] for n in names])
    T = C.contributions(out.latency, C._tables([(n.model, settings.batch) for n in calibration_set()]))
    fit = C.fit_factors(T, y, C.families(out.latency))
    decision = C.clearly_better(T.sum(axis=1), fit.loo_pred, y)
    report = C._report(fit, names, T.sum(axis=1), T)
    anchors = old.calibration.get("anchors_ms")
    if decision["applied"] and not anchors:
        # the factors carry the speed of the correction step's own minute; a build that did not
        # apply its correction kept the anchors of its end, not of that minute (recorded since
        # 2026-11-29 19:00 as calibration.anchors_ms), so the level would be another state's
        decision = dict(decision, applied=False, note="clearly better, but the correction step's anchors were not "
                                                      "recorded by the build: not applied")
    if decision["applied"]:
        out.latency = C.scaled_latency(out.latency, fit.scales)
        out.fit["anchors"] = dict(out.fit["anchors"] or {}, latency_ms=anchors)
    out.calibration = dict(old.calibration, **C.correction_fields(fit, report, decision))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    said = (f"per-family correction from the calibration set {'applied' if decision['applied'] else 'not applied'}: "
            f"leave-one-out against the layer sum, paired t {decision['paired_t']:g} (applied from {C.MIN_T:g})")
    out.provenance = dict(old.provenance, note=(
        f"kernel times from ORT per-node profiling (fused kernels as ORT runs them), measured by augur-nas profile on "
        f"{old.provenance.get('date')}; refitted on {date} from that build's raw record "
        f"({Path(record).name}) by experiments/refit_profile.py with the fit of this checkout (channels padded to "
        f"whole blocks, a stride-2 plain conv model); the batch phase, anchors and fingerprint are the build's; {said}"))
    return out, decision


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    prof, decision = refit(args.record, args.profile)
    save_profile(prof, args.out)
    print(f"wrote {args.out}: correction {'applied' if decision['applied'] else 'not applied'} "
          f"(paired t {decision['paired_t']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
