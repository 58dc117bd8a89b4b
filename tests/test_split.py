"""``augur-nas split`` and ``Oracle.split_latency``: single-tensor cuts, each side priced by the cost
model of ``predict``, the link model, bad input, and ``search --split-server``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import augur_nas as an
from augur_nas._errors import ConstraintError, ProfileError
from augur_nas.cli import main
from augur_nas.planner import Link, parse_bandwidth, parse_rtt, split_latency, split_points
from augur_nas._split import DTYPE_SIZES

from conftest import ROOT

RESNET18 = ROOT / "spaces" / "zoo" / "resnet18.yaml"
SQUEEZENET = ROOT / "spaces" / "zoo" / "squeezenet1_1.yaml"
SMALL = ROOT / "spaces" / "mobile_small.yaml"

# every cut between two layers leaves two tensors live: the input stays live until the add reads it
TWO_LIVE = """name: two_live
input: {channels: 3, resolution: 16}
layers:
  - conv: {name: a, out: 8, kernel: 3, pad: 1, inputs: [input]}
  - conv: {name: b, out: 8, kernel: 3, pad: 1, inputs: [input]}
  - add: {name: sum, inputs: [a, b]}
"""


def _model(path):
    return an.load_model(str(path))


# ----------------------------------------------------------------------------------- the link


@pytest.mark.parametrize("text,mbps", [("20Mbps", 20.0), ("500kbps", 0.5), ("1.5Gbps", 1500.0), ("12.5MB/s", 100.0),
                                       ("2e6bps", 2.0), (20, 20.0)])
def test_bandwidths(text, mbps):
    assert parse_bandwidth(text) == pytest.approx(mbps, rel=1e-12)


@pytest.mark.parametrize("text", ["20 Mbps", "fast", "-3Mbps", "0Mbps", "20", "20mph", "", "nanMbps", -3, 0])
def test_bad_bandwidths(text):
    with pytest.raises(ConstraintError, match="--uplink"):
        parse_bandwidth(text)


def test_rtt():
    assert parse_rtt("30ms") == 30.0 and parse_rtt("0.03s") == pytest.approx(30.0) and parse_rtt("0") == 0.0
    assert parse_rtt("500us") == pytest.approx(0.5)
    for bad in ("30 ms", "-1ms", "soon", "3h"):
        with pytest.raises(ConstraintError, match="--rtt"):
            parse_rtt(bad)


def test_link_times():
    link = Link.of("8Mbps", "80Mbps", "10ms")
    assert link.up_ms(1e6) == pytest.approx(1000.0)  # 8e6 bits at 8 Mbit/s: one second
    assert link.down_ms(1e6) == pytest.approx(100.0)
    assert Link.of("20Mbps").downlink_mbps == 20.0  # the downlink defaults to the uplink
    with pytest.raises(ConstraintError, match="float32, float16, int8"):
        Link.of("20Mbps", dtype="bfloat16")


# ----------------------------------------------------------------------------------- split points


def test_resnet18_cuts_and_totals():
    m = _model(RESNET18)
    link = Link.of("20Mbps", "40Mbps", "30ms")
    pts = split_points(m, "tk1-gpu", "tk1-cpu", link)
    assert pts[0].kind == "all-server" and pts[-1].kind == "all-local"
    assert all(p.kind == "split" for p in pts[1:-1]) and len(pts) > 20
    # between residual blocks the network is one tensor; inside a block (shortcut live) it is not
    after = [p.after for p in pts]
    assert "layer1.0.relu" in after or any(a.startswith("layer1.0") and a.endswith("relu") for a in after)
    assert "avgpool" in after and "maxpool" in after
    assert not any(a.endswith("conv1") and a.startswith("layer2.0") for a in after)  # the shortcut is live there
    out_bytes = 1000 * 4
    for p in pts:
        assert p.total_ms == pytest.approx(p.device_ms + p.uplink_ms + p.rtt_ms + p.server_ms + p.downlink_ms,
                                           rel=1e-12)
        assert p.elems == math.prod(p.tensor_shape)
        if p.kind != "all-local":
            assert p.bytes_sent == p.elems * 4
            assert p.uplink_ms == pytest.approx(p.bytes_sent * 8 / 20e3)
            assert p.downlink_ms == pytest.approx(out_bytes * 8 / 40e3)
            assert p.rtt_ms == 30.0
    assert pts[0].tensor_shape == (3, 224, 224) and pts[0].device_ms == 0.0 and pts[0].device_memory_mb == 0.0
    x = m.encode()
    local = an.Oracle(m, "tk1-gpu").evaluate(x)
    assert pts[-1].total_ms == pytest.approx(float(local["latency_ms"][0]), rel=1e-9)
    assert pts[-1].device_memory_mb == pytest.approx(float(local["memory_mb"][0]), rel=1e-9)
    assert pts[-1].uplink_ms == pts[-1].downlink_ms == pts[-1].rtt_ms == 0.0
    server = float(an.Oracle(m, "tk1-cpu").evaluate(x)["latency_ms"][0])
    assert pts[0].server_ms == pytest.approx(server, rel=1e-9)
    assert pts[0].total_ms == pytest.approx(server + 3 * 224 * 224 * 4 * 8 / 20e3 + 30 + out_bytes * 8 / 40e3, rel=1e-9)


def test_prefix_and_suffix_are_sums_of_predict_layers():
    """Without fusion rules a side's time is the sum of predict's per-layer times on that side."""
    m = _model(SQUEEZENET)
    x = m.encode()
    dev, srv = an.Oracle(m, "tk1-gpu"), an.Oracle(m, "tx1-cpu")
    names = list(m.program.nodes[i].name for i in range(len(m.program.nodes)))
    ms_dev = {r["name"]: r["ms"] for r in dev.explain(x)}
    ms_srv = {r["name"]: r["ms"] for r in srv.explain(x)}
    ovh_dev, ovh_srv = dev.profile.latency.network_overhead_ms, srv.profile.latency.network_overhead_ms
    pts = split_points(m, "tk1-gpu", "tx1-cpu", Link.of("20Mbps"))
    assert len(pts) > 10
    for p in pts[1:-1]:
        pre = sum(ms_dev.get(n, 0.0) for n in names[:p.cut]) + ovh_dev
        post = sum(ms_srv.get(n, 0.0) for n in names[p.cut:]) + ovh_srv
        assert p.device_ms == pytest.approx(pre, rel=1e-9)
        assert p.server_ms == pytest.approx(post, rel=1e-9)
    devs = [p.device_ms for p in pts]
    assert devs == sorted(devs)  # a longer prefix never takes less


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_bytes_follow_the_dtype(dtype):
    m = _model(SQUEEZENET)
    pts = split_points(m, "tk1-gpu", "tk1-cpu", Link.of("10Mbps", dtype=dtype), batch=2)
    for p in pts[:-1]:
        assert p.bytes_sent == p.elems * 2 * DTYPE_SIZES[dtype]


def test_fused_profile_all_local_equals_predict():
    """The profile with fusion, layout rules and a LightGBM residual: the ends equal predict."""
    m = _model(RESNET18)
    x = m.encode()
    pts = split_points(m, "x86-2core-ort", "x86-2core-ort", Link.of("100Mbps"))
    ort = float(an.Oracle(m, "x86-2core-ort").evaluate(x)["latency_ms"][0])
    assert pts[-1].total_ms == pytest.approx(ort, rel=1e-9)
    assert pts[0].server_ms == pytest.approx(ort, rel=1e-9)
    # cut between a conv and the BatchNorm folded into it: the suffix runs that BatchNorm itself
    by_after = {p.after: p for p in pts}
    assert by_after["conv1"].server_ms > by_after["bn1"].server_ms
    assert by_after["conv1"].device_ms == pytest.approx(by_after["bn1"].device_ms, rel=1e-12)


def test_no_single_tensor_point(tmp_path, capsys):
    f = tmp_path / "two_live.yaml"
    f.write_text(TWO_LIVE)
    with pytest.raises(ConstraintError, match="no point between its input and its output"):
        split_points(an.load_model(str(f)), "tk1-gpu", "tk1-cpu", Link.of("20Mbps"))
    rc, err = _cli(capsys, "split", f, "--device", "tk1-gpu", "--server", "tk1-cpu", "--uplink", "20Mbps")
    assert rc == 2
    _one_paragraph(err, "2 or more tensors live", str(f))


# ----------------------------------------------------------------------------------- batch API


def test_oracle_split_latency_matches_per_candidate():
    space = an.load_space(str(SMALL))
    X = space.sample(6, seed=3)
    link = Link.of("50Mbps", rtt="5ms", dtype="float16")
    dev = an.Oracle(space, "tk1-gpu")
    res = dev.split_latency(X, an.Oracle(space, "x86-2core-ort"), link)
    assert set(res) >= {"total_ms", "cut", "device_ms", "transfer_ms", "server_ms", "local_ms", "server_only_ms"}
    np.testing.assert_allclose(res["local_ms"], dev.latency(X), rtol=1e-9)
    np.testing.assert_allclose(res["total_ms"], res["device_ms"] + res["transfer_ms"] + res["server_ms"], rtol=1e-12)
    assert (res["total_ms"] <= np.minimum(res["local_ms"], res["server_only_ms"]) + 1e-9).all()
    for i, x in enumerate(X):
        pts = split_points(space, "tk1-gpu", "x86-2core-ort", link, x=x)
        best = min(pts, key=lambda p: p.total_ms)
        assert res["total_ms"][i] == pytest.approx(best.total_ms, rel=1e-9)
        assert res["cut"][i] == best.cut
        assert res["n_points"][i] == len(pts)


def test_split_latency_refuses_a_non_link():
    m = _model(SQUEEZENET)
    with pytest.raises(ConstraintError, match="Link"):
        split_latency(m, m.encode(), "tk1-gpu", "tk1-cpu", "20Mbps")


def test_unknown_server_profile():
    m = _model(SQUEEZENET)
    with pytest.raises(ProfileError, match="unknown device `nope`"):
        an.Oracle(m, "tk1-gpu").split_latency(m.encode(), "nope", Link.of("20Mbps"))


# ----------------------------------------------------------------------------------- the CLI


def _cli(capsys, *args):
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.err


def _one_paragraph(err, *expected):
    msg = err.strip()
    assert "Traceback" not in msg and msg.startswith("augur-nas split: error:"), msg
    assert "\n" not in msg, msg
    for e in expected:
        assert e in msg, (e, msg)


@pytest.mark.parametrize("args,expected", [
    (["--server", "no-such-device", "--uplink", "20Mbps"], ["unknown device `no-such-device`"]),
    (["--server", "tk1-cpu", "--uplink", "20 Mbps"], ["--uplink '20 Mbps'", "no space"]),
    (["--server", "tk1-cpu", "--uplink", "fast"], ["--uplink 'fast' is not a bandwidth"]),
    (["--server", "tk1-cpu", "--uplink=-3Mbps"], ["a bandwidth is positive"]),
    (["--server", "tk1-cpu", "--uplink", "-3Mbps"], ["a bandwidth is positive"]),
    (["--server", "tk1-cpu", "--uplink", "20Mbps", "--rtt", "-5ms"], ["--rtt '-5ms'"]),
    (["--server", "tk1-cpu", "--uplink", "20Mbps", "--downlink", "0kbps"], ["--downlink"]),
    (["--server", "tk1-cpu", "--uplink", "20Mbps", "--dtype", "float64"], ["--dtype 'float64'"]),
    (["--server", "tk1-cpu", "--uplink", "20Mbps", "--rtt", "slow"], ["--rtt 'slow'"]),
])
def test_cli_bad_input(capsys, args, expected):
    rc, err = _cli(capsys, "split", SQUEEZENET, "--device", "tk1-gpu", *args)
    assert rc == 2
    _one_paragraph(err, *expected)


@pytest.mark.slow
def test_cli_json_and_plot(run_cli, tmp_path):
    png = tmp_path / "split.png"
    r = run_cli("split", SQUEEZENET, "--device", "tk1-gpu", "--server", "x86-2core-ort", "--uplink", "20Mbps",
                "--rtt", "30ms", "--json", "--plot", png)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["device"] == "tk1-gpu" and res["server"] == "x86-2core-ort"
    totals = [s["total_ms"] for s in res["splits"]]
    assert res["best"]["total_ms"] == min(totals)
    assert res["splits"][0]["kind"] == "all-server" and res["splits"][-1]["kind"] == "all-local"
    assert res["all_local_ms"] == res["splits"][-1]["total_ms"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_cli("split", SQUEEZENET, "--device", "tk1-gpu", "--server", "x86-2core-ort", "--uplink", "1Gbps")
    assert r.returncode == 0, r.stderr
    assert "best:" in r.stdout and "all-local" in r.stdout and "fire9.concat" in r.stdout


# ----------------------------------------------------------------------------------- search


def test_search_minimizes_the_split_latency():
    from augur_nas.search import search

    space = an.load_space(str(SMALL))
    link = Link.of("20Mbps", rtt="30ms")
    res = search(space, "tk1-gpu", trials=30, seed=1, progress=False, split_server="x86-2core-ort", uplink=link,
                 latency_ms="200ms")
    assert res.meta["split"]["server"] == "x86-2core-ort" and res.meta["sampler"] == "nsga2"
    assert res.front
    X = np.array([r["encoding"] for r in res.front])
    lat = np.array([r["latency_ms"] for r in res.front])
    assert (lat <= 200).all()
    sp = an.Oracle(space, "tk1-gpu").split_latency(X, "x86-2core-ort", link)
    np.testing.assert_allclose(lat, sp["total_ms"], rtol=1e-9)
    assert (sp["total_ms"] < sp["local_ms"]).any() or (sp["cut"] == sp["n_slots"]).all()


def test_search_split_oracle_latency_is_the_split_total():
    from augur_nas.search._split import SplitOracle, split_spec

    space = an.load_space(str(SMALL))
    X = space.sample(5, seed=0)
    spec = split_spec("tk1-cpu", "5Mbps", rtt="20ms")
    got = SplitOracle(space, "tk1-gpu", spec).evaluate(X)
    ref = an.Oracle(space, "tk1-gpu").split_latency(X, "tk1-cpu", spec.link)
    np.testing.assert_allclose(got["latency_ms"], ref["total_ms"], rtol=1e-12)
    np.testing.assert_allclose(got["local_latency_ms"], an.Oracle(space, "tk1-gpu").latency(X), rtol=1e-9)
    assert (got["split_cut"] == ref["cut"]).all()


@pytest.mark.parametrize("args,expected", [
    (["--split-server", "tk1-cpu"], "needs --uplink"),
    (["--uplink", "20Mbps"], "give --split-server too"),
    (["--split-server", "nope", "--uplink", "20Mbps"], "unknown device `nope`"),
    (["--split-server", "tk1-cpu", "--uplink", "fast"], "is not a bandwidth"),
    (["--split-server", "tk1-cpu", "--uplink", "20Mbps", "--sampler", "exact"], "is not (drop --sampler exact"),
])
def test_search_split_bad_input(capsys, tmp_path, args, expected):
    rc, err = _cli(capsys, "search", SMALL, "--device", "tk1-gpu", "--out", tmp_path / "o", *args)
    assert rc == 2
    msg = err.strip()
    assert "Traceback" not in msg and "\n" not in msg and expected in msg, msg


def test_table_path_equals_partial_sums(monkeypatch):
    """A stateless profile's sides are partial sums of the whole network's slot times; pricing the
    masked copies of the table (the path of fused profiles) gives the same numbers."""
    from augur_nas import _split

    space = an.load_space(str(SMALL))
    X = space.sample(4, seed=5)
    link = Link.of("30Mbps", rtt="10ms")
    fast = split_latency(space, X, "tk1-gpu", "tx1-cpu", link)
    monkeypatch.setattr(_split, "_stateless", lambda profile: False)
    slow = split_latency(space, X, "tk1-gpu", "tx1-cpu", link)
    for k in ("total_ms", "device_ms", "server_ms", "local_ms", "server_only_ms"):
        np.testing.assert_allclose(slow[k], fast[k], rtol=1e-9, err_msg=k)
    assert (slow["cut"] == fast["cut"]).all()
