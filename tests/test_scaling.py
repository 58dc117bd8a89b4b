"""The batch and threads model of a profile (``latency.scaling``, issue 14): its rule, its plain
data, its place in the latency model (batch 1 unchanged, fast path == reference at every batch),
its fit on synthetic samples, and a tiny measured fit (slow)."""

import numpy as np
import pytest
from conftest import ROOT

import augur_nas as an
from augur_nas._errors import ProfileError
from augur_nas.costmodel import LatencyModel
from augur_nas.costmodel._scaling import GroupScale, ScalingModel, group_of, spill_ratio
from augur_nas.measure._scaling_fit import ScaleSample, _merged_where_few, fit_scaling
from augur_nas.oracle import _table_costs
from augur_nas.profile import dump_profile, load_profile, parse_profile


def _model(threads=1, **groups):
    return ScalingModel({g: GroupScale(**kw) for g, kw in groups.items()}, cache_mb=1.0, threads=threads)


def test_batch_one_is_the_one_image_time_whatever_the_coefficients():
    m = _model(conv={"per_call_ms": 0.01, "rate": 0.7, "spill_coef": 0.3})
    t1 = np.array([0.001, 0.02, 3.0])
    np.testing.assert_array_equal(m.scale("conv", t1, 1, np.array([0.1, 5.0, 40.0])), t1)


def test_the_per_call_part_is_paid_once_per_batch():
    m = _model(conv={"per_call_ms": 0.004})
    t1 = np.array([0.002, 0.010, 1.0])
    got = m.scale("conv", t1, 8, np.zeros(3))
    # a kernel below its per-call cost costs the same for the whole batch
    np.testing.assert_allclose(got, [0.002, 0.010 + 7 * 0.006, 1.0 + 7 * 0.996])
    assert got[2] < 8 * t1[2]


def test_fc_rate_and_a_group_without_coefficients():
    m = _model(fc={"rate": 0.05})
    np.testing.assert_allclose(m.scale("fc", np.array([2.0]), 33, np.zeros(1)), [2.0 * (1 + 32 * 0.05)])
    # a group the model does not name repeats the whole time per image: b times one image
    np.testing.assert_allclose(m.scale("dwconv", np.array([0.5]), 4, np.zeros(1)), [2.0])


def test_spill_grows_with_each_doubling_past_the_cache():
    r = spill_ratio(0.2, 1.0, np.array([1, 2, 8, 32]), np.full(4, 0.5))
    assert r[0] == 1.0 and r[1] == 1.0  # 1 MB: still in the cache
    np.testing.assert_allclose(r[2:], [1 + 0.2 * 2, 1 + 0.2 * 4])
    assert spill_ratio(0.0, 1.0, 32, 10.0) == 1.0


def test_the_per_mb_spill_charges_the_bytes_not_the_arithmetic():
    m = _model(dwconv={"spill_ms_per_mb": 0.01})
    mb = np.array([0.2, 4.0, 4.0])
    t1 = np.array([0.05, 0.2, 0.6])  # the last two: the same tensors, the third with 3x the arithmetic
    np.testing.assert_array_equal(m.scale("dwconv", t1, 1, mb), t1)
    got = m.scale("dwconv", t1, 8, mb)
    # 8 x 0.2 MB: log2(1.6) doublings past the 1 MB cache (none at one image); 8 x 4 MB: 5 (2 at one image)
    np.testing.assert_allclose(got, 8 * t1 + 0.01 * mb * np.array([8 * np.log2(1.6), 8 * 5 - 2, 8 * 5 - 2]))
    assert got[2] - 8 * t1[2] == pytest.approx(got[1] - 8 * t1[1])
    # the relative form charges the layer with three times the arithmetic three times as much
    rel = _model(dwconv={"spill_coef": 0.1}).scale("dwconv", t1, 8, mb)
    assert rel[2] - 8 * t1[2] == pytest.approx(3 * (rel[1] - 8 * t1[1]))


def test_lrn_has_its_own_group_and_a_profile_without_it_prices_it_as_before():
    assert group_of("lrn", "bytes") == "arith"
    assert {group_of(k, "bytes") for k in ("concat", "maxpool", "mul", "shuffle", "globalpool")} == {"bytes"}
    t1, mb = np.array([0.1, 2.0]), np.array([3.0, 20.0])
    old = _model(bytes={"spill_coef": 0.3, "per_call_ms": 0.001})
    np.testing.assert_array_equal(old.scale("arith", t1, 16, mb), old.scale("bytes", t1, 16, mb))
    new = _model(bytes={"spill_coef": 0.3}, arith={})
    np.testing.assert_allclose(new.scale("arith", t1, 16, mb), 16 * t1)
    assert np.all(new.scale("bytes", t1, 16, mb) > 1.3 * 16 * t1)


