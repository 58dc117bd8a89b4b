"""The accuracy objective of a search (maximized).

- ``macs`` and ``params``: the oracle's MAC and parameter counts, *capacity proxies*, not
  accuracy: a larger network is assumed to be a more accurate one. They cost nothing.
- ``module:function`` (or ``path/to/file.py:function``): a user callable receiving the decoded
  architecture (the concrete model spec dict of ``SearchSpace.decode_spec``) and returning a
  finite number to maximize (e.g. a predicted or measured accuracy). It is called only for
  candidates that satisfy every hard constraint, at most once per architecture in a process.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys

import numpy as np

from .._errors import ConstraintError

BUILTIN = {
    "macs": "MACs (a capacity proxy for accuracy, not an accuracy)",
    "params": "parameters (a capacity proxy for accuracy, not an accuracy)",
}


class Objective:
    """``values(space, X, costs, feasible)`` -> ``[B]`` float array (NaN where not evaluated)."""

    def __init__(self, spec: str | None = "macs", fn=None):
        if fn is not None:
            if not callable(fn):
                raise ConstraintError(f"the objective must be callable, got {type(fn).__name__}")
            self.spec = spec or getattr(fn, "__qualname__", "objective")
            self.fn = fn
        else:
            spec = "macs" if spec is None else str(spec)
            self.spec = spec
            self.fn = None if spec in BUILTIN else _import(spec)
        self._cache: dict = {}

    @property
    def builtin(self) -> bool:
        return self.fn is None

    @property
    def name(self) -> str:
        return self.spec

    @property
    def description(self) -> str:
        return BUILTIN.get(self.spec, f"user objective {self.spec} (maximized)")

    def values(self, space, X: np.ndarray, costs: dict, feasible: np.ndarray) -> np.ndarray:
        if self.fn is None:
            return np.asarray(costs[self.spec], dtype=np.float64).copy()
        out = np.full(len(X), np.nan)
        for i in np.flatnonzero(feasible):
            key = X[i].tobytes()
            if key not in self._cache:
                self._cache[key] = self._call(space, X[i])
            out[i] = self._cache[key]
        return out

    def _call(self, space, x) -> float:
        arch = space.decode_spec(x)
        try:
            v = self.fn(arch)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a user function failing is a user error
            raise ConstraintError(
                f"the objective {self.spec} raised {type(exc).__name__}: {exc} (on the candidate with encoding "
                f"{' '.join(map(str, np.asarray(x).tolist()))})") from exc
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConstraintError(f"the objective {self.spec} must return a number, but returned {type(v).__name__} "
                                  f"{v!r}") from None
        if isinstance(v, bool) or not math.isfinite(f):
            raise ConstraintError(f"the objective {self.spec} must return a finite number, but returned {v!r}")
        return f


def _import(spec: str):
    if ":" not in spec:
        raise ConstraintError(f"--objective {spec!r}: use macs, params, or module:function (a callable that receives "
                              f"the decoded architecture dict and returns a number to maximize)")
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise ConstraintError(f"--objective {spec!r}: expected module:function")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            path = os.path.abspath(mod_name)
            if not os.path.isfile(path):
                raise ConstraintError(f"--objective {spec!r}: no file {mod_name}")
            name = "_augur_objective_" + os.path.splitext(os.path.basename(path))[0]
            s = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(s)
            sys.modules[name] = module
            s.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the working directory
            module = importlib.import_module(mod_name)
    except ConstraintError:
        raise
    except Exception as exc:
        raise ConstraintError(f"--objective {spec!r}: cannot import {mod_name}: {type(exc).__name__}: {exc}") from exc
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ConstraintError(f"--objective {spec!r}: {mod_name} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ConstraintError(f"--objective {spec!r}: {attr} is a {type(fn).__name__}, not a function")
    return fn
