"""Oracle speed: latency + memory of 100,000 candidates of spaces/mobile.yaml on one core.

Run:  taskset -c 0 python experiments/bench_oracle.py [--device tk1-gpu] [--n 100000]
      taskset -c 0 python experiments/bench_oracle.py --device x86-2core-ort,tk1-gpu   (side by side)
      taskset -c 0 python experiments/bench_oracle.py --space spaces/nb201.yaml --device x86-2core-ort
      taskset -c 0 python experiments/bench_oracle.py --device x86-2core-ort --peak 1000000
      taskset -c 0 python experiments/bench_oracle.py --targets      (issue 12's targets, one report)
Timed side by side, in interleaved rounds of one process (medians with min..max):
- cold: a fresh Oracle each round (made before the clock starts: loading the profile is paid
  once per process), so every segment grid is priced again (the figure quoted);
- warm: one Oracle asked again, its segment grids kept from the earlier rounds (what a search
  that asks for batch after batch of the same space sees);
- one at a time: the same oracle asked candidate by candidate (its grids kept from the batch:
  what NAS code that prices one candidate per call sees after its first call).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import augur_nas as an  # noqa: E402
from augur_nas.oracle import Oracle  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="spaces/mobile.yaml")
    ap.add_argument("--device", default="tk1-gpu",
                    help="a profile, or several comma-separated (x86-2core-ort,tk1-gpu): timed side by side "
                         "in the same interleaved rounds, with each one's ratio to the last")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--peak", type=int, default=0, metavar="N",
                    help="instead: price N candidates (e.g. 1000000) with the first device in one call and "
                         "report the process's peak resident memory")
    ap.add_argument("--targets", action="store_true",
                    help="issue 12's targets in one run for both measured ORT profiles (x86-2core-ort, "
                         "x86-xeon-avx512-ort): spaces/mobile.yaml side by side with tk1-gpu, spaces/nb201.yaml "
                         "(--n candidates each, --rounds fresh-Oracle rounds interleaved), and the peak memory of "
                         "1,000,000 mobile candidates (a second process)")
    args = ap.parse_args()
    if args.targets:
        return _targets(args)
    space = an.load_space(args.space)
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    if args.peak:
        return _peak(space, devices[0], args.peak)
    X = space.sample(args.n, seed=0)
    rows = {d: _Row(space, d, X) for d in devices}
    for _ in range(args.rounds):
        for d in devices:  # interleaved: a slow spell of the machine hits every device alike
            rows[d].round(space, X, args.single)
    print(f"{space.name}: {args.n:,} candidates (latency_ms + memory_mb, lowering and residual included), "
          f"{args.rounds} interleaved rounds, one process, load average {_load()}")
    for d in devices:
        rows[d].report()
    if len(devices) > 1:
        base = statistics.median(rows[devices[-1]].cold)
        for d in devices[:-1]:
            print(f"ratio cold {d} / {devices[-1]} (medians): {statistics.median(rows[d].cold) / base:.3f}")


ROOT = Path(__file__).resolve().parents[1]
TARGET_MOBILE, TARGET_RATIO, TARGET_NB201, TARGET_PEAK_MB = 1_000_000, 0.5, 100_000, 2048
ORT, XEON = "x86-2core-ort", "x86-xeon-avx512-ort"


def _load() -> str:
    """The 1, 5 and 15 minute load averages (figures under load are provisional)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _targets(args):
    """Every speed target of issue 12 in one report, for both measured ORT profiles (x86-2core-ort:
    fusion, layout and 300 residual trees; x86-xeon-avx512-ort, the profile shipped as this
    machine's: fusion, layout, per-family factors, no trees) beside tk1-gpu: medians and
    min..max of the cold rounds."""
    mobile = an.load_space(ROOT / "spaces" / "mobile.yaml")
    nb201 = an.load_space(ROOT / "spaces" / "nb201.yaml")
    Xm, Xn = mobile.sample(args.n, seed=0), nb201.sample(args.n, seed=0)
    rows = {("mobile", d): (_Row(mobile, d, Xm, f"mobile {d}"), mobile, Xm, args.single if d != XEON else 0)
            for d in (ORT, XEON, "tk1-gpu")}
    rows.update({("nb201", d): (_Row(nb201, d, Xn, f"nb201 {d}"), nb201, Xn, 0) for d in (ORT, XEON)})
    for _ in range(args.rounds):
        for row, space, X, n_single in rows.values():  # interleaved: a slow spell of the machine hits all alike
            row.round(space, X, n_single)
    print(f"{args.n:,} candidates per space (latency_ms + memory_mb, lowering and residual included), "
          f"{args.rounds} interleaved rounds, one process, pid {os.getpid()}, load average {_load()}")
    for row, *_ in rows.values():
        row.report()
    cold = {k: statistics.median(r.cold) for k, (r, *_) in rows.items()}
    peak = _peak_subprocess(1_000_000)
    print(f"\n-- targets (cold medians; load average now {_load()})")
    for d in (ORT, XEON):
        for what, got, want, fmt in ((f"mobile, {d}, cand/s", cold["mobile", d], TARGET_MOBILE, "{:,.0f}"),
                                     (f"ratio {d} / tk1-gpu, mobile", cold["mobile", d] / cold["mobile", "tk1-gpu"],
                                      TARGET_RATIO, "{:.3f}"),
                                     (f"nb201, {d}, cand/s", cold["nb201", d], TARGET_NB201, "{:,.0f}")):
            print(f"{what:48s} {fmt.format(got):>12s}   target >= {fmt.format(want)}   "
                  f"{'met' if got >= want else 'MISSED'}")
    if peak is not None:
        print(f"{'peak RSS, 1,000,000 mobile candidates, MB':48s} {peak:>12,.0f}   target < {TARGET_PEAK_MB:,}   "
              f"{'met' if peak < TARGET_PEAK_MB else 'MISSED'}")


