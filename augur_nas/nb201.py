"""NAS-Bench-201 architecture strings for ``spaces/nb201.yaml`` (and any space whose cell edges
are genes named ``cells.<cell>.edge[j<-i]``).

NAS-Bench-201 (Dong & Yang, ICLR 2020) writes a cell as
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``:
one ``+``-separated group per node j = 1, 2, 3, each listing ``op~i`` for the edges i -> j. Its
op names and ours, side by side:

=================  ===================================
NAS-Bench-201      augur-nas (spaces/nb201.yaml)
=================  ===================================
``none``           ``zero``
``skip_connect``   ``identity``
``nor_conv_1x1``   ``relu_conv_bn: {kernel: 1}``
``nor_conv_3x3``   ``relu_conv_bn: {kernel: 3}``
``avg_pool_3x3``   ``avgpool: {kernel: 3, stride: 1, pad: 1}``
=================  ===================================

``encode(space, arch)`` gives the candidate's encoding, ``decode(space, x)`` its string.
"""

from __future__ import annotations

import re

import numpy as np

from ._errors import SpecError

# NB201's op name -> the option label of our edge gene (``SearchSpace.genes[g].options``)
NB201_OPS = {
    "none": "zero",
    "skip_connect": "identity",
    "nor_conv_1x1": "relu_conv_bn(kernel=1)",
    "nor_conv_3x3": "relu_conv_bn(kernel=3)",
    "avg_pool_3x3": "avgpool(kernel=3,stride=1,pad=1)",
}
OURS_TO_NB201 = {v: k for k, v in NB201_OPS.items()}
_EDGE_GENE = re.compile(r"^cells\.([^.]+)\.edge\[(\d+)<-(\d+)\]$")
_TOKEN = re.compile(r"^([a-z0-9_]+)~(\d+)$")


def is_arch_string(text: str) -> bool:
    """Whether ``text`` looks like a NAS-Bench-201 string (``|op~i|+|...|``), not a file name."""
    return isinstance(text, str) and text.startswith("|") and text.endswith("|") and "~" in text


def _edge_genes(space) -> dict:
    """``{(j, i): gene index}`` of the space's cell edges (one cell type)."""
    found, cells = {}, set()
    for g, gene in enumerate(space.genes):
        m = _EDGE_GENE.match(gene.name)
        if m:
            cells.add(m.group(1))
            found[(int(m.group(2)), int(m.group(3)))] = g
    if not found or len(cells) != 1:
        raise SpecError(f"{space.name} has no NAS-Bench-201 style cell (genes named `cells.<cell>.edge[j<-i]` of "
                        f"one cell) for an architecture string ({space.source})")
    return found


def parse(arch: str) -> dict:
    """``{(j, i): NB201 op name}`` of an architecture string; SpecError naming what is wrong."""
    if not is_arch_string(arch):
        raise SpecError(f"`{arch}` is not a NAS-Bench-201 architecture string, which looks like "
                        f"`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`")
    edges = {}
    for j, group in enumerate(arch.split("+"), start=1):
        tokens = [t for t in group.strip().strip("|").split("|") if t]
        for t in tokens:
            m = _TOKEN.match(t)
            if not m:
                raise SpecError(f"`{t}` in node {j} of `{arch}` is not `op~input` (e.g. `nor_conv_3x3~0`)")
            op, i = m.group(1), int(m.group(2))
            if op not in NB201_OPS:
                raise SpecError(f"`{op}` in `{arch}` is not a NAS-Bench-201 op (ops: {', '.join(NB201_OPS)})")
            if i >= j or (j, i) in edges:
                raise SpecError(f"edge `{t}` of node {j} in `{arch}` must come from an earlier node, once")
            edges[(j, i)] = op
    return edges


def encode(space, arch: str) -> np.ndarray:
    """The canonical encoding in ``space`` of the NAS-Bench-201 string ``arch``."""
    genes = _edge_genes(space)
    edges = parse(arch)
    missing = sorted(set(genes) - set(edges))
    extra = sorted(set(edges) - set(genes))
    if missing or extra:
        show = lambda es: ", ".join(f"{i}->{j}" for j, i in es)  # noqa: E731
        raise SpecError(f"`{arch}` does not name the cell's edges exactly: "
                        + (f"missing {show(missing)}" if missing else "")
                        + ("; " if missing and extra else "") + (f"unknown {show(extra)}" if extra else "")
                        + f" ({space.source})")
    choices = {space.genes[g].name: NB201_OPS[edges[e]] for e, g in genes.items()}
    return space.encode(choices)


def decode(space, x) -> str:
    """The NAS-Bench-201 string of encoding ``x`` of ``space``."""
    genes = _edge_genes(space)
    x = np.asarray(x).reshape(-1)
    groups = []
    for j in range(1, max(j for j, _ in genes) + 1):
        ops = []
        for i in range(j):
            g = genes[(j, i)]
            label = space.genes[g].options[int(x[g])]
            if label not in OURS_TO_NB201:
                raise SpecError(f"option `{label}` of gene `{space.genes[g].name}` has no NAS-Bench-201 name")
            ops.append(f"{OURS_TO_NB201[label]}~{i}")
        groups.append("|" + "|".join(ops) + "|")
    return "+".join(groups)
