"""A changed machine: fingerprints, `check`, the calibration set and `calibrate` (local, and from
measurements taken elsewhere), with every bad input of issue 11. Timings use tiny budgets; the
tests never assume that a committed profile matches the machine they run on."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from augur_nas import ProfileError
from augur_nas.fingerprint import cache_sizes, compare, cpu_facts, for_profile, machine_fingerprint
from augur_nas.profile import FORMAT_VERSION, load_profile, parse_profile, save_profile

from conftest import ROOT

BASE = "x86-2core-ort"

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile hypervisor

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 1
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile hypervisor
"""


def _one_paragraph(stderr: str, *needles):
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    for n in needles:
        assert n in stderr, (n, stderr)


# --------------------------------------------------------------------------------------------- fingerprint


def test_cpu_facts_and_caches_from_proc_and_sysfs(tmp_path):
    for idx, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                                               (3, "Unified", "105M")]):
        d = tmp_path / "cpu0" / "cache" / f"index{idx}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert cache_sizes(str(tmp_path)) == {"L1d": 48, "L1i": 32, "L2": 2048, "L3": 105 * 1024}
    f = cpu_facts(CPUINFO, sysfs=str(tmp_path))
    assert f["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+" and f["cpu_vendor"] == "GenuineIntel"
    assert f["isa"] == sorted(["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile"])
    assert f["physical_cores"] == 2 and f["hypervisor"] is True and f["cache_kib"]["L2"] == 2048


def test_compare_names_each_difference_with_its_severity():
    a = {"cpu_model": "AMD EPYC 7B13", "isa": ["avx", "avx2", "fma"], "threads": 1, "cache_kib": {"L2": 512},
         "runtime_version": "1.32.0", "os": "Linux 6.1"}
    b = dict(a, isa=["avx", "avx2", "fma", "avx512f"], cache_kib={"L2": 2048}, os="Linux 6.18")
    d = {x["key"]: x for x in compare(a, b)}
    assert set(d) == {"isa", "cache_kib"}  # the kernel release is not a difference
    assert d["isa"]["severity"] == "major" and d["isa"]["only_machine"] == ["avx512f"]
    assert d["cache_kib"]["severity"] == "minor"
    d = {x["key"]: x for x in compare(a, dict(a, threads=2, cpu_model="Intel Xeon"))}
    assert d["threads"]["severity"] == d["cpu_model"]["severity"] == "major"
    assert compare(a, dict(a)) == []


def test_format_version_1_profiles_migrate_to_a_fingerprint(tmp_path):
    p = load_profile(BASE)  # a format_version 1 file
    assert p.format_version == FORMAT_VERSION == 2
    fp = p.fingerprint
    assert fp["origin"] == "migrated" and fp["cpu_model"] == "AMD EPYC" and fp["isa"] == ["avx", "avx2", "fma"]
    assert fp["threads"] == 1 and fp["backend"] == "onnxruntime" and fp["runtime_version"] == "1.32.0"
    assert p.threads == 1
    # written back as version 2 with the fingerprint, read back equal
    save_profile(p, tmp_path / "p.yaml")
    text = (tmp_path / "p.yaml").read_text()
    assert "format_version: 2" in text and "fingerprint:" in text
    assert load_profile(tmp_path / "p.yaml").fingerprint == fp
    # reconstructed profiles (no runtime settings) get none
    assert load_profile("tk1-gpu").fingerprint is None
    # a migrated fingerprint is compared on the ISA flags version 1 recorded only
    mine = dict(machine_fingerprint(), isa=["avx", "avx2", "fma", "f16c", "sse4_2"], cpu_model="AMD EPYC")
    assert not [x for x in compare(fp, for_profile(mine, fp)) if x["key"] == "isa"]


def test_bad_fingerprints_are_refused_naming_the_key(tmp_path):
    text = (ROOT / "device_profiles" / f"{BASE}.yaml").read_text().replace("format_version: 1", "format_version: 2")
    for bad, key in (("fingerprint: {cpu_model: x, cores: 2}", "cores"), ("fingerprint: {threads: 0}", "threads"),
                     ("fingerprint: {origin: guessed}", "origin"), ("fingerprint: {isa: avx2}", "isa")):
        with pytest.raises(ProfileError, match=key):
            parse_profile(text + bad + "\n", "p.yaml")


# --------------------------------------------------------------------------------------------- check


def _this_machine_profile(tmp_path, **change):
    from augur_nas.measure._settings import RuntimeSettings

    p = load_profile(BASE)
    p.fingerprint = dict(machine_fingerprint(RuntimeSettings.from_dict(p.runtime_settings)), **change)
    path = tmp_path / "here.yaml"
    save_profile(p, path)
    return path


def test_check_api_matches_this_machine_and_names_differences(tmp_path):
    import augur_nas as an

    here = _this_machine_profile(tmp_path)
    r = an.check(here, timing=False)
    assert r.matches and not [d for d in r.differences if d["severity"] == "major"]
    other = _this_machine_profile(tmp_path, cpu_model="AMD EPYC 9999", isa=["avx", "avx2"])
    r = an.check(other, timing=False)
    assert not r.matches and {d["key"] for d in r.differences} >= {"cpu_model"}
    assert "AMD EPYC 9999" in r.warning("validate") and "augur-nas calibrate" in r.warning("validate")
    with pytest.raises(ProfileError, match="no fingerprint"):
        an.check("tk1-gpu")


@pytest.mark.slow  # times the speed anchors: `pytest -m "not slow"` leaves it out
def test_cli_check_json_times_the_speed_anchors(run_cli):
    r = run_cli("check", "--device", BASE, "--json", "--time-s", "1")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert isinstance(d["matches"], bool) and isinstance(d["differences"], list)
    assert isinstance(d["speed_factor"], float) and 0.01 < d["speed_factor"] < 100
    assert len(d["anchors"]) == 5 and d["threads"] == 1
    r = run_cli("check", "--device", "tk1-cpu")
    assert r.returncode == 2
    _one_paragraph(r.stderr, "no fingerprint", "tk1-cpu")


# --------------------------------------------------------------------------------------------- the model


def _cal_tables():
    from augur_nas.measure._calibrate import _tables
    from augur_nas.measure._calibset import calibration_set

    nets = calibration_set()
    return nets, _tables([(n.model, 1) for n in nets])


def test_family_contributions_add_up_to_the_layer_sum():
    from augur_nas.costmodel import latency_ms
    from augur_nas.measure._calibrate import contributions, families, scaled_latency

    p = load_profile(BASE)
    nets, tables = _cal_tables()
    assert len(nets) == 24 and len({n.name for n in nets}) == 24
    T = contributions(p.latency, tables)
    total = np.array([latency_ms(t, p.latency)[0][0] for t, _ in tables])
    np.testing.assert_allclose(T.sum(axis=1), total, rtol=1e-9)
    fams = families(p.latency)
    assert {"conv", "conv_1x1", "dwconv", "fc", "pool", "memory", "layout", "call"} <= set(fams)
    assert (T > 0).sum(axis=0).min() >= 5  # every family is exercised by several networks
    j = fams.index("fc")
    assert T[[n.name for n in nets].index("cal_fc_large"), j] > 0.9 * total[[n.name for n in nets].index("cal_fc_large")]
    # factors scale exactly their family
    s = {f: 1.0 + 0.1 * i for i, f in enumerate(fams)}
    scaled = np.array([latency_ms(t, scaled_latency(p.latency, s))[0][0] for t, _ in tables])
    np.testing.assert_allclose(scaled, T @ np.array([s[f] for f in fams]), rtol=1e-9)


def test_fit_recovers_known_factors_and_predicts_left_out_networks():
    from augur_nas.measure._calibrate import contributions, families, fit_factors

    p = load_profile(BASE)
    _, tables = _cal_tables()
    T = contributions(p.latency, tables)
    fams = families(p.latency)
    true = {f: 0.3 for f in fams}
    true.update(fc=1.1, dwconv=0.5)  # another machine: large fc layers relatively slower, depthwise too
    y = T @ np.array([true[f] for f in fams])
    fit = fit_factors(T, y, fams)
    assert fit.scales["fc"] == pytest.approx(1.1, rel=0.05) and fit.scales["dwconv"] == pytest.approx(0.5, rel=0.05)
    loo = np.abs(fit.loo_pred / y - 1)
    # cal_lrn is most of the memory family's evidence (its LRN layers): left out, it is the worst
    assert np.median(loo) < 0.01 and np.max(loo) < 0.08
    # one global factor would miss the fc-heavy networks by far
    assert np.max(np.abs(T.sum(axis=1) * fit.global_scale / y - 1)) > 0.3


def test_call_scales_exactly_the_per_call_terms():
    """``call`` multiplies every per-call cost (a GEMM model's constant term, an op's or a
    conversion's ``overhead_ms``, the per-layer overheads) and nothing else."""
    from augur_nas.measure._calibrate import scaled_latency

    p = load_profile(BASE)
    d, z = p.latency.to_dict(), scaled_latency(p.latency, {"call": 0.0}).to_dict()
    for name, g in d["gemm"].items():
        c, cz = np.asarray(g["coef"]), np.asarray(z["gemm"][name]["coef"])
        one = g["features"].index("1")
        assert c[..., one].max() > 0 or name == "dwconv"
        assert not cz[..., one].any()
        np.testing.assert_array_equal(np.delete(cz, one, axis=-1), np.delete(c, one, axis=-1))
    for kind, e in d["ops"]["kinds"].items():
        assert z["ops"]["kinds"][kind] == {"ms_per_mb": e["ms_per_mb"], "overhead_ms": 0.0}
    assert z["layout"]["reorder"]["overhead_ms"] == 0 < z["layout"]["reorder"]["ms_per_mb"]


def test_profiles_corrected_before_call_existed_are_undone_exactly(tmp_path):
    """A profile whose ``calibration.families`` has no ``call`` (per-call terms then followed their
    family, the overheads had a family ``overhead``) is still undone exactly by ``uncorrected``."""
    from augur_nas.costmodel import latency_ms
    from augur_nas.measure._calibrate import scaled_latency, uncorrected

    base = load_profile(BASE)
    old_style = {"conv": 0.3, "conv_1x1": 0.4, "conv_narrow": 0.5, "dwconv": 0.6, "fc": 1.1, "pool": 0.7,
                 "memory": 0.8, "layout": 0.9, "overhead": 0.2}
    d = base.latency.to_dict()
    want = {n: np.asarray(g["coef"]) * old_style[n] for n, g in d["gemm"].items()}
    got = scaled_latency(base.latency, old_style).to_dict()
    for n, c in want.items():
        np.testing.assert_allclose(got["gemm"][n]["coef"], c, rtol=1e-12)  # the constant term too
    corrected = copy.copy(base)
    corrected.latency, corrected.calibration = scaled_latency(base.latency, old_style), {"families": old_style}
    _, tables = _cal_tables()
    new_style = {**{f: v for f, v in old_style.items() if f != "overhead"}, "call": 0.15}
    for scales in (old_style, new_style):
        corrected.latency, corrected.calibration = scaled_latency(base.latency, scales), {"families": scales}
        back = uncorrected(corrected)
        for t, _ in tables[:6]:
            assert latency_ms(t, back.latency)[0][0] == pytest.approx(latency_ms(t, base.latency)[0][0], rel=1e-9)


def test_fit_recovers_per_call_costs_that_moved_apart_from_the_work():
    """Another processor whose per-call costs shrank far more than its multiply-adds (the AVX2
    EPYC -> AVX-512 Xeon case): the fit finds the per-call factor, so tiny networks are priced
    right; a factor shared by each family's per-call and work parts could not."""
    from augur_nas.measure._calibrate import CALL, _tables, contributions, families, fit_factors

    p = load_profile(BASE)
    _, tables = _cal_tables()
    T = contributions(p.latency, tables)
    fams = families(p.latency)
    true = {f: 0.3 for f in fams}
    true[CALL] = 0.06
    y = T @ np.array([true[f] for f in fams])
    fit = fit_factors(T, y, fams)
    # the log prior holds it towards the common 0.3 (a 5x move of a family with a few % of each
    # network costs lam * share^2 * log(5)^2), the data pull it far below: clearly apart from the work
    assert fit.scales[CALL] < 0.15
    loo = np.abs(fit.loo_pred / y - 1)
    assert np.median(loo) < 0.01 and np.max(loo) < 0.08
    # a tiny NB201 network no fit saw: right with the per-call factor, far off with the work's factor
    from augur_nas.models import load_space

    space = load_space(ROOT / "spaces" / "nb201.yaml")
    tiny = contributions(p.latency, _tables([(space.decode(x), 1) for x in space.sample(3, seed=0)]))
    truth = tiny @ np.array([true[f] for f in fams])
    np.testing.assert_allclose(tiny @ np.array([fit.scales[f] for f in fams]), truth, rtol=0.03)
    assert np.min(tiny.sum(axis=1) * 0.3 / truth - 1) > 0.1


def test_the_ridge_prior_is_on_log_ratios():
    """One family, timings ``k`` times its base price times the common ratio ``s``: the fit's log
    ratio to ``s`` is the data's ``log k`` shrunk by ``N / (N + lam)`` (``lam`` pseudo-networks of
    full share), whichever way the machine moved: twice as fast is as likely as twice as slow, and
    a family cannot slide to nothing at the price of a prior on the factor itself."""
    from augur_nas.measure._calibrate import _solve

    T = np.linspace(1.0, 3.0, 12)[:, None]
    s, lam = 0.3, 4.0
    for k in (4.0, 0.25, 1.7):
        c = _solve(T, T[:, 0] * s * k, lam, s)[0]
        assert np.log(c / s) == pytest.approx(np.log(k) * len(T) / (len(T) + lam), rel=1e-6)
    up, down = _solve(T, T[:, 0] * s * 4, lam, s)[0], _solve(T, T[:, 0] * s / 4, lam, s)[0]
    assert up * down == pytest.approx(s * s, rel=1e-6)


def test_profile_correction_is_applied_only_when_clearly_better():
    """``augur-nas profile``'s correction replaces the layer sum only when the per-network gain
    (leave-one-out against the layer sum, squared log errors) is larger than its spread: the Xeon
    build's case, a 1% lower mean with t = 0.05, keeps the layer sum."""
    from augur_nas.measure._calibrate import MIN_T, clearly_better

    rng = np.random.default_rng(0)
    y = rng.uniform(0.5, 20.0, 24)
    off = np.exp(rng.normal(0.0, 0.1, 24))
    base = y * off
    consistent = y * off ** 0.3  # every network closer: applied
    d = clearly_better(base, consistent, y)
    assert d["applied"] and d["paired_t"] >= MIN_T and d["msle_leave_one_out"] < d["msle_layer_sum"]
    assert all(type(v) in (bool, float, str) for v in d.values())  # plain data: it goes into the profile's YAML
    shuffled = y * np.exp(0.97 * rng.permutation(np.log(off)))  # a little better on average, at random per network
    d = clearly_better(base, shuffled, y)
    assert d["msle_leave_one_out"] < d["msle_layer_sum"] and not d["applied"] and abs(d["paired_t"]) < MIN_T
    assert not clearly_better(base, y * off ** 1.5, y)["applied"]  # worse
    assert clearly_better(base, y, y)["applied"]  # exact predictions


def test_profile_correction_step_keeps_the_layer_sum_unless_clearly_better(monkeypatch):
    """``correct_profile`` (``augur-nas profile``'s last step) with the timing replaced by known
    latencies: factors the timings clearly call for are multiplied in; timings the layer sum already
    predicts (up to noise) leave the profile's pricing exactly as it was; either way the decision is
    in ``calibration.decision`` and the provenance note."""
    from augur_nas.measure import _calibrate as C
    from augur_nas.measure._protocol import Timing

    p = load_profile(BASE)
    nets, tables = _cal_tables()
    T = C.contributions(p.latency, tables)
    fams = C.families(p.latency)
    rng = np.random.default_rng(1)

    def run(y):
        def fake(profile, settings, budget_s, progress, seed):
            measured = {n.name: Timing(n.name, float(v), 0.003) for n, v in zip(nets, y)}
            return C._TimedFit([n.name for n in nets], measured, {}, y, T, C.fit_factors(T, y, fams))

        monkeypatch.setattr(C, "_timed_fit", fake)
        return C.correct_profile(p, None)[0]

    moved = {f: 1.0 for f in fams}
    moved.update(fc=1.6, dwconv=0.6)
    out = run(T @ np.array([moved[f] for f in fams]))
    assert out.calibration["applied"] and out.calibration["decision"]["paired_t"] >= C.MIN_T
    assert out.calibration["families"]["fc"] == pytest.approx(1.6, rel=0.05) and "applied" in out.provenance["note"]
    out = run(T.sum(axis=1) * np.exp(rng.normal(0.0, 0.05, len(nets))))
    d = out.calibration["decision"]
    assert d["msle_leave_one_out"] < d["msle_layer_sum"]  # a little better on average: the old rule took it
    assert not out.calibration["applied"] and out.calibration["families"] == {}
    assert out.latency.to_dict() == p.latency.to_dict() and "not applied" in out.provenance["note"]
    assert set(out.calibration["fitted_families"]) == set(fams)


def test_noisy_calibration_timings_are_named_in_a_warning():
    """Timed on a busy core (8% median noise, 40% of a core: the global factor came out 2.8x the
    idle one), calibrate says so instead of writing a busy machine's factors silently."""
    from augur_nas.measure._calibrate import BUSY_NOISE, busy_warning

    assert busy_warning(0.002) is None and busy_warning(BUSY_NOISE) is None
    w = busy_warning(0.082)
    assert "8.2%" in w and "idle" in w and "\n" not in w


# --------------------------------------------------------------------------------------------- export + CSV


@pytest.fixture(scope="module")
def exported(tmp_path_factory, run_cli):
    d = tmp_path_factory.mktemp("calset")
    r = run_cli("export", "--calibration-set", d)
    assert r.returncode == 0, r.stderr
    return d


@pytest.mark.slow
def test_export_calibration_set_writes_onnx_and_a_manifest(exported):
    import onnx

    m = json.loads((exported / "manifest.json").read_text())
    assert m["csv_columns"] == ["model", "latency_ms"] and len(m["networks"]) == 24
    fams = set()
    for row in m["networks"]:
        g = onnx.load(str(exported / row["file"]))
        assert len(g.graph.node) > 2 and row["macs"] > 0
        fams |= set(row["families"])
    assert {"conv_kxk", "conv_1x1", "conv_grouped", "dwconv", "fc", "pool", "squeeze_excite", "conv_stem"} <= fams


def _true_profile_latencies(names, scales):
    """What a device with known per-family speeds would measure for the calibration set."""
    from augur_nas.costmodel import latency_ms
    from augur_nas.measure._calibrate import scaled_latency

    p = load_profile(BASE)
    nets, tables = _cal_tables()
    lat = scaled_latency(p.latency, scales)
    by = {n.name: float(latency_ms(t, lat)[0][0]) for n, (t, _) in zip(nets, tables)}
    return {n: by[n] for n in names}


@pytest.mark.slow
def test_from_measurements_round_trip(tmp_path, exported, run_cli):
    m = json.loads((exported / "manifest.json").read_text())
    names = [r["model"] for r in m["networks"]]
    truth = _true_profile_latencies(names, {"conv": 2.0, "conv_1x1": 2.0, "conv_narrow": 2.0, "dwconv": 3.0,
                                            "fc": 1.2, "pool": 2.0, "memory": 2.0, "layout": 2.0, "call": 2.0})
    csv = tmp_path / "phone.csv"
    rows = ["model,latency_ms"] + [f"{n},{truth[n]:.6f}" for n in names[:20]]
    rows[3] = f"{exported / (names[2] + '.onnx')},{truth[names[2]]:.6f}"  # a model given as a path
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "phone.yaml"
    r = run_cli("calibrate", "--device", BASE, "--from-measurements", csv, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["leave_one_out"]["within_10pct"] >= 0.9 and rep["leave_one_out"]["networks"] == 20
    p = load_profile(out)
    assert p.fingerprint["origin"] == "external" and p.calibration["base"] == BASE and p.residual is None
    assert p.calibration["families"]["dwconv"] == pytest.approx(3.0, rel=0.1)
    assert "calibrate" in p.provenance["method"]
    # the 4 networks it did not see
    from augur_nas.costmodel import latency_ms
    from augur_nas.measure._calibrate import _tables
    from augur_nas.measure._calibset import calibration_set

    left = {n.name: n.model for n in calibration_set() if n.name in names[20:]}
    for name, model in left.items():
        pred = float(latency_ms(_tables([(model, 1)])[0][0], p)[0][0])
        assert pred == pytest.approx(truth[name], rel=0.1), name


BAD_CSV = [
    ("model,ms\ncal_fc_mid,2\n", ["latency_ms", "lacks"]),
    ("latency_ms\n2\n", ["model", "lacks"]),
    ("model,latency_ms\nresnet9000,2\n", ["line 2", "unknown model", "resnet9000"]),
    ("model,latency_ms\ncal_fc_mid,-2\n", ["line 2", "positive"]),
    ("model,latency_ms\ncal_fc_mid,0\n", ["line 2", "positive"]),
    ("model,latency_ms\ncal_fc_mid,nan\n", ["line 2", "finite"]),
    ("model,latency_ms\ncal_fc_mid,fast\n", ["line 2", "not a number"]),
    ("model,latency_ms\ncal_fc_mid,2\ncal_pooling,1\ncal_fc_mid,2.1\n", ["line 4", "twice", "lines 2 and 4"]),
    ("model,latency_ms,batch\ncal_fc_mid,2,1.5\n", ["batch", "whole number"]),
    ("model,latency_ms\n", ["no measurements"]),
    ("", ["empty"]),
    ("model,latency_ms\ncal_fc_mid,2\ncal_pooling,1\n", ["2 measurement(s)", "at least"]),
    ("model,latency_ms,threads\ncal_fc_mid,2,1\ncal_pooling,1,2\ncal_lrn,1,1\ncal_cell,1,1\n", ["thread counts"]),
]


@pytest.mark.parametrize("text,needles", BAD_CSV)
def test_bad_measurements_are_one_paragraph_exit_2_and_leave_the_output_intact(tmp_path, text, needles, run_cli):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    out = tmp_path / "out.yaml"
    out.write_text("previous\n")
    r = run_cli("calibrate", "--device", BASE, "--from-measurements", csv, "-o", out)
    assert r.returncode == 2, (r.stdout, r.stderr)
    _one_paragraph(r.stderr, *needles)
    assert out.read_text() == "previous\n"


def test_calibrate_refuses_a_profile_without_fingerprint(tmp_path, run_cli):
    csv = tmp_path / "m.csv"
    csv.write_text("model,latency_ms\ncal_fc_mid,2\ncal_pooling,1\ncal_lrn,1\ncal_cell,1\n")
    for extra in ([], ["--from-measurements", csv]):
        r = run_cli("calibrate", "--device", "tx1-cpu", "-o", tmp_path / "o.yaml", *extra)
        assert r.returncode == 2
        _one_paragraph(r.stderr, "no fingerprint", "tx1-cpu")
        assert not (tmp_path / "o.yaml").exists()


# --------------------------------------------------------------------------------------------- local


@pytest.mark.slow  # times the calibration set on this machine: `pytest -m "not slow"` leaves it out
def test_calibrate_here_with_a_tiny_budget(tmp_path, run_cli):
    out = tmp_path / "here.yaml"
    t = time.monotonic()
    r = run_cli("calibrate", "--device", BASE, "-o", out, "--budget-s", "6", "--json")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 60
    p = load_profile(out)
    assert p.fingerprint["origin"] == "calibrated" and p.fingerprint["cpu_model"] == machine_fingerprint()["cpu_model"]
    assert set(p.fit["anchors"]["latency_ms"]) == {"anchor_mobile", "anchor_resnet", "anchor_cell", "anchor_inception",
                                                   "anchor_classic", "anchor_large"}
    cal = p.calibration
    assert cal["networks"] == 24 and len(cal["measured_ms"]) == 24 and "leave_one_out" in cal
    assert all(v > 0 and math.isfinite(v) for v in cal["families"].values())
    import augur_nas as an

    assert an.check(out, timing=False).matches


@pytest.mark.slow  # starts a local calibration: `pytest -m "not slow"` leaves it out
def test_calibrate_interrupted_exits_130_and_keeps_the_previous_profile(tmp_path):
    out = tmp_path / "p.yaml"
    out.write_text("previous\n")
    proc = subprocess.Popen([sys.executable, "-m", "augur_nas.cli", "calibrate", "--device", BASE, "-o", str(out),
                             "--budget-s", "60"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out.read_text() == "previous\n"
    assert not [f for f in os.listdir(tmp_path) if f != "p.yaml"]  # no temporary file left


# --------------------------------------------------------------------------------------------- warnings


TINY = """\
name: tiny
input: {channels: 3, resolution: 16}
layers:
  - conv_bn_act: {out: 8, kernel: 3, stride: 2}
  - globalpool: {mode: avg}
  - fc: {out: 10}
"""


@pytest.mark.slow  # real measurements: `pytest -m "not slow"` leaves it out
def test_measure_and_validate_warn_on_another_machine_only(tmp_path, run_cli):
    model = tmp_path / "tiny.yaml"
    model.write_text(TINY)
    here = _this_machine_profile(tmp_path)
    p = load_profile(here)
    p.fit.pop("anchors", None)  # the warning is the point, not the speed anchors (6 networks to time each run)
    save_profile(p, here)
    other = tmp_path / "other.yaml"
    p.fingerprint = dict(p.fingerprint, cpu_model="Imaginary CPU 9000", isa=["neon", "asimd"])
    save_profile(p, other)
    quick = ["--rounds", "2", "--round-ms", "5", "--max-wait-s", "0", "--retries", "0"]
    for cmd in (["measure", model, "--no-memory", "--warmup-s", "0.05", "--spread-s", "0"], ["validate", model, "--no-memory"]):
        r = run_cli(*cmd, "--device", other, *quick)
        assert r.returncode == 0, r.stderr
        warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
        assert len(warn) == 1 and "Imaginary CPU 9000" in warn[0] and "augur-nas calibrate" in warn[0], r.stderr
        r = run_cli(*cmd, "--device", here, *quick)
        assert r.returncode == 0, r.stderr
        assert not [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")], r.stderr


@pytest.mark.slow
def test_devices_and_predict_show_fingerprint_and_threads(run_cli):
    r = run_cli("devices", "--json")
    d = {x["name"]: x for x in json.loads(r.stdout)}
    assert d[BASE]["fingerprint"]["cpu_model"] == "AMD EPYC" and d[BASE]["threads"] == 1
    assert d["tk1-gpu"]["fingerprint"] is None
    r = run_cli("predict", ROOT / "spaces" / "zoo" / "resnet18.yaml", "--device", BASE, "--json")
    assert json.loads(r.stdout)["threads"] == 1


def test_from_measurements_at_batch_2_through_the_python_api(tmp_path):
    import augur_nas as an
    from augur_nas.costmodel import latency_ms
    from augur_nas.measure._calibrate import _tables, scaled_latency

    nets, _ = _cal_tables()
    base = load_profile(BASE)
    true = scaled_latency(base.latency, {"conv": 0.5, "conv_1x1": 0.5, "conv_narrow": 0.5, "dwconv": 0.5, "fc": 0.9,
                                         "pool": 0.5, "memory": 0.5, "layout": 0.5, "call": 0.5})
    csv = tmp_path / "b2.csv"
    rows = ["model,latency_ms,batch,threads"]
    for n in nets[:12]:
        t = _tables([(n.model, 2)])[0][0]
        rows.append(f"{n.name}.onnx,{float(latency_ms(t, true, batch=2)[0][0]):.6f},2,4")
    csv.write_text("\n".join(rows) + "\n")
    prof, rep = an.calibrate(BASE, measurements=str(csv))
    assert rep["leave_one_out"]["within_10pct"] == 1.0
    assert prof.threads == 4 and prof.fingerprint["threads"] == 4
    assert prof.calibration["families"]["fc"] == pytest.approx(0.9, rel=0.05)


def test_the_calibration_set_holds_no_published_network():
    """The published-CNN zoo is the validation set: no calibration network is one of them."""
    from augur_nas.measure._residual_fit import arch_hash
    from augur_nas.models import load_model

    nets, _ = _cal_tables()
    zoo = {arch_hash(load_model(p)) for p in sorted((ROOT / "spaces" / "zoo").glob("*.yaml"))}
    assert len(zoo) >= 10
    assert not zoo & {arch_hash(n.model) for n in nets}


def test_graph_rules_price_the_base_with_another_profiles_layout(tmp_path):
    """A device that blocks 16 channels (AVX-512) where the base blocks 8: with --graph-rules of a
    profile with those rules the factors fit its timings exactly; with the base's own rules they
    cannot (the layout conversions and kernel choices differ, not only the speeds)."""
    import augur_nas as an
    from augur_nas.costmodel import latency_ms
    from augur_nas.measure._calibrate import _tables, rules_from_profile, scaled_latency
    from augur_nas.measure._ortrules import with_rules

    nets, _ = _cal_tables()
    base, rules_profile = load_profile(BASE), load_profile("x86-xeon-avx512-ort")
    rules = rules_from_profile(rules_profile)
    assert rules.layout["block"] == 16 and "reorder" not in rules.layout and "pad_channels" not in rules.layout
    scales = {"conv": 0.4, "conv_1x1": 0.5, "conv_narrow": 0.4, "dwconv": 0.6, "fc": 0.9, "pool": 0.5,
              "memory": 0.5, "layout": 0.7, "call": 0.3}
    device = scaled_latency(with_rules(base.latency, rules), scales)
    csv = tmp_path / "avx512.csv"
    csv.write_text("model,latency_ms\n" + "".join(
        f"{n.name},{float(latency_ms(_tables([(n.model, 1)])[0][0], device)[0][0]):.6f}\n" for n in nets))
    with_r, rep_r = an.calibrate(BASE, measurements=str(csv), graph_rules="x86-xeon-avx512-ort")
    _, rep_own = an.calibrate(BASE, measurements=str(csv))
    assert rep_r["leave_one_out"]["within_10pct"] == 1.0
    assert rep_r["leave_one_out"]["median_abs_error_pct"] < rep_own["leave_one_out"]["median_abs_error_pct"]
    assert with_r.latency.layout.block == 16 and with_r.calibration["graph_rules"]["from_profile"] == "x86-xeon-avx512-ort"
    assert with_r.calibration["families"]["dwconv"] == pytest.approx(0.6, rel=0.05)
    # written and read back, it prices as it did
    save_profile(with_r, tmp_path / "r.yaml")
    again = load_profile(tmp_path / "r.yaml")
    t = _tables([(nets[0].model, 1)])[0][0]
    assert float(latency_ms(t, again)[0][0]) == pytest.approx(float(latency_ms(t, with_r)[0][0]), rel=1e-9)


@pytest.mark.parametrize("args,needles", [
    (["--graph-rules", "x86-xeon-avx512-ort"], ["--graph-rules goes with --from-measurements"]),
    (["--from-measurements", "CSV", "--graph-rules", "tk1-gpu"], ["tk1-gpu", "no graph rules"]),
    (["--from-measurements", "CSV", "--graph-rules", "nosuch"], ["--graph-rules", "unknown device `nosuch`"]),
])
def test_graph_rules_misuse_is_one_paragraph_exit_2(tmp_path, args, needles, run_cli):
    csv = tmp_path / "m.csv"
    csv.write_text("model,latency_ms\n" + "".join(f"{n},{1 + i}\n" for i, n in enumerate(
        ["cal_fc_mid", "cal_pooling", "cal_lrn", "cal_cell", "cal_fire"])))
    out = tmp_path / "out.yaml"
    out.write_text("previous\n")
    r = run_cli("calibrate", "--device", BASE, "-o", out, *[str(csv) if a == "CSV" else a for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    _one_paragraph(r.stderr, *needles)
    assert out.read_text() == "previous\n"
