"""Benchmark: `augur-nas split` predicted against two ONNX Runtime sessions run back to back.

    python experiments/split_measured.py            # resnet18, mobilenet_v2, squeezenet1_1 (<= 8 min)
    python experiments/split_measured.py --quick    # squeezenet1_1, every 4th split point, 3 rounds (~1 min)

For each network and each split point `augur-nas split` lists (device = server = this machine's
profile, x86-2core-ort: ONNX Runtime, CPU, 1 intra-op thread, ORT_ENABLE_ALL, batch 1), the
model is exported once (`augur_nas.io.onnx.export_onnx`, random weights) and cut at the split
tensor into a prefix (input -> tensor) and a suffix (tensor -> output) with `onnx.utils.Extractor`;
both are timed as separate ONNX Runtime sessions by the project's drift-robust protocol
(`augur_nas.measure.time_runners`: interleaved rounds, median), together with the whole model,
in groups of a few split points (every group holds the whole model too). The measured total of a
split is prefix + the link model's transfer (uplink of the tensor + rtt + downlink of the output,
the same numbers as the prediction: the link is simulated, added rather than slept, not a network)
+ suffix; all-local is the whole model, all-server the whole model plus the input's transfer. The
suffix is fed what its prefix computes. The machine's speed wanders: every group also times the
profile's five speed anchors, and its timings are divided by the group's speed factor (anchors now /
when the profile was built), as `augur-nas validate` does, so the halves are compared with the
profile at the speed it was built at (`speed_factor_by_group` in the JSON). With
device = server the whole model run locally is always about the fastest, so the default link is
fast (1 Gbit/s, 0.5 ms rtt): the splits near the head are then within a few per cent of it and
choosing among them tests the compute predictions, not the transfer.

Reported (experiments/split_measured.md and .json): per network the share of split points whose
predicted total is within ±15% of the measured one, the same for the compute alone (device +
server, no transfer: the harder check), and whether the chosen split (the predicted best) is the
measured best or within 5% of it; the split-half noise of the timings beside them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETWORKS = ["resnet18", "mobilenet_v2", "squeezenet1_1"]
PROFILE = "x86-2core-ort"
GROUP = 6  # split points timed together (with the whole model), bounding the sessions held at once


def _cut_models(onnx, full_path, model, points, workdir):
    """``{cut: (prefix path, suffix path)}`` of the split points between the ends."""
    proto = onnx.load(full_path)
    ex = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(proto))  # the cut tensors need value_info
    final = proto.graph.output[0].name
    names = [n.name for n in model.program.nodes]
    out = {}
    for p in points:
        if p.kind != "split":
            continue
        tensor = _tensor_name(names, p, model)
        paths = (os.path.join(workdir, f"pre{p.cut}.onnx"), os.path.join(workdir, f"post{p.cut}.onnx"))
        onnx.save(ex.extract_model(["input"], [tensor]), paths[0])
        onnx.save(ex.extract_model([tensor], [final]), paths[1])
        out[p.cut] = paths
    return out


def _tensor_name(names, p, model):
    """The ONNX name of the tensor sent at a split point: its producing layer's (the exporter names
    a layer's output after it; views pass their input's name on)."""
    from augur_nas.lowering import lower
    from augur_nas._split import cut_points

    table = lower(model, model.encode())
    prod = int(cut_points(table, model.program.output).producer[p.cut, 0])
    name = "input" if prod < 0 else names[prod]
    return f"{name}.out" if name == "input" and prod >= 0 else name


def _time(paths: dict, settings, rounds, say):
    """``{label: Timing}`` of the ONNX files ``paths``, interleaved. A suffix (``postC``) is fed what
    its prefix (``preC``) computes from the prefix's random input: the data the server would get."""
    from augur_nas.measure import time_runners
    from augur_nas.measure._runners import OrtRunner

    runners = {label: OrtRunner(path, settings) for label, path in paths.items()}
    for label, r in runners.items():
        if label.startswith("post"):
            out = runners["pre" + label[4:]].run()[0]
            r.feed = {r.session.get_inputs()[0].name: out}
    got = time_runners(runners, rounds=rounds, round_s=0.05, warmup_s=0.2, max_wait_s=10.0, status=say)
    for r in runners.values():
        r.close()
    return got


