"""Argument types shared by the CLI's commands: argparse turns their ``ArgumentTypeError`` into a
one-line usage error (exit code 2)."""

from __future__ import annotations

import argparse
import math
from .._errors import SpecError
from ..models import parse_input_shape


def _number(s: str, kind, ok, what: str):
    """``kind(s)`` when it parses and ``ok`` holds for it, else the usage error "must be WHAT"."""
    try:
        v = kind(s)
    except ValueError:
        v = None
    if v is None or not ok(v):
        raise argparse.ArgumentTypeError(f"must be {what}, not {s!r}")
    return v


def positive_int(s: str) -> int:
    return _number(s, int, lambda v: v >= 1, "a positive whole number")


def nonneg_int(s: str) -> int:
    return _number(s, int, lambda v: v >= 0, "a whole number >= 0")


def positive_float(s: str) -> float:
    return _number(s, float, lambda v: v > 0, "a positive number")


def nonneg_float(s: str) -> float:
    return _number(s, float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def fraction(s: str) -> float:
    v = positive_float(s)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, not {s!r}")
    return v


class Once(argparse.Action):
    """An option that may be given once: a second ``--device`` is a usage error, not silently the last."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, "_given_" + self.dest, False):
            parser.error(f"{option_string} was given twice ({getattr(namespace, self.dest)!s} and {values!s}); "
                         f"give it once")
        setattr(namespace, "_given_" + self.dest, True)
        setattr(namespace, self.dest, values)


def input_shape(s: str) -> tuple:
    """``1x3x32x32`` or ``3x32x32`` -> ``(1, C, H, W)``."""
    try:
        return parse_input_shape(s)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
