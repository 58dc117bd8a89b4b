"""Strict parsing of limits with units: ``50ms``, ``0.05s``, ``300MB``, ``1.5GB``, ``5M``, ``600M``.

The memory units are binary, like the oracle's ``memory_mb`` (1 MB = 2^20 bytes): ``KB``/``KiB``
= 2^10 bytes, ``MB``/``MiB`` = 2^20, ``GB``/``GiB`` = 2^30, ``B`` = bytes. Counts (params, MACs)
take ``K`` (10^3), ``M`` (10^6) and ``G`` (10^9). A bare number is read in the quantity's base
unit (ms, MB, a count). Anything else (a word, a sign, zero, NaN, infinity, a unit of another
quantity) is a ``ConstraintError``.
"""

from __future__ import annotations

import math
import re

from .._errors import ConstraintError

_NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*([A-Za-z]*)\s*$")

#: quantity -> (base unit, {unit: factor to the base unit})
UNITS = {
    "latency_ms": ("ms", {"": 1.0, "us": 1e-3, "ms": 1.0, "s": 1e3}),
    "memory_mb": ("MB", {"": 1.0, "B": 2.0**-20, "KB": 2.0**-10, "KiB": 2.0**-10, "MB": 1.0, "MiB": 1.0,
                         "GB": 1024.0, "GiB": 1024.0}),
    "params": ("", {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9}),
    "macs": ("", {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9}),
}

_FLAGS = {"latency_ms": "--latency", "memory_mb": "--memory", "params": "--params", "macs": "--macs"}
_EXAMPLES = {"latency_ms": "50ms or 0.05s", "memory_mb": "300MB or 1.5GB", "params": "5M or 500K",
             "macs": "600M or 1.2G"}


def parse_limit(quantity: str, text) -> float:
    """The limit ``text`` of ``quantity`` (latency_ms, memory_mb, params, macs) in the base unit.

    Numbers are accepted as they are (in the base unit) if positive and finite.
    """
    if quantity not in UNITS:
        raise ConstraintError(f"unknown constrained quantity {quantity!r}; expected one of {', '.join(UNITS)}")
    base, table = UNITS[quantity]
    flag = _FLAGS[quantity]
    if isinstance(text, bool):
        raise ConstraintError(f"{flag} takes a positive value such as {_EXAMPLES[quantity]}, not {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
        if not math.isfinite(value) or value <= 0:
            raise ConstraintError(f"{flag} must be positive and finite, got {text!r}")
        return value
    s = str(text)
    m = _NUMBER.match(s)
    if not m and s.strip().startswith("-") and _NUMBER.match(s.strip()[1:]):
        raise ConstraintError(f"{flag} must be positive, got {s!r} (write it like {_EXAMPLES[quantity]})")
    if not m:
        raise ConstraintError(
            f"{flag} {s!r} is not a positive number with a unit; write it like {_EXAMPLES[quantity]} "
            f"(units: {', '.join(u for u in table if u) or 'none'})")
    mant, exp, unit = m.groups()
    if unit not in table:
        raise ConstraintError(
            f"{flag} {s!r}: unknown unit {unit!r} for {quantity}; use one of "
            f"{', '.join(u for u in table if u)} (e.g. {_EXAMPLES[quantity]})")
    value = float(f"{mant}e{exp}" if exp else mant) * table[unit]
    if not math.isfinite(value) or value <= 0:
        raise ConstraintError(f"{flag} must be positive and finite, got {s!r}")
    return value


def format_limit(quantity: str, value: float) -> str:
    """A short human form of a limit in the base unit (``50 ms``, ``300 MB``, ``5M``)."""
    if quantity == "latency_ms":
        return f"{value:g} ms"
    if quantity == "memory_mb":
        return f"{value:g} MB"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= div:
            return f"{value / div:g}{unit}"
    return f"{value:g}"
