"""Device profiles: plain-number YAML files describing a device and its fitted cost models.

``load_profile(name_or_path)`` reads a shipped profile by name (``tk1-gpu``, from the package's
``device_profiles/`` folder) or any profile file by path; ``save_profile(profile, path)`` writes
one atomically. Files are read with YAML *safe* loading only: a profile is data (numbers,
strings, lists, mappings), never code and never a pickle. Every problem is a ``ProfileError``
naming the file and the key. The format is documented in docs/profiles.md.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ._atomic import atomic_file
from ._errors import ProfileError, where
from .costmodel import LatencyModel, MemoryModel, ResidualModel, _check
from .fingerprint import check_fingerprint, from_v1

FORMAT_VERSION = 2  # 2: `fingerprint` and `calibration`; version 1 files are migrated on load (see _migrate)
PROFILE_DIR = Path(__file__).resolve().parent / "device_profiles"
MAX_PROFILE_BYTES = 4 * 2**20

TOP_REQUIRED = ("format_version", "name", "hardware", "runtime", "provenance", "latency", "memory")
TOP_OPTIONAL = ("description", "runtime_settings", "fit", "residual", "fingerprint", "calibration")
HARDWARE_REQUIRED = ("processor", "cores", "clock_ghz", "peak_gflops", "memory_bandwidth_gbs", "ram_mb", "unified_memory")
HARDWARE_OPTIONAL = ("soc", "notes")
PROVENANCE_REQUIRED = ("method",)
PROVENANCE_OPTIONAL = ("source", "data", "note", "script", "date")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Profile:
    """One device: facts, runtime, provenance, fitted latency and memory models, fit statistics."""

    name: str
    hardware: dict
    runtime: str
    provenance: dict
    latency: LatencyModel
    memory: MemoryModel
    description: str = ""
    fit: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    source: str | None = field(default=None, compare=False)
    # how the runtime was run when the profile was measured (threads, graph optimization,
    # provider, ...): `augur-nas measure` / `validate` use the same settings by default
    runtime_settings: dict = field(default_factory=dict)
    # an optional learned correction of the latency (augur-nas fit-residual), stored as data
    residual: ResidualModel | None = None
    # the machine and runtime the profile describes (augur_nas.fingerprint); None for a profile
    # not measured by a runtime (the reconstructed Jetson profiles)
    fingerprint: dict | None = None
    # the per-family corrections `augur-nas calibrate` (or `profile`) applied, and from what
    calibration: dict = field(default_factory=dict)

    @property
    def threads(self) -> int | None:
        """The intra-op thread count the profile describes (None when it does not say)."""
        t = (self.runtime_settings or {}).get("threads")
        return int(t) if t is not None else None

    def to_dict(self) -> dict:
        d = {"format_version": self.format_version, "name": self.name}
        if self.description:
            d["description"] = self.description
        d.update({"hardware": dict(self.hardware), "runtime": self.runtime})
        if self.runtime_settings:
            d["runtime_settings"] = dict(self.runtime_settings)
        if self.fingerprint:
            d["fingerprint"] = dict(self.fingerprint)
        d.update({"provenance": dict(self.provenance), "latency": self.latency.to_dict(), "memory": self.memory.to_dict()})
        if self.fit:
            d["fit"] = self.fit
        if self.calibration:
            d["calibration"] = self.calibration
        if self.residual is not None:
            d["residual"] = self.residual.to_dict()
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None) -> "Profile":
        return _profile_from_dict(d, source)

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, runtime={self.runtime!r}, source={self.source!r})"


# --------------------------------------------------------------------------------------------- read


def list_profiles() -> list[str]:
    """Names of the profiles shipped with augur-nas."""
    if not PROFILE_DIR.is_dir():
        return []
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path) -> Profile:
    """A shipped profile by name (see ``list_profiles()``) or a profile YAML file by path."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    s = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else name_or_path
    if not isinstance(s, str) or not s:
        raise ProfileError(f"a device is a profile name ({', '.join(list_profiles())}) or the path of a profile "
                           f"YAML file, not {s!r}")
    looks_like_path = os.sep in s or "/" in s or s.lower().endswith((".yaml", ".yml"))
    if os.path.isfile(s):
        return _read_file(s)
    if looks_like_path:
        raise ProfileError(f"no such profile file: {s}; give a shipped device name "
                           f"({', '.join(list_profiles()) or 'none shipped'}) or the path of a profile YAML file ({s})")
    path = PROFILE_DIR / f"{s}.yaml"
    if _NAME_RE.match(s) and path.is_file():
        return _read_file(str(path))
    known = list_profiles()
    raise ProfileError(f"unknown device `{s}`; the shipped profiles are {', '.join(known) if known else '(none)'} "
                       f"(`augur-nas devices` lists them), or give the path of a profile YAML file")


