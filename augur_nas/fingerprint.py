"""The fingerprint of a machine and runtime: what a measured device profile describes.

A profile measured on one processor is accurate there; on another (AVX2 against AVX-512, a
different cache, another runtime version or thread count) every kernel runs at another speed.
``machine_fingerprint(settings)`` reads what decides that, from ``/proc/cpuinfo`` and sysfs (no
``lscpu``, nothing downloaded): CPU model and vendor, the ISA extensions the kernels use, logical
and physical cores, cache sizes, the OS, and the runtime (name, version, provider, threads,
graph optimisation level). ``compare(profile_fp, machine_fp)`` lists the differences, each with
a severity: ``major`` differences change kernel speeds (processor, ISA, runtime, threads), ``minor``
ones rarely do (cache sizes read differently, the OS release).

Profiles of ``format_version`` 1 had no fingerprint: ``from_v1(profile_dict)`` derives one from
their ``hardware`` and ``runtime_settings`` (``origin: migrated``), so old measured profiles still
load and can be checked; reconstructed profiles (no runtime settings) get none.

This module reads facts only; timing the profile's speed anchors is ``augur_nas.check``.
"""

from __future__ import annotations

import os
import platform
import re

from ._errors import ProfileError, where
from ._imports import available, optional

# ISA extensions that change which kernels a runtime picks (ONNX Runtime's MLAS dispatches on them)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
             "neon", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")
# the flags whose presence changes ORT's CPU kernels on x86 (block size, GEMM micro-kernels)
MAJOR_ISA = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "neon", "asimd", "asimddp", "sve", "sve2", "i8mm")
V1_ISA = ("avx", "avx2", "fma", "avx512f", "avx512_vnni")  # what format_version 1 profiles recorded
ORIGINS = ("measured", "migrated", "calibrated", "external")
GPU_KEYS = ("gpu_model", "gpu_memory_mb", "gpu_capability", "cuda_runtime", "cudnn")
KEYS = ("origin", "cpu_model", "cpu_vendor", "isa", "logical_cores", "physical_cores", "cache_kib", "os",
        "machine", "backend", "runtime_version", "provider", "threads", "graph_optimization", "torch_device",
        *GPU_KEYS, "hypervisor", "note")
COMPARED = (  # key, severity, why it matters
    ("cpu_model", "major", "another processor runs every kernel at another speed"),
    ("isa", "major", "the runtime picks other kernels (vector width, block size) for other ISA extensions"),
    ("machine", "major", "another architecture"),
    ("backend", "major", "another runtime"),
    ("runtime_version", "major", "another runtime version may fuse and dispatch differently"),
    ("provider", "major", "another execution provider"),
    ("threads", "major", "the profile prices one thread count"),
    ("graph_optimization", "major", "other graph fusions"),
    ("torch_device", "major", "another device"),
    ("gpu_model", "major", "another GPU runs every kernel at another speed"),
    ("cuda_runtime", "major", "another CUDA runtime ships other kernels"),
    ("cudnn", "major", "another cuDNN picks other convolution algorithms"),
    ("gpu_memory_mb", "minor", "another GPU memory size (same model, another variant)"),
    ("physical_cores", "minor", "other cores: other processes compete differently"),
    ("logical_cores", "minor", "other cores: other processes compete differently"),
    ("cache_kib", "minor", "other cache sizes change where kernels spill"),
    ("os", "minor", "another operating system"),
)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpu_facts(cpuinfo: str | None = None, sysfs: str = "/sys/devices/system/cpu") -> dict:
    """CPU model, vendor, ISA flags, cores and caches of this machine (``/proc/cpuinfo``, sysfs)."""
    text = cpuinfo if cpuinfo is not None else (_read("/proc/cpuinfo") or "")
    model, vendor, flags, cores = "", "", set(), set()
    phys_id = core_id = None
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = val
        elif key in ("vendor_id", "cpu implementer") and not vendor:
            vendor = val
        elif key in ("flags", "features"):
            flags |= set(val.split())
        elif key == "physical id":
            phys_id = val
        elif key == "core id":
            core_id = val
            cores.add((phys_id, core_id))
    logical = os.cpu_count() or 1
    if not model:
        model = platform.processor() or platform.machine() or "unknown"
    return {"cpu_model": re.sub(r"\s+", " ", model), "cpu_vendor": vendor,
            "isa": sorted(f for f in ISA_FLAGS if f in flags), "logical_cores": int(logical),
            "physical_cores": int(len(cores) or logical), "cache_kib": cache_sizes(sysfs),
            "hypervisor": "hypervisor" in flags}


