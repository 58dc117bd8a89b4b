"""Which device runs a model: every chosen profile side by side (``augur-nas fit``, ``augur_nas.fit``).

For a model, per device: the predicted latency and memory of one image, the batch size of the
highest throughput whose batch latency and memory stay within the limits (and within the
device's RAM, ``hardware.ram_mb``), whether the model fits and by what margin, the profile's
provenance (measured / calibrated / reconstructed) and the thread count it describes. For a
space: how many candidates of a seeded sample fit each device.

A model *fits* a device when one image meets the latency and memory limits and the device's RAM,
and the best batch reaches the throughput asked for. The margin is the smallest headroom over
the limits, relative to each limit (``(limit - value) / limit``; for throughput
``(best - asked) / asked``), in percent: negative exactly when the model does not fit.

Threads: a profile describes one intra-op thread count (``runtime_settings.threads``). With
``threads=N`` every chosen device is replaced by the profile of the same machine and runtime
(``same_machine``; the shipped profiles and those beside a chosen profile file) that describes
``N`` threads; where none does, a ``ConstraintError`` says
which thread counts exist.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np

from .._batch import DEFAULT_BATCHES, BatchPoint, curve_arrays, parse_batches, parse_throughput
from .._errors import AugurError, ConstraintError, ProfileError, SpecError
from .._ram import ram_mb
from ..oracle import Oracle
from ..profile import PROFILE_DIR, Profile, list_profiles, load_profile
from ..space import SearchSpace
from ..search._units import parse_limit
from ..models import load_model, load_space, load_space_dict

DEFAULT_SAMPLES = 1000
# fingerprint keys that name a machine and runtime apart from its thread count (compared where
# both profiles record them: a migrated format-1 fingerprint records fewer)
MACHINE_KEYS = ("cpu_model", "machine", "backend", "provider", "graph_optimization", "torch_device", "logical_cores")


class DeviceFit(NamedTuple):
    """One device's answer for a model."""

    device: str
    runtime: str
    provenance: str  # measured | calibrated | reconstructed | external
    provenance_method: str  # the profile's own words
    threads: int | None  # the intra-op thread count the profile describes (None: not said)
    ram_mb: float | None
    latency_ms: float  # one image
    memory_mb: float  # one image
    best_batch: int | None  # highest throughput within the limits (None: no batch is)
    best_latency_ms: float | None  # of that whole batch
    best_memory_mb: float | None
    best_throughput_ips: float  # images/s at the best batch (0 where no batch fits)
    fits: bool
    margin_pct: float | None  # smallest headroom over the limits (None: no limit and no RAM known)
    limiting: str | None  # the quantity of that smallest headroom
    curve: tuple  # BatchPoint per batch size tried


class SpaceFit(NamedTuple):
    """One device's answer for a sample of a space."""

    device: str
    runtime: str
    provenance: str
    provenance_method: str
    threads: int | None
    ram_mb: float | None
    samples: int
    n_fit: int
    fit_fraction: float
    latency_ms_min: float  # one image, over the sample
    latency_ms_median: float
    memory_mb_median: float
    best_throughput_ips_max: float  # over the candidates that fit (0: none)
    over: dict  # quantity -> candidates beyond that limit


class FitReport(NamedTuple):
    """``fit``'s answer: one row per device, in the order the devices were chosen."""

    name: str
    kind: str  # model | space
    limits: dict  # latency_ms, memory_mb, throughput_ips given
    batches: tuple
    threads: int | None  # asked for (None: every chosen profile as it is)
    rows: list  # DeviceFit (a model) or SpaceFit (a space)
    notes: list  # what was left out and why
    seconds: float  # wall time of the answer

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            d = r._asdict()
            if "curve" in d:
                d["curve"] = [p._asdict() for p in r.curve]
            rows.append(d)
        return {"name": self.name, "kind": self.kind, "limits": dict(self.limits), "batches": list(self.batches),
                "threads": self.threads, "devices": rows, "notes": list(self.notes), "seconds": self.seconds}


# --------------------------------------------------------------------------------------------- profiles

