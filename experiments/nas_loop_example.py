"""The augur-nas oracle inside someone else's NAS loop: a hardware filter in front of training.

A self-contained, third-party-style search that uses only the public API
(``load_space``, ``Oracle``, ``oracle.constraints``, ``space.sample/canonicalize/decode_spec``):

1. ``evolution`` (default): regularized (aging) evolution (Real et al., AAAI 2019). Every round it
   proposes a batch of mutants of tournament winners, prices the whole batch with ONE oracle
   call (``limits.feasible(X)``), throws away the ones that would not meet the device limits,
   and only "trains" the survivors. The training is a stand-in (``train_and_evaluate``): replace
   it with your own; it receives the concrete model spec dict of the candidate.
2. ``optuna``: the same filter as Optuna hard constraints (``trial.set_constraint``) in a plain
   ``study.optimize`` objective, as shown in docs/search.md.

    python experiments/nas_loop_example.py [--mode evolution|optuna] [--space spaces/mobile.yaml]
        [--device tk1-gpu] [--latency 80] [--memory 300] [--budget 200] [--seed 0]

Both modes print how many candidates the filter rejected (that is, trainings saved) and check,
with a fresh oracle, that everything trained met the limits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

from augur_nas import analyze, load_space, load_space_dict
from augur_nas.oracle import Oracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_and_evaluate(arch: dict) -> float:
    """STAND-IN for training: a made-up accuracy that grows with log MACs, plus a deterministic
    per-architecture "noise". It only exists so that the loop runs; it predicts nothing."""
    model = load_space_dict(arch)
    macs = analyze(model)["totals"]["macs"]
    noise = int(hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:8], 16) / 2**32 - 0.5
    return 72.0 + 4.0 * math.log10(macs / 3e8) + 0.8 * noise


# ------------------------------------------------------------------------------------------ evolution


def mutate(space, parents: np.ndarray, rng) -> np.ndarray:
    """One random gene of each parent set to another option, then canonicalized."""
    sizes = np.array([g.size for g in space.genes])
    kids = parents.copy()
    choosable = np.flatnonzero(sizes > 1)
    g = rng.choice(choosable, size=len(kids))
    shift = rng.integers(1, sizes[g])  # never the same option
    kids[np.arange(len(kids)), g] = (kids[np.arange(len(kids)), g] + shift) % sizes[g]
    return space.canonicalize(kids)


def evolution(space, oracle, limits, budget, seed, population=32, tournament=8, batch=64):
    rng = np.random.default_rng(seed)
    stats = {"proposed": 0, "rejected": 0, "trained": 0, "pool": 0, "pool_feasible": 0}
    trained = {}  # encoding bytes -> (encoding, accuracy)

    def train(x):
        acc = train_and_evaluate(space.decode_spec(x))
        trained[x.tobytes()] = (x, acc)
        stats["trained"] += 1
        return acc

    # initial population: random candidates that pass the filter (the filter is vectorized: a pool
    # of thousands costs one oracle call)
    pool = space.sample(20000, seed=seed)
    ok = limits.feasible(pool)
    stats["pool"], stats["pool_feasible"] = len(pool), int(ok.sum())
    feas = np.unique(pool[ok], axis=0)
    if len(feas) == 0:
        raise SystemExit("no random candidate meets the limits; relax them (or start from `augur-nas search`)")
    rng.shuffle(feas)
    pop = [(x, train(x)) for x in feas[:population]]
    while stats["trained"] < budget:
        # tournaments -> parents -> a batch of mutants, filtered in one oracle call
        idx = np.array([max(rng.choice(len(pop), tournament, replace=False), key=lambda i: pop[i][1])
                        for _ in range(batch)])
        kids = mutate(space, np.array([pop[i][0] for i in idx]), rng)
        kids = np.unique(kids, axis=0)
        kids = kids[[k.tobytes() not in trained for k in kids]]
        ok = limits.feasible(kids) if len(kids) else np.zeros(0, bool)
        stats["proposed"] += len(kids)
        stats["rejected"] += int((~ok).sum())
        for x in kids[ok]:
            if stats["trained"] >= budget:
                break
            pop.append((x, train(x)))
            pop.pop(0)  # aging: the oldest dies
    return trained, stats


# ------------------------------------------------------------------------------------------ optuna


def optuna_mode(space, oracle, limits, budget, seed):
    """The docs/search.md recipe: the oracle's constraints as Optuna hard constraints."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stats = {"proposed": 0, "rejected": 0, "trained": 0}
    trained = {}

    def objective(trial):
        x = np.array([trial.suggest_categorical(g.name, list(range(g.size))) for g in space.genes])
        x = space.canonicalize(x)[0]  # genes that do not matter -> 0
        excess = limits(x)  # value - limit per constrained quantity (<= 0 is feasible)
        for name, e in zip(limits.names, excess):
            trial.set_constraint(name, e / limits.limits[name])  # relative, so units do not mix
        stats["proposed"] += 1
        if max(excess) > 0:  # cannot ship: do not train it
            stats["rejected"] += 1
            return 0.0  # any value; the sampler ranks infeasible trials by their violation
        acc = train_and_evaluate(space.decode_spec(x))
        trained[x.tobytes()] = (x, acc)
        stats["trained"] += 1
        return acc

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    # stop after `budget` trainings (not trials): infeasible trials are cheap
    while stats["trained"] < budget and stats["proposed"] < 50 * budget:
        study.optimize(objective, n_trials=10)
    return trained, stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["evolution", "optuna"], default="evolution")
    ap.add_argument("--space", default=os.path.join(ROOT, "spaces", "mobile.yaml"))
    ap.add_argument("--device", default="tk1-gpu")
    ap.add_argument("--latency", type=float, default=80.0, help="latency limit, ms (default 80)")
    ap.add_argument("--memory", type=float, default=300.0, help="memory limit, MB (default 300)")
    ap.add_argument("--budget", type=int, default=200, help="trainings (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    space = load_space(args.space)
    oracle = Oracle(space, args.device)
    limits = oracle.constraints(latency_ms=args.latency, memory_mb=args.memory)
    t = time.time()
    run = evolution if args.mode == "evolution" else optuna_mode
    trained, stats = run(space, oracle, limits, args.budget, args.seed)
    el = time.time() - t

    X = np.array([v[0] for v in trained.values()])
    acc = np.array([v[1] for v in trained.values()])
    check = Oracle(space, args.device).evaluate(X)  # a fresh oracle: everything trained met the limits
    assert (check["latency_ms"] <= args.latency).all() and (check["memory_mb"] <= args.memory).all()
    best = int(np.argmax(acc))
    if stats.get("pool"):
        print(f"initial population: {stats['pool_feasible']} of {stats['pool']} random candidates meet the limits "
              f"(one oracle call)")
    print(f"{args.mode}: {stats['trained']} trainings, {stats['proposed']} candidates proposed, "
          f"{stats['rejected']} rejected by the oracle filter ({100 * stats['rejected'] / max(1, stats['proposed']):.1f}%) "
          f"in {el:.1f} s")
    print(f"every trained candidate meets latency <= {args.latency:g} ms and memory <= {args.memory:g} MB on "
          f"{oracle.device} (max {check['latency_ms'].max():.2f} ms, {check['memory_mb'].max():.1f} MB)")
    print(f"best stand-in accuracy {acc[best]:.2f} at {check['latency_ms'][best]:.2f} ms, "
          f"{check['macs'][best] / 1e6:.0f}M MACs; encoding {' '.join(map(str, X[best].tolist()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
