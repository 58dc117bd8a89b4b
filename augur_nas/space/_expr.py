"""Parameter expressions: a layer parameter is a constant, a gene's value, or a function of both.

Expressions are evaluated for a whole batch of candidates at once: a constant stays a Python
scalar (cheap broadcasting), a gene becomes a ``[B]`` array looked up from its option table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


class Expr:
    __slots__ = ()


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: Any


@dataclass(frozen=True, eq=False)
class GeneVal(Expr):
    gene: int
    options: tuple  # the option values; X[:, gene] indexes them


@dataclass(frozen=True, eq=False)
class Fn(Expr):
    fn: Callable
    args: tuple


@dataclass(frozen=True, eq=False)
class Channels(Expr):
    node: int  # output channels of a node (-1: the network input)


def make_divisible(value, divisor=8):
    """torchvision's ``_make_divisible``, vectorized."""
    v = np.asarray(value, dtype=np.float64)
    new = np.maximum(divisor, np.floor((v + divisor / 2) / divisor) * divisor)
    new = new + divisor * (new < 0.9 * v)
    out = new.astype(np.int64)
    return int(out) if out.ndim == 0 else out


def const_value(expr: Expr):
    """The value of an expression that does not depend on the candidate, else ``None``."""
    return expr.value if isinstance(expr, Const) else None


def options_of(expr: Expr) -> list | None:
    """Every value a Const or GeneVal can take (for validation), else None."""
    if isinstance(expr, Const):
        return [expr.value]
    if isinstance(expr, GeneVal):
        return list(expr.options)
    return None
