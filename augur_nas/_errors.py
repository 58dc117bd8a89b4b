"""The one error hierarchy of augur-nas.

Every error a user can cause (bad files, bad values, unknown devices) is an ``AugurError``;
the CLI turns it into a one-paragraph message and exit code 2. Anything else is a bug.
"""

from __future__ import annotations


class AugurError(Exception):
    """Base class of every error augur-nas reports to a user."""

    exit_code = 2


class SpecError(AugurError):
    """A model or space description (YAML, prototxt, ONNX, torch) is invalid."""


class ShapeError(SpecError):
    """Shapes go non-positive or do not agree (a kernel larger than its input, a concat)."""


class UnsupportedOpError(SpecError):
    """An op the registry neither handles nor explicitly ignores."""


class ProfileError(AugurError):
    """A device profile is unknown, corrupt, of a newer format, or holds invalid numbers."""


class ConstraintError(AugurError):
    """A constraint or objective value cannot be understood, or nothing is feasible."""


class MeasurementError(AugurError):
    """A runtime needed to measure is missing or failed."""


def where(source: str | None, keypath: str | None) -> str:
    """The ``(file, key path)`` suffix of a message."""
    parts = [p for p in (source, keypath) if p]
    return f" ({', '.join(parts)})" if parts else ""
