#!/usr/bin/env python3
"""The zoo against the paper: Table 1 counts, conv/fc MACs, and Table 4 memory (weights, data,
workspace), with Caffe-like alternatives for data and workspace.

    python3 experiments/zoo_vs_paper.py

Reads the Caffe prototxt of AlexNet, VGG-16, GoogLeNet and ResNet-50 from spaces/zoo/ and the
paper's figures from augur_nas/data/paper_tables.yaml. All memory is in MiB (the paper's "MB":
AlexNet's 60,965,224 float32 weights are 232.6 MiB, printed 233). See zoo_vs_paper.md.

Data (intermediate blobs) conventions compared:
  ours        every materialised tensor, in-place layers (ReLU, BatchNorm, Scale, Dropout whose
              input has no other reader) sharing their input's buffer; the input included
              (augur-nas' ``activation_bytes``)
  every-top   the input plus every layer's output counted on its own (in-place layers too)
  +splits     every-top plus Caffe's Split layers: a blob read by c > 1 layers gets c more tops
  peak        the largest sum of live tensors with buffer reuse (augur-nas' peak activation)
Workspace (im2col) conventions compared:
  ours        the largest single im2col buffer, 1x1/stride-1 convs needing none (one shared buffer)
  caffe-sum   Caffe's own buffers: one col_buffer_ per conv layer of kernel_dim*group x out pixels,
              none touched by 1x1 convs (Caffe skips im2col for them)
  gemm-sum    the sum over every conv layer, 1x1 included, of one GEMM's [k x m] matrix
              (k = kernel volume of one group), i.e. the matrices the paper's Augur extracts
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from augur_nas import analyze, load_model, lower  # noqa: E402

MiB = 2**20
MODELS = ("alexnet", "vgg16", "googlenet", "resnet50")
NORM = {"alexnet": "lrn", "googlenet": "lrn", "resnet50": "batchnorm"}
PAPER = yaml.safe_load((ROOT / "augur_nas" / "data" / "paper_tables.yaml").read_text())


def counts_row(name, res):
    paper = {(NORM.get(name, "norm") if t == "norm" else t): n for t, n in PAPER["layer_counts"][name].items()}
    ours = {t: v["count"] for t, v in res["by_type"].items()}
    cells = []
    for t, n in paper.items():
        if t == "total":
            got = sum(ours.get(k, 0) for k in paper if k != "total")
        else:
            got = ours.get(t, 0)
        cells.append(f"{t} {got}" + ("" if got == n else f" (paper {n})"))
    return ", ".join(cells)


def blob_graph(model):
    """Active Table-1 layers of a concrete model: (slot, out bytes) and each tensor's readers."""
    t = lower(model, np.zeros((1, model.n_genes), dtype=np.int64))
    mask = np.asarray(t.mask)[:, 0]
    out_b = 4 * np.asarray(t.out_elems)[:, 0].astype(float)
    counted = [s for s in range(t.L) if mask[s] and t.types[s] is not None]

    def source(i):
        """The layer whose tensor slot ``i`` passes on (inactive slots and aliases pass through)."""
        while i >= 0 and (not mask[i] or t.types[i] is None):
            i = t.inputs[i][0]
        return i

    readers: dict = {}
    for s in counted:
        for i in set(source(j) for j in t.inputs[s]):
            readers[i] = readers.get(i, 0) + 1
    return t, counted, out_b, readers


def memory_rows(name, model, res):
    t, counted, out_b, readers = blob_graph(model)
    tot = res["totals"]
    in_bytes = 4 * float(np.prod(res["input"]))
    every_top = in_bytes + sum(out_b[s] for s in counted)
    size_of = {-1: in_bytes, **{s: out_b[s] for s in counted}}
    splits = sum(c * size_of[i] for i, c in readers.items() if c > 1)
    layers = res["layers"]
    caffe_sum = sum(layer["workspace_bytes"] for layer in layers)
    gemm_sum = sum(4 * g["k"] * g["m"] for layer in layers if (g := layer["gemm"]) and layer["type"] == "conv")
    return {
        "weights": tot["weights_bytes"] / MiB,
        "data": {"ours": tot["activation_bytes"] / MiB, "every-top": every_top / MiB,
                 "+splits": (every_top + splits) / MiB,
                 "peak": (tot["peak_memory_bytes"] - tot["weights_bytes"]) / MiB},
        "workspace": {"ours": tot["workspace_bytes"] / MiB, "caffe-sum": caffe_sum / MiB, "gemm-sum": gemm_sum / MiB},
    }