def test_threads_never_slow_a_layer_down():
    m = _model(threads=2, conv={"par_call_ms": 0.01, "par_share": 0.5})
    t = np.array([0.005, 0.02, 10.0])
    got = m.scale("conv", t, 1, np.zeros(3))
    np.testing.assert_allclose(got, [0.005, 0.02, 5.01])
    # the batch gives a small kernel the work to split
    assert m.scale("conv", t[:1], 8, np.zeros(1))[0] < 8 * t[0]


def test_a_batch_pays_the_one_image_thread_share_once_then_splits_the_further_images():
    m = _model(threads=2, conv={"par_call_ms": 0.01, "par_share": 0.6, "par_image_share": 0.5})
    # batch 8 of a 1 ms layer: 8 ms at one thread; the first image's share, then 7 ms halved
    np.testing.assert_allclose(m.scale("conv", np.array([1.0]), 8, np.zeros(1)), [0.01 + 0.6 + 0.5 * 7])
    np.testing.assert_allclose(m.scale("conv", np.array([1.0]), 1, np.zeros(1)), [0.61])
    # a layer whose threads do not pay keeps its one-thread time at every batch
    slow = _model(threads=2, conv={"par_call_ms": 0.01, "par_share": 1.0, "par_image_share": 1.0})
    np.testing.assert_allclose(slow.scale("conv", np.array([0.2]), 8, np.zeros(1)), [1.6])


def test_a_profile_without_par_image_share_prices_as_before():
    """Profiles fitted before ``par_image_share``: every image pays ``par_share`` (their old rule,
    min(t(b), par_call_ms + par_share * t(b)))."""
    d = {"threads": 2, "cache_mb": 1, "groups": {"conv": {"per_call_ms": 0.002, "spill_coef": 0.1,
                                                        "par_call_ms": 0.008, "par_share": 0.57}}}
    m = ScalingModel.from_dict(d)
    assert m.groups["conv"].par_image_share == 0.57
    t1, mb = np.array([0.004, 0.05, 2.0]), np.array([0.3, 1.5, 6.0])
    for b in (1, 4, 32):
        tb = ScalingModel(m.groups, 1.0, 1).scale("conv", t1, b, mb)
        np.testing.assert_allclose(m.scale("conv", t1, b, mb), np.minimum(tb, 0.008 + 0.57 * tb), rtol=1e-12)


def test_plain_data_round_trip_and_errors():
    m = _model(threads=2, conv={"per_call_ms": 0.003, "spill_coef": 0.1, "par_share": 0.55}, fc={"rate": 0.05})
    assert ScalingModel.from_dict(m.to_dict()) == m
    bad = m.to_dict()
    bad["groups"]["gemm"] = {"rate": 1}
    with pytest.raises(ProfileError, match="latency.scaling.groups.gemm"):
        ScalingModel.from_dict(bad, "p.yaml")
    bad = m.to_dict()
    bad["groups"]["conv"]["rate"] = -1
    with pytest.raises(ProfileError, match="rate"):
        ScalingModel.from_dict(bad, "p.yaml")
    with pytest.raises(ProfileError, match="typo"):
        ScalingModel.from_dict({"groups": {"conv": {"typo": 1}}}, "p.yaml")


def _scaled_profile(threads=1):
    p = load_profile("x86-xeon-avx512-ort")
    p.latency.scaling = _model(threads, conv={"per_call_ms": 0.006, "spill_coef": 0.05, "par_share": 0.53,
                                              "par_call_ms": 0.008, "par_image_share": 0.5},
                               dwconv={"spill_coef": 0.2}, fc={"rate": 0.05}, bytes={"spill_ms_per_mb": 0.004},
                               arith={"spill_coef": 0.05},
                               layout={"spill_coef": 0.3, "per_call_ms": 0.001})
    return p


