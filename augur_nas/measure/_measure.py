"""Measuring networks end to end: latency by the drift-robust protocol, peak memory in children."""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from .._errors import MeasurementError
from ._memory import measure_memories
from ._profiling import anchor_speed
from ._protocol import time_runners
from ._runners import check_batch, make_runner, prepare
from ._settings import RuntimeSettings, require


def stderr_progress(prefix: str):
    """A progress printer: one line per message on stderr, with the elapsed time."""
    t0 = time.monotonic()

    def say(msg):
        sys.stderr.write(f"{prefix}: [{time.monotonic() - t0:6.1f} s] {msg}\n")
        sys.stderr.flush()
    return say


# --quick: a first look in seconds, not a measurement to fit a profile on (few, short rounds; a
# short wait for a quiet machine; no memory children)
QUICK = {"rounds": 4, "round_s": 0.02, "warmup_s": 0.05, "max_wait_s": 5.0, "memory": False}
NOISY = 0.05  # split-half noise above this is flagged in measure's output


def noisy(result: dict, threshold: float = NOISY) -> bool:
    """Whether a measured network's split-half noise is above ``threshold`` (its latency is uncertain)."""
    noise = (result.get("latency") or {}).get("noise")
    return noise is not None and not noise <= threshold


def estimate_s(n_networks: int, rounds: int, round_s: float, warmup_s: float, memory: bool, spread_s: float = 0.0) -> float:
    """A lower bound of measure's duration before it starts (export and loading excluded): warm-up,
    rounds (each network ``round_s`` a round, plus a re-warm run), one memory child per network."""
    timing = n_networks * (warmup_s + rounds * round_s * 1.5)
    return max(timing, spread_s) + (n_networks * 1.5 if memory else 0.0)


def measure_networks(networks, settings: RuntimeSettings, rounds: int = 10, round_s: float = 0.05,
                     warmup_s: float = 0.2, spread_s: float = 0.0, memory: bool = True, progress=None,
                     seed: int = 0, budget_s: float | None = None, memory_jobs: int = 1,
                     retry_noise: float | None = None, retries: int = 0, group_mb: float = 2000.0,
                     max_wait_s: float = 300.0, references: dict | None = None) -> list:
    """Measure ``Network`` objects (``_runners.prepare``); one dict per network, in order:
    ``{label, source, latency: Timing.to_dict(), memory: {...} | None}``.

    With ``retry_noise`` and ``retries``, networks whose measurement noise exceeds
    ``retry_noise`` are measured again (all of them interleaved, a fresh series of rounds), up to
    ``retries`` times; the measurement with the lower noise is kept (``attempts`` says how many
    were made).

    ``references`` (``{label: ms}``, labels of some of ``networks``: a profile's speed anchors
    and their latency when the profile was built) are timed in *every* batch of rounds (each
    group, each retry). This machine's speed moves by tens of per cent from one quarter of an
    hour to the next, so networks timed in different batches are not comparable as they are; a
    batch's ``speed`` is the median over the references of (latency now / reference latency),
    and ``latency["normalized_ms"] = median_ms / speed`` is the network's latency at the speed
    the profile was built at."""
    require(settings.backend)
    if not networks:
        return []
    say = progress or (lambda msg: None)
    mem = {}
    attempts = {}
    refs = {k: float(v) for k, v in (references or {}).items() if v and v > 0}
    mine = [n for n in networks if n.label not in refs]  # the speed references are timed for the speed only
    if memory:
        say(f"peak memory of {len(mine)} network(s), one child process each")
        mem = measure_memories({n.label: n.onnx_path for n in mine}, settings, jobs=memory_jobs,
                               progress=lambda d, t, lab: say(f"memory {d}/{t}") if d % 25 == 0 or d == t else None)
    ref_nets = [n for n in networks if n.label in refs]
    groups = _groups(mine, group_mb)
    timing, speeds, ref_timing = {}, {}, {}
    for gi, group in enumerate(groups):
        part = f" (group {gi + 1}/{len(groups)}: at most {group_mb:.0f} MB of weights loaded at once)" if len(groups) > 1 else ""
        t, sp = _time_group(group, settings, rounds, round_s, warmup_s, spread_s, seed + gi, budget_s, say,
                            retry_noise, retries, attempts, part, max_wait_s, ref_nets, refs)
        for lab, tm in t.items():
            if lab in refs:
                ref_timing.setdefault(lab, tm)
            else:
                timing[lab] = tm
        speeds.update(sp)
    timing.update(ref_timing)
    out = []
    for n in networks:
        t = timing[n.label]
        lat = t.to_dict()
        lat["attempts"] = attempts.get(n.label, 1)
        if refs and n.label in speeds:
            lat["speed"] = speeds[n.label]
            lat["normalized_ms"] = t.median_ms / speeds[n.label] if speeds[n.label] == speeds[n.label] else None
        out.append({"label": n.label, "source": n.source, "latency": lat, "memory": mem.get(n.label)})
    return out