def cache_sizes(sysfs: str = "/sys/devices/system/cpu") -> dict:
    """``{L1d, L1i, L2, L3: KiB}`` of cpu0 from sysfs (absent entries are left out)."""
    out = {}
    base = os.path.join(sysfs, "cpu0", "cache")
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for e in entries:
        if not e.startswith("index"):
            continue
        d = os.path.join(base, e)
        level, kind, size = (_read(os.path.join(d, f)) for f in ("level", "type", "size"))
        if not (level and size):
            continue
        m = re.match(r"\s*(\d+)\s*([KMG]?)", size)
        if not m:
            continue
        kib = int(m.group(1)) * {"": 1, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2)]
        kind = (kind or "").strip()
        name = f"L{level.strip()}" + ("d" if kind == "Data" else "i" if kind == "Instruction" else "")
        out[name] = kib
    return out


def machine_fingerprint(settings=None) -> dict:
    """This machine's fingerprint, with the runtime of ``settings`` (a ``RuntimeSettings``, or
    a dict as recorded in profiles); without settings, the CPU and OS only."""
    fp = {"origin": "measured", **cpu_facts(), "os": f"{platform.system()} {platform.release()}",
          "machine": platform.machine()}
    if settings is not None:
        fp.update(_runtime_part(settings if isinstance(settings, dict) else settings.to_dict()))
        if fp.get("torch_device") == "cuda":
            fp.update(gpu_facts())
    return fp


