"""``--sampler exhaustive``: price every candidate of a space (at most 10^7) and keep the exact front.

Candidates are produced by rank in chunks (``_enumerate.iter_chunks``), priced with one oracle
call per chunk, and folded into a running Pareto front, so memory stays bounded. trials.csv and
the figures get every candidate of spaces up to ``EXHAUSTIVE_SAMPLE`` candidates, otherwise
every k-th rank (plus the front). With ``workers`` > 1 rank ranges are priced in parallel
processes.
"""

from __future__ import annotations

import math
import os
import pickle
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from .._errors import ConstraintError, SpecError
from ..oracle import Oracle
from ..space import SearchSpace
from ..space._space import ENUMERATE_LIMIT
from ._config import EXHAUSTIVE_CHUNK, EXHAUSTIVE_SAMPLE, progress_bar, relative_constraints
from ._enumerate import iter_chunks
from ._objective import Objective
from ._outputs import COST_KEYS
from ._pareto import pareto_mask, violation
from ._signals import graceful_stop

ROW_KEYS = ("rank", "X", *COST_KEYS, "objective", "feasible", "violation")
N_CLOSEST = 3


def _empty(G: int) -> dict:
    d = {k: np.zeros(0) for k in ROW_KEYS}
    d["rank"] = np.zeros(0, dtype=np.int64)
    d["X"] = np.zeros((0, G), dtype=np.int64)
    d["feasible"] = np.zeros(0, dtype=bool)
    return d


def _cat(a: dict, b: dict) -> dict:
    return {k: np.concatenate([a[k], b[k]]) for k in ROW_KEYS}


def _take(a: dict, idx) -> dict:
    return {k: a[k][idx] for k in ROW_KEYS}


def _front(rows: dict) -> dict:
    order = np.argsort(rows["rank"], kind="stable")
    rows = _take(rows, order)
    lat = np.where(rows["feasible"], rows["latency_ms"], np.nan)
    return _take(rows, pareto_mask(lat, rows["objective"]))


def _closest(rows: dict) -> dict:
    order = np.lexsort((rows["rank"], rows["violation"]))[:N_CLOSEST]
    return _take(rows, order)


def scan_range(space, oracle, obj, limits, lo: int, hi: int, stride: int, chunk: int) -> dict:
    """Price ranks ``lo .. hi-1``: their front, every ``stride``-th row, the closest infeasible rows."""
    G = space.n_genes
    front, sample, closest = _empty(G), _empty(G), _empty(G)
    n_feasible = 0
    for start, X in iter_chunks(space, chunk, start=lo, stop=hi):
        costs = oracle.evaluate(X)
        C = relative_constraints(costs, limits)
        feas = (C <= 0).all(axis=1)
        n_feasible += int(feas.sum())
        objv = obj.values(space, X, costs, feas)
        rank = np.arange(start, start + len(X), dtype=np.int64)
        rows = {"rank": rank, "X": X, **{k: np.asarray(costs[k], dtype=np.float64) for k in COST_KEYS},
                "objective": objv, "feasible": feas, "violation": violation(C)}
        if feas.any():
            front = _front(_cat(front, _take(rows, np.flatnonzero(feas))))
        elif not n_feasible:
            closest = _closest(_cat(closest, rows))
        keep = np.flatnonzero(rank % stride == 0)
        sample = _cat(sample, _take(rows, keep))
    return {"front": front, "sample": sample, "closest": closest, "n_feasible": n_feasible, "n_done": hi - lo}


def new_acc(G: int) -> dict:
    return {"front": _empty(G), "sample": _empty(G), "closest": _empty(G), "n_feasible": 0, "n_done": 0}


def merge(acc: dict, part: dict) -> None:
    """Fold the result of a rank range into ``acc``."""
    acc["front"] = _front(_cat(acc["front"], part["front"]))
    acc["sample"] = _cat(acc["sample"], part["sample"])
    if not acc["n_feasible"] and not part["n_feasible"]:
        acc["closest"] = _closest(_cat(acc["closest"], part["closest"]))
    acc["n_feasible"] += part["n_feasible"]
    acc["n_done"] += part["n_done"]


def run_scan_worker(cfg: dict) -> int:
    """Body of an exhaustive ``--workers`` process: price the rank ranges ``cfg["ranges"]``, print
    each finished count on stdout, pickle the folded result to ``cfg["result_file"]``."""
    space = SearchSpace(cfg["space_spec"], source=cfg["space_source"])
    oracle = Oracle(space, cfg["device"], batch=cfg["batch"])
    obj = Objective(cfg["objective"], fn=cfg["objective_fn"])
    acc = new_acc(space.n_genes)
    code = 0
    with graceful_stop(term=True) as stop:
        for lo, hi in cfg["ranges"]:
            if stop:
                code = 130
                break
            merge(acc, scan_range(space, oracle, obj, cfg["limits"], lo, hi, cfg["stride"], cfg["chunk"]))
            sys.stdout.write(f"{hi - lo}\n")
            sys.stdout.flush()
    tmp = cfg["result_file"] + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(acc, f)
    os.replace(tmp, cfg["result_file"])
    return code


