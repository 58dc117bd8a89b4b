"""Studies carry metric names and limits for optuna-dashboard; --change-limits resumes with new limits."""

import os

import pytest

from augur_nas import ConstraintError
from augur_nas.search import search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB201 = os.path.join(ROOT, "spaces", "nb201.yaml")


def test_metric_names_limits_and_change(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path}/s.db"
    search(NB201, "tk1-gpu", latency_ms=100, trials=40, seed=0, storage=url, study_name="s", sampler="random")
    study = optuna.load_study(study_name="s", storage=url)
    assert study.metric_names == ["latency_ms", "macs"]
    assert study.user_attrs["limits"] == {"latency_ms": "100 ms"}
    assert "value / limit - 1" in study.user_attrs["constraints"]
    with pytest.raises(ConstraintError, match="--change-limits"):
        search(NB201, "tk1-gpu", latency_ms=50, trials=10, seed=1, storage=url, study_name="s", sampler="random")
    said = []
    res = search(NB201, "tk1-gpu", latency_ms=50, trials=10, seed=1, storage=url, study_name="s", sampler="random",
                 change_limits=True, log=said.append)
    assert any("limits changed" in m for m in said)
    assert all(r["latency_ms"] <= 50 for r in res.front)
    study = optuna.load_study(study_name="s", storage=url)
    assert study.user_attrs["limits"] == {"latency_ms": "50 ms"}
