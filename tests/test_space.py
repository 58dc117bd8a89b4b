"""SearchSpace: decode round trips, canonical encodings, size and enumeration, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from augur_nas import SpecError, load_space, load_space_dict, lower
from conftest import SHIPPED_SPACES, ZOO_MODELS, active_layers, shipped_space, zoo_model

# A small space with every structural kind of gene: a global choice, parameter choices, a stage
# with a depth choice (0 allowed) and per-copy genes, and a layer choice whose alternatives have
# genes of their own.  Size = 2 (res) * 2 * 2 (conv) * (1 + 2 + 2^2) (stage) * (1 + 1 + 3) = 280.
SMALL = {
    "name": "small",
    "input": {"channels": 3, "resolution": {"choice": [8, 16]}},
    "layers": [
        {"conv": {"name": "c0", "out": {"choice": [4, 8]}, "kernel": {"choice": [1, 3]}, "pad": "same"}},
        {"stage": {"name": "s", "depth": {"choice": [0, 1, 2]},
                   "block": {"conv": {"out": {"choice": [4, 8]}, "kernel": 3, "pad": 1}}}},
        {"choice": [[], "relu", [{"conv": {"out": {"choice": [2, 4, 6]}, "kernel": 1}}, "relu"]]},
        {"globalpool": {}},
        {"fc": {"out": 10}},
    ],
}
SMALL_SIZE = 280

# Named (shared) choices, a shared stage (one set of genes for every copy), and a cell whose
# edges are shared by every use.  Size = 2 (k) * 3 (depth) * 2 (shared out) * 3^3 (3 edges) = 324.
SHARED = {
    "name": "shared",
    "input": {"channels": 3, "resolution": 16},
    "choices": {"k": {"choice": [3, 5]}},
    "cells": {"c": {"nodes": 3, "edge": {"choice": ["zero", "identity", {"relu_conv_bn": {"kernel": 3}}]}}},
    "layers": [
        {"conv": {"name": "stem", "out": 8, "kernel": "$k", "pad": "same"}},
        {"stage": {"name": "s", "depth": {"choice": [1, 2, 3]}, "share": True,
                   "block": {"conv": {"out": {"choice": [8, 16]}, "kernel": "$k", "pad": "same"}}}},
        {"cell": {"type": "c"}},
        {"cell": {"type": "c"}},
        {"globalpool": {}},
        {"fc": {"out": 10}},
    ],
}
SHARED_SIZE = 324

# A mobile-style space with a depth choice, per-block kernel/expansion/SE choices, a global
# resolution and width multiplier, and an activation choice.
MBSPACE = {
    "name": "mb",
    "input": {"channels": 3, "resolution": {"choice": [32, 48]}},
    "width_multiplier": {"choice": [0.5, 1.0]},
    "layers": [
        {"conv_bn_act": {"name": "stem", "out": 16, "kernel": 3, "stride": 2, "act": {"choice": ["relu", "hswish"]}}},
        {"stage": {"name": "s1", "depth": {"choice": [1, 2]},
                   "block": {"mbconv": {"out": 24, "stride": 2, "kernel": {"choice": [3, 5]},
                                        "expand": {"choice": [1, 3]}, "se": {"choice": [0, 0.25]}}}}},
        {"globalpool": {}},
        {"fc": {"out": 10}},
    ],
}
# 2 (res) * 2 (width) * 2 (act) * (8 + 8^2) = 576
MBSPACE_SIZE = 576

SMALL_SPACES = {"small": (SMALL, SMALL_SIZE), "shared": (SHARED, SHARED_SIZE), "mb": (MBSPACE, MBSPACE_SIZE)}


def small_space(name):
    spec, _ = SMALL_SPACES[name]
    return load_space_dict(spec, source=f"<{name}>")


def all_spaces():
    """(id, space) for every shipped space and the small test spaces."""
    return [(n, shipped_space(n)) for n in SHIPPED_SPACES] + [(n, small_space(n)) for n in SMALL_SPACES]


SPACE_IDS = SHIPPED_SPACES + list(SMALL_SPACES)


def get_space(name):
    return shipped_space(name) if name in SHIPPED_SPACES else small_space(name)


def _inactive_mask(space, C):
    """[B, G]: genes whose value does not matter for canonical candidates ``C``."""
    inactive = np.zeros(C.shape, dtype=bool)
    for g, gene in enumerate(space.genes):
        if gene.size < 2:
            inactive[:, g] = True
            continue
        P = C.copy()
        P[:, g] = (P[:, g] + 1) % gene.size
        inactive[:, g] = (space.canonicalize(P) == C).all(axis=1)
    return inactive


# --------------------------------------------------------------------------------------------- size


@pytest.mark.parametrize("name", list(SMALL_SPACES))
def test_small_space_sizes(name):
    space = small_space(name)
    assert space.size == SMALL_SPACES[name][1]


@pytest.mark.parametrize("name", ["nb201", "resnet"] + list(SMALL_SPACES))
def test_enumerate_is_the_whole_space(name):
    space = get_space(name)
    E = space.enumerate()
    assert E.shape == (space.size, space.n_genes)
    assert E.dtype == np.int64
    assert len(np.unique(E, axis=0)) == len(E), "enumerate() repeats an encoding"
    np.testing.assert_array_equal(space.canonicalize(E), E)  # only canonical encodings
    # every sample is one of them
    rows = {tuple(r) for r in E.tolist()}
    assert all(tuple(r) in rows for r in space.sample(200, seed=0).tolist())


def test_nb201_size():
    space = shipped_space("nb201")
    assert space.size == 15_625 == 5**6
    assert space.n_genes == 6
    assert len(space.enumerate()) == 15_625


@pytest.mark.parametrize("name", list(SMALL_SPACES))
def test_distinct_encodings_are_distinct_architectures(name):
    space = small_space(name)
    E = space.enumerate()
    specs = {yaml.safe_dump(space.decode_spec(x), sort_keys=True) for x in E}
    assert len(specs) == len(E)


def test_nb201_encodings_decode_to_distinct_genotypes():
    space = shipped_space("nb201")
    E = space.enumerate()[::7]
    cells = {yaml.safe_dump(space.decode_spec(x)["cells"], sort_keys=True) for x in E}
    assert len(cells) == len(E)


@pytest.mark.parametrize("name", ["mobile", "classic"])
def test_enumerate_refuses_huge_spaces(name):
    space = shipped_space(name)
    assert space.size > 10**15
    with pytest.raises(SpecError, match="sample instead"):
        space.enumerate()


def test_enumerate_limit():
    with pytest.raises(SpecError):
        shipped_space("nb201").enumerate(limit=1000)


def test_models_are_spaces_of_one():
    for name in ZOO_MODELS:
        m = zoo_model(name)
        assert m.size == 1 and m.is_model
        assert m.enumerate().shape == (1, m.n_genes)


# --------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("name", SPACE_IDS)
def test_sample_shapes_and_dtypes(name):
    space = get_space(name)
    X = space.sample(64, seed=1)
    assert X.shape == (64, space.n_genes)
    assert X.dtype == np.int64
    sizes = np.array([g.size for g in space.genes])
    assert (X >= 0).all() and (X < sizes).all()
    np.testing.assert_array_equal(space.sample(64, seed=1), X)  # reproducible
    assert space.sample(0, seed=1).shape == (0, space.n_genes)
    if space.size > 1000:
        assert len(np.unique(X, axis=0)) > 1
        assert not np.array_equal(space.sample(64, seed=2), X)


def test_sample_covers_every_option():
    space = shipped_space("mobile")
    X = space.sample(2000, seed=0)
    for g, gene in enumerate(space.genes):
        # genes that matter only for deeper stages are 0 when canonicalised away; every option of
        # every gene still shows up somewhere
        assert set(np.unique(X[:, g]).tolist()) == set(range(gene.size)), gene.name


def test_model_sample():
    m = zoo_model("alexnet")
    assert m.sample(3, seed=0).shape == (3, 0)


# --------------------------------------------------------------------------------------------- canonical


@pytest.mark.parametrize("name", SPACE_IDS)
def test_canonicalize_is_idempotent(name):
    space = get_space(name)
    rng = np.random.default_rng(0)
    sizes = np.array([g.size for g in space.genes], dtype=np.int64)
    raw = (rng.random((100, space.n_genes)) * sizes).astype(np.int64)
    C = space.canonicalize(raw)
    np.testing.assert_array_equal(space.canonicalize(C), C)
    S = space.sample(50, seed=3)
    np.testing.assert_array_equal(space.canonicalize(S), S)  # samples are canonical
    # canonicalisation only zeroes genes
    changed = C != raw
    assert (C[changed] == 0).all()


@pytest.mark.parametrize("name", SPACE_IDS)
def test_inactive_genes_do_not_matter(name):
    """Two encodings that differ only in inactive genes canonicalise equal and lower equal."""
    space = get_space(name)
    C = space.sample(30, seed=5)
    inactive = _inactive_mask(space, C)
    rng = np.random.default_rng(6)
    sizes = np.array([g.size for g in space.genes], dtype=np.int64)
    noise = (rng.random(C.shape) * sizes).astype(np.int64)
    X2 = np.where(inactive, noise, C)
    np.testing.assert_array_equal(space.canonicalize(X2), C)
    t1, t2 = lower(space, C), lower(space, X2)
    for b in range(len(C)):
        assert active_layers(t1, b) == active_layers(t2, b)
    if space.size > 1 and any(g.size > 1 for g in space.genes):
        # some genes of some candidates are active: perturbing one changes the encoding
        assert not inactive.all()


@pytest.mark.parametrize("name", ["mobile", "resnet", "classic", "small", "mb"])
def test_spaces_have_conditional_genes(name):
    """Depth and alternative choices make genes inactive for some candidates."""
    space = get_space(name)
    C = space.sample(100, seed=8)
    assert _inactive_mask(space, C)[:, [g.size > 1 for g in space.genes]].any()


@pytest.mark.parametrize("name", SPACE_IDS)
def test_encode_by_name(name):
    space = get_space(name)
    for x in space.sample(10, seed=4):
        choices = {g.name: g.options[x[i]] for i, g in enumerate(space.genes)}
        np.testing.assert_array_equal(space.encode(choices), x)
    np.testing.assert_array_equal(space.encode({}), np.zeros(space.n_genes, dtype=np.int64))


def test_encode_errors():
    space = shipped_space("nb201")
    with pytest.raises(SpecError, match="no gene"):
        space.encode({"nope": 1})
    with pytest.raises(SpecError, match="no option"):
        space.encode({space.genes[0].name: "conv_7x7"})


def test_check_encodings_errors():
    space = shipped_space("nb201")
    with pytest.raises(SpecError, match=r"shape \[B, 6\]"):
        space.canonicalize(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(SpecError, match="must be in 0..4"):
        lower(space, np.full((1, 6), 5))
    with pytest.raises(SpecError, match="must be in 0..4"):
        lower(space, np.full((1, 6), -1))
    with pytest.raises(SpecError, match="integers"):
        lower(space, np.zeros((1, 6), dtype=np.float64))



@pytest.mark.parametrize("B", [1, 63, 64, 200, 1000])
def test_check_encodings_finds_a_bad_gene_anywhere_in_a_large_batch(B):
    """The per-gene maximum is taken over wide rows of many encodings (``column_max``): a bad
    option in any row, the last ones past a multiple of the row count included, in any gene,
    negative or too large, in a C-contiguous batch or a strided one, is still caught."""
    space = shipped_space("nb201")
    rng = np.random.default_rng(B)
    X = rng.integers(0, 5, size=(B, 6))
    for i, g, v in [(B - 1, 5, 5), (0, 0, -1), (B // 2, 3, 7)]:
        bad = X.copy()
        bad[i, g] = v
        for arr in (bad, np.asfortranarray(bad)):
            with pytest.raises(SpecError, match=f"candidate {i} must be in 0..4"):
                space.check_encodings(arr)
    np.testing.assert_array_equal(space.check_encodings(X), X)


# --------------------------------------------------------------------------------------------- decode


@pytest.mark.parametrize("name", SPACE_IDS)
def test_decode_round_trip(name):
    """decode_spec(x) -> model -> its layers equal the space's table row for x, in order."""
    space = get_space(name)
    X = space.sample(12, seed=11)
    table = lower(space, X)
    for b, x in enumerate(X):
        model = load_space_dict(space.decode_spec(x), source=f"<{name} candidate {b}>")
        assert model.size == 1
        mt = lower(model, np.zeros((1, model.n_genes), dtype=np.int64))
        fields = ("in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "macs", "params", "weight_elems",
                  "workspace_elems", "n", "k", "m", "groups")
        assert active_layers(mt, 0, fields) == active_layers(table, b, fields), f"candidate {b}"


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_decode_yaml_round_trip(name, tmp_path):
    """decode_yaml writes a file that loads (through the safe YAML reader) as the same model."""
    space = shipped_space(name)
    X = space.sample(3, seed=12)
    table = lower(space, X)
    for b, x in enumerate(X):
        path = tmp_path / f"{name}_{b}.yaml"
        path.write_text(space.decode_yaml(x))
        model = load_space(path)
        assert model.is_model
        mt = lower(model, np.zeros((1, model.n_genes), dtype=np.int64))
        assert active_layers(mt, 0) == active_layers(table, b)
        assert space.decode(x).is_model


def test_decode_of_a_member_is_the_zoo_model():
    """MobileNetV2-1.0 at 224 is a member of the mobile space; its table is the zoo model's."""
    space = shipped_space("mobile")
    depths = {"s2": 2, "s3": 3, "s4": 4, "s5": 3, "s6": 3}
    choices = {"input.resolution": 224, "width_multiplier": 1.0}
    for g in space.genes:
        if g.name.endswith("stage.depth"):
            choices[g.name] = depths[_stage_of(space, g.name)]
        for suffix, value in ((".expand", 6), (".kernel", 3), (".se", 0)):
            if g.name.endswith(suffix):
                choices[g.name] = value
    x = space.encode(choices)
    ref = zoo_model("mobilenet_v2")
    fields = ("out_c", "out_h", "out_w", "macs", "params")
    assert active_layers(lower(space, x[None]), 0, fields) == \
        active_layers(lower(ref, np.zeros((1, 0), dtype=np.int64)), 0, fields)


def _stage_of(space, gene_name):
    """The stage name of a `layers[i].stage.depth` gene (from the space's spec)."""
    i = int(gene_name.split("[")[1].split("]")[0])
    return space.spec["layers"][i]["stage"]["name"]
