"""``augur-nas search``: the Pareto front of predicted latency against an accuracy objective."""

from __future__ import annotations

import os
import re
import sys

from .._atomic import check_out_dir
from .._format import fmt_count, table
from .._ram import ram_warning
from ..models import load_space
from ..profile import load_profile
from ..search import DEFAULT_SAMPLER, DEFAULT_TRIALS, SAMPLERS, parse_limits, search
from ..search._split import split_spec
from ._args import Once, nonneg_int, positive_int
from ._command import Command


def _search_arguments(p) -> None:
    p.add_argument("space", help="search space YAML file")
    p.add_argument("--device", action=Once, required=True, metavar="NAME|FILE",
                   help="a shipped device profile (see `augur-nas devices`) or a profile YAML file")
    p.add_argument("--latency", metavar="LIMIT", help="hard limit on predicted latency, e.g. 50ms or 0.05s")
    p.add_argument("--memory", metavar="LIMIT", help="hard limit on predicted memory, e.g. 300MB or 1GB (1 MB = 2^20 bytes)")
    p.add_argument("--params", metavar="LIMIT", help="hard limit on parameters, e.g. 5M")
    p.add_argument("--macs", metavar="LIMIT", help="hard limit on MACs, e.g. 600M")
    p.add_argument("--objective", default="macs", metavar="macs|params|module:function",
                   help="accuracy objective to maximize: macs or params (capacity proxies, not accuracies), or a "
                        "function receiving the decoded architecture dict, called only for feasible candidates "
                        "(default: macs)")
    p.add_argument("--sampler", default=None, choices=SAMPLERS,
                   help="exact (the exact Pareto front by dynamic programming over segments), an Optuna sampler, or "
                        "exhaustive (every candidate of a space of at most 10^7) (default: exact where it applies - "
                        "a macs/params objective, a profile whose latency is a sum over segments, no --trials, "
                        f"--storage or --workers - else {DEFAULT_SAMPLER}, seeded with the exact front of the layer sum)")
    p.add_argument("--trials", type=positive_int, default=None, metavar="N",
                   help=f"trials to run (more trials on a resumed study) (default: {DEFAULT_TRIALS}; "
                        "giving it asks for a sampling search)")
    p.add_argument("--front-size", type=positive_int, default=20, metavar="K",
                   help="members of an exact front written and shown: the fastest, the largest and evenly spaced "
                        "latencies between (default: 20; pareto.json says how many exist in all)")
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
    p.add_argument("--split-server", default=None, metavar="NAME|FILE",
                   help="price each candidate split between --device and this server profile: the latency "
                        "minimized and limited is the best split's total (see `augur-nas split`); needs --uplink")
    p.add_argument("--uplink", default=None, metavar="BW", help="with --split-server: device -> server bandwidth, "
                                                                "e.g. 20Mbps")
    p.add_argument("--downlink", default=None, metavar="BW", help="with --split-server: server -> device bandwidth "
                                                                  "(default: the uplink's)")
    p.add_argument("--rtt", default="0ms", metavar="T", help="with --split-server: round-trip time (default: 0ms)")
    p.add_argument("--split-dtype", default="float32", metavar="float32|float16|int8",
                   help="with --split-server: encoding of the tensors sent (default: float32)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: ./augur-out/SPACE-DEVICE); "
                   "checked before the search starts")
    p.add_argument("--change-limits", action="store_true",
                   help="resume a stored study with other limits than it was created with (every trial is "
                        "checked against the new limits)")
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
    limits = parse_limits(args.latency, args.memory, args.params, args.macs)  # before any slow work
    split = split_spec(args.split_server, args.uplink, args.downlink, args.rtt, args.split_dtype)
    if args.out is not None:
        check_out_dir(args.out)  # a bad --out fails now, not after the search
    space = load_space(args.space)
    profile = load_profile(args.device)
    device_name = profile.name
    out = args.out or os.path.join("augur-out", f"{_safe(space.name)}-{_safe(device_name)}")

    def log(msg):
        sys.stderr.write(f"augur-nas search: {msg}\n")
        sys.stderr.flush()

    res = search(space, args.device, objective=args.objective, sampler=args.sampler, trials=args.trials, seed=args.seed,
                 storage=args.storage, study_name=args.study_name, workers=args.workers, out=out, batch=args.batch,
                 progress=args.progress, log=log, front_size=args.front_size, change_limits=args.change_limits,
                 split_server=split and split.server, uplink=split and split.link, **limits)
    out = res.out_dir or out  # a temporary folder if the chosen one could not be written at the end
    m = res.meta
    rows = []
    builtin = m["objective"]["builtin"]
    for r in res.front[:40]:
        obj = fmt_count(r["objective"]) if builtin else f"{r['objective']:.6g}"
        rows.append([r["id"], f"{r['latency_ms']:.2f}", f"{r['memory_mb']:.1f}", fmt_count(r["params"]),
                     fmt_count(r["macs"]), obj, r["trial"]])
    lim = ", ".join(f"{k} <= {v:g}" for k, v in m["constraints"].items()) or "none"
    if m.get("split"):
        s = m["split"]
        print(f"latency: the best split between {m['device']} and {s['server']} (uplink {s['uplink_mbps']:g} Mbit/s, "
              f"downlink {s['downlink_mbps']:g} Mbit/s, rtt {s['rtt_ms']:g} ms, {s['dtype']})")
    print(f"{m['space']} on {m['device']} (batch {m['batch']}): Pareto front of predicted latency (min) vs "
          f"{m['objective']['description']}; limits: {lim}")
    table(["id", "latency ms", "memory MB", "params", "MACs", f"objective ({m['objective']['name']})",
            "trial" if m["sampler"] != "exhaustive" else "rank"], rows)
    if len(res.front) > len(rows):
        print(f"... {len(res.front) - len(rows)} more in {os.path.join(out, 'pareto.csv')}")
    el = max(m["elapsed_s"], 1e-9)
    ran = m.get("trials_this_run", m["n_trials"])
    what = "candidates enumerated" if m["sampler"] == "exhaustive" else "trials"
    if m["sampler"] == "exact":
        e = m["exact"]
        lo, hi = e["latency_span_ms"]
        print(f"\nexact front: {e['pareto_optimal_points']} Pareto-optimal architectures in all ({lo:.2f}-{hi:.2f} ms), "
              f"{e['front_written']} shown (--front-size {e['front_size']}); exact: {', '.join(m['quantities']['exact'])}; "
              f"{m['space_size']:.3g} candidates, {e['dp']['segments']} segments, {max(e['dp']['states'])} DP states "
              f"at most, {m['elapsed_s']:.2f} s")
        print(f"outputs in {out}/ (trials.csv, pareto.csv, pareto.json, pareto.png, pareto.html, arch-NNN.yaml)")
        return 0
    print(f"\n{m['n_trials']} {what} ({m['n_feasible']} feasible, {m['n_distinct']} distinct architectures), "
          f"sampler {m['sampler']}, {ran / el:.0f}/s over {el:.1f} s"
          + (f", study {m['study_name']!r} " + (m["storage"] if str(m["storage"]).startswith("in ") else f"in {m['storage']}")
             if m.get("study_name") else ""))
    print(f"front: {len(res.front)} architectures; outputs in {out}/ (trials.csv, pareto.csv, pareto.json, "
          f"arch-NNN.yaml, pareto.png, pareto.html)")
    if m["sampler"] != "exhaustive":
        print("the front is the set of trials no other trial beats on both latency and the objective: the best "
              "found by this search, not the exact front of the space (more trials, or --sampler exhaustive on a "
              "small space, come closer)")
    warn = ram_warning([r["memory_mb"] for r in res.front], profile)
    if warn:
        print(warn.replace("candidates", "front architectures"))
    if res.interrupted:
        sys.stderr.write("augur-nas search: interrupted; kept what was found so far (outputs written)\n")
        return 130
    return 0


SEARCH = Command(
    "hardware-aware search: Pareto front of predicted latency vs an accuracy objective", _search_arguments, cmd_search,
    description="Search a space for the Pareto front of predicted latency (minimized) against an accuracy "
                "objective (maximized) under hard limits, pricing candidates in batches with the cost oracle. "
                "Writes trials.csv, pareto.csv, pareto.json, arch-NNN.yaml, pareto.png and pareto.html.")
