"""NAS-Bench-201 architecture strings <-> encodings of the NB201 space (spaces/nb201.yaml).

NB201 (Dong & Yang, ICLR 2020) writes an architecture as ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``:
node j lists its incoming edges ``op~i`` (from node i), nodes separated by ``+``.  The six edges in
that order are exactly the six genes of spaces/nb201.yaml (``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``)
and NB201's op list is in the same order as the genes' options, so the encoding is the op index.

Op names, side by side (docs/language.md repeats this table):

    NB201            augur-nas option
    none             zero
    skip_connect     identity
    nor_conv_1x1     relu_conv_bn(kernel=1)
    nor_conv_3x3     relu_conv_bn(kernel=3)
    avg_pool_3x3     avgpool(kernel=3,stride=1,pad=1)

The space is built here in Python, not read from spaces/nb201.yaml, because an installed package
has no spaces/ folder; tests/test_nb201.py checks that both give the same networks.
"""

from __future__ import annotations

import numpy as np

from ._errors import SpecError
from .lowering import check_shapes
from .space._space import TEXT_ENCODERS, SearchSpace

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
AUGUR_OPS = ("zero", "identity", "relu_conv_bn(kernel=1)", "relu_conv_bn(kernel=3)",
             "avgpool(kernel=3,stride=1,pad=1)")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to node, from node), in string order
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"

_EDGE_CHOICE = ["zero", "identity", {"relu_conv_bn": {"kernel": 1}}, {"relu_conv_bn": {"kernel": 3}},
                {"avgpool": {"kernel": 3, "stride": 1, "pad": 1}}]


def is_arch_str(text) -> bool:
    """Whether ``text`` looks like an NB201 architecture string (so a CLI can route it here)."""
    t = str(text).strip()
    return t.startswith("|") and t.endswith("|") and "~" in t


def encode(arch_str: str) -> np.ndarray:
    """The encoding (six op indices, int64) of an NB201 architecture string."""
    nodes = _split(arch_str)
    x = np.zeros(len(EDGES), dtype=np.int64)
    for g, (j, i) in enumerate(EDGES):
        op, src = nodes[j - 1][i]
        if src != i:
            raise SpecError(f"NB201 string {arch_str!r}: node {j}'s edge {i + 1} must come from node {i} "
                            f"(`{op}~{i}`), but it says `{op}~{src}`")
        x[g] = NB201_OPS.index(op)
    return x


def decode(x) -> str:
    """The NB201 architecture string of an encoding (six op indices)."""
    x = np.asarray(x).reshape(-1)
    if x.shape[0] != len(EDGES) or not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= len(NB201_OPS):
        raise SpecError(f"an NB201 encoding is 6 integers in 0..4, but got {x.tolist()}")
    nodes = []
    for j in (1, 2, 3):
        nodes.append("|" + "|".join(f"{NB201_OPS[x[g]]}~{i}" for g, (jj, i) in enumerate(EDGES) if jj == j) + "|")
    return "+".join(nodes)


def space():
    """The NB201 space (15,625 architectures), the same networks as spaces/nb201.yaml."""
    space = SearchSpace(_space_spec(), source="<nb201>")
    check_shapes(space)
    return space


def model(arch_str: str):
    """The concrete model of an NB201 architecture string (a space of size 1)."""
    s = space()
    m = s.decode(encode(arch_str))
    m.name = "nb201"
    return m


def _split(arch_str: str) -> list:
    """``[[(op, from node), ...] for node 1..3]``, each checked."""
    text = str(arch_str).strip()
    hint = f"an NB201 string looks like {EXAMPLE} (ops: {', '.join(NB201_OPS)})"
    parts = text.split("+")
    if len(parts) != 3:
        raise SpecError(f"NB201 string {text!r} must have 3 nodes separated by `+`, but has {len(parts)}; {hint}")
    nodes = []
    for j, part in enumerate(parts, start=1):
        if not (part.startswith("|") and part.endswith("|")):
            raise SpecError(f"NB201 string {text!r}: node {j} `{part}` must be written `|op~i|...|`; {hint}")
        edges = [e for e in part[1:-1].split("|")]
        if len(edges) != j:
            raise SpecError(f"NB201 string {text!r}: node {j} must have {j} incoming edge(s), but `{part}` has "
                            f"{len(edges)}; {hint}")
        row = []
        for e in edges:
            op, sep, src = e.partition("~")
            if not sep or not src.isdigit():
                raise SpecError(f"NB201 string {text!r}: edge `{e}` must be `op~i`; {hint}")
            if op not in NB201_OPS:
                raise SpecError(f"NB201 string {text!r}: unknown op `{op}` (ops: {', '.join(NB201_OPS)})")
            row.append((op, int(src)))
        nodes.append(row)
    return nodes


def _reduction(name: str, c_out: int) -> dict:
    """NB201's ResNetBasicblock(C, 2C, stride 2), as in spaces/nb201.yaml."""
    return {"branch": {"name": name, "join": "add", "paths": [
        ["relu", {"conv": {"out": c_out, "kernel": 3, "stride": 2, "pad": 1, "bias": False}}, "batchnorm",
         "relu", {"conv": {"out": c_out, "kernel": 3, "stride": 1, "pad": 1, "bias": False}}, "batchnorm"],
        [{"avgpool": {"kernel": 2, "stride": 2}}, {"conv": {"out": c_out, "kernel": 1, "bias": False}}]]}}


def _space_spec() -> dict:
    cells = [{"cell": {"name": "nb201"}} for _ in range(5)]
    layers = ([{"conv": {"name": "stem_conv", "out": 16, "kernel": 3, "pad": 1, "bias": False}},
               {"batchnorm": {"name": "stem_bn"}}]
              + cells + [_reduction("red1", 32)] + cells + [_reduction("red2", 64)] + cells
              + [{"batchnorm": {"name": "lastact_bn"}}, {"relu": {"name": "lastact_relu"}},
                 {"globalpool": {"name": "global_pool", "mode": "avg"}}, {"fc": {"name": "classifier", "out": 10}}])
    return {"name": "nb201", "input": {"channels": 3, "resolution": 32},
            "cells": {"nb201": {"nodes": 4, "edge": {"choice": list(_EDGE_CHOICE)}}},
            "layers": [dict(l) if isinstance(l, dict) else l for l in layers]}


def _encode_text(space, text):
    """An NB201 string in ``SearchSpace.encode_text``: the encoding, for the NB201 space only."""
    if not is_arch_str(text):
        return None
    x = encode(text)
    if [g.options for g in space.genes] != [tuple(AUGUR_OPS)] * len(EDGES):
        raise SpecError(f"an NB201 architecture string encodes candidates of the NB201 space, not of "
                        f"{space.name} ({space.source})")
    return x


TEXT_ENCODERS.append(_encode_text)
