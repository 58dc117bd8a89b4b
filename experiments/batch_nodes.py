"""Diagnosis for issue 14: which part of each kernel family scales with the batch (ONNX Runtime,
one thread, this machine), from per-node profiles of the fixed calibration set (never the zoo).

    taskset -c 0 python experiments/batch_nodes.py            # ~2.5 min: CPU-time-normalised node times
    taskset -c 0 python experiments/batch_nodes.py --wall     # the same with wall-clock node times
    python experiments/batch_nodes.py --load samples.json --cv   # fit saved samples; cross-validate both objectives
    python experiments/batch_nodes.py --threads 2 --save s2.json  # ~5 min, both cores free: also the 2-thread table
    python experiments/batch_nodes.py --load samples.json --write-profile P1.yaml   # the profile with this fit
    python experiments/batch_nodes.py --load samples.json --write-profile P1.yaml --write-profile-2t P2.yaml
        # also the 2-thread profile: its kernels and anchors, these batch coefficients, thread
        # coefficients from the 2-thread kernel grid (what `profile --threads-from` does, timing nothing)
    python experiments/batch_nodes.py --load samples.json --no-arith --write-profile P1.yaml   # LRN fitted with bytes

For every scaling group (conv, dwconv, fc, bytes: the memory-bound kinds, layout: the layout
conversions) it prints the measured time of a batch of b images over b x the batch-1 time of
the same layers (1.00: the batch costs b times one image), then the coefficients
``fit_scaling`` draws from these samples and how well they reproduce each group's sums.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from augur_nas.measure._scaling_fit import (
    DEFAULT_OBJECTIVE,
    DEFAULT_SPILL_FORMS,
    OBJECTIVES,
    SPILL_FORMS,
)


def main(argv=None) -> int:
    from augur_nas.measure._scaling_fit import ScaleSample, fit_scaling, measure_scaling
    from augur_nas.profile import load_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="x86-xeon-avx512-ort", help="its fusion rules attribute the nodes")
    ap.add_argument("--wall", action="store_true", help="wall-clock node times (no CPU-time normalisation)")
    ap.add_argument("--visits", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="also time every network at this many intra-op threads (the thread model's samples)")
    ap.add_argument("--save", default=None, metavar="FILE.json", help="write the samples")
    ap.add_argument("--load", default=None, metavar="FILE.json", help="fit saved samples, measure nothing")
    ap.add_argument("--objective", choices=sorted(OBJECTIVES), default=DEFAULT_OBJECTIVE, help="the batch fit's loss")
    ap.add_argument("--forms", choices=SPILL_FORMS, default=DEFAULT_SPILL_FORMS,
                    help="the spill forms the batch fit may choose (costmodel/_scaling.py)")
    ap.add_argument("--no-arith", action="store_true",
                    help="fit LRN inside the memory-bound group (the model before the arith group), to compare")
    ap.add_argument("--write-profile", default=None, metavar="OUT.yaml",
                    help="write --profile with its latency.scaling fitted on these samples (one thread)")
    ap.add_argument("--write-profile-2t", default=None, metavar="OUT.yaml",
                    help="write --profile-2t (its kernels and its speed anchors timed at 2 threads) with these batch "
                         "coefficients and thread coefficients from --threads-from (nothing timed)")
    ap.add_argument("--profile-2t", default="x86-xeon-avx512-ort-2t")
    ap.add_argument("--threads-from", default=str(ROOT / "experiments/data/x86-xeon-avx512-ort-2t-grid.yaml"),
                    help="the 2-thread kernel profile the thread coefficients come from (profile --threads-from)")
    ap.add_argument("--cv", action="store_true",
                    help="also leave-one-network-out: each network's batch sums predicted by a fit on the others, "
                         "for every objective")
    args = ap.parse_args(argv)
    lat = load_profile(args.profile).latency
    if args.load:
        with open(args.load, encoding="utf-8") as f:
            samples = regroup([ScaleSample(**dict(d, key=tuple(d["key"]))) for d in json.load(f)], lat)
    else:
        threads = (1,) if args.threads == 1 else (1, args.threads)
        samples = measure_scaling(lat, threads=threads, visits=args.visits, cpu_time=not args.wall, progress=print)
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump([s._asdict() for s in samples], f)
    if args.no_arith:
        samples = [s._replace(group="bytes") if s.group == "arith" else s for s in samples]
    model = fit_scaling(samples, objective=args.objective, forms=args.forms).model
    one = {(s.key, s.batch): s for s in samples if s.threads == 1}
    sums = collections.defaultdict(lambda: np.zeros(3))
    for (key, b), s in one.items():
        ref = one.get((key, 1))
        if ref is None or b == 1:
            continue
        pred = float(model.scale(s.group, np.array([ref.ms]), b, np.array([s.mb]))[0])
        sums[(s.group, b)] += (s.ms, b * ref.ms, pred)
    print(f"{'group':8s} {'batch':>5s} {'measured / (b x batch 1)':>26s} {'fitted / measured':>18s}")
    for (g, b), (meas, naive, pred) in sorted(sums.items()):
        print(f"{g:8s} {b:5d} {meas / naive:26.2f} {pred / meas:18.2f}")
    print("fitted:", {g: {k: round(v, 4) for k, v in s._asdict().items()} for g, s in model.groups.items()},
          "cache_mb", model.cache_mb)
    note = {"refit_by": "python experiments/batch_nodes.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "refit_samples": args.load or args.save or "measured, not saved"}
    if args.write_profile:
        write_profile(args.profile, model, args.write_profile, note)
    if args.write_profile_2t:
        write_profile(args.profile_2t, with_threads(model, args), args.write_profile_2t, note)
    if any(s.threads > 1 for s in samples):
        thread_table(samples, model)
    if args.cv:
        for obj in sorted(OBJECTIVES):
            e = np.abs(leave_one_out(samples, obj, args.forms))
            print(f"leave-one-network-out, objective {obj}: batch sums within ±10% {np.mean(e <= 0.1):.0%}, within "
                  f"±15% {np.mean(e <= 0.15):.0%}, median |error| {100 * np.median(e):.1f}% ({len(e)} network x batch)")
    return 0


def regroup(samples, lat) -> list:
    """Saved samples with each layer's group as ``group_of`` gives it now (samples saved before a
    group was split off, e.g. ``arith``, name the group of their day)."""
    from augur_nas.costmodel._scaling import group_of
    from augur_nas.measure._calibset import calibration_set
    from augur_nas.measure._scaling_fit import _one

    tables = {cn.name: _one(cn.model) for cn in calibration_set()}
    out = []
    for s in samples:
        net, slot = s.key
        if s.group != "layout" and net in tables and isinstance(slot, int):
            kind = tables[net].ops[slot]
            s = s._replace(group=group_of(kind, lat.family(kind)[0]))
        out.append(s)
    return out


def write_profile(name, model, out, note: dict) -> None:
    """``name``'s profile with ``model`` as its latency.scaling, written to ``out``; its
    ``fit.scaling`` record says where the coefficients came from."""
    from augur_nas.profile import load_profile, save_profile

    prof = load_profile(name)
    with open(prof.source, encoding="utf-8") as f:  # the profile's own header (its provenance) stays
        kept = [ln[2:].rstrip("\n") for ln in f if ln.startswith("# ") and "refitted by" not in ln]
    prof.latency.scaling = model
    prof.fit = dict(prof.fit, scaling=dict(prof.fit.get("scaling") or {}, **note))
    save_profile(prof, out, header="\n".join(kept + [f"latency.scaling refitted by `{note['refit_by']}`."]))
    print("wrote", out)


def with_threads(model, args):
    """``model`` (one thread) with the thread coefficients of ``profile --threads-from``: the
    per-layer prices of --threads-from beside --profile's on the calibration networks."""
    from augur_nas.measure._scaling_fit import (
        _thread_tables,
        thread_scaling_from_profiles,
    )
    from augur_nas.profile import load_profile

    lat1, latn = load_profile(args.profile).latency, load_profile(args.threads_from).latency
    return thread_scaling_from_profiles(model, lat1, latn, _thread_tables(), int(load_profile(args.threads_from).threads))