def test_a_profile_with_scaling_round_trips_and_old_ones_do_not_change():
    p = _scaled_profile(2)
    q = parse_profile(dump_profile(p))
    assert q.latency.scaling == p.latency.scaling
    space = an.load_space(ROOT / "spaces/mobile.yaml")
    X = space.sample(20, seed=3)
    plain = load_profile("x86-xeon-avx512-ort")
    plain.latency.scaling = None
    one = _scaled_profile(1)
    # batch 1, one thread: the kernels' own price
    np.testing.assert_allclose(_table_costs(space, X, one, 1)[0], _table_costs(space, X, plain, 1)[0], rtol=1e-12)
    # a batch: no longer b times one image
    assert not np.allclose(_table_costs(space, X, one, 8)[0], _table_costs(space, X, plain, 8)[0], rtol=1e-3)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("space_file", ["mobile.yaml", "nb201.yaml", "resnet.yaml"])
def test_fast_path_equals_reference_at_every_batch(space_file, threads):
    space = an.load_space(ROOT / "spaces" / space_file)
    X = space.sample(40, seed=7)
    prof = _scaled_profile(threads)
    oracle = an.Oracle(space, prof)
    for batch in (1, 2, 8, 32):
        got = oracle.evaluate(X, batch=batch)
        ref = oracle.evaluate(X, batch=batch, reference=True)
        for key in ("latency_ms", "memory_mb"):
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, err_msg=f"{space_file} batch {batch} {key}")


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_path_equals_reference_with_lrn_in_its_own_group(threads):
    from augur_nas.measure._calibset import calibration_set

    model = next(cn.model for cn in calibration_set() if cn.name == "cal_lrn")
    prof = _scaled_profile(threads)
    oracle = an.Oracle(model, prof)
    X = np.zeros((1, model.n_genes), dtype=np.int64)
    plain = _scaled_profile(threads)
    del plain.latency.scaling.groups["arith"]  # LRN priced with bytes' coefficients
    for batch in (1, 8, 32):
        got = oracle.evaluate(X, batch=batch)["latency_ms"]
        np.testing.assert_allclose(got, oracle.evaluate(X, batch=batch, reference=True)["latency_ms"], rtol=1e-9)
        if batch > 1:
            assert not np.allclose(got, an.Oracle(model, plain).latency(X, batch), rtol=1e-6)


def _synthetic(truth: ScalingModel, seed=0, noise=0.02, threads=(1,), groups=("conv", "fc", "bytes")):
    """Samples of made-up layers priced by ``truth`` with multiplicative noise."""
    rng = np.random.default_rng(seed)
    out = []
    for g in groups:
        for i in range(60):
            t1 = float(np.exp(rng.uniform(np.log(0.002), np.log(2.0))))
            mb = float(np.exp(rng.uniform(np.log(0.05), np.log(8.0))))
            key = (f"net{i % 30}", f"{g}{i}")
            for th in threads:
                for b in (1, 8, 32):
                    one = ScalingModel(truth.groups, truth.cache_mb, th)
                    t = float(one.scale(g, np.array([t1]), b, np.array([mb]))[0])
                    out.append(ScaleSample(g, key, b, th, t * float(np.exp(rng.normal(0, noise))), mb))
    return out


def test_fit_recovers_known_batch_coefficients():
    truth = ScalingModel({"conv": GroupScale(per_call_ms=0.008), "fc": GroupScale(rate=0.05),
                          "bytes": GroupScale(spill_coef=0.2)}, cache_mb=1.0)
    fit = fit_scaling(_synthetic(truth)).model
    assert fit.groups["conv"].per_call_ms == pytest.approx(0.008, abs=0.0025)
    assert fit.groups["fc"].rate == pytest.approx(0.05, rel=0.25)
    assert fit.groups["bytes"].spill_coef == pytest.approx(0.2, abs=0.07)
    assert fit.groups["fc"].per_call_ms <= 0.002


def test_fit_recovers_thread_coefficients():
    truth = ScalingModel({"conv": GroupScale(par_share=0.55, par_call_ms=0.008), "fc": GroupScale(rate=0.05),
                          "bytes": GroupScale(par_share=0.6)}, cache_mb=1.0, threads=2)
    fit = fit_scaling(_synthetic(truth, threads=(1, 2)), threads=2).model
    assert fit.threads == 2
    assert fit.groups["conv"].par_share == pytest.approx(0.55, abs=0.05)
    assert fit.groups["bytes"].par_share == pytest.approx(0.6, abs=0.05)


