"""Measuring networks end to end: latency by the drift-robust protocol, peak memory in children."""

from __future__ import annotations

import sys
import tempfile
import time

from .._errors import MeasurementError
from ._memory import measure_memories
from ._protocol import time_runners
from ._runners import make_runner, prepare
from ._settings import RuntimeSettings, require


def stderr_progress(prefix: str):
    """A progress printer: one line per message on stderr, with the elapsed time."""
    t0 = time.monotonic()

    def say(msg):
        sys.stderr.write(f"{prefix}: [{time.monotonic() - t0:6.1f} s] {msg}\n")
        sys.stderr.flush()
    return say


def measure_networks(networks, settings: RuntimeSettings, rounds: int = 10, round_s: float = 0.05,
                     warmup_s: float = 0.2, spread_s: float = 0.0, memory: bool = True, progress=None,
                     seed: int = 0, budget_s: float | None = None, memory_jobs: int = 1,
                     retry_noise: float | None = None, retries: int = 0, group_mb: float = 2000.0) -> list:
    """Measure ``Network`` objects (``_runners.prepare``); one dict per network, in order:
    ``{label, source, latency: Timing.to_dict(), memory: {...} | None}``.

    With ``retry_noise`` and ``retries``, networks whose measurement noise exceeds
    ``retry_noise`` are measured again (all of them interleaved, a fresh series of rounds), up to
    ``retries`` times; the measurement with the lower noise is kept (``attempts`` says how many
    were made)."""
    require(settings.backend)
    if not networks:
        return []
    say = progress or (lambda msg: None)
    mem = {}
    attempts = {}
    if memory:
        say(f"peak memory of {len(networks)} network(s), one child process each")
        mem = measure_memories({n.label: n.onnx_path for n in networks}, settings, jobs=memory_jobs,
                               progress=lambda d, t, lab: say(f"memory {d}/{t}") if d % 25 == 0 or d == t else None)
    groups = _groups(networks, group_mb)
    timing = {}
    for gi, group in enumerate(groups):
        part = f" (group {gi + 1}/{len(groups)}: at most {group_mb:.0f} MB of weights loaded at once)" if len(groups) > 1 else ""
        timing.update(_time_group(group, settings, rounds, round_s, warmup_s, spread_s, seed + gi, budget_s, say,
                                  retry_noise, retries, attempts, part))
    out = []
    for n in networks:
        t = timing[n.label]
        lat = t.to_dict()
        lat["attempts"] = attempts.get(n.label, 1)
        out.append({"label": n.label, "source": n.source, "latency": lat, "memory": mem.get(n.label)})
    return out


def _groups(networks, group_mb):
    """Split the networks so that each group's ONNX files hold at most ``group_mb`` MB (sessions
    of large networks are not all kept in memory at once); sizes are balanced across groups."""
    import os

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
                attempts, part):
    say(f"loading {len(networks)} network(s) into {settings.backend} ({settings.describe()}){part}")
    runners = {}
    try:
        for n in networks:
            runners[n.label] = make_runner(n, settings)
        say(f"timing: warm-up, then {rounds} interleaved rounds"
            + (f" spread over at least {spread_s:.0f} s" if spread_s else ""))
        timing = time_runners(runners, rounds=rounds, round_s=round_s, warmup_s=warmup_s, spread_s=spread_s,
                              seed=seed, budget_s=budget_s,
                              progress=lambda r, tot, _: say(f"round {r}/{tot}"))
        for lab in timing:
            attempts[lab] = 1
        for attempt in range(retries if retry_noise is not None else 0):
            noisy = [lab for lab, t in timing.items() if not t.noise <= retry_noise]
            if not noisy:
                break
            say(f"measuring again the {len(noisy)} network(s) with noise above {retry_noise:.0%} "
                f"(attempt {attempt + 2})")
            again = time_runners({lab: runners[lab] for lab in noisy}, rounds=rounds, round_s=round_s,
                                 warmup_s=warmup_s, spread_s=spread_s, seed=seed + attempt + 1, budget_s=budget_s,
                                 progress=lambda r, tot, _: say(f"round {r}/{tot}"))
            for lab, t in again.items():
                attempts[lab] += 1
                if not timing[lab].noise <= t.noise:
                    timing[lab] = t
    finally:
        for r in runners.values():
            r.close()
        runners.clear()
    return timing


def measure_paths(paths, settings: RuntimeSettings, **kw) -> list:
    """``measure_networks`` of model files (exported to ONNX in a temporary folder)."""
    require(settings.backend)
    with tempfile.TemporaryDirectory(prefix="augur-measure-") as d:
        try:
            nets = prepare(paths, d, read_models=False)
        except MeasurementError:
            raise
        return measure_networks(nets, settings, **kw)
