"""Issue 11: channels padded to whole blocks, and a plain conv of stride 2, judged offline on a raw record.

    python experiments/padded_channels.py [--record experiments/new_machine/profile_record.json.gz]

1. In place against the refitted models: the median log(predicted / measured) of each GEMM family's
   in-place samples by channel alignment (out and in channels multiples of 16, of 8, or neither),
   with and without ``PAD_CHANNELS`` (no timing: the record's own samples).
2. The refits scored on the recorded benchmark validations (experiments/new_machine, 16:31, and
   experiments/new_machine_rerun, 16:57: zoo and seed-0 samples, brought to the record's speed by
   the anchors; validation only) under each setting of PAD_CHANNELS and PLAIN_STRIDED. The choice
   was made on the in-place table and on experiments/deployment_nets.py, never on the zoo.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from augur_nas.measure import _profiling as P  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402

RUNS = (("16:31", "experiments/new_machine/new_machine.json", "x86-xeon-avx512-ort"),
        ("16:57", "experiments/new_machine_rerun/new_machine.json", "experiments/new_machine_rerun/profile.yaml"))


def _align(c: int) -> str:
    return "16" if c % 16 == 0 else "8" if c % 8 == 0 else "odd"


def in_place_table(raw, prof) -> list:
    """``[(family, out alignment, in alignment, n, median log(pred/meas))]`` of in-place samples."""
    lat = prof.latency
    scale = prof.fit["end_to_end_calibration"]["kernel_scale"]
    delta = float(raw.get("profiler_delta_ms", 0.0))
    pad = lat.layout
    rows = {}
    for s in raw["in_situ"]:
        fam = P._plain_variant(s)
        if fam not in lat.gemm or s.get("kind") not in ("conv", "dwconv"):
            continue
        g = max(int(s["groups"]), 1)
        n, k, f = pad.padded(s["kind"], s["n"], s["k"], g, max(int(s["in_c"]), 1) * g)
        pred = float(lat.gemm[fam].predict(int(n), s["m"], int(k))) * g * float(f) / scale
        key = (fam, _align(g if s["kind"] == "dwconv" else s["n"]), _align(int(s["in_c"]) * (1 if s["kind"] == "dwconv" else g)))
        rows.setdefault(key, []).append(np.log(pred / max(s["t"] - delta, 1e-4)))
    return [(fam, a, b, len(v), float(np.median(v))) for (fam, a, b), v in sorted(rows.items()) if len(v) >= 4]


def main(argv=None) -> int:
    import kernel_diagnosis as KD

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", default=str(ROOT / "experiments/new_machine/profile_record.json.gz"))
    args = ap.parse_args(argv)
    with gzip.open(args.record, "rt", encoding="utf-8") as f:
        raw = json.load(f)
    tables = {}
    for pad in (False, True):
        P.PAD_CHANNELS = pad
        tables[pad] = {r[:3]: r for r in in_place_table(raw, P.fit_ort(raw, "refit", RuntimeSettings())[0])}
    print("## in place: median log(predicted / measured) by channel alignment (out, in)\n")
    print("| family | out | in | n | unpadded | padded |\n|---|---|---|---:|---:|---:|")
    for key, r in tables[False].items():
        p = tables[True].get(key)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {r[3]} | {r[4]:+.3f} | {p[4]:+.3f} |" if p else "")
    print("\n## refits on the recorded validations (zoo / samples within ±10 %)\n")
    print("| PAD_CHANNELS | PLAIN_STRIDED | " + " | ".join(f"{t} zoo | {t} samples" for t, _, _ in RUNS)
          + " |\n|---|---|" + "---:|---:|" * len(RUNS))
    for pad in (False, True):
        for ps in (False, True):
            P.PAD_CHANNELS, P.PLAIN_STRIDED = pad, ps
            prof = P.fit_ort(raw, "refit", RuntimeSettings())[0]
            cells = []
            for _, bench, base in RUNS:
                ev = KD.evaluate(raw, prof, bench=ROOT / bench, base=str(ROOT / base) if base.endswith(".yaml") else base)
                cells += [f"{100 * ev['zoo'][0]:.0f} %", f"{100 * ev['samples'][0]:.0f} %"]
            print(f"| {int(pad)} | {int(ps)} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
