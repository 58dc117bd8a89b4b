"""The cold oracle of two revisions side by side: which one is faster, measured in one run.

Run:  taskset -c 1 python experiments/compare_revisions.py OLD_REV [--new-rev HEAD|worktree] [--rounds 5]

Each revision is checked out into a temporary git worktree (the working tree itself stands for
``--new-rev worktree``, the default). Rounds alternate between the two, one fresh process per
round running ``experiments/bench_oracle.py --rounds 1`` of that revision against its own
package, so both see the same spells of this machine's drifting speed. Reports each side's
median cold candidates/s with min..max and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLD = re.compile(r"batched, cold\s+median\s+([\d,]+)")


def _worktree(rev: str, where: str) -> str:
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", where, rev], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return where


def _cold(tree: str, args) -> float:
    env = dict(os.environ, PYTHONPATH=tree, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, os.path.join(tree, "experiments", "bench_oracle.py"), "--rounds", "1",
                          "--single", "1", "--n", str(args.n), "--device", args.device, "--space", args.space],
                         cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    m = COLD.search(out)
    if m is None:
        raise SystemExit(f"no cold figure in the output of {tree}:\n{out}")
    return float(m.group(1).replace(",", ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old_rev")
    ap.add_argument("--new-rev", default="worktree")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--device", default="tk1-gpu")
    ap.add_argument("--space", default="spaces/mobile.yaml")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="augur-compare-")
    made = []
    try:
        old = _worktree(args.old_rev, os.path.join(tmp, "old"))
        made.append(old)
        new = ROOT
        if args.new_rev != "worktree":
            new = _worktree(args.new_rev, os.path.join(tmp, "new"))
            made.append(new)
        res = {"old": [], "new": []}
        for r in range(args.rounds):
            order = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
            for name, tree in order:
                res[name].append(_cold(tree, args))
        o, n = statistics.median(res["old"]), statistics.median(res["new"])
        print(f"cold oracle, {args.space} on {args.device}, {args.n:,} candidates, {args.rounds} alternating rounds "
              f"(one process each)")
        print(f"old {args.old_rev:>10}: median {o:12,.0f} cand/s   min..max {min(res['old']):,.0f}..{max(res['old']):,.0f}")
        print(f"new {args.new_rev:>10}: median {n:12,.0f} cand/s   min..max {min(res['new']):,.0f}..{max(res['new']):,.0f}")
        print(f"ratio new / old (medians): {n / o:.2f}x")
    finally:
        for tree in made:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
