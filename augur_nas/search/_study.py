"""The Optuna study of a search: created or resumed (with a check that a resumed study was made
for the same space, device, objective and limits), and the bookkeeping of trials left RUNNING by
processes that died."""

from __future__ import annotations

import datetime
import os
import socket
import time

from .._errors import AugurError, ConstraintError
from .._imports import optional
from ._config import make_sampler
from ._params import INDICES, LABELS, GeneParams
from ._storage import describe, is_persistent, make_storage
from ._units import format_limit

STUDY_ATTR = "augur_nas"
WORKER_ATTR = "augur_nas.worker"


def worker_tag(pid=None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


UNTAGGED_GRACE_S = 10.0


def fail_running(study, tags=None, dead_only_here: bool = False, untagged_after_s: float | None = None) -> int:
    """Mark RUNNING trials as FAIL: those tagged with one of ``tags``, or (``dead_only_here``) those
    tagged by a process of this machine that no longer exists, or (``untagged_after_s``) those
    with no tag that started more than that long ago. A worker tags its trial right after asking
    for it, so an untagged trial that old was asked for by a worker killed in between. Returns
    how many."""
    TrialState = optional("optuna.trial", "a search").TrialState

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


def fail_untagged(study) -> int:
    """After the workers ended: a worker killed between asking for a trial and tagging it leaves
    an untagged RUNNING trial; wait until such trials are older than the grace period (a live
    worker elsewhere tags its own within milliseconds) and mark them failed."""
    TrialState = optional("optuna.trial", "a search").TrialState

    young = [t.datetime_start for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
             if t.user_attrs.get(WORKER_ATTR) is None and t.datetime_start is not None]
    if not young:
        return 0
    age = (datetime.datetime.now() - max(young)).total_seconds()
    if age <= UNTAGGED_GRACE_S:
        time.sleep(UNTAGGED_GRACE_S - age + 0.5)
    return fail_running(study, untagged_after_s=UNTAGGED_GRACE_S)


def count_trials(study):
    TrialState = optional("optuna.trial", "a search").TrialState

    ts = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    n_c = sum(1 for t in ts if t.state == TrialState.COMPLETE)
    return n_c, len(ts) - n_c


def param_mode(sig) -> str:
    """How a study with signature ``sig`` stores its genes: a new study (``sig`` None) stores option
    labels; a study made before the labels (its signature has no "params") option indices."""
    return LABELS if sig is None else sig.get("params", INDICES)


def gene_params(study, space) -> GeneParams:
    """The gene parameters of a checked study (``check_study``), as it stores them."""
    return GeneParams(space, param_mode(study.user_attrs.get(STUDY_ATTR)))


def check_study(study, space, device_name, obj, limits, batch, storage, change_limits=False, log=None):
    old = study.user_attrs.get(STUDY_ATTR)
    sig = {"space": space.name, "genes": [[g.name, g.size] for g in space.genes], "device": device_name,
           "objective": obj.name, "constraints": limits, "batch": batch, "params": param_mode(old)}
    if old is not None:
        old = {**old, "params": param_mode(old)}
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


def open_study(cfg, device_name: str):
    """Create the study of ``cfg`` or resume the one of that name in its storage. Returns the study,
    its name and how many complete trials it held before this run."""
    optuna = optional("optuna", "a search")
    TrialState = optional("optuna.trial", "a search").TrialState

    study_name = cfg.study_name or f"{cfg.space.name}-{device_name}"
    st = make_storage(cfg.storage)
    try:
        study = optuna.create_study(storage=st, sampler=make_sampler(cfg.sampler, cfg.seed, cfg.population),
                                    study_name=study_name, directions=["minimize", "maximize"], load_if_exists=True)
    except AugurError:
        raise
    except Exception as exc:
        raise ConstraintError(f"cannot open study {study_name!r} in {describe(cfg.storage)}: "
                              f"{type(exc).__name__}: {exc}") from exc
    check_study(study, cfg.space, device_name, cfg.objective, cfg.limits, cfg.batch, cfg.storage,
                cfg.change_limits, cfg.log)
    if is_persistent(cfg.storage):
        n_stale = fail_running(study, dead_only_here=True)
        if n_stale:
            cfg.log(f"marked {n_stale} trial(s) of dead processes of an earlier run as failed")
    n_before = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n_before:
        cfg.log(f"resuming study {study_name!r} ({describe(cfg.storage)}) with {n_before} complete trials")
    return study, study_name, n_before
