"""Cost models of a device: GEMM time, memory-bound op time, per-layer overhead, memory.

All models are plain numbers (``to_dict``/``from_dict``) stored in device profiles, and all
predictions are vectorized over an ``[L, B]`` layer table (``augur_nas.lower``).
"""

from ._fusion import Boundary, FusionRules, LayoutRules  # noqa: F401 (Boundary: the segments and split read it here)
from ._gemm import FEATURES, OUTSIDE_RULES, PiecewiseGemm, gemm_features
from ._latency import FREE_BY_DEFAULT, GEMM_KINDS, LatencyModel, latency_ms, memory_mb
from ._memory import ACTIVATION_MODES, WORKSPACE_MODES, MemoryModel
from ._nnls import nnls
from ._ops import OpModel
from ._residual import ResidualModel, residual_features, residual_sums

__all__ = [
    "FEATURES", "OUTSIDE_RULES", "PiecewiseGemm", "gemm_features", "OpModel", "MemoryModel", "ACTIVATION_MODES",
    "WORKSPACE_MODES", "LatencyModel", "FREE_BY_DEFAULT", "GEMM_KINDS", "latency_ms", "memory_mb", "nnls",
    "FusionRules", "LayoutRules", "ResidualModel", "residual_sums", "residual_features",
]