def _batch_speed(timing: dict, refs: dict) -> float:
    """The speed of a batch of rounds as ``anchor_speed`` reads it (the median over the small
    anchors: the large one is reported, not part of the speed); NaN without a common anchor."""
    sp = anchor_speed({lab: t.median_ms for lab, t in timing.items()}, refs)
    return sp[0] if sp else float("nan")


def _groups(networks, group_mb):
    """Split the networks so that each group's ONNX files hold at most ``group_mb`` MB (sessions
    of large networks are not all kept in memory at once); sizes are balanced across groups."""
    sizes = [os.path.getsize(n.onnx_path) / 2**20 if os.path.exists(n.onnx_path) else 0.0 for n in networks]
    total = sum(sizes)
    k = max(1, int(-(-total // group_mb))) if group_mb else 1
    if k == 1:
        return [list(networks)]
    bins = [[] for _ in range(k)]
    load = [0.0] * k
    for i in sorted(range(len(networks)), key=lambda i: -sizes[i]):
        j = min(range(k), key=lambda j: load[j])
        bins[j].append(networks[i])
        load[j] += sizes[i]
    return [b for b in bins if b]


def _time_group(networks, settings, rounds, round_s, warmup_s, spread_s, seed, budget_s, say, retry_noise, retries,
                attempts, part, max_wait_s=300.0, ref_nets=(), refs=None):
    """Time one group (and its retries); returns ``({label: Timing}, {label: speed of its batch})``."""
    refs = refs or {}
    networks = list(networks) + list(ref_nets)
    say(f"loading {len(networks)} network(s) into {settings.backend} ({settings.describe()}){part}"
        + (f", {len(ref_nets)} of them speed references" if ref_nets else ""))
    runners = {}
    speeds = {}

    def timed(labels, seed_):
        return time_runners({lab: runners[lab] for lab in labels}, rounds=rounds, round_s=round_s,
                            warmup_s=warmup_s, spread_s=spread_s, seed=seed_, budget_s=budget_s,
                            max_wait_s=max_wait_s, quiet=0.15 if max_wait_s > 0 else None,
                            progress=lambda r, tot, _: say(f"round {r}/{tot}"), status=say)
    try:
        for n in networks:
            runners[n.label] = make_runner(n, settings)
        say(f"timing: warm-up, then {rounds} interleaved rounds"
            + (f" spread over at least {spread_s:.0f} s" if spread_s else ""))
        timing = timed(list(runners), seed)
        for lab in timing:
            attempts[lab] = 1
        sp = _batch_speed(timing, refs)
        speeds.update({lab: sp for lab in timing})
        for attempt in range(retries if retry_noise is not None else 0):
            noisy = [lab for lab, t in timing.items() if not t.noise <= retry_noise and lab not in refs]
            if not noisy:
                break
            say(f"measuring again the {len(noisy)} network(s) with noise above {retry_noise:.0%} "
                f"(attempt {attempt + 2})")
            again = timed(noisy + [n.label for n in ref_nets], seed + attempt + 1)
            sp = _batch_speed(again, refs)
            for lab, t in again.items():
                if lab in refs:
                    continue
                attempts[lab] += 1
                if not timing[lab].noise <= t.noise:
                    timing[lab] = t
                    speeds[lab] = sp
    finally:
        for r in runners.values():
            r.close()
        runners.clear()
    return timing, speeds


def measure_paths(paths, settings: RuntimeSettings, **kw) -> list:
    """``measure_networks`` of model files (exported to ONNX in a temporary folder)."""
    require(settings.backend)
    with tempfile.TemporaryDirectory(prefix="augur-measure-") as d:
        try:
            nets = prepare(paths, d, read_models=False, batch=settings.batch)
            check_batch(nets, settings.batch)
        except MeasurementError:
            raise
        return measure_networks(nets, settings, **kw)
