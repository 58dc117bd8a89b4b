"""augur-nas: a vectorized cost oracle for hardware-aware neural architecture search."""

from ._errors import AugurError, ConstraintError, MeasurementError, ProfileError, ShapeError, SpecError, UnsupportedOpError
from .analysis import analyze, analyze_batch, totals
from .lowering import LayerTable, lower
from .models import from_torch, load_model, load_space, load_space_dict
from .oracle import Oracle
from .profile import load_profile, save_profile
from .space import SearchSpace

__version__ = "0.1.0"

__all__ = [
    "AugurError", "ConstraintError", "MeasurementError", "ProfileError", "ShapeError", "SpecError",
    "UnsupportedOpError", "analyze", "analyze_batch", "totals", "load_model", "from_torch", "Oracle", "load_profile", "save_profile", "LayerTable", "lower", "SearchSpace", "load_space", "load_space_dict",
    "__version__",
]
