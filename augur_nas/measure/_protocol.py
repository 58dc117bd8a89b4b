"""The drift-robust timing protocol of ``augur-nas measure``.

A small shared machine does not run at one speed: other processes, frequency changes and the
host's neighbours make the same network's latency drift by 10-50% within minutes. So a single
timing loop is not a measurement. The protocol:

1. **warm-up**: every network runs until ``warmup_s`` have passed (at least ``min_warmup``
   runs; the first run pays lazy initialisation); the median warm-up run sets how many
   iterations one round takes (``round_s`` of work, between 1 and ``max_iters``);
2. **rounds**: ``rounds`` rounds; in each, every network runs its iterations, the networks in a
   fresh random order (interleaved, so a slow spell of the machine hits all of them alike
   instead of one), each run timed on its own after one untimed run (networks faster than
   ``warm_below_s``: the other networks have evicted its weights from the caches meanwhile); a
   round's value is the median of its runs;
3. **spread**: when the rounds would finish sooner than ``spread_s``, the protocol pauses
   between rounds so that they cover at least that much time (a measurement should sample
   the machine's drift, not one moment of it);
4. **contention**: before each round the protocol waits (up to ``max_wait_s`` in all) while
   other processes keep more than ``quiet`` of the machine's CPUs busy; and, on Linux, every
   round of every network also records how busy the *other*
   processes kept the machine meanwhile (``/proc/stat`` minus this process's own CPU time). A
   round during which they used more than ``contended`` of the machine's cores (another job
   sharing the caches and memory bandwidth slows a kernel by 10-30%) is set aside when at least
   half of the rounds are clean; the count is reported. And each run is timed on the process's
   own CPU clock too (a runner whose ``on_cpu`` is true): a run during which this process held
   less than ``own_share`` of a core (its CPU time over its wall time; another process took turns
   on its core) is left out of its round when the round has a run that held it. The machine-wide share cannot see this: on a 2-core
   machine with one job on each core it is always high, and a process sharing this one's core
   doubles the time of every run longer than a scheduler slice (a 6 ms network measured 14 ms at a
   CPU share of 0.46) while runs under a millisecond mostly slip through whole (NAS-Bench-201
   samples 0.98x): large networks slow, small ones not, a distortion the common-drift step below
   cannot take out (issue 11). A round with no such run keeps all of them and counts as contended;
5. **common drift**: a round of interleaved networks lasts seconds, and when the machine slows
   down or speeds up for a while every network of that round moves with it. With at least
   ``common_min`` networks, the round's common factor is taken out (a two-way median polish in
   log space: ``log t[net, round] = net effect + round effect + rest``, the round effects centred
   on their median), so each network's figure is its latency at the session's median speed and
   its noise is what is left once the whole machine's drift is removed. The uncorrected median
   and noise are reported beside (``raw_median_ms``, ``raw_noise``);
6. **statistic**: the latency is the median of the (clean, drift-corrected) round values. The
   measurement's own noise is the disagreement between its halves, ``|median(first half) -
   median(second half)| / median``: how much the answer would move if measured again a little
   later.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np


# a run during which this process held less of a core than this shared it with another process
OWN_SHARE = 0.8


def held_core(cpu_s, wall_s, own_share: float = OWN_SHARE):
    """Whether a run (or each of an array of runs) held its core: this process's CPU time over
    the run's wall time is at least ``own_share`` (else another process took turns on it)."""
    return cpu_s >= own_share * wall_s


@dataclass
class Timing:
    """The timing of one network."""

    label: str
    median_ms: float
    noise: float  # |median(first half) - median(second half)| / median
    rounds: list = field(default_factory=list)  # per-round medians, ms, in time order
    iters: int = 1  # runs per round
    runs: int = 0  # timed runs in all
    warmup_runs: int = 0
    contended: int = 0  # rounds set aside: other processes were busy meanwhile (or shared this one's core)
    waited_s: float = 0.0  # time spent waiting for the other processes to quiet down
    raw_median_ms: float | None = None  # before the common drift was taken out (None: not taken out)
    raw_noise: float | None = None
    shared_runs: int = 0  # runs left out: this process held less than ``own_share`` of a core

    @property
    def spread(self) -> dict:
        r = np.asarray(self.rounds, dtype=np.float64)
        if len(r) == 0:
            return {}
        return {"min": float(r.min()), "p25": float(np.percentile(r, 25)), "p75": float(np.percentile(r, 75)),
                "max": float(r.max())}

    def to_dict(self) -> dict:
        return {"label": self.label, "median_ms": self.median_ms, "noise": self.noise, "iters_per_round": self.iters,
                "rounds": len(self.rounds), "runs": self.runs, "spread_ms": self.spread,
                "contended_rounds": self.contended, "shared_runs": self.shared_runs, "waited_s": self.waited_s,
                "raw_median_ms": self.raw_median_ms, "raw_noise": self.raw_noise,
                "round_medians_ms": [float(v) for v in self.rounds]}