_CACHE: dict = {}  # (path, mtime_ns, size) -> Profile: a repeated fit does not parse profiles again


def _load(name_or_path) -> Profile:
    if isinstance(name_or_path, Profile):
        return name_or_path
    s = os.fspath(name_or_path)
    path = s if os.path.isfile(s) else str(PROFILE_DIR / f"{s}.yaml")
    try:
        st = os.stat(path)
    except OSError:
        return load_profile(s)  # the loader's own message: unknown device, no such file
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        _CACHE[key] = load_profile(path)
    return _CACHE[key]


def provenance_kind(profile: Profile) -> str:
    """measured, calibrated, reconstructed or external: where the profile's numbers come from."""
    method = str((profile.provenance or {}).get("method", "")).lower()
    origin = (profile.fingerprint or {}).get("origin")
    if method.startswith("reconstructed"):
        return "reconstructed"
    if origin == "calibrated" or method.startswith("calibrated"):
        return "calibrated"
    if origin in ("measured", "migrated") or method.startswith("measured"):
        return "measured"
    return origin or "external"


def same_machine(a: Profile, b: Profile) -> bool:
    """Do two profiles describe the same machine and runtime (apart from threads)? Compared on the
    fingerprint keys both record; a profile without a fingerprint is only itself."""
    fa, fb = a.fingerprint or {}, b.fingerprint or {}
    if not fa or not fb or "cpu_model" not in fa or "cpu_model" not in fb:
        return a.name == b.name
    return all(str(fa[k]) == str(fb[k]) for k in MACHINE_KEYS if k in fa and k in fb)


def _chosen(devices) -> list:
    """The profiles ``devices`` names: ``all``/None (every shipped one), ``"A,B"`` or a list."""
    if devices is None or (isinstance(devices, str) and devices.strip() == "all"):
        return [_load(n) for n in list_profiles()]
    names = devices.split(",") if isinstance(devices, str) else list(devices)
    if not names or any(isinstance(n, str) and not n.strip() for n in names):
        raise ProfileError(f"--devices {devices!r}: give `all` or device names separated by commas "
                           f"({', '.join(list_profiles())}) or profile YAML files")
    out = []
    for n in names:
        try:
            out.append(_load(n.strip() if isinstance(n, str) else n))
        except ProfileError as exc:
            raise ProfileError(f"--devices: {exc}") from None
    return out


def _with_threads(chosen: list, threads: int, explicit: bool) -> tuple:
    """``(profiles, notes)``: each chosen device replaced by its machine's profile of ``threads``."""
    pool = list(chosen)
    for q in [_load(n) for n in list_profiles()] + _siblings(chosen):
        if all(q.name != c.name for c in pool):
            pool.append(q)
    out, notes, missing = [], [], []
    for p in chosen:
        match = [q for q in pool if q.threads == threads and same_machine(p, q)]
        if match:
            if all(o.name != match[0].name for o in out):
                out.append(match[0])
            continue
        if not explicit:
            notes.append(f"{p.name} left out: " + (f"it describes {p.threads} thread(s)" if p.threads else
                                                   "it does not say which thread count it describes"))
            continue
        missing.append(p)
    if missing or not out:
        raise ConstraintError(_threads_message(missing or chosen, pool, threads))
    return out, notes


def _siblings(chosen: list) -> list:
    """The profiles beside a chosen profile file outside the shipped folder (``my-1t.yaml`` finds
    ``my-2t.yaml``); files that are not profiles are skipped."""
    folders = {os.path.dirname(os.path.abspath(p.source)) for p in chosen
               if p.source and os.path.isfile(p.source)} - {str(PROFILE_DIR.resolve())}
    out = []
    for folder in sorted(folders):
        for f in sorted(os.listdir(folder)):
            if f.lower().endswith((".yaml", ".yml")):
                try:
                    out.append(_load(os.path.join(folder, f)))
                except AugurError:
                    continue
    return out


