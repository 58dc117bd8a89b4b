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
``_exhaustive`` (``--sampler exhaustive``), ``_exact_run`` (``--sampler exact``, the exact front by
dynamic programming over segments). This module runs them in order.
"""

from __future__ import annotations

import dataclasses
import time

from .._atomic import check_out_dir
from .._errors import ConstraintError
from ..oracle import Oracle
from ._config import (ASK_BATCH, ASK_BATCH_PERSISTENT, DEFAULT_SAMPLER, SearchConfig, make_config,
                      optuna_quiet, positive_int, progress_bar)
from ._exact_run import exact_applies, exact_search, seed_encodings
from ._exhaustive import exhaustive
from ._loop import run_here
from ._results import SearchResult, finish, finish_study, trials_table
from ._signals import graceful_stop
from ._split import SplitOracle, split_spec
from ._storage import describe, is_persistent
from ._study import gene_params, open_study
from ._workers import run_workers


def search(space, device, *, latency_ms=None, memory_mb=None, params=None, macs=None, objective="macs",
           sampler: str | None = None, trials: int | None = None, seed: int | None = None,
           storage=None, study_name: str | None = None, workers: int = 1, out: str | None = None,
           batch: int = 1, ask_batch: int | None = None, progress: bool | None = None,
           log=None, front_size: int = 20, change_limits: bool = False, split_server=None, uplink=None,
           downlink=None, rtt="0ms", split_dtype="float32") -> SearchResult:
    """Search ``space`` for the Pareto front of (predicted latency on ``device``: minimized,
    ``objective``: maximized) under hard limits.

    ``space``: a path or a ``SearchSpace``; ``device``: a shipped profile name or a profile file.
    Limits: numbers in the base unit (ms, MB, counts) or strings with units (``"50ms"``,
    ``"300MB"``, ``"5M"``). ``objective``: ``"macs"``, ``"params"`` (capacity proxies),
    ``"module:function"``, or a callable taking the decoded architecture dict. ``sampler``:
    exact (the exact front by dynamic programming over segments, thinned to ``front_size``
    members), nsga2, tpe, random, or exhaustive (every candidate of a space of at most 10^7).
    By default (``None``): exact where it applies (a ``macs``/``params`` objective, a profile
    whose latency is a sum over segments, no ``trials``, storage or workers), otherwise NSGA-II
    for ``trials`` (default 3,000) trials, its first population seeded with the exact front of
    (layer-sum latency, MACs) where the profile's layer sum composes.
    ``storage``: None (in memory), ``sqlite:///F.db``, ``journal:F`` / ``F.log``,
    ``postgresql://...``; a study with the same ``study_name`` is resumed, ``trials`` more trials
    are run. ``workers`` > 1 runs that many processes on the study (needs a persistent storage).
    ``out``: a folder to write trials.csv, pareto.csv/json/png/html and arch-NNN.yaml to (None:
    write nothing; checked before any work). ``batch``: images per forward pass priced by the oracle.
    ``change_limits``: a resumed study may be given other limits (every trial is re-checked
    against the new ones; the sampler's stored constraint values of earlier trials stay as they were).
    ``split_server`` (a profile) with ``uplink`` (``"20Mbps"`` or an ``augur_nas.planner.Link``),
    ``downlink``, ``rtt``, ``split_dtype``: the latency minimized and limited is each candidate's
    best split between ``device`` and that server (``Oracle.split_latency``); NSGA-II, no workers.

    Raises ``ConstraintError`` when nothing feasible was found (naming the closest candidates),
    or for bad limits/objective/sampler values. On Ctrl-C the search stops, keeps what it found,
    writes its outputs and returns a result with ``interrupted=True``.
    """
    if out is not None:
        check_out_dir(out)  # a finished search is never lost on a folder it cannot write
    with optuna_quiet():
        t0 = time.time()
        split = split_spec(split_server, uplink, downlink, rtt, split_dtype)
        cfg = make_config(space, device, latency_ms=latency_ms, memory_mb=memory_mb, params=params, macs=macs,
                          objective=objective, sampler=sampler, trials=trials, seed=seed, storage=storage,
                          study_name=study_name, workers=workers, out=out, batch=batch, ask_batch=ask_batch,
                          progress=progress, log=log, front_size=front_size, change_limits=change_limits,
                          split=split)
        return run_search(cfg, t0)


def run_search(cfg: SearchConfig, t0: float) -> SearchResult:
    """The search of ``cfg`` (started at ``t0``, for the elapsed time)."""
    if cfg.split is None:
        oracle = Oracle(cfg.space, cfg.device, batch=cfg.batch)
    else:
        oracle = SplitOracle(cfg.space, cfg.device, cfg.split, batch=cfg.batch)
    sampler, seeded = resolve_sampler(cfg, oracle)
    cfg = dataclasses.replace(cfg, sampler=sampler)
    meta = _meta(cfg, oracle.device)
    if cfg.split is not None:
        sp = cfg.split
        meta["split"] = {"server": oracle.server_profile.name, **sp.link._asdict(),
                         "latency": "the best device/server split's total (augur_nas.planner)"}
    if cfg.sampler == "exact":
        return _run_exact(cfg, oracle, meta, t0)
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
    if seeded and not n_before:
        meta["seeding"] = _seed_study(study, cfg, oracle)
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
        "quantities": {"exact": [], "searched": ["latency_ms", obj.name]},
    }


def resolve_sampler(cfg: SearchConfig, oracle) -> tuple:
    """(sampler, seed the first population with the exact front?) for a ``sampler`` of ``None``:
    the exact front where it applies and nothing asks for a sampling search (trials, a study,
    workers), else NSGA-II, seeded where the objective or the profile makes the front inexact."""
    if cfg.sampler is not None:
        return cfg.sampler, False
    sampling = cfg.trials_given or is_persistent(cfg.storage) or cfg.study_name or cfg.workers > 1
    if exact_applies(oracle, cfg.objective, default=True) is None and not sampling:
        return "exact", False
    return DEFAULT_SAMPLER, not is_persistent(cfg.storage) and cfg.workers == 1


def _run_exact(cfg: SearchConfig, oracle, meta: dict, t0: float) -> SearchResult:
    if is_persistent(cfg.storage) or cfg.study_name or cfg.workers > 1:
        raise ConstraintError("--sampler exact solves the front without a study; drop --storage/--study-name/--workers")

    table, front, closest, info = exact_search(cfg.space, oracle, cfg.objective, cfg.limits,
                                               front_size=cfg.front_size, seed=cfg.seed, log=cfg.log)
    meta.update(info)
    meta["quantities"] = {"exact": list(dict.fromkeys(["latency_ms", cfg.objective.name, *cfg.limits])),
                          "searched": []}
    meta.update({"storage": None, "study_name": None, "elapsed_s": round(time.time() - t0, 3)})
    return finish(cfg.space, meta, table, front, closest, cfg.out, False)


def _seed_study(study, cfg: SearchConfig, oracle) -> str:
    """Enqueue the exact front of (layer-sum latency, MACs) as the first trials of a search whose
    objective or latency is not a sum over segments: the search starts from the region the
    exact front marks (under the limits that are sums) instead of from random candidates."""
    X, note = seed_encodings(oracle, cfg.limits, cfg.population)
    params = gene_params(study, cfg.space)
    for x in X:
        study.enqueue_trial(params.params(x), skip_if_exists=True)
    cfg.log(note)
    return note


def _run_exhaustive(cfg: SearchConfig, oracle, meta: dict, t0: float) -> SearchResult:
    if is_persistent(cfg.storage) or cfg.study_name:
        raise ConstraintError("--sampler exhaustive enumerates the space without a study; drop --storage/--study-name")
    table, front, closest, info = exhaustive(cfg.space, oracle, cfg.objective, cfg.limits, device=cfg.device,
                                             batch=cfg.batch, workers=cfg.workers, progress=cfg.progress,
                                             objective_arg=cfg.objective_arg)
    meta.update(info)
    meta.update({"storage": None, "study_name": None, "elapsed_s": round(time.time() - t0, 3)})
    return finish(cfg.space, meta, table, front, closest, cfg.out, info["interrupted"])