def round_effects(values: dict, keep: dict, iterations: int = 3) -> np.ndarray:
    """The rounds' common log factor (median polish of ``log t[net, round]`` over the kept
    rounds), centred on its median. ``values``/``keep``: ``{label: [rounds]}``."""
    labels = list(values)
    L = np.log(np.asarray([values[lab] for lab in labels], dtype=np.float64))
    K = np.asarray([keep[lab] for lab in labels], dtype=bool)
    M = np.where(K, L, np.nan)
    col = np.zeros(L.shape[1])
    ok = K.any(axis=0)
    for _ in range(iterations):
        row = np.nanmedian(M - col[None, :], axis=1)  # each network's level
        resid = M - row[:, None]
        col = np.zeros(L.shape[1])
        for r in np.nonzero(ok)[0]:
            col[r] = np.median(resid[K[:, r], r])  # each round's common factor
        if ok.any():
            col -= np.median(col[ok])
    return col


def half_noise(values) -> float:
    """``|median(first half) - median(second half)| / median`` of values in time order."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    h = len(v) // 2
    a, b = np.median(v[:h]), np.median(v[len(v) - h:])
    med = np.median(v)
    return float(abs(a - b) / med) if med > 0 else float("nan")


class _Load:
    """CPU time the other processes used (Linux ``/proc``), in core-seconds."""

    def __init__(self):
        self.ok = os.path.exists("/proc/stat") and os.path.exists("/proc/self/stat")
        self.hz = os.sysconf("SC_CLK_TCK") if self.ok else 100
        self.ncpu = os.cpu_count() or 1

    def sample(self):
        if not self.ok:
            return None
        try:
            with open("/proc/stat", encoding="ascii") as f:
                v = f.readline().split()[1:]
            busy = sum(int(x) for x in v[:8]) - int(v[3]) - int(v[4])
            with open("/proc/self/stat", encoding="ascii") as f:
                own = f.read().rsplit(")", 1)[1].split()
            mine = int(own[11]) + int(own[12])  # utime + stime of this process (all threads)
            return busy - mine
        except (OSError, ValueError, IndexError):
            return None

    def foreign(self, a, b, seconds):
        """Share of the machine's cores the other processes kept busy between two samples."""
        if a is None or b is None or seconds <= 0:
            return 0.0
        return max(0.0, (b - a) / self.hz) / (seconds * self.ncpu)


def _warm_up(runners: dict, labels: list, warmup_s: float, min_warmup: int, clock) -> tuple:
    """``(per-run seconds, warm-up runs)`` by label: each network runs for ``warmup_s`` (at least
    ``min_warmup`` runs); the first run, which pays lazy initialisation, is left out of the median."""
    per_run, warm = {}, {}
    for lab in labels:
        run = runners[lab].run
        ts = []
        t_end = clock() + warmup_s
        while len(ts) < min_warmup or clock() < t_end:
            t = clock()
            run()
            ts.append(clock() - t)
            if len(ts) >= 1000:
                break
        warm[lab] = len(ts)
        per_run[lab] = float(np.median(ts[1:] if len(ts) > 1 else ts))
    return per_run, warm