def test_the_thread_share_is_fitted_at_batch_one_and_the_further_images_split_evenly():
    """Samples whose batches split better over two threads than one image does: ``par_share``
    comes from the one-image pairs (a fit over every batch would land between 0.62 and 0.5)."""
    truth = ScalingModel({"conv": GroupScale(par_share=0.62, par_call_ms=0.008, par_image_share=0.5),
                          "bytes": GroupScale(spill_coef=0.1),
                          "fc": GroupScale(rate=0.05)}, cache_mb=1.0, threads=2)
    fit = fit_scaling(_synthetic(truth, threads=(1, 2)), threads=2).model
    assert fit.groups["conv"].par_share == pytest.approx(0.62, abs=0.03)
    assert fit.groups["conv"].par_call_ms == pytest.approx(0.008, abs=0.0045)
    assert fit.groups["conv"].par_image_share == 0.5
    assert fit_scaling(_synthetic(truth)).model.groups["conv"].par_image_share == 1.0  # one thread: none
    # a group without two-thread samples gains nothing from the threads, at any batch
    no_bytes = [s for s in _synthetic(truth, threads=(1, 2)) if s.group != "bytes" or s.threads == 1]
    bytes_ = fit_scaling(no_bytes, threads=2).model.groups["bytes"]
    assert bytes_.par_share == 1.0 and bytes_.par_image_share == 1.0


def test_fit_keeps_lrn_apart_from_the_data_movement_kinds():
    """LRN's time is arithmetic and does not spill; a concat's is bytes and does: in one group
    the fit would give both one compromise."""
    truth = ScalingModel({"conv": GroupScale(), "fc": GroupScale(rate=0.05), "bytes": GroupScale(spill_coef=0.3),
                          "arith": GroupScale()}, cache_mb=1.0)
    fit = fit_scaling(_synthetic(truth, groups=("conv", "fc", "bytes", "arith"))).model
    assert fit.groups["bytes"].spill_coef == pytest.approx(0.3, abs=0.07)
    assert fit.groups["arith"].spill_coef <= 0.04


def test_too_few_lrn_samples_are_fitted_with_bytes_as_before_the_split():
    truth = ScalingModel({"conv": GroupScale(), "fc": GroupScale(rate=0.05), "bytes": GroupScale(spill_coef=0.3),
                          "arith": GroupScale()}, cache_mb=1.0)
    samples = _synthetic(truth, groups=("conv", "fc", "bytes", "arith"))
    lrn_keys = sorted({s.key for s in samples if s.group == "arith"})
    one = [s for s in samples if s.group != "arith" or s.key == lrn_keys[0]]  # one LRN layer: two pairs
    merged = _merged_where_few(one, 1)
    assert not any(s.group == "arith" for s in merged)
    assert sum(s.group == "bytes" for s in merged) == sum(s.group == "bytes" for s in one) + 3
    assert "arith" not in fit_scaling(one).model.groups  # priced with bytes' coefficients (FALLBACK)
    two = [s for s in samples if s.group != "arith" or s.key in lrn_keys[:2]]
    assert _merged_where_few(two, 1) == two


def test_lrn_without_thread_samples_takes_the_thread_coefficients_of_bytes():
    truth = ScalingModel({"conv": GroupScale(par_share=0.55), "fc": GroupScale(rate=0.05),
                          "bytes": GroupScale(par_share=0.6, par_call_ms=0.004), "arith": GroupScale(par_share=0.6)},
                         cache_mb=1.0, threads=2)
    groups = ("conv", "fc", "bytes", "arith")
    samples = [s for s in _synthetic(truth, threads=(1, 2), groups=groups) if s.group != "arith" or s.threads == 1]
    fit = fit_scaling(samples, threads=2).model
    b, a = fit.groups["bytes"], fit.groups["arith"]
    assert b.par_share == pytest.approx(0.6, abs=0.05)
    assert (a.par_share, a.par_call_ms, a.par_image_share) == (b.par_share, b.par_call_ms, 0.5)


def test_the_fit_tells_the_two_spill_forms_apart_when_asked():
    truth = ScalingModel({"conv": GroupScale(), "fc": GroupScale(rate=0.05), "bytes": GroupScale(spill_ms_per_mb=0.01)},
                         cache_mb=1.0)
    samples = _synthetic(truth)
    both = fit_scaling(samples, forms="both").model.groups["bytes"]
    assert both.spill_coef == 0 and both.spill_ms_per_mb == pytest.approx(0.01, rel=0.35)
    assert fit_scaling(samples).model.groups["bytes"].spill_ms_per_mb == 0  # the default: relative only


def test_fit_refuses_without_batch_samples():
    with pytest.raises(an.AugurError, match="batch"):
        fit_scaling([ScaleSample("conv", ("n", 1), 1, 1, 0.1, 1.0)])