def gpu_facts() -> dict:
    """The CUDA GPU that torch sees (name, memory, compute capability, CUDA and cuDNN versions);
    ``gpu_model: none`` where torch is missing or sees no GPU, so that a CUDA profile checked
    on such a machine says so. Read only for CUDA settings: importing torch takes seconds."""
    if not available("torch"):
        return {"gpu_model": "none"}
    try:
        torch = optional("torch", "the GPU's fingerprint")
        if not torch.cuda.is_available():
            return {"gpu_model": "none"}
        p = torch.cuda.get_device_properties(0)
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return {"gpu_model": str(p.name), "gpu_memory_mb": int(p.total_memory // 2**20),
                "gpu_capability": f"{p.major}.{p.minor}", "cuda_runtime": str(torch.version.cuda),
                "cudnn": str(cudnn)}
    except Exception:  # noqa: BLE001 - a broken CUDA install reads as no GPU, never as a crash
        return {"gpu_model": "none"}


def gpu_processor(gpu_model: str, host: str) -> str:
    """A CUDA profile's ``hardware.processor``: the GPU, and the host CPU that launches its kernels."""
    return f"{gpu_model} (host: {host})"


def _runtime_part(s: dict) -> dict:
    out = {"backend": s.get("backend", "onnxruntime")}
    if s.get("version"):
        out["runtime_version"] = str(s["version"])
    for k in ("provider", "graph_optimization", "torch_device"):
        if s.get(k):
            out[k] = str(s[k])
    out["threads"] = int(s.get("threads", 1))
    return out


def for_profile(machine_fp: dict, profile_fp: dict) -> dict:
    """The machine's fingerprint restricted to what the profile's fingerprint records (a
    fingerprint without a runtime is compared on the CPU only)."""
    return {k: v for k, v in machine_fp.items() if k in profile_fp or k not in _RUNTIME_KEYS}


_RUNTIME_KEYS = ("backend", "runtime_version", "provider", "threads", "graph_optimization", "torch_device", *GPU_KEYS)


def compare(profile_fp: dict, machine_fp: dict) -> list:
    """The differences between a profile's fingerprint and this machine's: a list of
    ``{key, severity, profile, machine, why}`` (major first). Keys the profile does not record are
    not compared; ISA flags are compared as sets (only the flags either side lists)."""
    out = []
    for key, severity, why in COMPARED:
        if key not in profile_fp or key not in machine_fp:
            continue
        a, b = profile_fp[key], machine_fp[key]
        if key == "isa":
            seen = set(V1_ISA) if profile_fp.get("origin") == "migrated" else set(ISA_FLAGS)
            only_p = sorted((set(a) - set(b)) & seen)
            only_m = sorted((set(b) - set(a)) & seen)
            if not (only_p or only_m):
                continue
            sev = "major" if any(f in MAJOR_ISA for f in only_p + only_m) else "minor"
            out.append({"key": key, "severity": sev, "profile": list(a), "machine": list(b),
                        "why": why, "only_profile": only_p, "only_machine": only_m})
            continue
        if key == "cache_kib":
            diff = {lv: (a.get(lv), b.get(lv)) for lv in sorted(set(a) | set(b)) if a.get(lv) != b.get(lv)
                    and a.get(lv) is not None and b.get(lv) is not None}
            if diff:
                out.append({"key": key, "severity": severity, "profile": dict(a), "machine": dict(b), "why": why})
            continue
        if key == "os":
            a, b = str(a).split(" ")[0], str(b).split(" ")[0]  # the kernel release rarely matters
        if _norm(a) != _norm(b):
            out.append({"key": key, "severity": severity, "profile": profile_fp[key], "machine": machine_fp[key],
                        "why": why})
    out.sort(key=lambda d: d["severity"] != "major")
    return out


def _norm(v):
    return re.sub(r"\s+", " ", v.strip()).lower() if isinstance(v, str) else v


def describe(d: dict) -> str:
    """One difference in words."""
    if d["key"] == "isa":
        parts = []
        if d.get("only_profile"):
            parts.append(f"the profile's processor had {', '.join(d['only_profile'])}")
        if d.get("only_machine"):
            parts.append(f"this one has {', '.join(d['only_machine'])}")
        return "ISA: " + " and ".join(parts)
    return f"{d['key']}: {d['profile']} in the profile, {d['machine']} here"


def build_command(fp: dict | None) -> str:
    """The ``augur-nas profile`` line that builds a profile of the runtime a fingerprint names."""
    fp = fp or {}
    if fp.get("backend") == "torch":
        return f"augur-nas profile --backend torch --torch-device {fp.get('torch_device', 'cpu')} --name NAME -o NEW.yaml"
    return "augur-nas profile --backend onnxruntime --name NAME -o NEW.yaml"


def mismatch_paragraph(name: str, differences: list, command: str, profile_fp: dict | None = None) -> str:
    """The one-paragraph warning of a command run on a machine the profile does not describe."""
    build = build_command(profile_fp)
    major = [d for d in differences if d["severity"] == "major"] or differences
    what = "; ".join(describe(d) for d in major[:4]) + ("; ..." if len(major) > 4 else "")
    if command == "calibrate":
        return (f"note: the profile `{name}` was measured on another machine or runtime ({what}); calibrate fits "
                f"per-family corrections of it from the calibration set timed here. A profile built here "
                f"(`{build}`, under 10 minutes) is more "
                f"accurate; `augur-nas check --device {name}` lists every difference.")
    return (f"warning: the profile `{name}` was measured on another machine or runtime ({what}), so its "
            f"latencies need not hold here and `{command}` works against a profile of something else. Adapt it "
            f"to this machine with `augur-nas calibrate --device {name} -o NEW.yaml` (about 90 s), or build one "
            f"with `{build}`; `augur-nas check --device "
            f"{name}` lists every difference.")


# --------------------------------------------------------------------------------------------- in profiles


def from_v1(d: dict) -> dict | None:
    """A fingerprint derived from a format_version 1 profile's ``hardware`` and
    ``runtime_settings`` (None for a profile that was not measured by a runtime)."""
    settings = d.get("runtime_settings") or {}
    hw = d.get("hardware") or {}
    if not isinstance(settings, dict) or not settings or not isinstance(hw, dict):
        return None
    fp = {"origin": "migrated", "cpu_model": str(hw.get("processor", "unknown"))}
    notes = str(hw.get("notes", ""))
    m = re.search(r"ISA:\s*([A-Za-z0-9_,]+)", notes)
    if m:
        fp["isa"] = sorted(f for f in m.group(1).split(",") if f)
    if isinstance(hw.get("cores"), int):
        fp["logical_cores"] = hw["cores"]
    try:
        fp.update(_runtime_part(settings))
    except (TypeError, ValueError):
        return None
    fp["note"] = "derived from a format_version 1 profile's hardware and runtime_settings"
    return fp


def check_fingerprint(fp, source, key: str = "fingerprint") -> dict:
    """Validate a profile's fingerprint mapping (known keys, plain values)."""
    if not isinstance(fp, dict):
        raise ProfileError(f"`{key}` must be a mapping, not {type(fp).__name__}{where(source, key)}")
    unknown = sorted(set(fp) - set(KEYS))
    if unknown:
        raise ProfileError(f"`{key}` has unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(KEYS)})"
                           f"{where(source, key)}")
    if fp.get("origin", "measured") not in ORIGINS:
        raise ProfileError(f"`{key}.origin` must be one of {', '.join(ORIGINS)}, not {fp.get('origin')!r}"
                           f"{where(source, key + '.origin')}")
    for k in ("logical_cores", "physical_cores", "threads", "gpu_memory_mb"):
        v = fp.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ProfileError(f"`{key}.{k}` must be a whole number >= 1, not {v!r}{where(source, f'{key}.{k}')}")
    isa = fp.get("isa", [])
    if not isinstance(isa, list) or not all(isinstance(x, str) for x in isa):
        raise ProfileError(f"`{key}.isa` must be a list of flag names{where(source, key + '.isa')}")
    cache = fp.get("cache_kib", {})
    if not isinstance(cache, dict) or not all(isinstance(v, int) and v >= 0 for v in cache.values()):
        raise ProfileError(f"`{key}.cache_kib` must map cache levels to whole KiB{where(source, key + '.cache_kib')}")
    for k in set(fp) - {"logical_cores", "physical_cores", "threads", "gpu_memory_mb", "isa", "cache_kib", "hypervisor"}:
        if not isinstance(fp[k], str):
            raise ProfileError(f"`{key}.{k}` must be a string, not {type(fp[k]).__name__}{where(source, f'{key}.{k}')}")
    if "hypervisor" in fp and not isinstance(fp["hypervisor"], bool):
        raise ProfileError(f"`{key}.hypervisor` must be true or false{where(source, key + '.hypervisor')}")
    return dict(fp)


def summary(fp: dict | None) -> str:
    """A fingerprint in one line (``augur-nas devices``)."""
    if not fp:
        return "no fingerprint (not measured by augur-nas on a runtime)"
    isa = ",".join(f for f in fp.get("isa", []) if f in MAJOR_ISA)
    gpu = fp.get("gpu_model")
    parts = [f"{gpu} (host {fp.get('cpu_model', '?')})" if gpu and gpu != "none" else
             f"{fp.get('cpu_model', '?')}" + (" (no CUDA GPU)" if gpu == "none" else "")]
    if isa:
        parts.append(isa)
    if fp.get("physical_cores") or fp.get("logical_cores"):
        parts.append(f"{fp.get('physical_cores') or fp.get('logical_cores')} cores")
    if fp.get("cache_kib", {}).get("L2"):
        parts.append(f"L2 {fp['cache_kib']['L2']} KiB")
    if fp.get("backend"):
        parts.append(f"{fp['backend']} {fp.get('runtime_version', '')}".strip()
                     + (f" {fp['threads']} thread(s)" if fp.get("threads") else ""))
    if fp.get("origin") and fp["origin"] != "measured":
        parts.append(f"({fp['origin']})")
    return ", ".join(parts)
