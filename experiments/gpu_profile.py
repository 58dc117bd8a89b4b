"""Benchmark: a torch-CUDA profile of a GPU, built and validated in one go (issue 11, item 9).

    python experiments/gpu_profile.py --out DIR                  # on the GPU machine (about 6 minutes)
    python experiments/gpu_profile.py --out DIR --device cpu --quick   # a smoke run of the same path on a CPU

Steps, each an augur-nas command whose exact line goes into the report:

1. the machine's fingerprint with the GPU (``augur_nas.fingerprint.machine_fingerprint``);
2. ``augur-nas profile --backend torch --torch-device cuda --name NAME -o DIR/NAME.yaml --budget-s B``:
   eager PyTorch kernels on the grid, queued back to back as a network's layers are, then the
   per-call and per-layer overheads and a kernel scale from calibration networks run end to end,
   the speed anchors, and the GPU memory of the calibration networks; ``--record
   DIR/raw_torch.json.gz`` keeps every timing the fit read, to refit offline;
3. ``augur-nas check --device DIR/NAME.yaml --json`` (the fingerprint and the speed factor, now), and
   ``augur-nas calibrate --device DIR/NAME.yaml -o DIR/calibrated.yaml`` (the per-family correction
   from the calibration set timed here; scored offline against step 4's and 5's timings);
4. ``augur-nas validate spaces/zoo/*.yaml --device DIR/NAME.yaml``: the published-CNN zoo (never
   used by any fitting step), latency and GPU memory;
5. ``augur-nas validate --space ... --samples N --no-memory``: samples (seed 0) of the shipped spaces;
6. the report: DIR/gpu_profile.md and DIR/gpu_profile.json.

Every step is bounded (``--deadline-s``): a step that would not fit is left out and the report says so.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPACES = ["spaces/mobile.yaml", "spaces/resnet.yaml", "spaces/nb201.yaml", "spaces/fbnet.yaml"]


def run_cli(args, log: list, out_dir: Path, timeout_s: float):
    """One augur-nas command; returns ``(wall s, stdout)``. stderr goes to DIR/gpu_profile.log."""
    cmd = [sys.executable, "-m", "augur_nas.cli", *map(str, args)]
    log.append({"command": "augur-nas " + " ".join(map(str, args))})
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=max(10.0, timeout_s), env=env)
        rc, so, se = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        rc, so, se = 124, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), \
            (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
    wall = time.monotonic() - t
    log[-1].update(wall_s=round(wall, 1), rc=rc)
    with open(out_dir / "gpu_profile.log", "a", encoding="utf-8") as f:
        f.write(f"\n$ {log[-1]['command']}   (rc {rc}, {wall:.1f} s)\n{se[-20000:]}\n{so[-4000:]}\n")
    print(f"[{wall:6.1f} s, rc {rc}] {log[-1]['command']}", flush=True)
    return wall, so if rc == 0 else None


def summary_of(report: dict) -> dict:
    """The figures of a ``validate --json`` report that go into the benchmark's report."""
    s = report["summary"]
    keep = {k: v for k, v in s.items() if k not in ("settings", "excluded_in_training")}
    keep["per_network"] = [{k: r.get(k) for k in ("label", "group", "measured_ms", "measured_raw_ms", "layer_sum_ms",
                                                   "predicted_ms", "noise", "macs", "macs_baseline_ms", "measured_mb",
                                                   "predicted_mb")}
                           for r in report["networks"]]
    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder of the outputs")
    ap.add_argument("--name", default="h200-torch-cuda", help="the profile's name")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="torch device (cpu: a smoke run)")
    ap.add_argument("--budget-s", type=float, default=120.0, help="augur-nas profile --budget-s")
    ap.add_argument("--samples", type=int, default=6, help="samples per space (seed 0)")
    ap.add_argument("--deadline-s", type=float, default=420.0, help="the whole run ends within this")
    ap.add_argument("--quick", action="store_true", help="tiny budgets and a few zoo networks (a smoke run)")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from augur_nas.fingerprint import machine_fingerprint
    from augur_nas.measure._settings import RuntimeSettings

    settings = RuntimeSettings(backend="torch", torch_device=args.device)
    rep = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "fingerprint": machine_fingerprint(settings),
           "commands": [], "skipped": []}
    print(json.dumps(rep["fingerprint"]), flush=True)
    log = rep["commands"]
    left = lambda: args.deadline_s - (time.monotonic() - t_start)  # noqa: E731
    prof = out / f"{args.name}.yaml"
    budget = 20.0 if args.quick else args.budget_s
    wall, _ = run_cli(["profile", "--backend", "torch", "--torch-device", args.device, "--name", args.name,
                       "-o", prof, "--budget-s", budget, "--record", out / "raw_torch.json.gz"], log, out, left())
    rep["profile_wall_s"] = round(wall, 1)
    if not prof.exists():
        return write(out, rep, 1)
    _, so = run_cli(["check", "--device", prof, "--json"], log, out, min(60.0, left()))
    if so:
        rep["check"] = json.loads(so)
    zoo = sorted(glob.glob(str(ROOT / "spaces/zoo/*.yaml")))
    zoo = zoo[:4] if args.quick else zoo
    zoo_s = (60.0 if args.quick else 60.0) + 5.0 * len(zoo)  # timing, then one GPU-memory child per network
    if left() > zoo_s:
        _, so = run_cli(["validate", *[os.path.relpath(p, ROOT) for p in zoo], "--device", prof, "--json",
                         "--plot", out / "validate_zoo.png", "--max-wait-s", "20"], log, out, left() - 30)
        if so:
            rep["zoo"] = summary_of(json.loads(so))
    else:
        rep["skipped"].append(f"zoo validation ({left():.0f} s left, {zoo_s:.0f} needed)")
    samples = 2 if args.quick else args.samples
    if left() > 100:
        sp = [a for p in SPACES for a in ("--space", p)]
        _, so = run_cli(["validate", *sp, "--samples", samples, "--device", prof, "--json", "--no-memory",
                         "--max-wait-s", "20"], log, out, left() - 50)
        if so:
            rep["samples"] = summary_of(json.loads(so))
    else:
        rep["skipped"].append(f"sample validation ({left():.0f} s left)")
    # the per-family correction of the calibration set, timed here; scored offline on the same
    # validation timings (predictions need no GPU)
    if left() > 45:
        wall, _ = run_cli(["calibrate", "--device", prof, "-o", out / "calibrated.yaml", "--budget-s",
                           20 if args.quick else 30], log, out, left() - 2)
        rep["calibrate_wall_s"] = round(wall, 1)
    else:
        rep["skipped"].append(f"calibrate ({left():.0f} s left)")
    rep["total_wall_s"] = round(time.monotonic() - t_start, 1)
    return write(out, rep, 0)


