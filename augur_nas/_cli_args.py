"""Argument types shared by the CLI's commands: argparse turns their ``ArgumentTypeError`` into a
one-line usage error (exit code 2)."""

from __future__ import annotations

import argparse


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {s!r}")
    return v


def nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {s!r}")
    return v


def positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {s!r}")
    return v


def fraction(s: str) -> float:
    v = positive_float(s)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, not {s!r}")
    return v
