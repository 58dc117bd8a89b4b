"""How fast `augur-nas split` answers for networks of 200+ layer slots.

    python experiments/bench_split.py [--rounds 5]

Per network and (device, server) pair: the median time of `augur_nas.planner.split_points` in
this process (profiles and model loaded once, the first call not counted), and the wall time of
one `augur-nas split ... --json` subprocess (interpreter start, imports, profile and model loading
included; a profile with a LightGBM residual pays the `import lightgbm` that `predict` pays too).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETWORKS = ["efficientnet_b0", "resnet50", "densenet121"]
PAIRS = [("tk1-gpu", "tk1-cpu"), ("tk1-gpu", "x86-2core-ort"), ("x86-2core-ort", "x86-2core-ort")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    import augur_nas as an
    from augur_nas.planner import Link, split_points

    link = Link.of("20Mbps", rtt="30ms")
    print("| network | layer slots | split points | device | server | split_points median s | CLI wall s |")
    print("|---|---:|---:|---|---|---:|---:|")
    for name in NETWORKS:
        path = ROOT / "spaces" / "zoo" / f"{name}.yaml"
        model = an.load_model(str(path))
        for dev, srv in PAIRS:
            d, s = an.load_profile(dev), an.load_profile(srv)
            pts = split_points(model, d, s, link)
            ts = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                split_points(model, d, s, link)
                ts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "augur_nas.cli", "split", str(path), "--device", dev, "--server", srv,
                            "--uplink", "20Mbps", "--rtt", "30ms", "--json"], check=True, capture_output=True)
            wall = time.perf_counter() - t0
            print(f"| {name} | {len(model.program.nodes)} | {len(pts)} | {dev} | {srv} | "
                  f"{sorted(ts)[len(ts) // 2]:.3f} | {wall:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
