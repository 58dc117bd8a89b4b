"""The model/space language: YAML reading, compilation to unrolled nodes, genes."""

from ._space import GeneInfo, SearchSpace, load_space, load_space_dict

__all__ = ["GeneInfo", "SearchSpace", "load_space", "load_space_dict"]