def _read_file(path: str) -> Profile:
    try:
        size = os.path.getsize(path)
        if size > MAX_PROFILE_BYTES:
            raise ProfileError(f"{path} is {size:,} bytes; a profile is at most {MAX_PROFILE_BYTES:,} bytes ({path})")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc} ({path})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path} is not UTF-8 text (byte {exc.start}); is it a profile YAML file? ({path})") from None
    return parse_profile(text, path)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # a safe loader, the C one when libyaml is there


def parse_profile(text: str, source: str = "<profile>") -> Profile:
    """A profile from YAML text (``source`` names it in messages)."""
    try:
        d = yaml.load(text, Loader=_LOADER)  # noqa: S506 (safe: _LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = " (python tags are refused: a profile holds data only)" if "tag" in str(problem) else ""
        raise ProfileError(f"{source} is not valid YAML{at}: {problem}{hint}; the file may be corrupt or truncated "
                           f"({source})") from None
    if d is None:
        raise ProfileError(f"{source} is empty; a profile is a YAML mapping with the keys "
                           f"{', '.join(TOP_REQUIRED)} ({source})")
    return _profile_from_dict(d, source)


def _profile_from_dict(d, source) -> Profile:
    if not isinstance(d, dict):
        raise ProfileError(f"{source} must hold a YAML mapping (a profile), not {_check._kind(d)}{where(source, None)}")
    if "format_version" in d:
        fv = d["format_version"]
        if isinstance(fv, bool) or not isinstance(fv, int) or fv < 1:
            raise _check.err(f"`format_version` must be a positive whole number, not {_check._kind(fv)}", source,
                             "format_version")
        if fv > FORMAT_VERSION:
            raise _check.err(f"the profile has format_version {fv}, newer than the format this augur-nas reads "
                             f"({FORMAT_VERSION}); upgrade augur-nas to use it", source, "format_version")
    d = _migrate(d)
    _check.mapping(d, source, "profile", required=TOP_REQUIRED, optional=TOP_OPTIONAL)
    name = _check.string(d["name"], source, "name")
    description = d.get("description", "") or ""
    if not isinstance(description, str):
        raise _check.err(f"`description` must be a string, not {_check._kind(description)}", source, "description")
    hw = _check.mapping(d["hardware"], source, "hardware", required=HARDWARE_REQUIRED, optional=HARDWARE_OPTIONAL)
    hardware = {}
    for k in hw:
        v = hw[k]
        if k == "processor" or k in HARDWARE_OPTIONAL:
            hardware[k] = _check.string(v, source, f"hardware.{k}")
        elif k == "unified_memory":
            hardware[k] = _check.boolean(v, source, f"hardware.{k}")
        elif k == "cores":
            hardware[k] = _check.number(v, source, f"hardware.{k}", minimum=1, integer=True)
        else:
            _check.number(v, source, f"hardware.{k}")
            hardware[k] = v
    runtime = _check.string(d["runtime"], source, "runtime")
    pv = _check.mapping(d["provenance"], source, "provenance", required=PROVENANCE_REQUIRED, optional=PROVENANCE_OPTIONAL)
    provenance = {}
    for k, v in pv.items():
        if k == "data" and isinstance(v, list):
            provenance[k] = [_check.string(x, source, f"provenance.data[{i}]") for i, x in enumerate(v)]
        else:
            provenance[k] = _check.string(v, source, f"provenance.{k}")
    latency = LatencyModel.from_dict(d["latency"], source, "latency")
    memory = MemoryModel.from_dict(d["memory"], source, "memory")
    fit = d.get("fit") or {}
    if not isinstance(fit, dict):
        raise _check.err(f"`fit` must be a mapping, not {_check._kind(fit)}", source, "fit")
    _check_plain(fit, source, "fit")
    settings = d.get("runtime_settings") or {}
    if not isinstance(settings, dict):
        raise _check.err(f"`runtime_settings` must be a mapping, not {_check._kind(settings)}", source, "runtime_settings")
    _check_plain(settings, source, "runtime_settings")
    residual = ResidualModel.from_dict(d["residual"], source, "residual") if d.get("residual") is not None else None
    fp = check_fingerprint(d["fingerprint"], source) if d.get("fingerprint") is not None else None
    calibration = d.get("calibration") or {}
    if not isinstance(calibration, dict):
        raise _check.err(f"`calibration` must be a mapping, not {_check._kind(calibration)}", source, "calibration")
    _check_plain(calibration, source, "calibration")
    return Profile(name=name, hardware=hardware, runtime=runtime, provenance=provenance, latency=latency,
                   memory=memory, description=description, fit=fit, format_version=FORMAT_VERSION, source=source,
                   runtime_settings=settings, residual=residual, fingerprint=fp, calibration=calibration)


