"""Measuring a runtime: the timing protocol, kernel profiling, residual training and validation.

- ``measure_networks`` / ``measure_paths``: end-to-end latency by a drift-robust protocol
  (``_protocol``: warm-up, interleaved rounds spread over time, median, half-split noise) and
  peak memory in child processes (``_memory``);
- ``profile_onnxruntime`` / ``profile_numpy`` / ``profile_torch``: a runtime's own kernels timed
  and fitted into a device profile (``_profiling``);
- ``fit_residual``: a LightGBM correction of the layer-sum latency, trained on measured samples
  and stored inside the profile (``_residual_fit``);
- ``validate``: measured against predicted, with the measurement's own noise (``_validate``).

The runtime settings a profile was measured with (threads, graph optimisation, provider) are
recorded in it (``RuntimeSettings``) and reused by ``measure`` and ``validate``.
"""

from ._measure import measure_networks, measure_paths
from ._protocol import Timing, half_noise, time_runners
from ._settings import RuntimeSettings

__all__ = ["RuntimeSettings", "Timing", "half_noise", "time_runners", "measure_networks", "measure_paths"]