def _threads_message(missing: list, pool: list, threads: int) -> str:
    parts = []
    silent = [p.name for p in missing if p.threads is None]
    if silent:
        parts.append(f"{', '.join(silent)} do{'es' if len(silent) == 1 else ''} not say which thread count "
                     f"{'it describes' if len(silent) == 1 else 'they describe'} (no runtime_settings.threads)")
    for p in missing:
        if p.threads is not None:
            have = sorted({q.threads for q in pool if q.threads is not None and same_machine(p, q)})
            parts.append(f"{p.name}'s machine has profiles for {', '.join(map(str, have))} thread(s) only")
    return (f"--threads {threads}: no profile describes {threads} intra-op thread(s) for the chosen device(s): "
            f"{'; '.join(parts)}. A profile prices one thread count; build one on that machine with `augur-nas "
            f"profile --threads {threads} --name NAME -o NAME.yaml` and pass it with --devices NAME.yaml, or ask "
            f"for a thread count that exists (`augur-nas devices` lists each profile's threads)")


# --------------------------------------------------------------------------------------------- model / space

def _space_of(model_or_space, input_shape=None):

    if isinstance(model_or_space, SearchSpace):
        return model_or_space
    if isinstance(model_or_space, dict):
        return load_space_dict(model_or_space)
    p = os.fspath(model_or_space)
    if p.lower().endswith((".yaml", ".yml")) and os.path.isfile(p):
        space = load_space(p)
        if space.n_genes and space.size != 1:
            if input_shape is not None:
                raise SpecError(f"--input-shape applies to a model; {p} is a search space ({p})")
            return space
    return load_model(p, input_shape=input_shape)


def _limits(latency_ms, memory_mb, throughput_ips) -> dict:

    limits = {}
    if latency_ms is not None:
        limits["latency_ms"] = parse_limit("latency_ms", latency_ms)
    if memory_mb is not None:
        limits["memory_mb"] = parse_limit("memory_mb", memory_mb)
    if throughput_ips is not None:
        limits["throughput_ips"] = parse_throughput(throughput_ips)
    return limits


class _Priced(NamedTuple):
    """Every candidate of one device at every batch size, and what the limits make of it."""

    lat: np.ndarray  # [nb, B]
    mem: np.ndarray  # [nb, B]
    best: np.ndarray  # [B] index of the best batch (valid where ``any_ok``)
    any_ok: np.ndarray  # [B]
    best_tp: np.ndarray  # [B] images/s at the best batch, 0 where none
    headroom: dict  # quantity -> [B] (limit - value) / limit


def _price(oracle: Oracle, X, batches: tuple, limits: dict, ram) -> _Priced:
    lat, mem = curve_arrays(oracle, X, batches)
    b = np.asarray(batches, dtype=np.float64)[:, None]
    tp = b * 1000.0 / lat
    ok = np.ones(lat.shape, dtype=bool)
    head = {}
    if "latency_ms" in limits:
        ok &= lat <= limits["latency_ms"]
        head["latency_ms"] = (limits["latency_ms"] - lat[0]) / limits["latency_ms"]
    if "memory_mb" in limits:
        ok &= mem <= limits["memory_mb"]
        head["memory_mb"] = (limits["memory_mb"] - mem[0]) / limits["memory_mb"]
    if ram is not None:
        ok &= mem <= ram
        head["ram_mb"] = (ram - mem[0]) / ram
    best = np.argmax(np.where(ok, tp, -np.inf), axis=0)
    any_ok = ok.any(axis=0)
    best_tp = np.where(any_ok, tp[best, np.arange(tp.shape[1])], 0.0)
    if "throughput_ips" in limits:
        head["throughput_ips"] = (best_tp - limits["throughput_ips"]) / limits["throughput_ips"]
    return _Priced(lat, mem, best, any_ok, best_tp, head)


def _margin(head: dict, i: int) -> tuple:
    """``(margin %, limiting quantity)`` of candidate ``i`` (None, None without limits)."""
    if not head:
        return None, None
    q = min(head, key=lambda k: head[k][i])
    return 100.0 * float(head[q][i]), q


