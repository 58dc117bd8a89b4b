"""Predictions above a profile's ram_mb are flagged; memory grows with the batch by batch_activation_coef."""

import numpy as np
import pytest

from augur_nas import Oracle, load_model, load_profile
from augur_nas._ram import over_ram, ram_mb, ram_warning
from augur_nas.costmodel._memory import MemoryModel
import os

from conftest import ROOT


def test_over_ram_flags_vgg_at_batch_16_on_tk1_gpu():
    prof = load_profile("tk1-gpu")
    assert ram_mb(prof) == 2048
    vgg = load_model(os.path.join(ROOT, "spaces", "zoo", "vgg16.yaml"))
    x = np.zeros((1, 0), dtype=np.int64)
    m1 = Oracle(vgg, prof).evaluate(x, batch=1)["memory_mb"]
    m16 = Oracle(vgg, prof).evaluate(x, batch=16)["memory_mb"]
    assert not over_ram(m1, prof).any() and ram_warning(m1, prof) is None
    assert over_ram(m16, prof).all()
    w = ram_warning(m16, prof, "vgg16")
    assert "2,048 MB" in w and "vgg16" in w
    many = ram_warning(np.array([100.0, 3000.0, 5000.0]), prof)
    assert "2 of 3 candidates" in many and "5,000 MB" in many


def test_no_ram_no_flag():
    class P:
        hardware = {}
    assert not over_ram([1e9], P()).any() and ram_warning([1e9], P()) is None


def test_batch_activation_coef():
    old = MemoryModel(framework_overhead_mb=10, activations="caffe", activation_coef=0.5, workspace="none")
    new = MemoryModel(framework_overhead_mb=10, activations="caffe", activation_coef=0.5, workspace="none",
                      batch_activation_coef=2.0)
    tot = {"weights_bytes": np.array([0.0]), "activation_bytes": np.array([2.0**20]), "workspace_bytes": np.array([0.0])}
    assert old.predict(None, tot, 4)[0] == pytest.approx(10 + 0.5 * 4)
    assert new.predict(None, tot, 1)[0] == pytest.approx(10 + 0.5)
    assert new.predict(None, tot, 4)[0] == pytest.approx(10 + 0.5 + 2.0 * 3)
    assert MemoryModel.from_dict(new.to_dict()) == new
    assert "batch_activation_coef" not in old.to_dict()


def test_fast_path_agrees_with_the_table_path_at_batch_8():
    from augur_nas.lowering import lower
    from augur_nas.costmodel._latency import memory_mb

    prof = load_profile("x86-2core-ort")
    space = load_model(os.path.join(ROOT, "spaces", "zoo", "resnet18.yaml"))
    x = np.zeros((1, 0), dtype=np.int64)
    fast = Oracle(space, prof).evaluate(x, batch=8)["memory_mb"]
    slow = memory_mb(lower(space, x), prof, 8)
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