def _acc(block, key: str = "layer_sum") -> str:
    b = (block or {}).get(key)
    if not b:
        return "-"
    return f"{100 * b['within_10pct']:.0f}% of {b['n']} (median |error| {b['median_abs_error_pct']:.1f}%)"


def write(out: Path, rep: dict, rc: int) -> int:
    with open(out / "gpu_profile.json", "w", encoding="utf-8") as f:
        json.dump(rep, f, indent=1, default=str)
    fp = rep["fingerprint"]
    lines = [f"# A torch-CUDA profile, built and validated ({rep['date']})", "",
             f"GPU: {fp.get('gpu_model')} ({fp.get('gpu_memory_mb')} MiB, compute capability {fp.get('gpu_capability')}), "
             f"CUDA {fp.get('cuda_runtime')}, cuDNN {fp.get('cudnn')}; host {fp.get('cpu_model')}, "
             f"{fp.get('logical_cores')} logical cores; torch {fp.get('runtime_version')}.", "",
             "| step | wall (s) | exit |", "|---|---:|---:|"]
    lines += [f"| `{c['command']}` | {c.get('wall_s')} | {c.get('rc')} |" for c in rep["commands"]]
    lines += [""]
    lines += ["| networks | layer sum ±10% (noise ≤ 5%) | all | MACs log-log (in sample) | raw timings, layer sum | "
              "noise median / p90 | GPU memory ±15% |", "|---|---|---|---|---|---|---|"]
    for g in ("zoo", "samples"):
        s = rep.get(g)
        if not s:
            continue
        nf, mem = s.get("noise_floor") or {}, s.get("memory") or {}
        lines.append(f"| {g} ({s.get('networks')}) | {_acc(s.get('clean'))} | {_acc(s.get('all'))} | "
                     f"{_acc(s.get('clean'), 'macs_loglog')} | {_acc((s.get('raw') or {}).get('clean'))} | "
                     f"{nf.get('median_pct', 0):.1f} / {nf.get('p90_pct', 0):.1f}% | "
                     + (f"{100 * mem['within_15pct']:.0f}% of {mem['networks']} (median {mem['median_abs_error_pct']:.1f}%)"
                        if mem.get("networks") else "-") + " |")
    lines.append("")
    if rep["skipped"]:
        lines += ["Skipped: " + "; ".join(rep["skipped"]), ""]
    with open(out / "gpu_profile.md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rc


if __name__ == "__main__":
    sys.exit(main())
