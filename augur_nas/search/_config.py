"""What a search is asked to do: the validated ``SearchConfig``, the samplers, the limits, and
the small helpers every part of the search shares (Optuna's logging, the progress bar)."""

from __future__ import annotations

import pickle
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .._errors import ConstraintError
from .._imports import optional
from ..models import load_space, load_space_dict
from ..space import SearchSpace
from ._objective import Objective
from ._units import parse_limit

SAMPLERS = ("exact", "nsga2", "tpe", "random", "exhaustive")
DEFAULT_SAMPLER = "nsga2"  # when the exact front does not apply (see _run.resolve_sampler)
DEFAULT_TRIALS = 3000
#: trials asked (and priced in one oracle call) per batch, per sampler
ASK_BATCH = {"nsga2": 30, "tpe": 16, "random": 256}
#: with a database or journal every ask reloads the running trials (the batch asked so far), so a
#: batch of b costs about b^2/2 trial reads: batches of 4 ran 1.25x faster than 16 on sqlite
#: (experiments/storage_speed.md)
ASK_BATCH_PERSISTENT = 4
NSGA2_POPULATION = 30
EXHAUSTIVE_CHUNK = 20000
EXHAUSTIVE_SAMPLE = 100000  # rows of trials.csv (and points of the figures) for an enumerated space


def _silent(msg: str) -> None:
    pass


@dataclass(frozen=True)
class SearchConfig:
    """One search, its arguments checked (``make_config``). ``objective_arg`` is what the caller
    passed as the objective (a callable is sent to worker processes as is); ``objective`` its
    ``Objective``. ``ask_batch`` None: chosen per sampler and storage (``ask_batch_for``)."""

    space: object  # a SearchSpace
    device: str  # a shipped profile name or a profile file, as given
    limits: dict
    objective: Objective
    objective_arg: object
    sampler: Optional[str] = None  # None: the exact front where it applies, else DEFAULT_SAMPLER
    trials: int = DEFAULT_TRIALS
    trials_given: bool = False  # a trial count asks for a sampling search
    front_size: int = 20
    change_limits: bool = False  # a resumed study may be given other limits
    seed: Optional[int] = None
    storage: object = None
    study_name: Optional[str] = None
    workers: int = 1
    out: Optional[str] = None
    batch: int = 1
    ask_batch: Optional[int] = None
    progress: Optional[bool] = None
    log: Callable = _silent
    population: int = NSGA2_POPULATION
    split: object = None  # a _split.SplitSpec: latency is the best device/server split's total


def make_config(space, device, *, latency_ms=None, memory_mb=None, params=None, macs=None, objective="macs",
                sampler: Optional[str] = None, trials: Optional[int] = None, seed=None, storage=None,
                study_name=None, workers: int = 1, out=None, batch: int = 1, ask_batch=None, progress=None,
                log=None, front_size: int = 20, change_limits: bool = False, split=None) -> SearchConfig:
    """The ``SearchConfig`` of ``search()``'s arguments, checked in the order the user reads the
    errors (limits, sampler, counts, seed, objective); raises ``ConstraintError``."""
    space = load_space_arg(space)
    limits = parse_limits(latency_ms, memory_mb, params, macs)
    if sampler is not None and sampler not in SAMPLERS:
        raise ConstraintError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    workers = positive_int(workers, "--workers")
    trials_given = trials is not None
    trials = positive_int(DEFAULT_TRIALS if trials is None else trials, "--trials")
    front_size = positive_int(front_size, "--front-size")
    batch = positive_int(batch, "--batch")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ConstraintError(f"--seed must be a whole number >= 0, got {seed!r}")
    obj = Objective(None, fn=objective) if callable(objective) else Objective(objective)
    if workers > 1 and callable(objective):
        _check_importable(objective)
    if split is not None and workers > 1:
        raise ConstraintError("--split-server prices in this process only; drop --workers")
    if split is not None and sampler == "exact":
        raise ConstraintError("--sampler exact needs a latency that is a sum over segments; a device/server split's "
                              "best total is not (drop --sampler exact: NSGA-II searches it)")
    return SearchConfig(space=space, device=device, limits=limits, objective=obj, objective_arg=objective,
                        sampler=sampler, trials=trials, trials_given=trials_given, front_size=front_size,
                        change_limits=bool(change_limits),
                        seed=seed, storage=storage, study_name=study_name,
                        workers=workers, out=out, batch=batch, ask_batch=ask_batch, progress=progress,
                        log=log or _silent, split=split)


def _check_importable(objective) -> None:
    try:
        pickle.dumps(objective)
        ok = getattr(objective, "__module__", None) != "__main__"
    except Exception:
        ok = False
    if not ok:
        raise ConstraintError("workers > 1 need an objective that other processes can import by name: a function "
                              "defined at the top level of an importable module (or pass \"module:function\")")


def load_space_arg(space):
    """A ``SearchSpace`` from a space, a spec dict or a path."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return load_space_dict(space)
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
    optuna = optional("optuna", "a search")

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConstraintError(f"--sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def positive_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise ConstraintError(f"{what} must be a positive whole number, got {v!r}")
    return int(v)


def quiet_optuna():
    optuna = optional("optuna", "a search")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


@contextmanager
def optuna_quiet():
    """Optuna's per-trial INFO lines and experimental warnings off, for the duration only."""
    optuna = optional("optuna", "a search")

    old = optuna.logging.get_verbosity()
    with warnings.catch_warnings():
        quiet_optuna()
        try:
            yield
        finally:
            optuna.logging.set_verbosity(old)


def progress_bar(total, progress, unit):
    tqdm = optional("tqdm", "the progress bar").tqdm

    disable = (not sys.stderr.isatty()) if progress is None else (not progress)
    return tqdm(total=total, unit=unit, disable=disable, dynamic_ncols=True, leave=False, file=sys.stderr)
