"""Issue 11, task D: do 1x1 expansion convs (few input, many output channels, a fused ReLU6) run
slower in place than the GEMM model of their shape says, and is it the fused activation?

Not shipped (experiments/ only). Times, interleaved in one process (``time_runners``), one-layer
networks: an expansion conv (k input -> 6k output channels, 1x1, BatchNorm) with no activation,
with ReLU, with ReLU6, and the projection of the same multiply-adds (6k -> k), at the mobile
space's resolutions; prints each against the first, and the profile's layer sum for each.

    taskset -c 1 python experiments/expand_act.py --profile PROFILE.yaml
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from augur_nas.costmodel import latency_ms
from augur_nas.lowering import lower
from augur_nas.measure._protocol import time_runners
from augur_nas.measure._runners import OrtRunner, prepare
from augur_nas.measure._settings import RuntimeSettings
from augur_nas.models import load_space_dict
from augur_nas.profile import load_profile

SHAPES = ((16, 96), (24, 56), (32, 28), (64, 14))  # (input channels k, resolution)


def nets():
    out = []
    for k, r in SHAPES:
        for tag, cin, cout, act in (("expand", k, 6 * k, None), ("expand+relu", k, 6 * k, "relu"),
                                    ("expand+relu6", k, 6 * k, "relu6"), ("project", 6 * k, k, None)):
            layers = [{"conv": {"name": "c", "out": cout, "kernel": 1}}, {"batchnorm": {"name": "bn"}}]
            if act:
                layers.append({act: {"name": "a"}})
            spec = {"name": f"{tag}_k{k}_r{r}", "input": {"channels": cin, "resolution": r}, "layers": layers}
            out.append((f"{tag} k{k} r{r}", load_space_dict(spec)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    prof = load_profile(args.profile)
    items = nets()
    with tempfile.TemporaryDirectory() as d:
        paths = prepare(items, d)
        runners = {n.label: OrtRunner(n.onnx_path, RuntimeSettings()) for n in paths}
        try:
            t = time_runners(runners, rounds=args.rounds, round_s=0.05, warmup_s=0.1)
        finally:
            for r in runners.values():
                r.close()
    print("| layer | measured ms (noise) | / expand | layer sum ms | pred/meas |\n|---|---:|---:|---:|---:|")
    for lab, m in items:
        base = t[lab.replace("+relu6", "").replace("+relu", "").replace("project", "expand")].median_ms
        pred = float(latency_ms(lower(m, np.zeros((1, 0), dtype=np.int64)), prof)[0][0])
        x = t[lab]
        print(f"| {lab} | {x.median_ms:.4f} ({100 * x.noise:.1f}%) | {x.median_ms / base:.3f} | {pred:.4f} | {pred / x.median_ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