def run_network(name, link, rounds, every, say) -> dict:
    import augur_nas as an
    from augur_nas.planner import split_points

    model = an.load_model(str(ROOT / "spaces" / "zoo" / f"{name}.yaml"))
    t0 = time.perf_counter()
    points = split_points(model, PROFILE, PROFILE, link)
    predict_s = time.perf_counter() - t0
    inner = [p for p in points if p.kind == "split"][::every]
    chosen = points[0:1] + inner + points[-1:]
    timed, noise, speeds = _measure(name, model, chosen, rounds, say)
    out = {"network": name, "split_points": len(points), "timed": len(chosen), "predict_s": predict_s,
           "speed_factor_by_group": speeds,
           "noise_median": float(np.median(noise)) if noise else None,
           "noise_p90": float(np.percentile(noise, 90)) if noise else None}
    for mode, norm in (("as_timed", False), ("speed_normalized", True)):
        ms = {lab: float(np.median([t / (sp if norm else 1.0) for t, sp in v])) for lab, v in timed.items()}
        out[mode] = _summary(_rows(chosen, ms))
    return out


def _measure(name, model, chosen, rounds, say):
    """``({label: [(median ms, the group's speed factor)]}, noises, speed factors)``: the whole
    model (``full``) and both halves of every split point, timed in groups with the profile's
    speed anchors (a factor of 1 without anchors)."""
    import onnx

    import augur_nas as an
    from augur_nas.io.onnx import export_onnx
    from augur_nas.measure import RuntimeSettings
    from augur_nas.measure._profiling import anchor_speed, profile_anchors

    profile = an.load_profile(PROFILE)
    settings = RuntimeSettings.from_dict(profile.runtime_settings)  # the profile's own
    anchors_ref, anchor_items = profile_anchors(profile)
    timed, noise, speeds = {}, [], []
    with tempfile.TemporaryDirectory(prefix="augur-split-") as tmp:
        full = os.path.join(tmp, "full.onnx")
        export_onnx(model, full)
        anchors = {}
        for label, m in anchor_items:
            anchors[label] = os.path.join(tmp, f"{label}.onnx")
            export_onnx(m, anchors[label])
        cuts = _cut_models(onnx, full, model, chosen, tmp)
        keys = list(cuts)
        for g in range(0, max(len(keys), 1), GROUP):
            paths = {"full": full, **anchors}
            for c in keys[g:g + GROUP]:
                paths[f"pre{c}"], paths[f"post{c}"] = cuts[c]
            got = _time(paths, settings, rounds, say)
            sp = anchor_speed({k: got[k].median_ms for k in anchors}, anchors_ref)
            speed = sp[0] if sp else 1.0
            speeds.append(speed)
            for lab, t in got.items():
                if lab not in anchors:
                    noise.append(t.noise)
                    timed.setdefault(lab, []).append((t.median_ms, speed))
            say(f"{name}: group {g // GROUP + 1}/{(len(keys) + GROUP - 1) // GROUP} timed (whole model "
                f"{got['full'].median_ms:.2f} ms as timed, machine speed factor {speed:.3f})")
    return timed, noise, speeds


def _rows(chosen, measured: dict) -> list:
    rows = []
    full_ms = measured["full"]
    for p in chosen:
        transfer = p.uplink_ms + p.rtt_ms + p.downlink_ms
        if p.kind == "all-local":
            dev_m, srv_m = full_ms, 0.0
        elif p.kind == "all-server":
            dev_m, srv_m = 0.0, full_ms
        else:
            dev_m, srv_m = measured[f"pre{p.cut}"], measured[f"post{p.cut}"]
        rows.append({"cut": p.cut, "after": p.after, "kind": p.kind, "tensor": list(p.tensor_shape),
                     "predicted": {"device_ms": p.device_ms, "server_ms": p.server_ms, "transfer_ms": transfer,
                                   "total_ms": p.total_ms},
                     "measured": {"device_ms": dev_m, "server_ms": srv_m, "transfer_ms": transfer,
                                  "total_ms": dev_m + transfer + srv_m}})
    return rows