def _scan_in_workers(cfg, spans, workers, tq, stop, acc) -> bool:
    """Price ``spans`` in ``workers`` processes (``python -m augur_nas.search._worker``)."""
    tmp = tempfile.mkdtemp(prefix="augur-scan-")
    procs, interrupted = [], False
    sel = selectors.DefaultSelector()
    try:
        for k in range(workers):
            c = dict(cfg, ranges=spans[k::workers], result_file=os.path.join(tmp, f"scan-{k}.pkl"))
            p = subprocess.Popen([sys.executable, "-m", "augur_nas.search._worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
            p.stdin.write(pickle.dumps(c))
            p.stdin.close()
            procs.append(p)
            sel.register(p.stdout, selectors.EVENT_READ, k)
        open_streams = len(procs)
        sent = False
        while open_streams:
            if stop and not sent:
                interrupted, sent = True, True
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
            for key, _ in sel.select(timeout=0.25):
                line = key.fileobj.readline()
                if not line:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                try:
                    tq.update(int(line))
                except ValueError:
                    pass
        for k, p in enumerate(procs):
            p.wait()
            path = os.path.join(tmp, f"scan-{k}.pkl")
            if not os.path.exists(path):
                raise ConstraintError(f"exhaustive worker {k} (pid {p.pid}) ended with exit code {p.returncode} "
                                      f"without a result")
            with open(path, "rb") as f:
                merge(acc, pickle.load(f))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        sel.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return interrupted


def exhaustive(space, oracle, obj, limits, *, device, batch, workers=1, progress=None, objective_arg=None,
               chunk: int | None = None):

    size = space.size
    if size > ENUMERATE_LIMIT:
        raise SpecError(f"{space.name} has {size:.3g} architectures, more than the {ENUMERATE_LIMIT:,} that --sampler "
                        f"exhaustive enumerates; use nsga2, tpe or random ({space.source})")
    chunk = chunk or EXHAUSTIVE_CHUNK
    stride = max(1, math.ceil(size / EXHAUSTIVE_SAMPLE))
    G = space.n_genes
    acc = new_acc(G)
    t0 = time.time()
    interrupted = False
    tq = progress_bar(size, progress, "arch")
    try:
        with graceful_stop() as stop:
            if workers <= 1 or size <= 4 * chunk:
                for lo in range(0, size, chunk):
                    if stop:
                        interrupted = True
                        break
                    hi = min(size, lo + chunk)
                    merge(acc, scan_range(space, oracle, obj, limits, lo, hi, stride, chunk))
                    tq.update(hi - lo)
            else:
                cfg = {"mode": "scan", "space_spec": space.spec, "space_source": space.source, "device": device,
                       "batch": batch, "objective": None if callable(objective_arg) else obj.name,
                       "objective_fn": objective_arg if callable(objective_arg) else None,
                       "limits": limits, "chunk": chunk, "stride": stride}
                spans = [(lo, min(size, lo + chunk)) for lo in range(0, size, chunk)]
                interrupted = _scan_in_workers(cfg, spans, workers, tq, stop, acc)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        tq.close()

    front = acc["front"]
    sample = acc["sample"]
    # the table of trials.csv and the figures: the sampled rows plus the front, by rank
    missing = ~np.isin(front["rank"], sample["rank"])
    rows = _cat(sample, _take(front, np.flatnonzero(missing)))
    order = np.argsort(rows["rank"], kind="stable")
    rows = _take(rows, order)
    table = {"number": rows["rank"], "state": np.array(["COMPLETE"] * len(rows["rank"]), dtype=object), "X": rows["X"],
             "feasible": rows["feasible"], "violation": rows["violation"], "objective": rows["objective"],
             **{k: rows[k] for k in COST_KEYS}, "n_complete": acc["n_done"],
             "on_front": np.isin(rows["rank"], front["rank"])}
    front_tab = {"number": front["rank"], "X": front["X"], "objective": front["objective"],
                 **{k: front[k] for k in COST_KEYS}}
    order = np.lexsort((front_tab["number"], front_tab["latency_ms"]))
    front_tab = {k: v[order] for k, v in front_tab.items()}
    closest = {"X": acc["closest"]["X"], **{k: acc["closest"][k] for k in COST_KEYS}}
    info = {"n_trials": acc["n_done"], "n_feasible": acc["n_feasible"], "n_distinct": acc["n_done"],
            "enumerated": acc["n_done"], "interrupted": interrupted, "workers": workers,
            "trials_csv": ("every candidate" if stride == 1 else f"every {stride}-th candidate by rank plus the front "
                           f"({len(rows['rank'])} of {size})"),
            "enumeration_s": round(time.time() - t0, 3)}
    return table, front_tab, closest, info
