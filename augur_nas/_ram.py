"""Predictions beyond a device's memory: a flag for every output that prints predicted memory."""

from __future__ import annotations

import numpy as np


def ram_mb(profile) -> float | None:
    """The device's memory (MB) from its profile's ``hardware.ram_mb``, or None where unknown."""
    hw = getattr(profile, "hardware", None) or {}
    v = hw.get("ram_mb") if isinstance(hw, dict) else None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def over_ram(memory_mb, profile) -> np.ndarray:
    """``[B]`` bool: the predicted memory exceeds the device's RAM (all False where it is unknown)."""
    mem = np.asarray(memory_mb, dtype=np.float64)
    cap = ram_mb(profile)
    if cap is None:
        return np.zeros(mem.shape, dtype=bool)
    return mem > cap


def ram_warning(memory_mb, profile, what: str = "the model") -> str | None:
    """A one-line warning when any predicted memory exceeds the device's RAM, else None."""
    mem = np.atleast_1d(np.asarray(memory_mb, dtype=np.float64))
    over = over_ram(mem, profile)
    if not over.any():
        return None
    cap = ram_mb(profile)
    name = getattr(profile, "name", "the device")
    if mem.size == 1:
        return (f"warning: {what} is predicted to need {mem[0]:,.0f} MB, more than {name}'s {cap:,.0f} MB of "
                f"memory (hardware.ram_mb); it would not run there at this batch")
    return (f"warning: {int(over.sum()):,} of {mem.size:,} candidates are predicted to need more than {name}'s "
            f"{cap:,.0f} MB of memory (hardware.ram_mb; the largest {mem.max():,.0f} MB); add a memory limit "
            f"(search --memory) to exclude them")
