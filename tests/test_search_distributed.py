"""Distributed search on a real PostgreSQL server: 4 worker processes on one study, one of them
killed (SIGKILL) mid-run; the study still finishes, keeps every completed trial and never uses a
trial number twice.

Needs initdb/pg_ctl (under /usr/lib/postgresql/*/bin or on PATH) and psycopg2; .ci/postgres.sh
installs both. The server is a throw-away one (temporary folder, free loopback port, run as the
`postgres` user when the tests run as root).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from augur_nas.search._pgserver import TempPostgres, find_postgres

from conftest import ROOT

NB201 = str(ROOT / "spaces" / "nb201.yaml")

_bin, _why = find_postgres()
pytestmark = [pytest.mark.slow,  # PostgreSQL: `pytest -m "not slow"` leaves it out
              pytest.mark.skipif(_bin is None, reason=f"distributed search test needs PostgreSQL: {_why}")]


@pytest.fixture(scope="module")
def pg_url():
    server = TempPostgres()
    try:
        url = server.start()
    except RuntimeError as exc:
        pytest.skip(f"PostgreSQL could not be started here: {exc}")
    yield url
    server.stop()


def _study(url, name):
    import optuna

    from augur_nas.search import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=make_storage(url))


def test_four_workers_one_killed(pg_url, tmp_path):
    from optuna.trial import TrialState

    trials, name, out = 120, "dist-kill", tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "augur_nas.cli", "search", NB201, "--device", "tk1-gpu", "--storage", pg_url,
         "--study-name", name, "--workers", "4", "--trials", str(trials), "--seed", "0", "--no-progress",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines = []
    reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        # the worker pids, from the log line "workers: 0 (pid P), 1 (pid Q), ..."
        t0 = time.time()
        pids = None
        while pids is None and time.time() - t0 < 60:
            for line in list(err_lines):
                if "workers:" in line:
                    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", line)]
            assert proc.poll() is None, "".join(err_lines)
            time.sleep(0.05)
        assert pids and len(pids) == 4, "".join(err_lines)
        victim = pids[1]
        victim_tag = f"{socket.gethostname()}:{victim}"

        # kill worker 1 once it has completed trials of its own and the study is well under way
        before, victim_done = {}, set()
        study = _study(pg_url, name)  # created by the command before it started the workers
        while time.time() - t0 < 90:
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            mine = [t for t in done if t.user_attrs.get("augur_nas.worker") == victim_tag]
            if len(mine) >= 2 and len(done) >= 30:
                os.kill(victim, signal.SIGKILL)
                before = {t.number: tuple(t.values) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
                victim_done = {t.number for t in mine}
                break
            assert proc.poll() is None, "".join(err_lines)
            time.sleep(0.1)
        assert before, "worker 1 never completed trials: " + "".join(err_lines)
        assert len(before) < trials  # killed mid-run

        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    stderr = "".join(err_lines)
    assert proc.returncode == 0, stderr + stdout
    assert re.search(rf"worker 1 \(pid {victim}\) ended with signal 9", stderr), stderr

    study = _study(pg_url, name)
    all_trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in all_trials]
    assert len(numbers) == len(set(numbers))  # no trial number used twice
    assert sorted(numbers) == list(range(len(numbers)))
    complete = {t.number: tuple(t.values) for t in all_trials if t.state == TrialState.COMPLETE}
    assert len(complete) >= trials  # the study finished: the others did the killed worker's share
    for n, v in before.items():  # every trial completed before the kill is kept, unchanged
        assert complete.get(n) == v
    assert victim_done <= set(complete)  # the killed worker's own completed trials included
    states = {t.state for t in all_trials}
    assert TrialState.RUNNING not in states  # its in-flight trials were marked failed, not left running
    assert sum(t.state == TrialState.FAIL for t in all_trials) <= 16  # at most one ask batch in flight
    # outputs written from the whole study
    rows = list(csv.DictReader(open(out / "trials.csv")))
    # every trial with an architecture; a worker killed while its trial's genes were being set
    # leaves a failed trial with only some of them, which has no row
    n_genes = max(len(t.params) for t in all_trials)
    partial = [t for t in all_trials if len(t.params) < n_genes]
    assert all(t.state == TrialState.FAIL for t in partial) and len(partial) <= 1
    assert len(rows) == len(all_trials) - len(partial)
    assert (out / "pareto.csv").exists() and (out / "arch-000.yaml").exists()
    assert "front:" in stdout


def test_resume_same_study_name_on_postgres(pg_url, tmp_path):
    from augur_nas.search import search

    a = search(NB201, "tk1-gpu", trials=25, seed=0, storage=pg_url, study_name="resume", out=str(tmp_path / "a"))
    b = search(NB201, "tk1-gpu", trials=15, seed=1, storage=pg_url, study_name="resume", out=str(tmp_path / "b"))
    assert a.n_trials == 25 and b.n_trials == 40 and b.meta["trials_this_run"] == 15
    assert sorted(b.trials["number"].tolist()) == list(range(40))
