"""Memory against batch on ONNX Runtime: measured peak RSS of zoo networks at batch 1..32 against the
x86-2core-ort profile's memory prediction.

    PYTHONPATH=. python experiments/memory_batch.py [--batches 1,2,4,8,16,32] [--out experiments/memory_batch.json]

Each (network, batch) runs in a fresh child process (augur_nas.measure._memory.measure_memory: peak
RSS, VmHWM, over session creation and ``--runs`` forward passes), one at a time.  RSS does not depend
on the machine's load the way timings do, but the arena ONNX Runtime grows is allocator-dependent: runs
are repeated ``--repeats`` times and the spread is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from augur_nas import Oracle, load_model, load_profile, lower, totals  # noqa: E402
from augur_nas.io.onnx import export_onnx  # noqa: E402
from augur_nas.measure._memory import measure_memory  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402

NETWORKS = ["spaces/zoo/alexnet.yaml", "spaces/zoo/resnet18.yaml", "spaces/zoo/mobilenet_v2.yaml",
            "spaces/zoo/googlenet.yaml", "spaces/zoo/nin.yaml"]


def _dynamic_batch(path):
    """The exported file has batch 1 baked in: make the batch axis symbolic so one file runs every batch."""
    import onnx

    m = onnx.load(path)
    for vi in list(m.graph.input) + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim[0]
        d.ClearField("dim_value")
        d.dim_param = "N"
    del m.graph.value_info[:]
    onnx.save(m, path)


def run(networks, batches, repeats, runs, profile_name):
    profile = load_profile(profile_name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in networks:
            model = load_model(os.path.join(ROOT, net))
            path = os.path.join(tmp, os.path.basename(net) + ".onnx")
            export_onnx(model, path)
            _dynamic_batch(path)
            oracle = Oracle(model, profile)
            for b in batches:
                settings = RuntimeSettings(batch=b)
                peaks = [measure_memory(path, settings, runs=runs)["peak_rss_mb"] for _ in range(repeats)]
                pred = float(np.asarray(oracle.evaluate(np.zeros((1, 0), dtype=np.int64), batch=b)["memory_mb"])[0])
                # the batch term's activations: every tensor the network materialises (the caffe
                # figure), which tracks ONNX Runtime's growth better than the peak (experiments/memory_batch.md)
                act_mb = float(np.asarray(totals(lower(model, np.zeros((1, 0), dtype=np.int64)))["activation_bytes"])[0]) / 2**20
                rows.append({"network": net, "batch": b, "measured_mb": float(np.median(peaks)),
                             "activations_mb": act_mb,
                             "measured_spread_mb": float(max(peaks) - min(peaks)), "predicted_mb": pred})
                print(f"{net:34s} batch {b:3d}: measured {np.median(peaks):8.1f} MB (spread {max(peaks) - min(peaks):5.1f})"
                      f"  predicted {pred:8.1f} MB  error {100 * (pred / np.median(peaks) - 1):+6.1f}%", flush=True)
    return rows


def fit_batch_coef(rows) -> float:
    """The ``batch_activation_coef`` that minimises the squared relative error over every point with
    batch > 1, given each network's batch-1 prediction (a grid, then the best point; the model is
    one number)."""
    pred1 = {r["network"]: r["predicted_mb"] for r in rows if r["batch"] == 1}
    pts = [r for r in rows if r["batch"] > 1 and r["network"] in pred1]
    grid = np.linspace(0.0, 3.0, 3001)
    err = [sum(((pred1[r["network"]] + c * (r["batch"] - 1) * r["activations_mb"]) / r["measured_mb"] - 1) ** 2
               for r in pts) for c in grid]
    return float(grid[int(np.argmin(err))])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--profile", default="x86-2core-ort")
    ap.add_argument("--out", default=None)
    ap.add_argument("--fit", default=None, metavar="JSON", help="fit batch_activation_coef to an earlier --out file")
    a = ap.parse_args(argv)
    if a.fit:
        with open(a.fit) as f:
            print(f"batch_activation_coef = {fit_batch_coef(json.load(f)['rows']):.3f}")
        return
    rows = run(a.networks.split(","), [int(b) for b in a.batches.split(",")], a.repeats, a.runs, a.profile)
    err = np.array([r["predicted_mb"] / r["measured_mb"] - 1 for r in rows])
    print(f"{len(rows)} points: |error| median {100 * np.median(abs(err)):.1f}%, max {100 * abs(err).max():.1f}%; "
          f"within +-15%: {int((abs(err) <= 0.15).sum())}/{len(rows)}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"profile": a.profile, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
