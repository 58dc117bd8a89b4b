"""Studies carry metric names and limits for optuna-dashboard; --change-limits resumes with new limits."""

import os

import pytest

from augur_nas import ConstraintError
from augur_nas.search import search

from conftest import ROOT

NB201 = os.path.join(ROOT, "spaces", "nb201.yaml")


@pytest.mark.slow
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


@pytest.mark.slow
def test_html_plot_ticks_and_objective_once(tmp_path):
    import shutil
    import subprocess

    search(NB201, "tk1-gpu", latency_ms=100, trials=60, seed=0, sampler="random", out=str(tmp_path / "o"))
    html = (tmp_path / "o" / "pareto.html").read_text()
    script = html[html.index("<script>") + 8: html.index("</script>")]
    assert "niceTicks(x0, x1)" in script and "fmtTick" in script  # round tick values, not range/5 steps
    assert 'OBJ === "objective" ? ["objective"] : []' in script  # macs as objective is listed once
    node = shutil.which("node")
    if node:
        js = tmp_path / "p.js"
        js.write_text(script.split("\n// axis ticks")[0].split("const D = ")[0] + script[script.index("function niceTicks"):
                      script.index("function el(")] + '\nconsole.log(niceTicks(41.3, 52.7).join(" "), fmtTick("macs", 25911000));')
        out = subprocess.run([node, str(js)], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "42 44 46 48 50 52 25.91M", out.stderr
