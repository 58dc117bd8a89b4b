"""Validation of the plain-number model descriptions read from device profiles.

Every problem is a ``ProfileError`` naming the file and the key path of the offending value.
"""

from __future__ import annotations

import math

from .._errors import ProfileError, where


def err(msg: str, source: str | None, key: str) -> ProfileError:
    return ProfileError(f"{msg}{where(source, key)}")


def mapping(d, source, key, required=(), optional=()) -> dict:
    if not isinstance(d, dict):
        raise err(f"`{key}` must be a mapping, not {_kind(d)}", source, key)
    missing = [k for k in required if k not in d]
    if missing:
        raise err(f"`{key}` lacks the key{'s' if len(missing) > 1 else ''} "
                  f"{', '.join(f'`{m}`' for m in missing)}", source, f"{key}.{missing[0]}")
    allowed = set(required) | set(optional)
    if allowed:
        extra = [k for k in d if k not in allowed]
        if extra:
            raise err(f"`{key}` has an unknown key `{extra[0]}` (known: {', '.join(sorted(map(str, allowed)))})",
                      source, f"{key}.{extra[0]}")
    return d


def number(v, source, key, minimum: float | None = 0.0, integer: bool = False) -> float:
    """A finite number (``bool`` is not a number), by default non-negative."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise err(f"`{key}` must be a number, not {_kind(v)}", source, key)
    f = float(v)
    if math.isnan(f):
        raise err(f"`{key}` is NaN; profiles hold finite numbers only", source, key)
    if math.isinf(f):
        raise err(f"`{key}` is infinite; profiles hold finite numbers only", source, key)
    if minimum is not None and f < minimum:
        raise err(f"`{key}` is {v}, but it must be >= {minimum:g} (costs and sizes are never negative)",
                  source, key)
    if integer:
        if not f.is_integer():
            raise err(f"`{key}` must be a whole number, not {v}", source, key)
        return int(f)
    return f


def numbers(v, source, key, minimum: float | None = 0.0) -> list:
    if not isinstance(v, (list, tuple)):
        raise err(f"`{key}` must be a list of numbers, not {_kind(v)}", source, key)
    return [number(x, source, f"{key}[{i}]", minimum) for i, x in enumerate(v)]


def string(v, source, key, choices=None) -> str:
    if not isinstance(v, str) or not v:
        raise err(f"`{key}` must be a non-empty string, not {_kind(v)}", source, key)
    if choices is not None and v not in choices:
        raise err(f"`{key}` is `{v}`; it must be one of {', '.join(choices)}", source, key)
    return v


def boolean(v, source, key) -> bool:
    if not isinstance(v, bool):
        raise err(f"`{key}` must be true or false, not {_kind(v)}", source, key)
    return v


def _kind(v) -> str:
    if v is None:
        return "empty (null)"
    if isinstance(v, bool):
        return f"the flag {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, (list, tuple)):
        return "a list"
    return type(v).__name__


def plain(v):
    """A float as written to YAML: whole numbers as ints."""
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f
