"""Snapshot of CLI outputs (stdout, stderr, exit code) for refactors that must not change them.

    PYTHONPATH=$PWD python experiments/cli_snapshot.py OUT_DIR     # then: diff -r OLD NEW
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands():
    zoo = sorted(glob.glob(os.path.join(ROOT, "spaces", "zoo", "*.yaml")))
    spaces = sorted(glob.glob(os.path.join(ROOT, "spaces", "*.yaml")))
    for m in zoo:
        yield ["analyze", m, "--json"]
        yield ["predict", m, "--device", "tx1-gpu", "--json"]
    yield ["analyze", zoo[0]]
    yield ["predict", zoo[0], "--device", "tk1-cpu"]
    yield ["devices", "--json"]
    yield ["devices"]
    for s in spaces:
        yield ["space", s, "--json", "--samples", "3"]
    yield ["space", spaces[0], "--decode", "1"]
    for s in spaces[:3]:
        yield ["search", s, "--device", "tx1-gpu", "--trials", "60", "--seed", "1", "--no-progress", "--out", "{tmp}"]
    yield ["search", spaces[0], "--device", "tx1-gpu", "--sampler", "random", "--trials", "20", "--seed", "1",
           "--latency", "30ms", "--no-progress", "--out", "{tmp}"]
    for cmd in ["", "analyze", "predict", "devices", "space", "search", "export", "measure", "profile", "validate",
                "fit-residual"]:
        yield [cmd, "--help"] if cmd else ["--help"]
    yield []
    yield ["nosuch"]
    yield ["analyze", "/nonexistent.yaml"]
    yield ["predict", zoo[0], "--device", "nosuch"]
    yield ["predict", zoo[0], "--device", "tx1-gpu", "--batch", "0"]
    yield ["search", spaces[0], "--device", "tx1-gpu", "--memory", "-3MB"]
    yield ["search", spaces[0], "--device", "tx1-gpu", "--trials", "0"]
    yield ["export", spaces[0], "-o", "{tmp}/x.onnx"]


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for i, cmd in enumerate(commands()):
        with tempfile.TemporaryDirectory() as tmp:
            argv = [a.replace("{tmp}", "TMP").replace(ROOT, "ROOT") for a in cmd]
            real = [a.replace("{tmp}", tmp) for a in cmd]
            p = subprocess.run([sys.executable, "-m", "augur_nas.cli", *real], capture_output=True, text=True,
                               cwd=ROOT)
            def clean(s):
                return s.replace(tmp, "TMP").replace(ROOT, "ROOT")
            lines = [" ".join(argv), f"rc={p.returncode}", "--- stdout", clean(p.stdout), "--- stderr", clean(p.stderr)]
        with open(os.path.join(out_dir, f"{i:03d}.txt"), "w") as f:
            f.write("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
