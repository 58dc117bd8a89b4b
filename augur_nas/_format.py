"""Formatting shared by the CLI and the search's output files: tables, counts, bytes, and JSON
with one NaN policy (non-finite numbers become ``null``, so every file and every ``--json``
output is valid JSON).

It sits at the package's bottom layer (it imports only numpy) so that both ``augur_nas.cli`` and
``augur_nas.search`` can use it without an import pointing up.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np


def fmt_count(v) -> str:
    """``1234567`` -> ``"1.23M"`` (G, M, K; plain below 1000)."""
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def fmt_bytes(v, digits: int = 2) -> str:
    """``3 * 2**20`` -> ``"3.00 MiB"`` (GiB, MiB, KiB; plain bytes below 1 KiB)."""
    v = float(v)
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= div:
            return f"{v / div:.{digits}f} {unit}"
    return f"{v:.0f} B"


def plain_number(v):
    """A JSON/CSV-friendly number: ints stay ints, NaN/inf become None."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    f = float(v)
    if not math.isfinite(f):
        return None
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def json_default(o):
    """``default=`` for ``json.dump``: numpy scalars and arrays as the matching Python values
    (NaN/inf -> null)."""
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.ndarray):
        return _finite_or_none_deep(o.tolist())
    raise TypeError(type(o).__name__)


def print_json(obj, out=None) -> None:
    """``obj`` as indented JSON on stdout (numpy values as plain numbers, NaN/inf as null)."""
    out = out or sys.stdout
    json.dump(_finite_or_none_deep(obj), out, indent=2, default=json_default)
    out.write("\n")


def _finite_or_none_deep(obj):
    # Python floats never reach ``default=``, so the NaN policy for them is applied by a walk
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none_deep(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none_deep(v) for v in obj]
    return obj


def table(headers, rows, out=None) -> None:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    out = out or sys.stdout
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(headers, widths))
    out.write(line + "\n" + "  ".join("-" * w for w in widths) + "\n")
    for r in rows:
        out.write("  ".join(f"{str(c):<{w}}" if i == 0 else f"{str(c):>{w}}"
                            for i, (c, w) in enumerate(zip(r, widths))) + "\n")
