"""Issue 11, task G: does a fused activation's pass cost the same per MB after a 1x1, a depthwise
and a dense conv? Times pairs (the producer with BatchNorm, with and without each pass-paying
activation ONNX Runtime fuses here) as ``augur-nas profile`` does (``_profiling._act_pairs``: one
kernel per session, per-node profiling, two visits, the smaller time), on more shapes than the
profiler takes (``SHAPES``: depthwise kernels 3/5/7 at strides 1 and 2 on every mobile resolution),
and prints each family's rate per activation (median over its pairs, ms per MB of output).

Not shipped (experiments/ only). ~1 min on one core:

    taskset -c 1 python experiments/fused_pass_families.py --out experiments/fused_pass_families.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from augur_nas.costmodel import OpModel
from augur_nas.measure import _profiling as P
from augur_nas.measure._ortrules import detect_rules
from augur_nas.measure._probes import ACT_PAIR_SHAPES
from augur_nas.measure._settings import RuntimeSettings

MOBILE = ((16, 96), (24, 56), (32, 28), (64, 14))
SHAPES = {
    "conv_1x1": ACT_PAIR_SHAPES["conv_1x1"] + tuple((6 * c, h, c, 1, 1) for c, h in MOBILE),  # + projections
    "dwconv": tuple((6 * c, h, 6 * c, k, s) for c, h in MOBILE for k in (3, 5, 7) for s in (1, 2)),
    "conv": ACT_PAIR_SHAPES["conv"] + ((128, 14, 256, 3, 1), (64, 56, 64, 3, 1)),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    settings = RuntimeSettings()
    with tempfile.TemporaryDirectory(prefix="augur-pairs-") as d:
        rules = detect_rules(settings, d)
        model0 = P._ort_model({}, OpModel(), {}, (0.0, 0.0), rules=rules._asdict())
        pairs = P._act_pairs(settings, d, model0, P.Budget(1e9), print, SHAPES)
    print("| family | activation | pairs | ms/MB median | min..max | t_act/t_plain median |\n|---|---|---:|---:|---|---:|")
    by: dict = {}
    for p in pairs:
        by.setdefault((p["family"], p["kind"]), []).append(p)
    for (fam, kind), ps in sorted(by.items()):
        r = np.array([(p["t_act"] - p["t_plain"]) / p["mb"] for p in ps])
        q = np.array([p["t_act"] / p["t_plain"] for p in ps])
        print(f"| {fam} | {kind} | {len(ps)} | {np.median(r):.4f} | {r.min():.4f}..{r.max():.4f} | {np.median(q):.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"pairs": pairs, "shapes": SHAPES}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
