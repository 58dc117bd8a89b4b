"""Issue 17: the first hour of a new user, at the CLI (each case exit code and key words; no traceback)."""

import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT

S = os.path.join(ROOT, "spaces")
NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "augur_nas.cli", *args], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_version():
    from augur_nas import __version__

    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"augur-nas {__version__}"


def test_option_of_another_command_is_reported_by_the_command():
    r = cli("predict", f"{S}/zoo/alexnet.yaml", "--device", "tk1-gpu", "--threads", "2")
    assert r.returncode == 2
    assert "usage: augur-nas predict" in r.stderr and "--threads is an option of measure" in r.stderr


def test_repeated_device_is_refused():
    r = cli("predict", f"{S}/zoo/alexnet.yaml", "--device", "tk1-gpu", "--device", "tx1-gpu")
    assert r.returncode == 2 and "--device was given twice (tk1-gpu and tx1-gpu)" in r.stderr


@pytest.mark.slow
def test_decode_to_a_model_file_both_ways(tmp_path):
    r = cli("space", f"{S}/mobile.yaml", "--decode", "0")
    assert r.returncode == 0 and r.stdout.startswith("# mobile sample 0")
    (tmp_path / "c.yaml").write_text(r.stdout)
    p = cli("predict", str(tmp_path / "c.yaml"), "--device", "tk1-gpu")
    assert p.returncode == 0 and "latency:" in p.stdout
    r = cli("space", f"{S}/mobile.yaml", "--decode", "1", "-o", str(tmp_path / "d.yaml"))
    assert r.returncode == 0 and "s3.depth" in r.stdout and "written to" in r.stdout
    assert cli("predict", str(tmp_path / "d.yaml"), "--device", "tk1-gpu").returncode == 0
    r = cli("space", f"{S}/mobile.yaml", "--decode", "9")
    assert r.returncode == 2 and "there are 5 samples" in r.stderr


def test_encode_and_nb201_strings():
    r = cli("space", f"{S}/nb201.yaml", "--encode", NB201)
    assert r.returncode == 0 and r.stdout.strip() == "encoding: 3 3 4 1 3 1"
    r = cli("predict", NB201, "--device", "tk1-gpu")
    assert r.returncode == 0 and "input shape 1x3x32x32" in r.stdout
    r = cli("space", f"{S}/mobile.yaml", "--encode", "s3.depth=3,s3[1].mbconv.kernel=7")
    assert r.returncode == 0 and r.stdout.startswith("encoding: ")


def test_input_shape_flag_and_header():
    r = cli("analyze", f"{S}/zoo/resnet18.yaml", "--input-shape", "3x32x32")
    assert r.returncode == 0 and "input shape 1x3x32x32 (from the flag)" in r.stdout
    r = cli("predict", f"{S}/zoo/alexnet.yaml", "--device", "tk1-gpu")
    assert "input shape 1x3x227x227 (from the file)" in r.stdout or "(from the file)" in r.stdout
    r = cli("analyze", f"{S}/zoo/resnet18.yaml", "--input-shape", "8x3x32x32")
    assert r.returncode == 2 and "--batch" in r.stderr


def test_memory_above_ram_is_flagged():
    r = cli("predict", f"{S}/zoo/vgg16.yaml", "--device", "tk1-gpu", "--batch", "16")
    assert r.returncode == 0 and "more than tk1-gpu's 2,048 MB" in r.stdout
    r = cli("predict", f"{S}/zoo/vgg16.yaml", "--device", "tk1-gpu")
    assert "warning" not in r.stdout


@pytest.mark.parametrize("kind", ["proc", "file"])
def test_bad_out_fails_fast(tmp_path, kind):
    bad = "/proc/nope" if kind == "proc" else str(tmp_path / "afile")
    if kind == "file":
        (tmp_path / "afile").write_text("x")
    t0 = time.monotonic()
    r = cli("search", f"{S}/mobile.yaml", "--device", "tk1-gpu", "--latency", "50ms", "--out", bad)
    assert r.returncode == 2 and bad in r.stderr
    assert time.monotonic() - t0 < 10  # no search ran (the bound covers a loaded machine's interpreter start)


@pytest.mark.slow
def test_search_summary_wording(tmp_path):
    r = cli("search", f"{S}/nb201.yaml", "--device", "tk1-gpu", "--latency", "100ms", "--trials", "60", "--seed", "0",
            "--sampler", "random", "--out", str(tmp_path / "o"))
    assert r.returncode == 0
    assert "study 'nb201-tk1-gpu' in memory" in r.stdout and "in in memory" not in r.stdout
    assert "not the exact front of the space" in r.stdout


@pytest.mark.slow
def test_validate_samples_zero_without_space():
    r = cli("validate", "--device", "x86-2core-ort", "--samples", "0")
    assert r.returncode == 2 and "validate needs networks" in r.stderr
    r = cli("validate", "--device", "x86-2core-ort", "--samples", "0", "--space", f"{S}/nb201.yaml")
    assert r.returncode == 2 and "--samples 0 samples nothing" in r.stderr


@pytest.mark.slow
def test_validate_plot_checked_before_work(tmp_path):
    r = cli("validate", "--device", "x86-2core-ort", f"{S}/zoo/nin.yaml", "--plot", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr


@pytest.mark.slow
def test_devices_measured_profile_columns():
    r = cli("devices")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("x86-2core-ort"))
    assert "%*" in line and "n/a" in line
