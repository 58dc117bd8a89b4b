"""``augur-nas search``: the Pareto front of predicted latency against an accuracy objective."""

from __future__ import annotations

import os
import re
import sys

from .._format import fmt_count, table
from ..search import DEFAULT_SAMPLER, DEFAULT_TRIALS, SAMPLERS
from ._args import nonneg_int, positive_int
from ._command import Command


def _search_arguments(p) -> None:
    p.add_argument("space", help="search space YAML file")
    p.add_argument("--device", required=True, metavar="NAME|FILE",
                   help="a shipped device profile (see `augur-nas devices`) or a profile YAML file")
    p.add_argument("--latency", metavar="LIMIT", help="hard limit on predicted latency, e.g. 50ms or 0.05s")
    p.add_argument("--memory", metavar="LIMIT", help="hard limit on predicted memory, e.g. 300MB or 1GB (1 MB = 2^20 bytes)")
    p.add_argument("--params", metavar="LIMIT", help="hard limit on parameters, e.g. 5M")
    p.add_argument("--macs", metavar="LIMIT", help="hard limit on MACs, e.g. 600M")
    p.add_argument("--objective", default="macs", metavar="macs|params|module:function",
                   help="accuracy objective to maximize: macs or params (capacity proxies, not accuracies), or a "
                        "function receiving the decoded architecture dict, called only for feasible candidates "
                        "(default: macs)")
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS,
                   help=f"Optuna sampler, or exhaustive (every candidate of a space of at most 10^7) (default: {DEFAULT_SAMPLER})")
    p.add_argument("--trials", type=positive_int, default=DEFAULT_TRIALS, metavar="N",
                   help=f"trials to run (more trials on a resumed study) (default: {DEFAULT_TRIALS})")
    p.add_argument("--seed", type=nonneg_int, default=None, metavar="S", help="sampler seed (default: random)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="sqlite:///FILE.db, journal:FILE (or FILE.log), postgresql://USER@HOST:PORT/DB "
                        "(default: in memory)")
    p.add_argument("--study-name", default=None, metavar="NAME",
                   help="study name; an existing study of that name in --storage is resumed (default: SPACE-DEVICE)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="processes working on the study (needs --storage), or pricing ranks in parallel for "
                        "--sampler exhaustive (default: 1)")
    p.add_argument("--batch", type=positive_int, default=1, metavar="N",
                   help="images per forward pass priced by the oracle (default: 1)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: ./augur-out/SPACE-DEVICE)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show the progress bar (default: when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    # let `--memory -3MB` reach the strict limit parser (and be refused there) instead of argparse
    # taking "-3MB" for an option
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[A-Za-z]*$")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "search"


def cmd_search(args) -> int:
    from ..oracle import Oracle  # noqa: F401  (fail early if the oracle is missing)
    from ..profile import load_profile
    from ..search import parse_limits, search
    from ..models import load_space

    limits = parse_limits(args.latency, args.memory, args.params, args.macs)  # before any slow work
    space = load_space(args.space)
    device_name = load_profile(args.device).name
    out = args.out or os.path.join("augur-out", f"{_safe(space.name)}-{_safe(device_name)}")

    def log(msg):
        sys.stderr.write(f"augur-nas search: {msg}\n")
        sys.stderr.flush()

    res = search(space, args.device, objective=args.objective, sampler=args.sampler, trials=args.trials, seed=args.seed,
                 storage=args.storage, study_name=args.study_name, workers=args.workers, out=out, batch=args.batch,
                 progress=args.progress, log=log, **limits)
    m = res.meta
    rows = []
    builtin = m["objective"]["builtin"]
    for r in res.front[:40]:
        obj = fmt_count(r["objective"]) if builtin else f"{r['objective']:.6g}"
        rows.append([r["id"], f"{r['latency_ms']:.2f}", f"{r['memory_mb']:.1f}", fmt_count(r["params"]),
                     fmt_count(r["macs"]), obj, r["trial"]])
    lim = ", ".join(f"{k} <= {v:g}" for k, v in m["constraints"].items()) or "none"
    print(f"{m['space']} on {m['device']} (batch {m['batch']}): Pareto front of predicted latency (min) vs "
          f"{m['objective']['description']}; limits: {lim}")
    table(["id", "latency ms", "memory MB", "params", "MACs", f"objective ({m['objective']['name']})",
            "trial" if m["sampler"] != "exhaustive" else "rank"], rows)
    if len(res.front) > len(rows):
        print(f"... {len(res.front) - len(rows)} more in {os.path.join(out, 'pareto.csv')}")
    el = max(m["elapsed_s"], 1e-9)
    ran = m.get("trials_this_run", m["n_trials"])
    what = "candidates enumerated" if m["sampler"] == "exhaustive" else "trials"
    print(f"\n{m['n_trials']} {what} ({m['n_feasible']} feasible, {m['n_distinct']} distinct architectures), "
          f"sampler {m['sampler']}, {ran / el:.0f}/s over {el:.1f} s"
          + (f", study {m['study_name']!r} in {m['storage']}" if m.get("study_name") else ""))
    print(f"front: {len(res.front)} architectures; outputs in {out}/ (trials.csv, pareto.csv, pareto.json, "
          f"arch-NNN.yaml, pareto.png, pareto.html)")
    if res.interrupted:
        sys.stderr.write("augur-nas search: interrupted; kept what was found so far (outputs written)\n")
        return 130
    return 0


SEARCH = Command(
    "hardware-aware search: Pareto front of predicted latency vs an accuracy objective", _search_arguments, cmd_search,
    description="Search a space for the Pareto front of predicted latency (minimized) against an accuracy "
                "objective (maximized) under hard limits, pricing candidates in batches with the cost oracle. "
                "Writes trials.csv, pareto.csv, pareto.json, arch-NNN.yaml, pareto.png and pareto.html.")