@pytest.mark.slow
def test_a_tiny_measured_batch_fit():
    """ONNX Runtime on this machine: two calibration networks at batches 1 and 8. The fully
    connected network's weights stream once per batch, so its rate is far below 1 (about 0.05
    here; at batch 4 it was 0.4 and, on a loaded machine, once 1.0: too close to call)."""
    pytest.importorskip("onnxruntime")
    from augur_nas.measure._calibset import calibration_set
    from augur_nas.measure._scaling_fit import measure_scaling

    nets = [cn for cn in calibration_set() if cn.name in ("cal_fc_mid", "cal_pointwise")]
    lat = LatencyModel.from_dict(load_profile("x86-xeon-avx512-ort").latency.to_dict())
    lat.scaling = None
    samples = measure_scaling(lat, batches=(1, 8), visits=1, networks=nets)
    assert {s.batch for s in samples} == {1, 8}
    fit = fit_scaling(samples).model
    assert fit.groups["fc"].rate < 0.5
    assert "conv" in fit.groups


@pytest.mark.parametrize("args, says", [
    (["--threads", "2", "--from-profile", "x86-xeon-avx512-ort-2t"], "one-thread ONNX Runtime profile"),
    (["--from-profile", "tk1-cpu"], "one-thread ONNX Runtime profile"),
    (["--threads", "3", "--from-profile", "x86-xeon-avx512-ort", "--threads-from",
      str(ROOT / "experiments/data/x86-xeon-avx512-ort-2t-grid.yaml")], "describes 2 thread(s)"),
    (["--threads-from", "x86-xeon-avx512-ort-2t"], "--from-profile"),
    (["--backend", "numpy", "--scaling-s", "5"], "numpy backend"),
])
def test_profile_scaling_options_refuse_bad_input(args, says, tmp_path, capsys):
    from augur_nas.cli import main

    code = main(["profile", *args, "--name", "x", "-o", str(tmp_path / "x.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "x.yaml").exists()


def test_threads_from_a_kernel_profile_builds_a_two_thread_profile(tmp_path, capsys):
    """``--threads-from`` times nothing: the one-thread kernels, their batch coefficients and
    thread coefficients from the 2-thread grid; a 2-thread profile prices a big layer at about
    half and never above one thread."""
    from augur_nas.cli import main

    out = tmp_path / "p2.yaml"
    code = main(["profile", "--threads", "2", "--from-profile", "x86-xeon-avx512-ort", "--threads-from",
                 str(ROOT / "experiments/data/x86-xeon-avx512-ort-2t-grid.yaml"), "--name", "p2", "-o", str(out)])
    assert code == 0
    p2, p1 = load_profile(str(out)), load_profile("x86-xeon-avx512-ort")
    assert p2.threads == 2 and p2.latency.scaling.threads == 2
    assert p2.latency.scaling.groups["fc"].rate == p1.latency.scaling.groups["fc"].rate
    assert 0.4 < p2.latency.scaling.groups["conv"].par_share < 0.8
    # the grid is batch 1: a batch's further images split evenly over the threads
    assert p2.latency.scaling.groups["conv"].par_image_share == 0.5
    space = an.load_space(ROOT / "spaces/resnet.yaml")
    X = space.sample(10, seed=2)
    for b in (1, 8):
        t1, t2 = an.Oracle(space, p1).latency(X, b), an.Oracle(space, p2).latency(X, b)
        assert np.all(t2 <= t1 * (1 + 1e-12)) and np.all(t2 < 0.8 * t1)


def test_a_profile_for_more_threads_times_its_speed_anchors_at_that_count(monkeypatch):
    """A profile built for N threads from a one-thread profile keeps the anchors' labels but not
    their one-thread times: measuring with it brings latencies to the anchors' speed, and
    one-thread anchors would read two threads as a machine twice as fast."""
    from augur_nas.measure import _scaling_fit
    from augur_nas.measure._settings import RuntimeSettings
    from augur_nas.profile import load_profile

    base = load_profile("x86-xeon-avx512-ort")
    seen = {}

    def fake_times(items, settings, time_s):
        seen["threads"] = settings.threads
        return {lab: 1.0 for lab, _ in items}
    monkeypatch.setattr(_scaling_fit, "anchor_times", fake_times)
    got = _scaling_fit._anchors_at(base, RuntimeSettings(backend="onnxruntime", threads=2))
    assert seen["threads"] == 2 and got["threads"] == 2
    assert set(got["latency_ms"]) == set(base.fit["anchors"]["latency_ms"]) and set(got["latency_ms"].values()) == {1.0}
