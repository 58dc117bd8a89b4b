"""The batched ask/tell loop: a batch of trials is asked, their encodings canonicalized and
priced with one oracle call, and every trial is told its values and constraints."""

from __future__ import annotations

import math
import time

from .._imports import optional
from ._config import relative_constraints
from ._objective import Objective
from ._study import WORKER_ATTR, count_trials, gene_params, worker_tag
from ._storage import is_persistent


class Batcher:
    """Asks, prices and tells trials of one study, a batch at a time."""

    def __init__(self, study, space, oracle, objective: Objective, limits: dict, tag: str | None = None):
        self.study, self.space, self.oracle, self.objective, self.limits = study, space, oracle, objective, limits
        self.tag = tag
        self.params = gene_params(study, space)  # option labels (or a resumed old study's indices)
        self.dists = self.params.dists
        self.n_feasible = 0

    def run_batch(self, b: int) -> int:
        TrialState = optional("optuna.trial", "a search").TrialState

        pending = []
        try:
            for _ in range(b):
                t = self.study.ask(self.dists)
                pending.append(t)
                if self.tag:
                    t.set_user_attr(WORKER_ATTR, self.tag)
            X = self.space.canonicalize(self.params.encodings([t.params for t in pending]))
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


def shared_loop(batcher: Batcher, target: int, ask_batch: int, on_batch=None, poll: float = 0.2,
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
        n_c, n_r = count_trials(batcher.study)
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


class _SharedProgress:
    """The progress bar of a study shared with other processes: it shows this run's complete
    trials, wherever they were run, capped at the trials asked for."""

    def __init__(self, tq, batcher: Batcher, n_before: int, trials: int):
        self.tq, self.batcher, self.n_before, self.trials = tq, batcher, n_before, trials
        self.shown = 0

    def __call__(self, n_complete: int) -> None:
        d = min(self.trials, max(0, n_complete - self.n_before))
        if d > self.shown:
            self.tq.update(d - self.shown)
            self.shown = d
        self.tq.set_postfix(feasible=self.batcher.n_feasible, refresh=False)


def run_here(cfg, study, oracle, ask_batch: int, n_before: int, target: int, tq, stop) -> bool:
    """Run the trials of ``cfg`` in this process; returns True when interrupted."""
    persistent = is_persistent(cfg.storage)
    batcher = Batcher(study, cfg.space, oracle, cfg.objective, cfg.limits, tag=worker_tag() if persistent else None)
    try:
        if persistent:  # other processes may work on the same study
            on_batch = _SharedProgress(tq, batcher, n_before, cfg.trials)
            return shared_loop(batcher, target, ask_batch, on_batch=on_batch, stop=stop)
        done = 0
        while done < cfg.trials:
            if stop:
                return True
            b = batcher.run_batch(min(ask_batch, cfg.trials - done))
            done += b
            tq.update(b)
            tq.set_postfix(feasible=batcher.n_feasible, refresh=False)
        return False
    except KeyboardInterrupt:
        return True
