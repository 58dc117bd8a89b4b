"""The search: Optuna studies over a space's genes, priced in batches through the oracle.

Each gene is one Optuna parameter with a categorical distribution over its option *indices*;
a batch of trials is asked, their encodings are canonicalized (genes that do not matter are 0)
and priced with one oracle call, then every trial is told its values (predicted latency,
minimized; the objective, maximized) and its hard constraints (``trial.set_constraint``, one
per limit, the relative excess ``(value - limit) / limit``: <= 0 is feasible). The objective is
computed only for candidates meeting every limit.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .._atomic import check_out_dir, fallback_dir
from .._errors import AugurError, ConstraintError
from ._objective import Objective
from ._outputs import (COST_KEYS, front_records, remove_stale, write_arch_yamls, write_html, write_pareto_csv,
                       write_pareto_json, write_png, write_trials_csv)
from ._pareto import pareto_mask, violation
from ._storage import describe, is_persistent, make_storage
from ._units import format_limit, parse_limit

SAMPLERS = ("nsga2", "tpe", "random", "exhaustive")
DEFAULT_SAMPLER = "nsga2"
DEFAULT_TRIALS = 3000
#: trials asked (and priced in one oracle call) per batch, per sampler
ASK_BATCH = {"nsga2": 30, "tpe": 16, "random": 256}
#: with a database or journal every read reloads the running trials: smaller batches are faster
ASK_BATCH_PERSISTENT = 16
NSGA2_POPULATION = 30
EXHAUSTIVE_CHUNK = 20000
EXHAUSTIVE_SAMPLE = 100000  # rows of trials.csv (and points of the figures) for an enumerated space
STUDY_ATTR = "augur_nas"
WORKER_ATTR = "augur_nas.worker"


@dataclass
class SearchResult:
    """What a search found. ``front``: one dict per Pareto-front member, by latency ascending
    (id, trial, encoding, choices, latency_ms, memory_mb, params, macs, objective)."""

    space: object
    meta: dict
    front: list
    trials: dict  # arrays: number, state, X, feasible, violation, latency_ms, memory_mb, params, macs, objective, on_front
    out_dir: str | None = None
    files: list = field(default_factory=list)
    interrupted: bool = False

    @property
    def n_trials(self) -> int:
        return int(self.meta["n_trials"])

    @property
    def n_feasible(self) -> int:
        return int(self.meta["n_feasible"])

    def front_encodings(self) -> np.ndarray:
        return np.array([r["encoding"] for r in self.front], dtype=np.int64).reshape(len(self.front), -1)


# ============================================================================================ helpers


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


@contextmanager
def _optuna_quiet():
    """Optuna's per-trial INFO lines and experimental warnings off, for the duration only."""
    import optuna

    old = optuna.logging.get_verbosity()
    with warnings.catch_warnings():
        _quiet_optuna()
        try:
            yield
        finally:
            optuna.logging.set_verbosity(old)


def _load_space(space):
    from ..space import SearchSpace, load_space

    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return SearchSpace(space)
    return load_space(space)


def parse_limits(latency_ms=None, memory_mb=None, params=None, macs=None) -> dict:
    """``{quantity: limit in the base unit}`` from numbers or strings with units (``50ms``)."""
    limits = {}
    for k, v in (("latency_ms", latency_ms), ("memory_mb", memory_mb), ("params", params), ("macs", macs)):
        if v is not None:
            limits[k] = parse_limit(k, v)
    return limits


def relative_constraints(costs: dict, limits: dict) -> np.ndarray:
    """``[B, C]``: ``(value - limit) / limit`` per limit (<= 0 feasible)."""
    B = len(costs["latency_ms"])
    if not limits:
        return np.zeros((B, 0))
    return np.stack([(np.asarray(costs[k], dtype=np.float64) - v) / v for k, v in limits.items()], axis=1)


