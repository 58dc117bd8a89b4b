"""Deployment-scale networks that are not in the zoo: a check set for kernel-model forms (issue 11).

The profiler's random calibration networks are small (96-224 pixels, 16-64 stem channels, weights
in L2); the published zoo is validation only. To judge a change of the kernel model on the
networks people deploy without looking at the zoo, this draws ImageNet-scale networks of four
styles -- RegNet-like (grouped 3x3 of group width 8/16/24, SE drawn), ShuffleNetV2-like (units of
widths 72-880, any even width), GhostNet-like (ghost bottlenecks, SE drawn) and EfficientNet-like
(inverted residuals with swish/hswish/relu6) -- times them end to end with the shipped profile's
speed anchors, and scores refits of a raw profiler record against them.

    taskset -c 1 python experiments/deployment_nets.py measure --seed 202 --count 48 --out experiments/data/deployment_nets_202.json
    python experiments/deployment_nets.py score experiments/data/deployment_nets_202.json \\
        --record experiments/new_machine/profile_record.json.gz PAD_CHANNELS=0,PLAIN_STRIDED=0 PAD_CHANNELS=1,PLAIN_STRIDED=1

``score`` refits the record (``_profiling.fit_ort``, no timing) with each setting of the
profiler's module flags and prints, per style, the share within +-10 % and the errors; the
calibration networks of the record (in sample) too. The timings are brought to the shipped
profile's speed by the median anchor ratio, which does not serve every kernel alike when the host
is in its slow state: compare settings on one measurement, not figures across measurements.
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

from augur_nas.measure._probes import _c8, _model_below  # noqa: E402

STYLES = ("regnet", "shuffle", "ghost", "mbconv")


def network(rng, idx: int, style: str) -> dict:
    """One ImageNet-scale network of ``style`` (a model dict of our language)."""
    res = int(rng.choice([192, 224]))
    layers = [{"conv_bn_act": {"out": int(rng.choice([16, 24, 32])), "kernel": 3, "stride": 2,
                               "act": str(rng.choice(["relu", "hswish"]))}}]
    if style == "shuffle":
        layers.append({"maxpool": {"kernel": 3, "stride": 2, "pad": 1}})
    w1 = float(rng.choice([96, 116, 128, 176] if style == "shuffle" else [24, 32, 48, 64]))
    for st in range(3 if style == "shuffle" else 4):
        mult = rng.choice([0.75, 1.0, 1.25])
        width = int(w1 * 2 ** st * mult) // 2 * 2 if style == "shuffle" else _c8(w1 * 2 ** st * mult)
        depth = int(rng.integers(2, 9) if style == "shuffle" else rng.integers(1, 5))
        se = float(rng.choice([0, 0.25]))
        if style == "regnet":
            gw = int(rng.choice([8, 16, 24]))
            width = max(gw, width // gw * gw)
            blk = {"bottleneck": {"mid": width, "out": width, "groups": width // gw, "stride": 2, "se": se}}
        elif style == "shuffle":
            blk = {"shufflev2": {"out": width, "stride": 2}}
        elif style == "ghost":
            blk = {"ghost_bottleneck": {"mid": _c8(width * rng.choice([2, 3, 4])), "out": width,
                                        "kernel": int(rng.choice([3, 5])), "stride": 2, "se": se}}
        else:
            blk = {"mbconv": {"out": width, "kernel": int(rng.choice([3, 5])), "stride": 2,
                              "expand": float(rng.choice([3, 4, 6])), "se": se,
                              "act": str(rng.choice(["swish", "hswish", "relu6"]))}}
        layers.append({"stage": {"depth": depth, "block": blk}})
    if rng.random() < 0.6:
        layers.append({"conv_bn_act": {"out": int(rng.choice([960, 1024, 1280])), "kernel": 1, "act": "relu"}})
    layers += [{"globalpool": {"mode": "avg"}}, {"fc": {"out": 1000}}]
    return {"name": f"dep{idx}_{style}", "input": {"channels": 3, "resolution": res}, "layers": layers}


def networks(seed: int, count: int, max_macs: float = 1.5e9) -> list:
    """``[(label, model, spec)]``: ``count`` networks, the styles in turn."""
    rng = np.random.default_rng(seed)
    out, tries = [], 0
    while len(out) < count and tries < 50 * count:
        tries += 1
        spec = network(rng, len(out), STYLES[len(out) % len(STYLES)])
        model = _model_below(spec, max_macs)
        if model is not None:
            out.append((spec["name"], model, spec))
    return out


def measure(args) -> None:
    from augur_nas.profile import load_profile
    from new_machine import measure as timed

    prof = load_profile(args.profile)
    nets = networks(args.seed, args.count)
    by, anchors_now = timed([(lab, "x", m) for lab, m, _ in nets], prof, args.rounds, 10.0)
    ref = prof.fit["anchors"]["latency_ms"]
    per = {k: anchors_now[k] / ref[k] for k in ref if k in anchors_now}
    speed = float(np.median(list(per.values())))
    out = {"profile": args.profile, "seed": args.seed, "speed": speed, "per_anchor": per,
           "ms": {lab: by[lab]["median_ms"] / speed for lab, _, _ in nets},
           "noise": {lab: by[lab].get("noise") for lab, _, _ in nets}, "specs": {lab: s for lab, _, s in nets}}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}: {len(nets)} networks, host speed {speed:.3f} of the profile's "
          f"({', '.join(f'{k} {v:.2f}' for k, v in per.items())})")


def _errors(latency_profile, specs: dict, measured: dict) -> dict:
    from augur_nas.costmodel import latency_ms
    from augur_nas.lowering import lower
    from augur_nas.models import load_space_dict

    out = {}
    for lab, spec in specs.items():
        m = load_space_dict(spec)
        pred = float(latency_ms(lower(m, np.zeros((1, m.n_genes), dtype=np.int64)), latency_profile)[0][0])
        out[lab] = pred / measured[lab] - 1
    return out


def score(args) -> None:
    from augur_nas.measure import _profiling as P
    from augur_nas.measure._settings import RuntimeSettings

    data = json.loads(Path(args.data).read_text())
    with gzip.open(args.record, "rt", encoding="utf-8") as f:
        raw = json.load(f)
    within = lambda v: float(np.mean(np.abs(np.asarray(v)) <= 0.10))  # noqa: E731
    for setting in args.settings or [""]:
        for kv in filter(None, setting.split(",")):
            k, v = kv.split("=")
            setattr(P, k, v == "1")
        prof = P.fit_ort(raw, "refit", RuntimeSettings())[0]
        e = _errors(prof, data["specs"], data["ms"])
        cal = _errors(prof, raw["specs"], raw["e2e_ms"])
        per = {st: [v for lab, v in e.items() if lab.endswith(st)] for st in STYLES}
        print(f"{setting or 'as is'}: all {within(list(e.values())):.0%} (median {100 * np.median(list(e.values())):+.1f} %), "
              + ", ".join(f"{st} {within(v):.0%}" for st, v in per.items())
              + f"; calibration networks in sample {within(list(cal.values())):.0%}")
        for st, v in per.items():
            print(f"    {st:8s} " + " ".join(f"{100 * x:+.0f}" for x in v))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--seed", type=int, default=202)
    m.add_argument("--count", type=int, default=48)
    m.add_argument("--rounds", type=int, default=8)
    m.add_argument("--profile", default="x86-xeon-avx512-ort")
    m.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("data")
    s.add_argument("--record", default=str(ROOT / "experiments/new_machine/profile_record.json.gz"))
    s.add_argument("settings", nargs="*", help="FLAG=0|1,... of augur_nas.measure._profiling, one refit each")
    args = ap.parse_args(argv)
    (measure if args.cmd == "measure" else score)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