def _device_fit(p: Profile, pr: _Priced, batches: tuple) -> DeviceFit:
    ram = ram_mb(p)
    margin, limiting = _margin(pr.headroom, 0)
    bi = int(pr.best[0]) if pr.any_ok[0] else None
    curve = tuple(BatchPoint(b, float(pr.lat[i, 0]), float(pr.mem[i, 0]), b * 1000.0 / float(pr.lat[i, 0]))
                  for i, b in enumerate(batches))
    return DeviceFit(
        device=p.name, runtime=p.runtime, provenance=provenance_kind(p),
        provenance_method=str(p.provenance.get("method", "")), threads=p.threads, ram_mb=ram,
        latency_ms=float(pr.lat[0, 0]), memory_mb=float(pr.mem[0, 0]),
        best_batch=batches[bi] if bi is not None else None,
        best_latency_ms=float(pr.lat[bi, 0]) if bi is not None else None,
        best_memory_mb=float(pr.mem[bi, 0]) if bi is not None else None,
        best_throughput_ips=float(pr.best_tp[0]), fits=margin is None or margin >= 0.0, margin_pct=margin,
        limiting=limiting, curve=curve)


def _space_fit(p: Profile, pr: _Priced) -> SpaceFit:
    B = pr.lat.shape[1]
    fits = np.ones(B, dtype=bool)
    over = {}
    for q, h in pr.headroom.items():
        fits &= h >= 0.0
        over[q] = int((h < 0.0).sum())
    n_fit = int(fits.sum())
    return SpaceFit(
        device=p.name, runtime=p.runtime, provenance=provenance_kind(p),
        provenance_method=str(p.provenance.get("method", "")), threads=p.threads, ram_mb=ram_mb(p), samples=B,
        n_fit=n_fit, fit_fraction=n_fit / B, latency_ms_min=float(pr.lat[0].min()),
        latency_ms_median=float(np.median(pr.lat[0])), memory_mb_median=float(np.median(pr.mem[0])),
        best_throughput_ips_max=float(pr.best_tp[fits].max()) if n_fit else 0.0, over=over)


def fit(model_or_space, latency_ms=None, memory_mb=None, throughput_ips=None, devices="all", threads=None,
        batches=DEFAULT_BATCHES, samples: int = DEFAULT_SAMPLES, seed: int = 0, input_shape=None) -> FitReport:
    """Which of ``devices`` run ``model_or_space`` within the limits (see the module's doc).

    ``model_or_space``: a model or space file, a ``SearchSpace`` or a spec dict. Limits are numbers
    in ms, MB (2^20 bytes) and images/s, or strings with units (``50ms``, ``300MB``, ``100/s``).
    ``devices``: ``"all"`` (the shipped profiles), ``"A,B"`` or a list of names, files or
    ``Profile`` objects. ``threads``: choose each device's profile of that thread count.
    ``batches``: the batch sizes tried for throughput (1 is always among them). A space is judged
    on ``samples`` candidates drawn with ``seed``. Returns a ``FitReport``.
    """
    t0 = time.perf_counter()
    limits = _limits(latency_ms, memory_mb, throughput_ips)
    batches = tuple(sorted(set(parse_batches(batches)) | {1}))
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or int(threads) < 1):
        raise ConstraintError(f"--threads must be a positive whole number, not {threads!r}")
    space = _space_of(model_or_space, input_shape)
    profiles, notes = _chosen(devices), []
    if threads is not None:
        profiles, notes = _with_threads(profiles, int(threads), explicit=not (devices is None or devices == "all"))
    is_space = bool(space.n_genes) and space.size != 1
    if is_space:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ConstraintError(f"--samples must be a positive whole number, not {samples!r}")
        X = space.sample(int(samples), seed=seed)
    else:
        X = np.zeros((1, space.n_genes), dtype=np.int64)
    rows = []
    for p in profiles:
        pr = _price(Oracle(space, p), X, batches, limits, ram_mb(p))
        rows.append(_space_fit(p, pr) if is_space else _device_fit(p, pr, batches))
    return FitReport(space.name, "space" if is_space else "model", limits, batches,
                     None if threads is None else int(threads), rows, notes, time.perf_counter() - t0)
