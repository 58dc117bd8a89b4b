"""The model/space language: YAML reading, compilation to unrolled nodes, genes.

Spaces are loaded with ``augur_nas.load_space`` / ``load_space_dict`` (augur_nas/models.py),
which check their shapes by lowering (``augur_nas.lowering.check_shapes``): the language does
not depend on the lowering.
"""

from ._space import GeneInfo, SearchSpace

__all__ = ["GeneInfo", "SearchSpace"]
