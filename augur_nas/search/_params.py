"""The Optuna parameters of a space's genes: one categorical parameter per gene, named after the
gene, whose choices are the gene's option labels (kernel 3/5/7, not 0/1/2), so optuna-dashboard
shows what was chosen. Studies made before the labels keep their option indices (``INDICES``):
Optuna refuses to change a parameter's choices within a study."""

from __future__ import annotations

import numpy as np

from .._imports import optional

LABELS = "option labels"
INDICES = "option indices"


def option_labels(gene) -> list:
    """The choices of gene ``gene`` as Optuna stores them: the options themselves where they are
    distinct scalars, else their text, else ``"i: text"`` (always distinct)."""
    opts = list(gene.options)
    if _distinct_scalars(opts):
        return opts
    text = [str(o) for o in opts]
    if len(set(text)) == len(text):
        return text
    return [f"{i}: {t}" for i, t in enumerate(text)]


def _distinct_scalars(opts: list) -> bool:
    if not all(o is None or isinstance(o, (bool, int, float, str)) for o in opts):
        return False
    if any(isinstance(o, float) and o != o for o in opts):  # NaN is not found by ==
        return False
    # Optuna finds a stored value among the choices by ==, and 1, 1.0 and True are equal
    return all(a != b for i, a in enumerate(opts) for b in opts[i + 1:])


class GeneParams:
    """The distributions of a study's gene parameters and the translation between Optuna's
    parameter values and encodings (option indices)."""

    def __init__(self, space, mode: str = LABELS):
        CategoricalDistribution = optional("optuna.distributions", "a search").CategoricalDistribution
        if mode not in (LABELS, INDICES):
            raise ValueError(f"mode must be {LABELS!r} or {INDICES!r}, not {mode!r}")
        self.mode = mode
        self.names = space.gene_names
        self.choices = [option_labels(g) if mode == LABELS else list(range(g.size)) for g in space.genes]
        self.dists = {n: CategoricalDistribution(c) for n, c in zip(self.names, self.choices)}
        self._index = [{c: i for i, c in enumerate(cs)} for cs in self.choices]

    def encodings(self, params: list) -> np.ndarray:
        """``[B, G]`` option indices of the trials' ``params`` dicts (``trial.params``)."""
        X = np.zeros((len(params), len(self.names)), dtype=np.int64)
        for b, p in enumerate(params):
            for g, n in enumerate(self.names):
                v = p[n]
                i = self._index[g].get(v)
                X[b, g] = self.dists[n].to_internal_repr(v) if i is None else i
        return X

    def params(self, x) -> dict:
        """The parameter values of encoding ``x`` (for ``study.enqueue_trial``)."""
        return {n: self.choices[g][int(v)] for g, (n, v) in enumerate(zip(self.names, x))}
