"""augur-nas: a vectorized cost oracle for hardware-aware neural architecture search."""

from ._errors import AugurError, ConstraintError, MeasurementError, ProfileError, ShapeError, SpecError, UnsupportedOpError
from .analysis import analyze, analyze_batch, totals
from .exact import ExactFront, exact_front
from .lowering import LayerTable, lower
from . import nb201
from .models import from_torch, load_model, load_space, load_space_dict
from .oracle import Oracle
from .profile import load_profile, save_profile
from .space import SearchSpace
from ._version import __version__
from .io import onnx as _onnx_io  # noqa: F401 - registers the .onnx reader of models.load_model
from .measure._calibrate import calibrate as _calibrate
from .measure._devcheck import check as _check
from .planner import fit as _fit


def check(profile, settings=None, time_s: float = 4.0, timing: bool = True):
    """Does this machine match ``profile``? A ``DeviceCheck``: ``matches``, ``differences``,
    ``speed_factor`` (its speed anchors timed now / when it was built), ``to_dict()``."""
    return _check(profile, settings, time_s=time_s, timing=timing)


def fit(model_or_space, latency_ms=None, memory_mb=None, throughput_ips=None, devices="all", threads=None, **kw):
    """Which devices run a model (or how much of a space) within the limits: a ``FitReport`` of
    ``DeviceFit`` / ``SpaceFit`` rows, see ``augur_nas.planner._fit.fit``."""

    return _fit(model_or_space, latency_ms=latency_ms, memory_mb=memory_mb, throughput_ips=throughput_ips,
                devices=devices, threads=threads, **kw)


def calibrate(base, **kw):
    """Adapt a profile to this machine (or to measured latencies): see ``augur_nas.measure._calibrate.calibrate``."""
    return _calibrate(base, **kw)

__all__ = [
    "AugurError", "ConstraintError", "MeasurementError", "ProfileError", "ShapeError", "SpecError",
    "UnsupportedOpError", "ExactFront", "exact_front", "analyze", "analyze_batch", "totals", "load_model", "from_torch", "Oracle", "load_profile", "save_profile", "LayerTable", "lower", "SearchSpace", "load_space", "load_space_dict",
    "check", "calibrate", "fit", "nb201", "__version__",
]
