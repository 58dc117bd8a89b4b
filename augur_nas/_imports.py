"""The one way augur-nas imports an optional or slow-to-import dependency.

Modelled on optuna's ``_imports.try_import``: everything else is imported at module top, but
onnx, onnxruntime, torch, lightgbm, matplotlib, optuna, tqdm and psycopg2 are imported where they
are used, through ``optional``, so that ``import augur_nas`` and ``augur-nas predict`` stay fast
and work without them, and a missing one is one paragraph with its install hint (an
``AugurError``: exit code 2 at the CLI), never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ._errors import AugurError

# How to install each optional dependency (keyed by the top-level package).
INSTALL_HINTS = {
    "onnx": "pip install 'augur-nas[onnx]'",
    "onnxruntime": "pip install 'augur-nas[onnx]'",
    "torch": "pip install 'augur-nas[torch]' (torch==2.13.0)",
    "torchvision": "pip install 'augur-nas[torch]' (torch==2.13.0)",
    "lightgbm": "pip install lightgbm",
    "matplotlib": "pip install matplotlib",
    "optuna": "pip install optuna",
    "tqdm": "pip install tqdm",
    "psycopg2": "pip install psycopg2-binary (or augur-nas[postgres])",
}
OPTIONAL = frozenset(INSTALL_HINTS)


def install_hint(name: str) -> str:
    """``pip install ...`` for the package that provides module ``name``."""
    top = name.split(".")[0]
    return INSTALL_HINTS.get(top, f"pip install {top}")


def optional(name: str, needed_for: str, error: type[AugurError] = AugurError) -> ModuleType:
    """The module ``name`` (e.g. ``"torch"``, ``"optuna.trial"``), imported now; if it cannot be
    imported, ``error``: "NEEDED_FOR needs the `PACKAGE` package, which could not be imported
    (why); install it with HINT"."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise error(f"{needed_for} needs the `{top}` package, which could not be imported ({why}); "
                    f"install it with {install_hint(name)}") from None


def available(name: str) -> bool:
    """Whether module ``name`` could be imported, without importing it (a top-level package's
    spec is looked up; a missing parent package counts as not available)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
