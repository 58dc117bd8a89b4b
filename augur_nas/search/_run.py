"""The search: Optuna studies over a space's genes, priced in batches through the oracle.

Each gene is one Optuna parameter with a categorical distribution over its option *indices*;
a batch of trials is asked, their encodings are canonicalized (genes that do not matter are 0)
and priced with one oracle call, then every trial is told its values (predicted latency,
minimized; the objective, maximized) and its hard constraints (``trial.set_constraint``, one
per limit, the relative excess ``(value - limit) / limit``: <= 0 is feasible). The objective is
computed only for candidates meeting every limit.

The parts, one module each: ``_config`` (the checked ``SearchConfig``), ``_study`` (creation,
compatibility, resume), ``_loop`` (the batched ask/tell loop), ``_workers`` and ``_signals``
(worker processes, Ctrl-C and SIGTERM), ``_results`` (the trials table, the front, the files),
``_exhaustive`` (``--sampler exhaustive``). This module runs them in order.
"""

from __future__ import annotations

import dataclasses
import time

from .._errors import ConstraintError
from ..oracle import Oracle
from ._config import (ASK_BATCH, ASK_BATCH_PERSISTENT, DEFAULT_SAMPLER, DEFAULT_TRIALS, SearchConfig, make_config,
                      optuna_quiet, positive_int, progress_bar)
from ._exhaustive import exhaustive
from ._loop import run_here
from ._results import SearchResult, finish, finish_study, trials_table
from ._signals import graceful_stop
from ._storage import describe, is_persistent
from ._study import open_study
from ._workers import run_workers


def search(space, device, *, latency_ms=None, memory_mb=None, params=None, macs=None, objective="macs",
           sampler: str = DEFAULT_SAMPLER, trials: int = DEFAULT_TRIALS, seed: int | None = None,
           storage=None, study_name: str | None = None, workers: int = 1, out: str | None = None,
           batch: int = 1, ask_batch: int | None = None, progress: bool | None = None,
           log=None) -> SearchResult:
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
    write nothing). ``batch``: images per forward pass priced by the oracle.

    Raises ``ConstraintError`` when nothing feasible was found (naming the closest candidates),
    or for bad limits/objective/sampler values. On Ctrl-C the search stops, keeps what it found,
    writes its outputs and returns a result with ``interrupted=True``.
    """
    with optuna_quiet():
        t0 = time.time()
        cfg = make_config(space, device, latency_ms=latency_ms, memory_mb=memory_mb, params=params, macs=macs,
                          objective=objective, sampler=sampler, trials=trials, seed=seed, storage=storage,
                          study_name=study_name, workers=workers, out=out, batch=batch, ask_batch=ask_batch,
                          progress=progress, log=log)
        return run_search(cfg, t0)


def run_search(cfg: SearchConfig, t0: float) -> SearchResult:
    """The search of ``cfg`` (started at ``t0``, for the elapsed time)."""
    oracle = Oracle(cfg.space, cfg.device, batch=cfg.batch)
    meta = _meta(cfg, oracle.device)
    if cfg.sampler == "exhaustive":
        return _run_exhaustive(cfg, oracle, meta, t0)
    if cfg.ask_batch is not None:
        ask_batch = positive_int(cfg.ask_batch, "ask_batch")
    elif is_persistent(cfg.storage):
        ask_batch = min(ASK_BATCH[cfg.sampler], ASK_BATCH_PERSISTENT)
    else:
        ask_batch = ASK_BATCH[cfg.sampler]
    if cfg.workers > 1 and not is_persistent(cfg.storage):
        raise ConstraintError(f"--workers {cfg.workers} needs a persistent --storage that every worker opens "
                              f"(sqlite:///study.db, journal:study.log or postgresql://...); in-memory studies live in one process")
    study, study_name, n_before = open_study(cfg, oracle.device)
    cfg = dataclasses.replace(cfg, study_name=study_name)
    target = n_before + cfg.trials
    tq = progress_bar(cfg.trials, cfg.progress, "trials")
    try:
        with graceful_stop() as stop:
            if cfg.workers == 1:
                interrupted = run_here(cfg, study, oracle, ask_batch, n_before, target, tq, stop)
            else:
                interrupted = run_workers(cfg, study, ask_batch, target, tq, n_before, stop)
    finally:
        tq.close()
    table = trials_table(study, cfg.space, oracle, cfg.objective, cfg.limits)
    meta.update({"storage": describe(cfg.storage), "study_name": study_name, "elapsed_s": round(time.time() - t0, 3),
                 "interrupted": interrupted, "trials_this_run": int(table["n_complete"] - n_before),
                 "workers": cfg.workers})
    return finish_study(cfg.space, meta, table, cfg.out, interrupted)


def _meta(cfg: SearchConfig, device_name: str) -> dict:
    obj = cfg.objective
    return {
        "space": cfg.space.name, "space_file": cfg.space.source, "space_size": int(cfg.space.size),
        "device": device_name, "batch": cfg.batch, "sampler": cfg.sampler, "seed": cfg.seed,
        "objective": {"name": obj.name, "description": obj.description, "builtin": obj.builtin,
                      "direction": "maximize"},
        "latency": {"name": "latency_ms", "direction": "minimize"},
        "constraints": dict(cfg.limits),
        "constraint_values": "relative excess (value - limit) / limit, <= 0 feasible",
    }


def _run_exhaustive(cfg: SearchConfig, oracle, meta: dict, t0: float) -> SearchResult:
    if is_persistent(cfg.storage) or cfg.study_name:
        raise ConstraintError("--sampler exhaustive enumerates the space without a study; drop --storage/--study-name")
    table, front, closest, info = exhaustive(cfg.space, oracle, cfg.objective, cfg.limits, device=cfg.device,
                                             batch=cfg.batch, workers=cfg.workers, progress=cfg.progress,
                                             objective_arg=cfg.objective_arg)
    meta.update(info)
    meta.update({"storage": None, "study_name": None, "elapsed_s": round(time.time() - t0, 3)})
    return finish(cfg.space, meta, table, front, closest, cfg.out, info["interrupted"])
