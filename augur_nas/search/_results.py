"""The result of a search: the table of its trials, its Pareto front (or the closest infeasible
candidates, named in the error), the output files, and the ``SearchResult`` returned."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .._atomic import check_out_dir, fallback_dir
from .._errors import AugurError, ConstraintError
from .._imports import optional
from ._config import relative_constraints
from ._objective import Objective
from ._outputs import (COST_KEYS, front_records, remove_stale, write_arch_yamls, write_html, write_pareto_csv,
                       write_pareto_json, write_png, write_trials_csv)
from ._pareto import pareto_mask, violation
from ._study import gene_params
from ._units import format_limit


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


def trials_table(study, space, oracle, obj: Objective, limits: dict) -> dict:
    TrialState = optional("optuna.trial", "a search").TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if len(t.params) == space.n_genes]
    N = len(trials)
    X = gene_params(study, space).encodings([t.params for t in trials])
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


def front_of(table: dict):
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


def subset(table: dict, idx) -> dict:
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in table.items()}


def finish(space, meta: dict, table: dict, front: dict, closest: dict, out, interrupted: bool):
    """Write the outputs (or explain why nothing is feasible) and build the result. ``front`` and
    ``closest``: tables of the front (by latency) and of the closest infeasible candidates;
    ``table["on_front"]`` marks the front's rows of ``table``."""
    meta["n_trials"] = int(meta.get("n_trials", table.get("n_complete", len(table["X"]))))
    meta["n_feasible"] = int(meta.get("n_feasible", int(np.asarray(table["feasible"]).sum())))
    meta["n_distinct"] = int(meta.get("n_distinct", len(np.unique(table["X"], axis=0)) if len(table["X"]) else 0))
    files = []
    if out is not None:
        out = _writable(out)
        remove_stale(out)
        files.append(write_trials_csv(os.path.join(out, "trials.csv"), space, table))
    if not len(front["X"]):
        if interrupted and meta["n_trials"] == 0:
            return SearchResult(space, meta, [], table, out, files, interrupted)
        raise ConstraintError(_infeasible_message(space, meta, closest, out))
    recs = front_records(space, front)
    meta["front_size"] = len(recs)
    if out is not None:
        files.append(write_pareto_csv(os.path.join(out, "pareto.csv"), space, recs))
        files.append(write_pareto_json(os.path.join(out, "pareto.json"), meta, recs))
        files.extend(write_arch_yamls(out, space, recs))
        files.append(write_png(os.path.join(out, "pareto.png"), meta, table, front))
        files.append(write_html(os.path.join(out, "pareto.html"), meta, table, front, recs))
    return SearchResult(space, meta, recs, table, out, files, interrupted)


def finish_study(space, meta: dict, table: dict, out, interrupted: bool):
    """``finish`` for the table of a study's trials: its front and closest candidates picked here."""
    front_idx, closest_idx = front_of(table)
    on_front = np.zeros(len(table["X"]), dtype=bool)
    on_front[front_idx] = True
    table["on_front"] = on_front
    return finish(space, meta, table, subset(table, front_idx), subset(table, closest_idx), out, interrupted)


def _writable(out: str, log=None) -> str:
    """``out`` if results can still be written there (it was checked before the search began), else
    a fresh temporary folder, said on the log (stderr by default): the finished search is never lost."""
    try:
        return check_out_dir(out)
    except AugurError as exc:
        tmp = fallback_dir()
        msg = f"{exc}; the results are written to {tmp} instead"
        (log or (lambda m: sys.stderr.write(f"augur-nas search: {m}\n")))(msg)
        return tmp


def _infeasible_message(space, meta, closest: dict, out) -> str:
    limits = meta["constraints"]
    lim = ", ".join(f"{k} <= {format_limit(k, v)}" for k, v in limits.items())
    src = closest
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
    elif meta["sampler"] == "exact":
        how = f"none of the {space.size:.3g} architectures of {space.name} (exact dynamic program over segments)"
    else:
        how = (f"none of the {meta['n_trials']} trials ({meta.get('n_distinct', 0)} distinct architectures) "
               f"of {space.name}")
    msg = (f"nothing feasible: {how} on {meta['device']} meets {lim}. "
           + ("The closest (least total relative violation): " + "; ".join(parts) + ". " if parts else "")
           + "Relax the limits" + ("" if meta["sampler"] in ("exhaustive", "exact") else ", or search longer") + ".")
    if out is not None:
        msg += f" Every trial is in {os.path.join(out, 'trials.csv')}; no front was written."
    return msg