def main() -> int:
    results = {}
    print("Table 1 layer counts (ours; the paper's figure where it differs)")
    for name in MODELS:
        model = load_model(ROOT / "spaces" / "zoo" / f"{name}.prototxt")
        res = analyze(model)
        results[name] = (model, res)
        print(f"  {name:9s}  {counts_row(name, res)}")

    print("\nMACs, millions (ours / paper's FLOPs row)")
    print(f"  {'model':9s}  {'conv':>17s}  {'fc':>13s}  {'all ops':>17s}")
    for name in MODELS:
        bt, tot = results[name][1]["by_type"], results[name][1]["totals"]
        p = PAPER["macs_millions"][name]
        conv, fc = bt["conv"]["macs"] / 1e6, bt["fc"]["macs"] / 1e6
        print(f"  {name:9s}  {conv:8.1f} / {p['conv']:<6}  {fc:5.1f} / {p['fc']:<5}  {tot['ops'] / 1e6:8.1f} / {p['total']:<6}")

    print("\nTable 4 memory, MiB (ours under each convention / the paper's parsed figure)")
    head = (f"  {'model':9s}  {'weights':>13s}  |  {'data: ours':>10s} {'every-top':>9s} {'+splits':>8s} {'peak':>6s}"
            f" {'paper':>6s}  |  {'ws: ours':>8s} {'caffe-sum':>9s} {'gemm-sum':>8s} {'paper':>6s}")
    print(head)
    rows = {}
    for name in MODELS:
        model, res = results[name]
        r = rows[name] = memory_rows(name, model, res)
        p = PAPER["memory_mb"]["parsed"][name]
        d, w = r["data"], r["workspace"]
        print(f"  {name:9s}  {r['weights']:6.1f} / {p['weights']:<4}  |  {d['ours']:10.1f} {d['every-top']:9.1f}"
              f" {d['+splits']:8.1f} {d['peak']:6.1f} {p['data']:6}  |  {w['ours']:8.1f} {w['caffe-sum']:9.1f}"
              f" {w['gemm-sum']:8.1f} {p['workspace']:6}")

    print("\nMeasured Caffe process memory (Table 4) minus what Caffe itself allocates:")
    print("  weights + ours (in-place shared blobs) + caffe-sum (per-layer col buffers) = Caffe's buffers")
    measured = PAPER["memory_mb"]["measured"]
    print(f"  {'device':8s}  " + "  ".join(f"{m:>24s}" for m in MODELS if m in measured["tk1-cpu"]))
    for dev, vals in measured.items():
        cells = []
        for name in MODELS:
            if name not in vals:
                continue
            r = rows[name]
            caffe = r["weights"] * (2 if dev.endswith("gpu") else 1) + r["data"]["ours"] + r["workspace"]["caffe-sum"]
            cells.append(f"{vals[name]:5} - {caffe:6.1f} = {vals[name] - caffe:5.1f}")
        print(f"  {dev:8s}  " + "  ".join(f"{c:>24s}" for c in cells))
    print("  (GPU runs: the weights twice, a host and a device copy in the same unified memory)")
    print("\nThe same with the paper's parsed figures (weights + data + workspace of Table 4):")
    for dev, vals in measured.items():
        cells = []
        for name in MODELS:
            if name not in vals:
                continue
            p = PAPER["memory_mb"]["parsed"][name]
            parsed = p["weights"] * (2 if dev.endswith("gpu") else 1) + p["data"] + p["workspace"]
            cells.append(f"{vals[name]:5} - {parsed:6.1f} = {vals[name] - parsed:5.1f}")
        print(f"  {dev:8s}  " + "  ".join(f"{c:>24s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