def time_runners(runners: dict, rounds: int = 10, round_s: float = 0.05, warmup_s: float = 0.2,
                 min_warmup: int = 3, max_iters: int = 200, spread_s: float = 0.0, seed: int = 0,
                 progress=None, budget_s: float | None = None, contended: float | None = 0.2,
                 warm_below_s: float = 0.05, quiet: float | None = 0.15, max_wait_s: float = 300.0,
                 common_min: int | None = 8, status=None, own_share: float | None = OWN_SHARE) -> dict:
    """Time ``{label: runner}`` (each with ``run()``) with the protocol above.

    ``progress(done, total, label)`` is called after each round. ``budget_s`` caps the time of
    the rounds: fewer rounds are run (never fewer than 2) if they would not fit.
    ``status(message)`` hears the estimate after the warm-up and, every few seconds, that the
    protocol is waiting for other processes (so a long wait is never silent).
    Returns ``{label: Timing}``.
    """
    labels = list(runners)
    rng = np.random.default_rng(seed)
    clock = time.perf_counter
    load = _Load()
    per_run, warm = _warm_up(runners, labels, warmup_s, min_warmup, clock)
    iters = {lab: int(min(max_iters, max(1, math.floor(round_s / max(per_run[lab], 1e-7))))) for lab in labels}
    round_cost = sum(iters[lab] * per_run[lab] for lab in labels)
    if budget_s is not None and round_cost > 0:
        rounds = max(2, min(rounds, int(budget_s / round_cost)))
    pause = max(0.0, (spread_s - rounds * round_cost) / max(rounds - 1, 1)) if spread_s else 0.0
    if status is not None:
        est = rounds * (round_cost + sum(per_run[lab] for lab in labels if per_run[lab] < warm_below_s)) \
            + pause * max(rounds - 1, 0)
        status(f"warm-up done; {rounds} rounds of {len(labels)} network(s) take about {est:.0f} s"
               + (f", plus up to {max_wait_s:.0f} s of waiting while other processes keep the CPUs busy"
                  if quiet is not None and load.ok and max_wait_s > 0 else ""))
    last_said = [clock()]

    def waiting(r):
        if status is not None and clock() - last_said[0] >= 5.0:
            last_said[0] = clock()
            status(f"round {r + 1}/{rounds}: waiting for other processes to leave the CPUs "
                   f"({waited:.0f} s of at most {max_wait_s:.0f} s waited)")
    values = {lab: [] for lab in labels}
    busy = {lab: [] for lab in labels}
    runs = {lab: 0 for lab in labels}
    shared = {lab: 0 for lab in labels}
    whole = {lab: [] for lab in labels}  # rounds during which no run held its core
    waited = 0.0
    for r in range(rounds):
        if r and pause:
            time.sleep(pause)
        if quiet is not None and load.ok:
            while waited < max_wait_s:
                a, t = load.sample(), clock()
                time.sleep(0.3)
                if load.foreign(a, load.sample(), clock() - t) <= quiet:
                    break
                time.sleep(1.0)
                waited += clock() - t
                waiting(r)
        for i in rng.permutation(len(labels)):
            lab = labels[i]
            run = runners[lab].run
            k = iters[lab]
            ts = np.empty(k)
            settle = getattr(runners[lab], "settle_s", 0.0)
            if settle:
                time.sleep(settle)  # the other sessions' spinning threads park (``OrtRunner.settle_s``)
            if per_run[lab] < warm_below_s or settle:
                run()  # untimed: this network's weights back in cache (its threads awake) after the others ran
            l0, c0 = load.sample(), clock()
            share = own_share if getattr(runners[lab], "on_cpu", False) else None
            value, left_out = _timed_round(run, ts, clock, share)
            busy[lab].append(load.foreign(l0, load.sample(), clock() - c0))
            whole[lab].append(left_out == k)
            shared[lab] += left_out if left_out < k else 0
            values[lab].append(value)
            runs[lab] += k
        if progress is not None:
            progress(r + 1, rounds, None)
    keeps = {lab: _kept_rounds(whole[lab], busy[lab], contended) for lab in labels}
    n_rounds = min((len(v) for v in values.values()), default=0)
    common = None
    if common_min is not None and len(labels) >= common_min and n_rounds >= 2:
        common = np.exp(round_effects(values, keeps))
    out = {}
    for lab in labels:
        v = np.asarray(values[lab])
        keep = keeps[lab]
        raw = v[keep]
        kept = (v / common)[keep] if common is not None else raw
        out[lab] = Timing(lab, float(np.median(kept)), half_noise(kept), v.tolist(), iters[lab], runs[lab], warm[lab],
                          int((~keep).sum()), round(waited, 1),
                          float(np.median(raw)) if common is not None else None,
                          half_noise(raw) if common is not None else None, shared[lab])
    return out


def _kept_rounds(whole, busy, contended: float | None) -> np.ndarray:
    """The rounds a network's figure is taken from: those during which some run held its core,
    then of those the ones other processes left quiet (``contended``), each step only when at
    least half of the rounds (and two) remain."""
    enough = max(2, (len(busy) + 1) // 2)
    keep = np.ones(len(busy), dtype=bool)
    held = ~np.asarray(whole, dtype=bool)
    if held.sum() >= enough:
        keep = held
    if contended is not None:
        clean = keep & (np.asarray(busy) <= contended)
        if clean.sum() >= enough:
            keep = clean
    return keep


def _timed_round(run, ts: np.ndarray, clock, own_share: float | None, cpu_clock=time.process_time) -> tuple:
    """``(round value in ms, runs left out)``: ``len(ts)`` runs, each timed on ``clock`` and on
    this process's CPU clock; the value is the median of the runs during which the process held
    at least ``own_share`` of a core, all of them when none did (then every run counts as left
    out, and the round as contended)."""
    k = len(ts)
    cpu = np.empty(k)
    for j in range(k):
        t, c = clock(), cpu_clock()
        run()
        ts[j] = clock() - t
        cpu[j] = cpu_clock() - c
    if own_share is None:
        return float(np.median(ts)) * 1e3, 0
    held = held_core(cpu, ts, own_share)
    if not held.any():
        return float(np.median(ts)) * 1e3, k
    return float(np.median(ts[held])) * 1e3, int(k - held.sum())
