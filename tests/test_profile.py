"""Tests of device profiles: the shipped Jetson profiles against the paper, the YAML format, every
way a profile can be bad, and the `augur-nas predict` / `augur-nas devices` commands."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

from augur_nas import ProfileError, load_model, lower
from augur_nas.costmodel import latency_ms, memory_mb
from augur_nas.profile import FORMAT_VERSION, PROFILE_DIR, Profile, list_profiles, load_profile, parse_profile, save_profile

from conftest import ROOT, ZOO

PAPER = ROOT / "augur_nas" / "data" / "paper_tables.yaml"
JETSONS = ["tk1-cpu", "tk1-gpu", "tx1-cpu", "tx1-gpu"]
NETS = ["alexnet", "vgg16", "googlenet", "resnet50"]


@pytest.fixture(scope="module")
def paper():
    with open(PAPER, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def tables():
    out = {}
    for net in NETS:
        m = load_model(ZOO / f"{net}.yaml")
        out[net] = lower(m, np.zeros((1, m.n_genes), dtype=np.int64))
    return out


# --------------------------------------------------------------------------------------------- shipped


def test_shipped_profiles_are_found_and_honest():
    assert [p for p in list_profiles() if p in JETSONS] == JETSONS  # (x86-2core-ort is measured: test_profiling.py)
    assert (ROOT / "device_profiles").resolve() == PROFILE_DIR  # the top-level folder is the package's
    for name in JETSONS:
        p = load_profile(name)
        assert p.name == name and p.format_version == FORMAT_VERSION
        assert "not measured by us" in p.provenance["method"]
        assert p.runtime == ("caffe-cublas" if name.endswith("gpu") else "caffe-openblas")
        assert p.hardware["unified_memory"] is True
        assert p.memory.weight_copies == (2 if name.endswith("gpu") else 1)
        assert load_profile(PROFILE_DIR / f"{name}.yaml").to_dict() == p.to_dict()


@pytest.mark.parametrize("device", JETSONS)
def test_shipped_profiles_predict_the_published_forward_times(device, paper, tables):
    p = load_profile(device)
    for net in NETS:
        published = paper["timing_ms"][net][device]["forward"][0]
        predicted = float(latency_ms(tables[net], p)[0][0])
        assert abs(predicted / published - 1) <= 0.10, (device, net, predicted, published)
        # the profile's own fit record says the same
        assert p.fit["forward_ms"][net]["predicted"] == pytest.approx(predicted, abs=0.06)


@pytest.mark.parametrize("device", JETSONS)
def test_shipped_profiles_predict_the_published_memory(device, paper, tables):
    p = load_profile(device)
    for net, published in paper["memory_mb"]["measured"][device].items():
        predicted = float(memory_mb(tables[net], p)[0])
        assert abs(predicted / published - 1) <= 0.10, (device, net, predicted, published)


# --------------------------------------------------------------------------------------------- format


def test_round_trip(tmp_path):
    p = load_profile("tx1-gpu")
    path = tmp_path / "copy.yaml"
    save_profile(p, path, header="a copy")
    text = path.read_text()
    assert text.startswith("# a copy\n")
    q = load_profile(str(path))
    assert q.to_dict() == p.to_dict()
    assert q == p and q.source == str(path)
    assert [f.name for f in tmp_path.iterdir()] == ["copy.yaml"]  # no temporary file left behind
    # overwriting keeps the file's permissions and replaces it whole
    os.chmod(path, 0o640)
    p.description = "changed"
    save_profile(p, path)
    assert (os.stat(path).st_mode & 0o777) == 0o640
    assert load_profile(path).description == "changed"


def test_save_refuses_what_it_could_not_read_back(tmp_path):
    p = load_profile("tk1-cpu")
    p.hardware = dict(p.hardware, clock_ghz=float("nan"))
    with pytest.raises(ProfileError, match="NaN"):
        save_profile(p, tmp_path / "bad.yaml")
    assert not list(tmp_path.iterdir())


def _good_dict():
    return load_profile("tk1-gpu").to_dict()


def _write(tmp_path, d_or_text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(d_or_text if isinstance(d_or_text, str) else yaml.safe_dump(d_or_text, sort_keys=False))
    return str(path)


def _expect(path, *fragments):
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    msg = str(e.value)
    assert "\n" not in msg  # one paragraph
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def test_unknown_device_lists_the_known_ones():
    msg = _expect("tk2-gpu", "unknown device `tk2-gpu`", "tk1-cpu, tk1-gpu, tx1-cpu, tx1-gpu")
    assert "path" in msg
    _expect("../augur_nas/device_profiles/tk1-gpu", "no such profile file")
    _expect("missing.yaml", "no such profile file: missing.yaml")


def test_corrupt_and_truncated_yaml(tmp_path):
    text = (PROFILE_DIR / "tk1-gpu.yaml").read_text()
    p = _write(tmp_path, text[: len(text) // 2].rsplit("\n", 3)[0] + "\n  coef: [[0.1, 2", "cut.yaml")
    _expect(p, "cut.yaml", "not valid YAML", "line", "corrupt or truncated")
    # truncated at a line boundary: valid YAML, but keys are missing
    p = _write(tmp_path, "\n".join(text.splitlines()[:12]) + "\n", "short.yaml")
    _expect(p, "short.yaml", "lacks the key", "latency")
    _expect(_write(tmp_path, "", "empty.yaml"), "empty.yaml", "is empty")
    _expect(_write(tmp_path, "- just\n- a list\n", "list.yaml"), "list.yaml", "mapping")
    bin_path = tmp_path / "bin.yaml"
    bin_path.write_bytes(b"\xff\xfe\x00garbage")
    _expect(str(bin_path), "bin.yaml", "not UTF-8")


def test_never_code(tmp_path):
    d = yaml.safe_dump(_good_dict(), sort_keys=False)
    d = d.replace("name: tk1-gpu", "name: !!python/object/apply:os.system ['echo pwned']")
    _expect(_write(tmp_path, d, "evil.yaml"), "evil.yaml", "not valid YAML", "python tags are refused")


def test_newer_format_version(tmp_path):
    d = _good_dict()
    d["format_version"] = FORMAT_VERSION + 1
    _expect(_write(tmp_path, d), "p.yaml", f"format_version {FORMAT_VERSION + 1}", "upgrade augur-nas", "format_version)")
    d["format_version"] = "one"
    _expect(_write(tmp_path, d), "positive whole number")


@pytest.mark.parametrize("edit,key,fragment", [
    (lambda d: d["latency"]["ops"]["default"].__setitem__("ms_per_mb", -0.5), "latency.ops.default.ms_per_mb", ">= 0"),
    (lambda d: d["latency"]["gemm"]["conv"]["coef"][1][0].__setitem__(1, float("nan")), "latency.gemm.conv.coef[1][0][1]", "NaN"),
    (lambda d: d["memory"].__setitem__("framework_overhead_mb", float("inf")), "memory.framework_overhead_mb", "infinite"),
    (lambda d: d["hardware"].__setitem__("peak_gflops", -1), "hardware.peak_gflops", ">= 0"),
    (lambda d: d["latency"].__setitem__("layer_overhead_ms", "fast"), "latency.layer_overhead_ms", "must be a number"),
    (lambda d: d["hardware"].__setitem__("cores", 0), "hardware.cores", ">= 1"),
    (lambda d: d["memory"].__setitem__("weight_copies", 1.5), "memory.weight_copies", "whole number"),
])
def test_bad_numbers(tmp_path, edit, key, fragment):
    d = _good_dict()
    edit(d)
    _expect(_write(tmp_path, d), "p.yaml", key, fragment)


@pytest.mark.parametrize("drop,key", [
    (("latency",), "latency"),
    (("name",), "name"),
    (("hardware", "ram_mb"), "hardware.ram_mb"),
    (("provenance", "method"), "provenance.method"),
    (("latency", "gemm", "conv", "coef"), "latency.gemm.conv.coef"),
    (("memory", "framework_overhead_mb"), "memory.framework_overhead_mb"),
])
def test_missing_keys(tmp_path, drop, key):
    d = _good_dict()
    node = d
    for k in drop[:-1]:
        node = node[k]
    del node[drop[-1]]
    _expect(_write(tmp_path, d), "p.yaml", "lacks the key", key)


def test_unknown_keys_and_dangling_references(tmp_path):
    d = _good_dict()
    d["hardware"]["clock_mhz"] = 852
    _expect(_write(tmp_path, d), "unknown key `clock_mhz`", "hardware.clock_mhz")
    d = _good_dict()
    d["latency"]["kinds"]["dwconv"] = {"gemm": "depthwise"}
    _expect(_write(tmp_path, d), "`depthwise`", "latency.kinds.dwconv")
    d = _good_dict()
    d["memory"]["workspace"] = "lazy"
    _expect(_write(tmp_path, d), "memory.workspace", "sum, max, none")


def test_profile_object_passes_through():
    p = load_profile("tk1-cpu")
    assert load_profile(p) is p
    assert isinstance(parse_profile((PROFILE_DIR / "tk1-cpu.yaml").read_text()), Profile)


# --------------------------------------------------------------------------------------------- CLI


def test_cli_predict_and_devices(paper, tmp_path, run_cli):
    r = run_cli("predict", "spaces/zoo/alexnet.yaml", "--device", "tk1-gpu")
    assert r.returncode == 0, r.stderr
    assert "conv1" in r.stdout and "latency:" in r.stdout and "MB" in r.stdout
    r = run_cli("predict", "spaces/zoo/alexnet.yaml", "--device", "tk1-gpu", "--batch", "2", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert {"latency_ms", "memory_mb", "macs", "params", "layers"} <= set(res)
    assert res["batch"] == 2 and res["params"] == 60_965_224
    assert sum(layer["ms"] for layer in res["layers"]) == pytest.approx(res["latency_ms"])
    one = load_profile("tk1-gpu")
    assert res["latency_ms"] > paper["timing_ms"]["alexnet"]["tk1-gpu"]["forward"][0]  # two images take longer
    assert one.name == res["device"]
    r = run_cli("devices", "--json")
    assert r.returncode == 0, r.stderr
    devs = [d for d in json.loads(r.stdout) if d["name"] in JETSONS]
    assert [d["name"] for d in devs] == JETSONS
    assert all("not measured by us" in d["provenance"]["method"] for d in devs)
    assert all(d["fit"]["max_abs_error_pct"]["forward"] <= 10 for d in devs)


def test_cli_bad_device_exits_2(tmp_path, run_cli):
    r = run_cli("predict", "spaces/zoo/alexnet.yaml", "--device", "bad")
    assert r.returncode == 2
    assert "unknown device `bad`" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    d = _good_dict()
    d["latency"]["ops"]["default"]["ms_per_mb"] = -1
    path = _write(tmp_path, d, "neg.yaml")
    r = run_cli("predict", "spaces/zoo/alexnet.yaml", "--device", path)
    assert r.returncode == 2 and "neg.yaml" in r.stderr and "latency.ops.default.ms_per_mb" in r.stderr
    assert "Traceback" not in r.stderr