def thread_table(samples, model) -> None:
    """Measured N-thread time over one-thread time per group and batch (sums over the layers),
    beside the thread model's ``par_share`` at batch 1 and ``par_image_share`` beyond."""
    by = {(s.key, s.batch, s.threads): s for s in samples}
    sums = collections.defaultdict(lambda: np.zeros(2))
    for (key, b, th), s in by.items():
        ref = by.get((key, b, 1))
        if th > 1 and ref is not None:
            sums[(s.group, th, b)] += (s.ms, ref.ms)
    print(f"{'group':8s} {'threads':>7s} {'batch':>5s} {'N threads / 1 thread':>21s}")
    for (g, th, b), (tn, t1) in sorted(sums.items()):
        print(f"{g:8s} {th:7d} {b:5d} {tn / t1:21.3f}")


def leave_one_out(samples, objective, forms=DEFAULT_SPILL_FORMS) -> list:
    """Relative errors of each calibration network's sum at each batch > 1, fitted without it."""
    from augur_nas.measure._scaling_fit import fit_scaling

    errs = []
    for net in sorted({s.key[0] for s in samples}):
        model = fit_scaling([s for s in samples if s.key[0] != net], objective=objective, forms=forms).model
        one = {(s.key, s.batch): s for s in samples if s.key[0] == net and s.threads == 1}
        sums = collections.defaultdict(lambda: np.zeros(2))
        for (key, b), s in one.items():
            ref = one.get((key, 1))
            if ref is not None and b > 1:
                sums[b] += (s.ms, float(model.scale(s.group, np.array([ref.ms]), b, np.array([s.mb]))[0]))
        errs += [pred / meas - 1 for meas, pred in sums.values()]
    return errs


if __name__ == "__main__":
    raise SystemExit(main())
