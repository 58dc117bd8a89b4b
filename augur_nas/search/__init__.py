"""Hardware-aware architecture search with the cost oracle as Optuna's constraint.

``search(space, device, latency_ms="50ms", ...)`` runs an Optuna study (NSGA-II by default)
over the genes of a space, pricing candidates in batches through ``Oracle.evaluate``, and returns
the Pareto front of predicted latency (minimized) against an accuracy objective (maximized):
the ``macs`` or ``params`` capacity proxies or a user function of the decoded architecture.
See docs/search.md.
"""

from ._enumerate import iter_chunks, unrank
from ._objective import Objective
from ._outputs import atomic_write
from ._pareto import hypervolume, pareto_mask, violation
from ._config import (DEFAULT_SAMPLER, DEFAULT_TRIALS, SAMPLERS, SearchConfig, make_config, make_sampler,
                      parse_limits, relative_constraints)
from ._results import SearchResult
from ._run import run_search, search
from ._storage import make_storage
from ._units import format_limit, parse_limit

__all__ = [
    "DEFAULT_SAMPLER", "DEFAULT_TRIALS", "SAMPLERS", "Objective", "SearchConfig", "SearchResult", "atomic_write",
    "format_limit", "hypervolume", "iter_chunks", "make_config", "make_sampler", "make_storage", "pareto_mask",
    "parse_limit", "parse_limits", "relative_constraints", "run_search", "search", "unrank", "violation",
]