def _migrate(d: dict) -> dict:
    """A profile mapping of an older format_version brought to the current one.

    1 -> 2: version 2 adds `fingerprint` (the machine and runtime the profile describes) and
    `calibration`. A version 1 profile measured by a runtime (it has `runtime_settings`) gets a
    fingerprint derived from its `hardware` and `runtime_settings` (`origin: migrated`); a
    reconstructed one gets none. Nothing else changed."""
    if d.get("format_version") == 1 and "fingerprint" not in d:
        d = dict(d)
        fp = from_v1(d)
        if fp is not None:
            d["fingerprint"] = fp
    return d


def _check_plain(v, source, key):
    """Fit statistics: plain data with finite numbers (negative errors are fine)."""
    if isinstance(v, dict):
        for k, x in v.items():
            _check_plain(x, source, f"{key}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_plain(x, source, f"{key}[{i}]")
    elif isinstance(v, float) and not math.isfinite(v):
        raise _check.err(f"`{key}` is {v}; profiles hold finite numbers only", source, key)
    elif not (v is None or isinstance(v, (bool, int, float, str))):
        raise _check.err(f"`{key}` holds {type(v).__name__}; profiles hold plain data only", source, key)


# --------------------------------------------------------------------------------------------- write


class _Dumper(yaml.SafeDumper):
    pass


def _represent_list(dumper, data):
    scalars = all(not isinstance(x, (dict, list)) for x in data)
    flow = (scalars and sum(len(str(x)) for x in data) < 90) or all(
        isinstance(x, list) and all(isinstance(y, (int, float)) for y in x) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper, data):
    flow = bool(data) and len(data) <= 8 and all(not isinstance(x, (dict, list)) for x in data.values()) \
        and sum(len(str(k)) + len(str(v)) for k, v in data.items()) < 100
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_str(dumper, data):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def dump_profile(profile: Profile, header: str = "") -> str:
    """The YAML text of a profile (``header``: comment lines written first)."""
    body = yaml.dump(profile.to_dict(), Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    head = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) if header else ""
    return head + body


def save_profile(profile: Profile, path, header: str = "") -> None:
    """Write a profile atomically: a temporary file beside ``path``, then ``os.replace``."""
    path = os.fspath(path)
    text = dump_profile(profile, header)
    parse_profile(text, path)  # never write what we could not read back
    with atomic_file(path, binary=False) as f:
        f.write(text)
