"""MnasNet-like networks (not the zoo) in pairs that differ only in their activation, ReLU or ReLU6.

    taskset -c 1 python experiments/relu_pairs.py measure --out experiments/data/relu_pairs.json
    python experiments/relu_pairs.py score experiments/data/relu_pairs.json [--record RAW.json.gz]

ONNX Runtime applies ReLU inside its conv kernels and ReLU6 (Clip) in a pass over the output; the
profile prices that pass after 1x1 convs only (``_profiling.FUSED_PASS_FAMILIES``), so the
depthwise model, fitted on in-place samples that nearly all carry ReLU6 or HardSwish, carries the
pass in its kernel time. ``score`` refits the record with the pass after 1x1 convs only, and after
1x1 and depthwise convs, and prints each pair's errors: the gap between the ReLU and the ReLU6
twin is what the pass split gets wrong. The timings are brought to the profile's speed by the
median small anchor (compare the twins, not levels across measurements).
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

from augur_nas.measure._probes import _c8  # noqa: E402


def pairs(seed: int = 7, count: int = 8) -> list:
    """``[(label, spec)]``: ``count`` MnasNet-like networks, each with ReLU and with ReLU6."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        mult = float(rng.choice([0.5, 0.75, 1.0, 1.3]))
        layers = [{"conv_bn_act": {"out": _c8(32 * mult), "kernel": 3, "stride": 2, "act": "ACT"}},
                  {"mbconv": {"out": _c8(16 * mult), "kernel": 3, "expand": 1, "act": "ACT"}}]
        for out_c, k, s, e, d in ((24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3), (96, 3, 1, 6, 2),
                                  (192, 5, 2, 6, 4), (320, 3, 1, 6, 1)):
            out_c = int(out_c * rng.choice([0.75, 1.0, 1.25]))
            k = int(rng.choice([3, 5]))
            d = int(rng.integers(1, d + 1))
            layers.append({"stage": {"depth": d, "block": {"mbconv": {"out": _c8(out_c * mult), "kernel": k, "stride": s,
                                                                     "expand": float(rng.choice([3, 6])), "act": "ACT"}}}})
        layers += [{"conv_bn_act": {"out": 1280, "kernel": 1, "act": "ACT"}}, {"globalpool": {"mode": "avg"}},
                   {"fc": {"out": 1000}}]
        for act in ("relu", "relu6"):
            text = json.dumps({"name": f"mn{i}_{act}", "input": {"channels": 3, "resolution": 224}, "layers": layers})
            spec = json.loads(text.replace('"ACT"', f'"{act}"'))
            out.append((spec["name"], spec))
    return out


def measure(args) -> None:
    from augur_nas.models import load_space_dict
    from augur_nas.profile import load_profile
    from new_machine import measure as timed

    prof = load_profile(args.profile)
    items = [(lab, "x", load_space_dict(spec)) for lab, spec in pairs()]
    by, anchors = timed(items, prof, 8, 5.0)
    ref = prof.fit["anchors"]["latency_ms"]
    speed = float(np.median([anchors[k] / ref[k] for k in ref if k in anchors and k != "anchor_large"]))
    Path(args.out).write_text(json.dumps({"speed": speed, "ms": {lab: by[lab]["median_ms"] / speed for lab, _, _ in items},
                                          "specs": dict(pairs())}, indent=1))
    print(f"wrote {args.out} (host speed {speed:.3f} of the profile's)")


def score(args) -> None:
    from augur_nas.costmodel import latency_ms
    from augur_nas.lowering import lower
    from augur_nas.measure import _profiling as P
    from augur_nas.measure._settings import RuntimeSettings
    from augur_nas.models import load_space_dict

    data = json.loads(Path(args.data).read_text())
    with gzip.open(args.record, "rt", encoding="utf-8") as f:
        raw = json.load(f)
    for fams in (("conv_1x1",), ("conv_1x1", "dwconv")):
        P.FUSED_PASS_FAMILIES = fams
        prof = P.fit_ort(raw, "refit", RuntimeSettings())[0]
        err = {}
        for lab, spec in data["specs"].items():
            m = load_space_dict(spec)
            err[lab] = float(latency_ms(lower(m, np.zeros((1, m.n_genes), dtype=np.int64)), prof)[0][0]) / data["ms"][lab] - 1
        relu = np.array([v for k, v in err.items() if k.endswith("_relu")])
        relu6 = np.array([v for k, v in err.items() if k.endswith("_relu6")])
        print(f"pass after {' and '.join(fams)}: ReLU twins {100 * np.median(relu):+.1f} %, ReLU6 twins "
              f"{100 * np.median(relu6):+.1f} %, gap {100 * np.median(relu - relu6):+.1f} points")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--profile", default="x86-xeon-avx512-ort")
    m.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("data")
    s.add_argument("--record", default=str(ROOT / "experiments/new_machine/profile_record.json.gz"))
    args = ap.parse_args(argv)
    (measure if args.cmd == "measure" else score)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
