"""``augur_nas.check(profile)``: does this machine match the profile, and how fast does it run now?

The profile's fingerprint (``augur_nas.fingerprint``) is compared with this machine's; then the
profile's speed anchors (five fixed networks timed when the profile was built) are timed for a
few seconds, and the speed factor is the median over them of ``latency now / latency then``
(above 1: the machine runs slower now, or is another, slower machine). A machine matches when no
``major`` difference is found (processor, ISA extensions, runtime, version, provider, threads,
graph optimisation); the speed factor is reported beside, not judged: a shared machine's speed
wanders by tens of per cent.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from .._errors import MeasurementError, ProfileError
from ..fingerprint import compare, for_profile, machine_fingerprint, mismatch_paragraph
from ..profile import load_profile
from ._profiling import LARGE_ANCHOR, anchor_speed, memory_contention, profile_anchors, time_anchors
from ._runners import make_runner, prepare
from ._settings import RuntimeSettings


@dataclass
class DeviceCheck:
    """The answer of ``check``."""

    profile: str
    matches: bool
    differences: list = field(default_factory=list)
    speed_factor: float | None = None  # median over the small anchors of (latency now / latency then)
    memory_factor: float | None = None  # the same ratio of the large anchor (weights streamed from memory)
    warnings: list = field(default_factory=list)
    anchors: dict = field(default_factory=dict)  # {label: {then_ms, now_ms, ratio}}
    timing_s: float = 0.0
    profile_fingerprint: dict = field(default_factory=dict)
    machine_fingerprint: dict = field(default_factory=dict)
    threads: int | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def warning(self, command: str) -> str:
        return mismatch_paragraph(self.profile, self.differences, command, self.profile_fingerprint)


def check(profile, settings=None, time_s: float = 4.0, timing: bool = True) -> DeviceCheck:
    """Compare ``profile`` (a Profile, name or path) with this machine; with ``timing``, time its
    speed anchors for about ``time_s`` seconds. A profile without a fingerprint is a ProfileError."""
    profile = load_profile(profile)
    if not profile.fingerprint:
        raise ProfileError(no_fingerprint_message(profile))
    settings = _settings(profile, settings)
    mine = machine_fingerprint(settings)
    diffs = compare(profile.fingerprint, for_profile(mine, profile.fingerprint))
    major = [d for d in diffs if d["severity"] == "major"]
    res = DeviceCheck(profile.name, not major and profile.fingerprint.get("origin") != "external", diffs,
                      profile_fingerprint=dict(profile.fingerprint), machine_fingerprint=mine,
                      threads=profile.threads)
    if profile.fingerprint.get("origin") == "external":
        res.note = "the profile was calibrated from latencies measured on another device; it cannot match this one"
    if timing:
        _time_anchors(profile, settings, time_s, res)
    return res


def no_fingerprint_message(profile) -> str:
    return (f"the profile `{profile.name}` has no fingerprint ({profile.source or 'in memory'}): it was not measured "
            f"by augur-nas on a runtime (its provenance: {profile.provenance.get('method', '?')}), so nothing says "
            f"which machine it describes. Check and calibrate measured profiles (`augur-nas profile`, or a profile "
            f"of format_version 1 with runtime_settings), or build one for this machine with `augur-nas profile "
            f"--backend onnxruntime --name NAME -o FILE`")


def _settings(profile, settings):
    if settings is not None:
        return settings
    return RuntimeSettings.from_dict(profile.runtime_settings)


def anchor_times(items, settings, time_s: float) -> dict:
    """``{label: ms}`` of the speed anchors ``items`` (``profile_anchors``) timed now with
    ``settings`` for about ``time_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="augur-check-") as d:
        nets = prepare(items, d)
        runners = {n.label: make_runner(n, settings) for n in nets}
        try:
            return time_anchors(runners, time_s, budget_s=max(1.0, time_s))
        finally:
            for r in runners.values():
                r.close()


def _time_anchors(profile, settings, time_s, res: DeviceCheck) -> None:
    refs, items = profile_anchors(profile)
    if not items:
        res.note = (res.note + "; " if res.note else "") + "the profile has no speed anchors: no speed factor"
        return
    if settings.backend not in ("onnxruntime", "torch"):
        res.note = (res.note + "; " if res.note else "") + f"the {settings.backend} backend does not run networks"
        return
    t0 = time.monotonic()
    try:
        now = anchor_times(items, settings, time_s)
    except MeasurementError as exc:  # e.g. a CUDA profile on a machine without the GPU: the differences still stand
        res.note = (res.note + "; " if res.note else "") + f"speed anchors not timed: {exc}"
        return
    sp = anchor_speed(now, refs)
    res.timing_s = round(time.monotonic() - t0, 2)
    if sp is None:
        return
    res.speed_factor = round(sp[0], 4)
    res.anchors = {lab: {"then_ms": refs[lab], "now_ms": round(now[lab], 4), "ratio": round(r, 4)}
                   for lab, r in sp[1].items()}
    if LARGE_ANCHOR in sp[1]:
        res.memory_factor = round(sp[1][LARGE_ANCHOR], 4)
    busy = memory_contention(sp[1], sp[0])
    if busy:
        res.warnings.append(busy)


def warn_if_mismatch(profile, settings, command: str, stream=None) -> DeviceCheck | None:
    """Print the one-paragraph warning when this machine does not match the profile (no timing).
    Profiles without a fingerprint are not judged here (the commands that need one say so)."""
    if profile is None or not getattr(profile, "fingerprint", None):
        return None
    res = check(profile, settings, timing=False)
    if not res.matches:
        (stream or sys.stderr).write(res.warning(command) + "\n")
    return res
