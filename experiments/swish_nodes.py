"""Issue 11: what ONNX Runtime runs for swish (and, for comparison, ReLU6, hard-swish, sigmoid)
after a 1x1 expansion conv and a depthwise conv, per node, against the shipped profile's price of
each layer. Not shipped; measures (short: 12 tiny networks, ~0.3 s of runs each):

    taskset -c 1 python experiments/swish_nodes.py

Our export writes swish as x * sigmoid(x); ONNX Runtime 1.32 fuses it into a QuickGelu node named
"<swish layer>/QuickGeluFusion/" that runs alone on the conv's blocked output (experiments/kernel_spans.md).
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augur_nas.measure import _profiling as P  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402
from augur_nas.models import load_space_dict  # noqa: E402
from augur_nas.profile import load_profile  # noqa: E402


def spec(act, c, res):
    return {"name": "sw", "input": {"channels": c, "resolution": res}, "layers": [
        {"conv": {"name": "c1", "out": c * 4, "kernel": 1}}, {"batchnorm": {"name": "c1.bn"}}, {act: {"name": "c1.act"}},
        {"dwconv": {"name": "dw", "kernel": 3}}, {"batchnorm": {"name": "dw.bn"}}, {act: {"name": "dw.act"}},
        {"conv": {"name": "c2", "out": c, "kernel": 1}}, {"batchnorm": {"name": "c2.bn"}}]}


def main():
    lat = load_profile("x86-xeon-avx512-ort").latency
    with tempfile.TemporaryDirectory() as d:
        for act in ("swish", "relu6", "hswish", "sigmoid"):
            for c, res in ((96, 56), (240, 14), (672, 7)):
                net = P._OrtNet(f"sw_{act}", load_space_dict(spec(act, c, res)), d, lat.fuse)
                try:
                    walls, times, _ = P.profiled_runs(net, RuntimeSettings(), d, 0.3, 5, 200)
                    st = lat.slot_times(net.table)[:, 0]
                finally:
                    net.remove()
                print(f"{act} {c}x{res}x{res}: wall {np.median(walls) * 1e3:.3f} ms, layer sum {st.sum() + lat.network_overhead_ms:.3f} ms")
                for node, (ms, op, _, nbytes) in sorted(times.items(), key=lambda x: -x[1][0]):
                    print(f"   {node[:40]:40s} {op:14s} {ms * 1000:8.1f} us  first input {nbytes / 1e6:.2f} MB")
                print("   priced:", {net.table.names[s]: round(float(st[s]) * 1000, 1) for s in range(len(st)) if st[s] > 0})


if __name__ == "__main__":
    main()
