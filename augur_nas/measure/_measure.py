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
                     seed: int = 0, budget_s: float | None = None, memory_jobs: int = 1) -> list:
    """Measure ``Network`` objects (``_runners.prepare``); one dict per network, in order:
    ``{label, source, latency: Timing.to_dict(), memory: {...} | None}``."""
    require(settings.backend)
    if not networks:
        return []
    say = progress or (lambda msg: None)
    mem = {}
    if memory:
        say(f"peak memory of {len(networks)} network(s), one child process each")
        mem = measure_memories({n.label: n.onnx_path for n in networks}, settings, jobs=memory_jobs,
                               progress=lambda d, t, lab: say(f"memory {d}/{t}") if d % 25 == 0 or d == t else None)
    say(f"loading {len(networks)} network(s) into {settings.backend} ({settings.describe()})")
    runners = {}
    try:
        for n in networks:
            runners[n.label] = make_runner(n, settings)
        say(f"timing: warm-up, then {rounds} interleaved rounds"
            + (f" spread over at least {spread_s:.0f} s" if spread_s else ""))
        timing = time_runners(runners, rounds=rounds, round_s=round_s, warmup_s=warmup_s, spread_s=spread_s,
                              seed=seed, budget_s=budget_s,
                              progress=lambda r, tot, _: say(f"round {r}/{tot}"))
    finally:
        for r in runners.values():
            r.close()
        runners.clear()
    out = []
    for n in networks:
        t = timing[n.label]
        out.append({"label": n.label, "source": n.source, "latency": t.to_dict(), "memory": mem.get(n.label)})
    return out


def measure_paths(paths, settings: RuntimeSettings, **kw) -> list:
    """``measure_networks`` of model files (exported to ONNX in a temporary folder)."""
    require(settings.backend)
    with tempfile.TemporaryDirectory(prefix="augur-measure-") as d:
        try:
            nets = prepare(paths, d, read_models=False)
        except MeasurementError:
            raise
        return measure_networks(nets, settings, **kw)