def _peak_subprocess(n):
    """Peak resident memory (MB) of a fresh process pricing ``n`` mobile candidates in one call."""
    cmd = [sys.executable, __file__, "--space", str(ROOT / "spaces" / "mobile.yaml"), "--device", ORT,
           "--peak", str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if "peak resident memory" in line:
            print(line)
            return float(line.split("peak resident memory of the process")[1].split("MB")[0].replace(",", ""))
    print(f"peak run failed: {out.stderr.strip()[-500:]}")
    return None


class _Row:
    """One device's timings across the rounds."""

    def __init__(self, space, device, X, label=None):
        self.device = device
        self.label = label or device
        self.warm_oracle = Oracle(space, device)
        self.warm_oracle.evaluate(X[:1000], breakdown=False)
        self.cold, self.warm, self.single = [], [], []
        self.res = None

    def round(self, space, X, n_single):
        oracle = Oracle(space, self.device)
        t = time.perf_counter()
        self.res = oracle.evaluate(X, breakdown=False)
        self.cold.append(len(X) / (time.perf_counter() - t))
        t = time.perf_counter()
        self.warm_oracle.evaluate(X, breakdown=False)
        self.warm.append(len(X) / (time.perf_counter() - t))
        if n_single:
            t = time.perf_counter()
            for x in X[:n_single]:
                oracle.evaluate(x[None, :], breakdown=False)
            self.single.append(n_single / (time.perf_counter() - t))

    def report(self):
        mc, mw = (statistics.median(v) for v in (self.cold, self.warm))
        print(f"-- {self.label}")
        print(f"batched, cold  median {mc:12,.0f} cand/s   min..max {min(self.cold):,.0f}..{max(self.cold):,.0f}   (fresh Oracle)")
        print(f"batched, warm  median {mw:12,.0f} cand/s   min..max {min(self.warm):,.0f}..{max(self.warm):,.0f}   (grids kept)")
        if self.single:
            ms = statistics.median(self.single)
            print(f"one at a time  median {ms:12,.0f} cand/s   min..max {min(self.single):,.0f}..{max(self.single):,.0f}")
            print(f"ratio cold / one at a time (medians) {mc / ms:,.0f}x", end="; ")
        print(f"latency of the batch: median {float(statistics.median(self.res['latency_ms'])):.2f} ms")


def _peak(space, device, n):
    import resource

    X = space.sample(n, seed=0)
    t = time.perf_counter()
    Oracle(space, device).evaluate(X, breakdown=False)
    dt = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"{space.name} on {device}: {n:,} candidates in one call, {n / dt:,.0f} cand/s; "
          f"peak resident memory of the process {peak_mb:,.0f} MB (encodings included)")



if __name__ == "__main__":
    main()
