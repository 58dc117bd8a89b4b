"""``--workers N``: N processes (``python -m augur_nas.search._worker``) on one persistent
study, watched by the parent, which marks the running trials of a killed worker failed and
stops them all on Ctrl-C or on a worker's error."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from .._errors import AugurError, ConstraintError
from .._imports import optional
from ..oracle import Oracle
from ..space import SearchSpace
from ._config import make_sampler, quiet_optuna
from ._loop import Batcher, shared_loop
from ._objective import Objective
from ._signals import graceful_stop
from ._storage import make_storage
from ._study import count_trials, fail_running, fail_untagged, worker_tag


def run_worker(cfg: dict) -> int:
    """Body of a ``--workers`` process (``python -m augur_nas.search._worker``): work on the shared
    study until it holds ``cfg["target"]`` complete trials. Writes its status to ``cfg["status_file"]``
    and returns the exit code (0 done, 130 interrupted, 2 error)."""
    status, msg, code = "done", None, 0
    try:
        optuna = optional("optuna", "a search")

        quiet_optuna()
        space = SearchSpace(cfg["space_spec"], source=cfg["space_source"])
        oracle = Oracle(space, cfg["device"], batch=cfg["batch"])
        objective = Objective(cfg["objective"], fn=cfg["objective_fn"])
        seed = None if cfg["seed"] is None else cfg["seed"] + 1 + cfg["k"]
        study = optuna.load_study(study_name=cfg["study_name"], storage=make_storage(cfg["storage"]),
                                  sampler=make_sampler(cfg["sampler"], seed, cfg["population"]))
        batcher = Batcher(study, space, oracle, objective, cfg["limits"], tag=worker_tag())
        with graceful_stop(term=True) as stop:
            if shared_loop(batcher, cfg["target"], cfg["ask_batch"], stop=stop):
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


def run_workers(cfg, study, ask_batch: int, target: int, tq, n_before: int, stop) -> bool:
    """Start ``cfg.workers`` processes on the study, watch them, replace nothing: the survivors of a
    killed worker pick up its share (its running trials are marked failed). Returns interrupted."""
    tmp = tempfile.mkdtemp(prefix="augur-workers-")
    procs = _start(cfg, ask_batch, target, tmp)
    tags = {k: worker_tag(p.pid) for k, p in enumerate(procs)}
    cfg.log("workers: " + ", ".join(f"{k} (pid {p.pid})" for k, p in enumerate(procs)))
    errors, interrupted = _watch(cfg, study, procs, tags, tmp, tq, n_before, stop)
    if any(_status(tmp, k)["status"] == "interrupted" for k in range(cfg.workers)):
        interrupted = True
    shutil.rmtree(tmp, ignore_errors=True)
    fail_running(study, tags=set(tags.values()))
    fail_untagged(study)
    if errors:
        k, msg = errors[0]
        raise ConstraintError(msg or f"worker {k} failed")
    n_c, _ = count_trials(study)
    if n_c < target and not interrupted:
        # every worker ended early (e.g. all killed): finish the trials here
        cfg.log(f"the workers ended with {n_c - n_before} of {target - n_before} trials; finishing in this process")
        batcher = Batcher(study, cfg.space, Oracle(cfg.space, cfg.device, batch=cfg.batch), cfg.objective, cfg.limits,
                          tag=worker_tag())
        try:
            interrupted = shared_loop(batcher, target, ask_batch, stop=stop)
        except KeyboardInterrupt:
            interrupted = True
    return interrupted


def _start(cfg, ask_batch: int, target: int, tmp: str) -> list:
    """The worker processes, each sent its pickled configuration on stdin."""
    objective_fn = cfg.objective_arg if callable(cfg.objective_arg) else None
    base = {"space_spec": cfg.space.spec, "space_source": cfg.space.source, "device": cfg.device, "batch": cfg.batch,
            "objective": cfg.objective.name if objective_fn is None else None, "objective_fn": objective_fn,
            "limits": cfg.limits, "sampler": cfg.sampler, "seed": cfg.seed, "storage": cfg.storage,
            "study_name": cfg.study_name, "target": target, "ask_batch": ask_batch, "population": cfg.population}
    procs = []
    try:
        for k in range(cfg.workers):
            wcfg = dict(base, k=k, status_file=os.path.join(tmp, f"worker-{k}.json"))
            p = subprocess.Popen([sys.executable, "-m", "augur_nas.search._worker"], stdin=subprocess.PIPE)
            try:
                p.stdin.write(pickle.dumps(wcfg))
                p.stdin.close()
            except BrokenPipeError:
                pass
            procs.append(p)
    except Exception as exc:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (pickle.PicklingError, AttributeError, TypeError)):
            raise ConstraintError(f"--workers {cfg.workers}: the objective cannot be sent to worker processes ({exc}); "
                                  f"use an importable module:function") from exc
        raise
    return procs


def _status(tmp: str, k: int) -> dict:
    try:
        with open(os.path.join(tmp, f"worker-{k}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"status": None, "message": None}


def _stop_all(procs) -> None:
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


def _watch(cfg, study, procs, tags, tmp, tq, n_before, stop):
    """Poll the workers until all ended, one reported an error, or ``stop``; keep the progress bar
    and mark the running trials of a killed worker failed. Returns (errors, interrupted)."""
    handled, errors, interrupted, shown = set(), [], False, 0
    try:
        while True:
            time.sleep(0.25)
            for k, p in enumerate(procs):
                if k in handled or p.poll() is None:
                    continue
                handled.add(k)
                st = _status(tmp, k)
                if st["status"] == "error":
                    errors.append((k, st["message"]))
                elif p.returncode != 0 and st["status"] != "interrupted":
                    n = fail_running(study, tags={tags[k]})
                    how = f"signal {-p.returncode}" if p.returncode < 0 else f"exit code {p.returncode}"
                    cfg.log(f"worker {k} (pid {p.pid}) ended with {how}; {n} of its running trial(s) marked failed, "
                            f"the other workers go on")
            if errors or stop:
                interrupted = bool(stop) and not errors
                _stop_all(procs)
                break
            n_c, _ = count_trials(study)
            done = min(max(0, n_c - n_before), tq.total)
            if done > shown:
                tq.update(done - shown)
                shown = done
            if all(p.poll() is not None for p in procs):
                break
    except KeyboardInterrupt:
        interrupted = True
        _stop_all(procs)
    return errors, interrupted
