"""The hot path (segment tabulation) must equal the full layer table exactly."""

import glob

import numpy as np
import pytest

import augur_nas as an
from augur_nas.analysis import totals
from augur_nas.lowering import fast_totals
from augur_nas.oracle import _fast_costs, _table_costs
from augur_nas.profile import list_profiles, load_profile

SPACES = sorted(glob.glob("spaces/*.yaml")) + ["spaces/zoo/googlenet.yaml", "spaces/zoo/resnet50.yaml"]


@pytest.mark.parametrize("path", SPACES)
def test_fast_totals_equal_table_totals(path):
    space = an.load_space(path)
    X = space.sample(300, seed=11)
    ref = totals(an.lower(space, X))
    fast = fast_totals(space, X)
    for key, v in fast.items():
        np.testing.assert_array_equal(v, ref[key], err_msg=f"{path}: {key}")


@pytest.mark.parametrize("device", [p if isinstance(p, str) else p["name"] for p in list_profiles()])
def test_oracle_fast_path_equals_table_path(device):
    prof = load_profile(device)
    for path in ("spaces/mobile.yaml", "spaces/nb201.yaml", "spaces/classic.yaml"):
        space = an.load_space(path)
        X = space.sample(200, seed=5)
        a = _table_costs(space, X, prof, 2)
        b = _fast_costs(space, X, prof, 2)
        for i, what in ((0, "latency"), (2, "memory"), (3, "macs"), (4, "params")):
            np.testing.assert_allclose(b[i], a[i], rtol=1e-9, err_msg=f"{device} {path} {what}")
        assert set(a[1]) == set(b[1])
        for kind in a[1]:
            np.testing.assert_allclose(b[1][kind], a[1][kind], rtol=1e-9, atol=1e-9)


def test_shape_error_names_a_real_candidate():
    spec = {"input": {"channels": 3, "resolution": {"choice": [8, 64]}},
            "layers": [{"conv": {"out": 8, "kernel": 3, "stride": 2}},
                       {"conv": {"out": 8, "kernel": 5, "name": "deep"}}]}
    with pytest.raises(an.ShapeError) as e:
        an.load_space_dict(spec, source="t.yaml")
    assert "deep" in str(e.value) and "input.resolution=8" in str(e.value)