def make_sampler(name: str, seed=None, population: int = 50):
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConstraintError(f"--sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def _positive_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise ConstraintError(f"{what} must be a positive whole number, got {v!r}")
    return int(v)


def _tag(pid=None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StopFlag:
    """Set by the first Ctrl-C (SIGINT) or a SIGTERM: stop after the current batch. A second
    Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False

    def __bool__(self) -> bool:
        return self.requested


@contextmanager
def graceful_stop(escalate: bool = True, term: bool = False):
    """Install the handlers of a ``StopFlag`` (main thread only) and restore the old ones after."""
    import signal
    import threading

    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    old_int = signal.getsignal(signal.SIGINT)
    old_term = signal.getsignal(signal.SIGTERM)

    def on_int(signum, frame):
        if flag.requested and escalate:
            raise KeyboardInterrupt
        flag.requested = True

    def on_term(signum, frame):
        flag.requested = True

    if old_int is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_int)
    if term:
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old_int)
        if term:
            signal.signal(signal.SIGTERM, old_term)


UNTAGGED_GRACE_S = 10.0


def _fail_running(study, tags=None, dead_only_here: bool = False, untagged_after_s: float | None = None) -> int:
    """Mark RUNNING trials as FAIL: those tagged with one of ``tags``, or (``dead_only_here``) those
    tagged by a process of this machine that no longer exists, or (``untagged_after_s``) those
    with no tag that started more than that long ago. A worker tags its trial right after asking
    for it, so an untagged trial that old was asked for by a worker killed in between. Returns
    how many."""
    import datetime

    from optuna.trial import TrialState

    host = socket.gethostname()
    now = datetime.datetime.now()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = t.user_attrs.get(WORKER_ATTR)
        if tag is None:
            started = t.datetime_start
            hit = untagged_after_s is not None and started is not None and \
                (now - started).total_seconds() > untagged_after_s
        else:
            hit = tags is not None and tag in tags
            if dead_only_here and not hit:
                h, _, pid = tag.rpartition(":")
                hit = h == host and pid.isdigit() and not _pid_alive(int(pid))
        if hit:
            try:
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                n += 1
            except Exception:  # finished meanwhile
                pass
    return n


def _fail_untagged(study) -> int:
    """After the workers ended: a worker killed between asking for a trial and tagging it leaves
    an untagged RUNNING trial; wait until such trials are older than the grace period (a live
    worker elsewhere tags its own within milliseconds) and mark them failed."""
    import datetime

    from optuna.trial import TrialState

    young = [t.datetime_start for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
             if t.user_attrs.get(WORKER_ATTR) is None and t.datetime_start is not None]
    if not young:
        return 0
    age = (datetime.datetime.now() - max(young)).total_seconds()
    if age <= UNTAGGED_GRACE_S:
        time.sleep(UNTAGGED_GRACE_S - age + 0.5)
    return _fail_running(study, untagged_after_s=UNTAGGED_GRACE_S)


# ============================================================================================ the loop


class _Batcher:
    """Asks, prices and tells trials of one study, a batch at a time."""

    def __init__(self, study, space, oracle, objective: Objective, limits: dict, tag: str | None = None):
        from optuna.distributions import CategoricalDistribution

        self.study, self.space, self.oracle, self.objective, self.limits = study, space, oracle, objective, limits
        self.tag = tag
        self.names = space.gene_names
        self.dists = {n: CategoricalDistribution(list(range(g.size))) for n, g in zip(self.names, space.genes)}
        self.n_feasible = 0

    def run_batch(self, b: int) -> int:
        from optuna.trial import TrialState

        pending = []
        try:
            for _ in range(b):
                t = self.study.ask(self.dists)
                pending.append(t)
                if self.tag:
                    t.set_user_attr(WORKER_ATTR, self.tag)
            P = [t.params for t in pending]
            X = np.array([[p[n] for n in self.names] for p in P], dtype=np.int64).reshape(len(P), len(self.names))
            X = self.space.canonicalize(X)
            costs = self.oracle.evaluate(X)
            C = relative_constraints(costs, self.limits)
            feas = (C <= 0).all(axis=1)
            obj = self.objective.values(self.space, X, costs, feas)
            lat = costs["latency_ms"]
            while pending:
                t = pending[0]
                i = b - len(pending)
                for j, k in enumerate(self.limits):
                    t.set_constraint(k, float(C[i, j]))
                o = float(obj[i])
                self.study.tell(t, [float(lat[i]), o if math.isfinite(o) else -math.inf])
                pending.pop(0)
            self.n_feasible += int(feas.sum())
            return b
        except BaseException:
            for t in pending:
                try:
                    self.study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
                except Exception:
                    pass
            raise


def _count(study):
    from optuna.trial import TrialState

    ts = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    n_c = sum(1 for t in ts if t.state == TrialState.COMPLETE)
    return n_c, len(ts) - n_c


def _shared_loop(batcher: _Batcher, target: int, ask_batch: int, on_batch=None, poll: float = 0.2,
                 stall_s: float = 120.0, stop=None) -> bool:
    """Run batches until the study holds ``target`` complete trials (several processes may share it).

    When the remaining trials are all running elsewhere, wait; if none of them finishes for
    ``stall_s`` seconds (their process died on another machine), run them here anyway.
    Returns True when stopped by ``stop`` before the target.
    """
    waited_since, last_c = None, -1
    while True:
        if stop:
            return True
        n_c, n_r = _count(batcher.study)
        if on_batch is not None:
            on_batch(n_c)
        if n_c >= target:
            return False
        remaining = target - n_c - n_r
        if remaining <= 0:
            if waited_since is None or n_c != last_c:
                waited_since, last_c = time.time(), n_c
            if time.time() - waited_since < stall_s:
                time.sleep(poll)
                continue
            remaining = target - n_c
        waited_since = None
        batcher.run_batch(min(ask_batch, remaining))


def run_worker(cfg: dict) -> int:
    """Body of a ``--workers`` process (``python -m augur_nas.search._worker``): work on the shared
    study until it holds ``cfg["target"]`` complete trials. Writes its status to ``cfg["status_file"]``
    and returns the exit code (0 done, 130 interrupted, 2 error)."""
    import json

    status, msg, code = "done", None, 0
    try:
        import optuna

        _quiet_optuna()
        from ..oracle import Oracle
        from ..space import SearchSpace

        space = SearchSpace(cfg["space_spec"], source=cfg["space_source"])
        oracle = Oracle(space, cfg["device"], batch=cfg["batch"])
        objective = Objective(cfg["objective"], fn=cfg["objective_fn"])
        seed = None if cfg["seed"] is None else cfg["seed"] + 1 + cfg["k"]
        study = optuna.load_study(study_name=cfg["study_name"], storage=make_storage(cfg["storage"]),
                                  sampler=make_sampler(cfg["sampler"], seed, cfg["population"]))
        batcher = _Batcher(study, space, oracle, objective, cfg["limits"], tag=_tag())
        with graceful_stop(term=True) as stop:
            if _shared_loop(batcher, cfg["target"], cfg["ask_batch"], stop=stop):
                status, code = "interrupted", 130
    except KeyboardInterrupt:
        status, code = "interrupted", 130
    except AugurError as exc:
        status, msg, code = "error", str(exc), 2
    except BaseException as exc:  # reported to the parent
        status, msg, code = "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", 1
    try:
        with open(cfg["status_file"], "w") as f:
            json.dump({"status": status, "message": msg}, f)
    except OSError:
        pass
    return code


# ============================================================================================ search


def search(space, device, *, latency_ms=None, memory_mb=None, params=None, macs=None, objective="macs",
           sampler: str = DEFAULT_SAMPLER, trials: int = DEFAULT_TRIALS, seed: int | None = None,
           storage=None, study_name: str | None = None, workers: int = 1, out: str | None = None,
           batch: int = 1, ask_batch: int | None = None, progress: bool | None = None,
           log=None, change_limits: bool = False) -> SearchResult:
    """Search ``space`` for the Pareto front of (predicted latency on ``device``: minimized,
    ``objective``: maximized) under hard limits.

    ``space``: a path or a ``SearchSpace``; ``device``: a shipped profile name or a profile file.
    Limits: numbers in the base unit (ms, MB, counts) or strings with units (``"50ms"``,
    ``"300MB"``, ``"5M"``). ``objective``: ``"macs"``, ``"params"`` (capacity proxies),
    ``"module:function"``, or a callable taking the decoded architecture dict. ``sampler``:
    nsga2 (default), tpe, random, or exhaustive (every candidate of a space of at most 10^7).
    ``storage``: None (in memory), ``sqlite:///F.db``, ``journal:F`` / ``F.log``,
    ``postgresql://...``; a study with the same ``study_name`` is resumed, ``trials`` more trials
    are run. ``workers`` > 1 runs that many processes on the study (needs a persistent storage).
    ``out``: a folder to write trials.csv, pareto.csv/json/png/html and arch-NNN.yaml to (None:
    write nothing; checked before any work). ``batch``: images per forward pass priced by the oracle.
    ``change_limits``: a resumed study may be given other limits (every trial is re-checked
    against the new ones; the sampler's stored constraint values of earlier trials stay as they were).

    Raises ``ConstraintError`` when nothing feasible was found (naming the closest candidates),
    or for bad limits/objective/sampler values. On Ctrl-C the search stops, keeps what it found,
    writes its outputs and returns a result with ``interrupted=True``.
    """
    if out is not None:
        check_out_dir(out)  # a finished search is never lost on a folder it cannot write
    with _optuna_quiet():
        return _search(space, device, latency_ms=latency_ms, memory_mb=memory_mb, params=params, macs=macs,
                       objective=objective, sampler=sampler, trials=trials, seed=seed, storage=storage,
                       study_name=study_name, workers=workers, out=out, batch=batch, ask_batch=ask_batch,
                       progress=progress, log=log, change_limits=change_limits)


def _search(space, device, *, latency_ms=None, memory_mb=None, params=None, macs=None, objective="macs",
           sampler: str = DEFAULT_SAMPLER, trials: int = DEFAULT_TRIALS, seed: int | None = None,
           storage=None, study_name: str | None = None, workers: int = 1, out: str | None = None,
           batch: int = 1, ask_batch: int | None = None, progress: bool | None = None,
           log=None, change_limits: bool = False) -> SearchResult:
    from ..oracle import Oracle

    log = log or (lambda s: None)
    t0 = time.time()
    space = _load_space(space)
    limits = parse_limits(latency_ms, memory_mb, params, macs)
    if sampler not in SAMPLERS:
        raise ConstraintError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    workers = _positive_int(workers, "--workers")
    trials = _positive_int(trials, "--trials")
    batch = _positive_int(batch, "--batch")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ConstraintError(f"--seed must be a whole number >= 0, got {seed!r}")
    obj = Objective(None, fn=objective) if callable(objective) else Objective(objective)
    if workers > 1 and callable(objective):
        import pickle

        try:
            pickle.dumps(objective)
            ok = getattr(objective, "__module__", None) != "__main__"
        except Exception:
            ok = False
        if not ok:
            raise ConstraintError("workers > 1 need an objective that other processes can import by name: a function "
                                  "defined at the top level of an importable module (or pass \"module:function\")")
    oracle = Oracle(space, device, batch=batch)
    device_name = oracle.device

    meta = {
        "space": space.name, "space_file": space.source, "space_size": int(space.size), "device": device_name,
        "batch": batch, "sampler": sampler, "seed": seed,
        "objective": {"name": obj.name, "description": obj.description, "builtin": obj.builtin,
                      "direction": "maximize"},
        "latency": {"name": "latency_ms", "direction": "minimize"},
        "constraints": dict(limits),
        "constraint_values": "relative excess (value - limit) / limit, <= 0 feasible",
    }

    if sampler == "exhaustive":
        if is_persistent(storage) or study_name:
            raise ConstraintError("--sampler exhaustive enumerates the space without a study; drop --storage/--study-name")
        from ._exhaustive import exhaustive

        table, front, closest, info = exhaustive(space, oracle, obj, limits, device=device, batch=batch,
                                                 workers=workers, progress=progress, objective_arg=objective)
        meta.update(info)
        meta.update({"storage": None, "study_name": None, "elapsed_s": round(time.time() - t0, 3)})
        return _finish(space, meta, table, front, closest, out, info["interrupted"], log)

    if ask_batch is not None:
        ask_batch = _positive_int(ask_batch, "ask_batch")
    else:
        ask_batch = ASK_BATCH[sampler] if not is_persistent(storage) else min(ASK_BATCH[sampler], ASK_BATCH_PERSISTENT)
    if workers > 1 and not is_persistent(storage):
        raise ConstraintError(f"--workers {workers} needs a persistent --storage that every worker opens "
                              f"(sqlite:///study.db, journal:study.log or postgresql://...); in-memory studies live in one process")
    import optuna

    study_name = study_name or f"{space.name}-{device_name}"
    st = make_storage(storage)
    population = NSGA2_POPULATION
    try:
        study = optuna.create_study(storage=st, sampler=make_sampler(sampler, seed, population), study_name=study_name,
                                    directions=["minimize", "maximize"], load_if_exists=True)
    except AugurError:
        raise
    except Exception as exc:
        raise ConstraintError(f"cannot open study {study_name!r} in {describe(storage)}: {type(exc).__name__}: {exc}") from exc
    _check_study(study, space, device_name, obj, limits, batch, storage, change_limits, log)
    if is_persistent(storage):
        n_stale = _fail_running(study, dead_only_here=True)
        if n_stale:
            log(f"marked {n_stale} trial(s) of dead processes of an earlier run as failed")
    from optuna.trial import TrialState

    n_before = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n_before:
        log(f"resuming study {study_name!r} ({describe(storage)}) with {n_before} complete trials")
    target = n_before + trials
    interrupted = False
    tq = _progress(trials, progress, "trials")
    try:
        with graceful_stop() as stop:
            if workers == 1:
                batcher = _Batcher(study, space, oracle, obj, limits, tag=_tag() if is_persistent(storage) else None)
                try:
                    if is_persistent(storage):
                        def on_batch(n_c, shown=[0]):
                            d = min(trials, max(0, n_c - n_before))
                            if d > shown[0]:
                                tq.update(d - shown[0])
                                shown[0] = d
                            tq.set_postfix(feasible=batcher.n_feasible, refresh=False)

                        interrupted = _shared_loop(batcher, target, ask_batch, on_batch=on_batch, stop=stop)
                    else:
                        done = 0
                        while done < trials:
                            if stop:
                                interrupted = True
                                break
                            b = batcher.run_batch(min(ask_batch, trials - done))
                            done += b
                            tq.update(b)
                            tq.set_postfix(feasible=batcher.n_feasible, refresh=False)
                except KeyboardInterrupt:
                    interrupted = True
            else:
                interrupted = _run_workers(study, space, device, batch, obj, objective, limits, sampler, seed, storage,
                                           study_name, target, ask_batch, population, workers, tq, n_before, log, stop)
    finally:
        tq.close()

    table = _trials_table(study, space, oracle, obj, limits)
    meta.update({"storage": describe(storage), "study_name": study_name, "elapsed_s": round(time.time() - t0, 3),
                 "interrupted": interrupted, "trials_this_run": int(table["n_complete"] - n_before),
                 "workers": workers})
    front, closest = _front_of(table)
    return _finish(space, meta, table, front, closest, out, interrupted, log)


def _progress(total, progress, unit):
    from tqdm import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else (not progress)
    return tqdm(total=total, unit=unit, disable=disable, dynamic_ncols=True, leave=False, file=sys.stderr)


def _check_study(study, space, device_name, obj, limits, batch, storage, change_limits=False, log=None):
    sig = {"space": space.name, "genes": [[g.name, g.size] for g in space.genes], "device": device_name,
           "objective": obj.name, "constraints": limits, "batch": batch}
    old = study.user_attrs.get(STUDY_ATTR)
    if old is None:
        if study.get_trials(deepcopy=False):
            raise ConstraintError(f"study {study.study_name!r} in {describe(storage)} was not created by augur-nas search; "
                                  f"use another --study-name")
        if len(study.directions) != 2:
            raise ConstraintError(f"study {study.study_name!r} in {describe(storage)} is not a two-objective study; "
                                  f"use another --study-name")
        study.set_user_attr(STUDY_ATTR, sig)
        _label_study(study, obj, limits, device_name, batch)
        return
    diffs = [k for k in sig if _norm(old.get(k)) != _norm(sig[k])]
    if diffs == ["constraints"] and change_limits:
        study.set_user_attr(STUDY_ATTR, sig)
        _label_study(study, obj, limits, device_name, batch)
        if log is not None:
            log(f"study {study.study_name!r}: limits changed from {_short(old.get('constraints'))} to "
                f"{_short(limits)}; every trial is checked against the new limits")
        return
    if diffs:
        what = ", ".join(f"{k} {_short(old.get(k))} (now {_short(sig[k])})" for k in diffs)
        hint = (" (to change the limits of this study, add --change-limits)" if diffs == ["constraints"] else "")
        raise ConstraintError(f"study {study.study_name!r} in {describe(storage)} was created with a different {what}; "
                              f"resume it with the same space, device, objective and limits, or use another --study-name"
                              f"{hint}")
    if study.user_attrs.get("limits") is None:  # a study from before the labels: label it now
        _label_study(study, obj, limits, device_name, batch)


def _label_study(study, obj, limits: dict, device_name: str, batch: int):
    """What optuna-dashboard shows: the objectives' names (not "Objective 0/1") and the limits, in
    units, as study user attributes (the trials' constraint values are relative: value / limit - 1)."""
    try:
        study.set_metric_names(["latency_ms", obj.name])
    except Exception:  # noqa: BLE001 - older Optuna without metric names: the labels are a courtesy
        pass
    study.set_user_attr("limits", {k: format_limit(k, v) for k, v in limits.items()} or "none")
    study.set_user_attr("constraints", "trial constraint values are (value / limit - 1) per limit, in the order "
                        + (", ".join(limits) or "(no limits)") + "; <= 0 is feasible")
    study.set_user_attr("device", f"{device_name} (batch {batch})")


def _norm(v):
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _short(v):
    if isinstance(v, list) and len(v) > 3:
        return f"[{len(v)} genes]"
    return repr(v)


def _run_workers(study, space, device, batch, obj, objective_arg, limits, sampler, seed, storage, study_name, target,
                 ask_batch, population, workers, tq, n_before, log, stop) -> bool:
    """Start ``workers`` processes on the study, watch them, replace nothing: the survivors of a
    killed worker pick up its share (its running trials are marked failed). Returns interrupted."""
    import json
    import pickle
    import shutil
    import signal
    import subprocess
    import tempfile

    tmp = tempfile.mkdtemp(prefix="augur-workers-")
    base = {"space_spec": space.spec, "space_source": space.source, "device": device, "batch": batch,
            "objective": obj.name if not callable(objective_arg) else None,
            "objective_fn": objective_arg if callable(objective_arg) else None,
            "limits": limits, "sampler": sampler, "seed": seed, "storage": storage, "study_name": study_name,
            "target": target, "ask_batch": ask_batch, "population": population}
    procs = []
    try:
        for k in range(workers):
            cfg = dict(base, k=k, status_file=os.path.join(tmp, f"worker-{k}.json"))
            p = subprocess.Popen([sys.executable, "-m", "augur_nas.search._worker"], stdin=subprocess.PIPE)
            try:
                p.stdin.write(pickle.dumps(cfg))
                p.stdin.close()
            except BrokenPipeError:
                pass
            procs.append(p)
    except Exception as exc:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (pickle.PicklingError, AttributeError, TypeError)):
            raise ConstraintError(f"--workers {workers}: the objective cannot be sent to worker processes ({exc}); "
                                  f"use an importable module:function") from exc
        raise
    tags = {k: _tag(p.pid) for k, p in enumerate(procs)}
    log("workers: " + ", ".join(f"{k} (pid {p.pid})" for k, p in enumerate(procs)))

    def status(k):
        try:
            with open(os.path.join(tmp, f"worker-{k}.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"status": None, "message": None}

    def stop_all():
        for p in procs:  # SIGTERM: a worker finishes its batch and leaves (as on its own Ctrl-C)
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except OSError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    handled, errors, interrupted, shown = set(), [], False, 0
    try:
        while True:
            time.sleep(0.25)
            for k, p in enumerate(procs):
                if k in handled or p.poll() is None:
                    continue
                handled.add(k)
                st = status(k)
                if st["status"] == "error":
                    errors.append((k, st["message"]))
                elif p.returncode != 0 and st["status"] != "interrupted":
                    n = _fail_running(study, tags={tags[k]})
                    how = f"signal {-p.returncode}" if p.returncode < 0 else f"exit code {p.returncode}"
                    log(f"worker {k} (pid {p.pid}) ended with {how}; {n} of its running trial(s) marked failed, "
                        f"the other workers go on")
            if errors or stop:
                interrupted = bool(stop) and not errors
                stop_all()
                break
            n_c, _ = _count(study)
            done = min(max(0, n_c - n_before), tq.total)
            if done > shown:
                tq.update(done - shown)
                shown = done
            if all(p.poll() is not None for p in procs):
                break
    except KeyboardInterrupt:
        interrupted = True
        stop_all()
    if any(status(k)["status"] == "interrupted" for k in range(workers)):
        interrupted = True
    shutil.rmtree(tmp, ignore_errors=True)
    _fail_running(study, tags=set(tags.values()))
    _fail_untagged(study)
    if errors:
        k, msg = errors[0]
        raise ConstraintError(msg or f"worker {k} failed")
    n_c, _ = _count(study)
    if n_c < target and not interrupted:
        # every worker ended early (e.g. all killed): finish the trials here
        log(f"the workers ended with {n_c - n_before} of {target - n_before} trials; finishing in this process")
        from ..oracle import Oracle

        batcher = _Batcher(study, space, Oracle(space, device, batch=batch), obj, limits, tag=_tag())
        try:
            interrupted = _shared_loop(batcher, target, ask_batch, stop=stop)
        except KeyboardInterrupt:
            interrupted = True
    return interrupted


# ============================================================================================ results


def _trials_table(study, space, oracle, obj: Objective, limits: dict) -> dict:
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if len(t.params) == space.n_genes]
    names = space.gene_names
    N = len(trials)
    X = np.array([[t.params[n] for n in names] for t in trials], dtype=np.int64).reshape(N, len(names))
    X = space.canonicalize(X) if N else X
    costs = oracle.evaluate(X) if N else {k: np.zeros(0) for k in COST_KEYS}
    state = np.array([t.state.name for t in trials], dtype=object)
    complete = state == TrialState.COMPLETE.name
    C = relative_constraints(costs, limits)
    feas = (C <= 0).all(axis=1) & complete
    objv = np.full(N, np.nan)
    for i, t in enumerate(trials):
        if complete[i] and t.values is not None and len(t.values) > 1 and math.isfinite(t.values[1]):
            objv[i] = t.values[1]
    if obj.builtin:  # the proxies are known for every candidate
        objv = np.where(complete, np.asarray(costs[obj.name], dtype=np.float64), np.nan)
    table = {"number": np.array([t.number for t in trials], dtype=np.int64), "state": state, "X": X,
             "feasible": feas, "violation": violation(C), "objective": objv,
             **{k: np.asarray(costs[k], dtype=np.float64) for k in COST_KEYS},
             "n_complete": int(complete.sum())}
    return table


def _front_of(table: dict):
    """Indices of the front (by latency) and of the closest infeasible candidates."""
    X = table["X"]
    N = len(X)
    cand = np.flatnonzero(table["feasible"] & np.isfinite(table["objective"]))
    front = np.zeros(0, dtype=np.int64)
    if len(cand):
        # one trial per architecture (the first), then the non-dominated ones
        _, first = np.unique(X[cand], axis=0, return_index=True)
        cand = np.sort(cand[first])
        m = pareto_mask(table["latency_ms"][cand], table["objective"][cand])
        front = cand[m]
        front = front[np.lexsort((table["number"][front], table["latency_ms"][front]))]
    closest = np.zeros(0, dtype=np.int64)
    done = np.flatnonzero(table["state"] == "COMPLETE") if N else np.zeros(0, dtype=np.int64)
    if not len(front) and len(done):
        _, first = np.unique(X[done], axis=0, return_index=True)
        u = done[first]
        closest = u[np.argsort(table["violation"][u], kind="stable")[:3]]
    return front, closest


def _subset(table: dict, idx) -> dict:
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in table.items()}


def _finish(space, meta, table, front_idx, closest_idx, out, interrupted, log) -> SearchResult:
    """Write the outputs (or explain why nothing is feasible) and build the result."""
    if isinstance(front_idx, dict):  # exhaustive hands over the front itself
        front = front_idx
    else:
        front = _subset(table, front_idx)
    on_front = np.zeros(len(table["X"]), dtype=bool)
    if not isinstance(front_idx, dict):
        on_front[front_idx] = True
    else:
        on_front = table.get("on_front", on_front)
    table["on_front"] = on_front
    n_feasible = int(meta.get("n_feasible", int(np.asarray(table["feasible"]).sum())))
    meta["n_trials"] = int(meta.get("n_trials", table.get("n_complete", len(table["X"]))))
    meta["n_feasible"] = n_feasible
    meta["n_distinct"] = int(meta.get("n_distinct", len(np.unique(table["X"], axis=0)) if len(table["X"]) else 0))
    files = []
    if out is not None:
        out = _writable(out, log)
        remove_stale(out)
        files.append(write_trials_csv(os.path.join(out, "trials.csv"), space, table))
    if not len(front["X"]):
        if interrupted and meta["n_trials"] == 0:
            return SearchResult(space, meta, [], table, out, files, interrupted)
        raise ConstraintError(_infeasible_message(space, meta, closest_idx if not isinstance(closest_idx, dict) else None,
                                                  table, closest_idx if isinstance(closest_idx, dict) else None, out))
    recs = front_records(space, front)
    meta["front_size"] = len(recs)
    if out is not None:
        files.append(write_pareto_csv(os.path.join(out, "pareto.csv"), space, recs))
        files.append(write_pareto_json(os.path.join(out, "pareto.json"), meta, recs))
        files.extend(write_arch_yamls(out, space, recs))
        files.append(write_png(os.path.join(out, "pareto.png"), meta, table, front))
        files.append(write_html(os.path.join(out, "pareto.html"), meta, table, front, recs))
    return SearchResult(space, meta, recs, table, out, files, interrupted)


def _writable(out: str, log) -> str:
    """``out`` if results can still be written there (it was checked before the search began), else
    a fresh temporary folder, said on the log: the finished search is never lost."""
    try:
        return check_out_dir(out)
    except AugurError as exc:
        tmp = fallback_dir()
        msg = f"{exc}; the results are written to {tmp} instead"
        (log or (lambda m: sys.stderr.write(m + "\n")))(msg)
        return tmp


def _infeasible_message(space, meta, closest_idx, table, closest_tab, out) -> str:
    limits = meta["constraints"]
    lim = ", ".join(f"{k} <= {format_limit(k, v)}" for k, v in limits.items())
    src = closest_tab if closest_tab is not None else _subset(table, closest_idx)
    parts = []
    for i in range(len(src["X"])):
        cs = []
        for k, v in limits.items():
            val = float(src[k][i])
            mark = f" (+{100 * (val - v) / v:.0f}%)" if val > v else ""
            shown = {"latency_ms": f"{val:.2f} ms", "memory_mb": f"{val:.1f} MB"}.get(k) or format_limit(k, float(f"{val:.4g}"))
            cs.append(f"{k.split('_')[0]} {shown}{mark}")
        parts.append(f"[{' '.join(map(str, src['X'][i].tolist()))}]: " + ", ".join(cs))
    if meta["sampler"] == "exhaustive" and not meta.get("interrupted"):
        how = f"none of the {meta['n_trials']:,} architectures of {space.name} (all enumerated)"
    else:
        how = (f"none of the {meta['n_trials']} trials ({meta.get('n_distinct', 0)} distinct architectures) "
               f"of {space.name}")
    msg = (f"nothing feasible: {how} on {meta['device']} meets {lim}. "
           + ("The closest (least total relative violation): " + "; ".join(parts) + ". " if parts else "")
           + "Relax the limits" + ("" if meta["sampler"] == "exhaustive" else ", or search longer") + ".")
    if out is not None:
        msg += f" Every trial is in {os.path.join(out, 'trials.csv')}; no front was written."
    return msg