def _summary(rows) -> dict:
    pred = np.array([r["predicted"]["total_ms"] for r in rows])
    meas = np.array([r["measured"]["total_ms"] for r in rows])
    cp = np.array([r["predicted"]["device_ms"] + r["predicted"]["server_ms"] for r in rows])
    cm = np.array([r["measured"]["device_ms"] + r["measured"]["server_ms"] for r in rows])
    err = pred / meas - 1
    cerr = cp / cm - 1
    best_pred = int(np.argmin(pred))
    best_meas = int(np.argmin(meas))
    gap = meas[best_pred] / meas[best_meas] - 1
    for r, e, c in zip(rows, err, cerr):
        r["error_pct"] = 100 * float(e)
        r["compute_error_pct"] = 100 * float(c)
    return {"rows": rows, "within_15pct": float(np.mean(np.abs(err) <= 0.15)),
            "compute_within_15pct": float(np.mean(np.abs(cerr) <= 0.15)),
            "worst_error_pct": 100 * float(err[np.argmax(np.abs(err))]),
            "worst_compute_error_pct": 100 * float(cerr[np.argmax(np.abs(cerr))]),
            "chosen": rows[best_pred]["after"], "measured_best": rows[best_meas]["after"],
            "chosen_vs_measured_best_pct": 100 * float(gap), "chosen_ok": bool(gap <= 0.05)}


def _report(res: dict) -> str:
    lines = [f"# split: predicted against two ONNX Runtime sessions ({res['date']})", "",
             f"`python experiments/split_measured.py{' --quick' if res['quick'] else ''}`; device = server = "
             f"{PROFILE} (this machine's profile: ONNX Runtime CPU, 1 thread); link: {res['link']}; the transfer is the "
             "link model's (simulated), so the totals differ only by the compute of the two halves.", "",
             "| network | split points (timed) | total within ±15% | compute within ±15% | worst total err | "
             "worst compute err | chosen split | measured best | chosen vs best | noise median / p90 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in res["networks"]:
        for mode in ("as_timed", "speed_normalized"):
            m = n[mode]
            lines.append(f"| {n['network']} ({mode.replace('_', ' ')}) | {n['split_points']} ({n['timed']}) | "
                         f"{m['within_15pct']:.0%} | {m['compute_within_15pct']:.0%} | {m['worst_error_pct']:+.1f}% | "
                         f"{m['worst_compute_error_pct']:+.1f}% | {m['chosen']} | {m['measured_best']} | "
                         f"{m['chosen_vs_measured_best_pct']:+.1f}% ({'ok' if m['chosen_ok'] else 'more than 5%'}) | "
                         f"{100 * n['noise_median']:.1f}% / {100 * n['noise_p90']:.1f}% |")
    speeds = ", ".join(f"{n['network']} {min(n['speed_factor_by_group']):.2f}-{max(n['speed_factor_by_group']):.2f}"
                       for n in res["networks"])
    lines += ["", "as timed: medians as measured; speed normalized: each group divided by its speed factor (the "
              f"profile's anchors now / when it was built: {speeds}); a factor far from 1 says the profile does "
              "not describe this machine as it runs now (`augur-nas check`).", "",
              f"wall time {res['elapsed_s']:.0f} s; load average at the start {res['load_start']:.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    global PROFILE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="squeezenet1_1 only, every 4th split point, 3 rounds")
    ap.add_argument("--networks", default=None, help=f"comma-separated zoo names (default: {','.join(NETWORKS)})")
    ap.add_argument("--uplink", default="1Gbps")
    ap.add_argument("--downlink", default=None)
    ap.add_argument("--rtt", default="0.5ms")
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds (default 7; --quick 3)")
    ap.add_argument("--profile", default=PROFILE, help=f"device = server profile (default {PROFILE}; a profile "
                                                       "rebuilt on this machine where there is one)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "split_measured"),
                    help="report path without extension (.md and .json are written)")
    args = ap.parse_args(argv)
    from augur_nas._atomic import atomic_write
    from augur_nas.planner import Link

    PROFILE = args.profile
    link = Link.of(args.uplink, args.downlink, args.rtt)
    nets = args.networks.split(",") if args.networks else (["squeezenet1_1"] if args.quick else NETWORKS)
    rounds = args.rounds or (3 if args.quick else 7)
    every = 4 if args.quick else 1

    def say(msg):
        print(f"[split_measured] {msg}", file=sys.stderr, flush=True)

    t0 = time.time()
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick,
           "link": link.describe(), "profile": PROFILE, "rounds": rounds, "load_start": os.getloadavg()[0],
           "networks": [run_network(n, link, rounds, every, say) for n in nets]}
    res["elapsed_s"] = time.time() - t0
    suffix = "_quick" if args.quick else ""
    atomic_write(args.out + suffix + ".json", json.dumps(res, indent=1))
    atomic_write(args.out + suffix + ".md", _report(res))
    print(_report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
