"""Shared fixtures and figures of the foundation tests (zoo, spaces, lowering, bad input).

The paper's figures (Lu et al., "Modeling the Resource Requirements of Convolutional Neural
Networks on Mobile Devices", ACM MM 2017, Tables 1-6) are read from the copy packaged with
augur-nas, augur_nas/data/paper_tables.yaml; the tests never read files outside the repository.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# nothing written into the working tree, the same examples every run, no per-example deadline
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="augur-hypothesis-"))
settings.register_profile("augur", database=None, deadline=None, derandomize=True)
settings.load_profile("augur")

# A test run started as a background job (`cmd &` in a script, nohup, some CI runners) inherits
# SIGINT ignored, and every child it starts would ignore the Ctrl-C that the interruption tests
# send (Python keeps an ignored SIGINT at startup; the search installs its handler only when SIGINT
# is not ignored). A handler here is reset to the default in each child at exec, so the children
# turn Ctrl-C into KeyboardInterrupt whatever started the run.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "spaces" / "zoo"
SPACES = ROOT / "spaces"
GOLDEN = Path(__file__).resolve().parent / "golden"

MiB = 2**20

# The paper's figures, as packaged with augur-nas (augur_nas/data/paper_tables.yaml).
PAPER = yaml.safe_load((ROOT / "augur_nas" / "data" / "paper_tables.yaml").read_text())
_NORM = {"alexnet": "lrn", "googlenet": "lrn", "resnet50": "batchnorm"}  # Table 1's "norm"

# Table 1: layers of each type.
PAPER_LAYER_COUNTS = {
    model: {(_NORM[model] if typ == "norm" else typ): n for typ, n in counts.items() if typ != "total"}
    for model, counts in PAPER["layer_counts"].items()
}
PAPER_LAYER_TOTALS = {model: counts["total"] for model, counts in PAPER["layer_counts"].items()}

# "FLOPs" rows of Tables 2, 3, 5, 6 (MACs, millions).
PAPER_MACS_M = PAPER["macs_millions"]

# Table 4, parsed from the prototxt (the paper's "MB" are MiB: AlexNet's 60,965,224 float32
# parameters are 232.6 MiB = 243.9 MB, printed 233).
PAPER_MEMORY_MIB = PAPER["memory_mb"]["parsed"]

# Exact parameter counts (Caffe model zoo / torchvision).
PARAMS = {
    "alexnet": 60_965_224,
    "vgg16": 138_357_544,
    "resnet50": 25_557_032,
    "resnet18": 11_689_512,
    "mobilenet_v2": 3_504_872,
}
MOBILENET_V2_MACS = 300.8e6  # torchvision mobilenet_v2: 300,774,272 conv + linear MACs

# tolerances the figures are checked to
TOL_CONV_MACS, TOL_FC_MACS, TOL_WEIGHTS, TOL_TOTAL_OPS = 0.03, 0.05, 0.03, 0.01

ZOO_MODELS = sorted(p.stem for p in ZOO.glob("*.yaml"))
ZOO_PROTOTXT = sorted(p.stem for p in ZOO.glob("*.prototxt"))
SHIPPED_SPACES = sorted(p.stem for p in SPACES.glob("*.yaml"))


def paper_problems(name: str, res: dict) -> list[str]:
    """Every way the analysis ``res`` of zoo model ``name`` disagrees with the paper (or [])."""
    out = []
    bt, t = res["by_type"], res["totals"]
    if name in PAPER_LAYER_COUNTS:
        for typ, n in PAPER_LAYER_COUNTS[name].items():
            got = bt.get(typ, {}).get("count", 0)
            if got != n:
                out.append(f"{name}: {got} {typ} layers, Table 1 has {n}")
        total = sum(bt.get(typ, {}).get("count", 0) for typ in PAPER_LAYER_COUNTS[name])
        if total != PAPER_LAYER_TOTALS[name]:
            out.append(f"{name}: {total} Table-1 layers, Table 1 has {PAPER_LAYER_TOTALS[name]}")
    if name in PAPER_MACS_M:
        for typ, tol in (("conv", TOL_CONV_MACS), ("fc", TOL_FC_MACS)):
            got = bt[typ]["macs"] / 1e6
            want = PAPER_MACS_M[name][typ]
            if abs(got - want) > tol * want:
                out.append(f"{name}: {typ} {got:.1f}M MACs, the paper has {want}M (+-{tol:.0%})")
        got, want = t["ops"] / 1e6, PAPER_MACS_M[name]["total"]
        if abs(got - want) > TOL_TOTAL_OPS * want:
            out.append(f"{name}: {got:.1f}M ops in all, the paper has {want}M (+-{TOL_TOTAL_OPS:.0%})")
    if name in PAPER_MEMORY_MIB:
        got, want = t["weights_bytes"] / MiB, PAPER_MEMORY_MIB[name]["weights"]
        if abs(got - want) > TOL_WEIGHTS * want:
            out.append(f"{name}: weights {got:.1f} MiB, Table 4 has {want} (+-{TOL_WEIGHTS:.0%})")
    if name in PARAMS and t["params"] != PARAMS[name]:
        out.append(f"{name}: {t['params']:,} params, expected {PARAMS[name]:,}")
    if name == "mobilenet_v2" and abs(t["macs"] - MOBILENET_V2_MACS) > 1e-3 * MOBILENET_V2_MACS:
        out.append(f"mobilenet_v2: {t['macs'] / 1e6:.2f}M MACs, expected 300.8M (+-0.1%)")
    return out


@functools.lru_cache(maxsize=None)
def zoo_analysis(name: str, ext: str = "yaml") -> dict:
    from augur_nas import analyze, load_model

    return analyze(load_model(ZOO / f"{name}.{ext}"))


@functools.lru_cache(maxsize=None)
def shipped_space(name: str):
    from augur_nas import load_space

    return load_space(SPACES / f"{name}.yaml")


@functools.lru_cache(maxsize=None)
def zoo_model(name: str):
    from augur_nas import load_model

    return load_model(ZOO / f"{name}.yaml")


def active_layers(table, b: int, fields=("out_c", "out_h", "out_w", "macs", "params")) -> list[tuple]:
    """The counted (Table-1 typed, active) layers of candidate ``b``, in order."""
    mask = np.asarray(table.rows["mask"])[:, b]
    cols = {f: np.asarray(table.rows[f])[:, b] for f in fields}
    return [(table.types[s],) + tuple(cols[f][s].item() for f in fields)
            for s in range(table.L) if table.types[s] is not None and mask[s]]


@pytest.fixture
def write(tmp_path):
    """``write(name, text)`` -> path of a file in a temporary folder."""

    def _write(name: str, text: str | bytes) -> Path:
        p = tmp_path / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    return _write


# ------------------------------------------------------------------------------ shared fixtures


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root: build every path from it, never from the working directory."""
    return ROOT


def _run_cli(*args, cwd=ROOT, timeout: float = 600, env=None):
    """``python -m augur_nas.cli ARGS`` in a child process, in the repository root unless ``cwd``
    is given: the CompletedProcess (text stdout, stderr, returncode). The child inherits
    PYTHONPATH, so it runs the code under test; ``timeout`` only guards against a hang."""
    return subprocess.run([sys.executable, "-m", "augur_nas.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


@pytest.fixture(scope="session")
def run_cli():
    """The CLI in a child process: ``run_cli("analyze", path, "--json")`` -> CompletedProcess."""
    return _run_cli


# The quick run (``pytest -m "not slow"``, under 2 minutes on 2 cores) keeps a few variants of
# these parametrized tests, those whose id contains one of the listed strings; their other
# variants (more profiles, spaces, networks or bad inputs through the same code) are marked slow.
# The full suite (the README's test command) runs every variant.
QUICK_VARIANTS = {
    "test_exact.py::test_limits_on_memory_params_macs": ("[nb201-tk1-gpu]",),
    "test_exact.py::test_latency_macs_front_is_exhaustive_front": ("[nb201-tk1-gpu]", "[mobile_small-tx1-cpu]"),
    "test_exact.py::test_three_objectives_nb201": ("[tk1-gpu]",),
    "test_exact.py::test_choice_between_subnetworks_is_conditioned": ("[classic_small-tk1-gpu]",),
    "test_exact.py::test_cli_exact_bad_input_exit_2": ("[args0-",),
    "test_calibrate.py::test_bad_measurements_are_one_paragraph_exit_2_and_leave_the_output_intact":
        ("needles1]", "needles10]"),
    "test_fast_path.py::test_oracle_fast_path_equals_table_path": ("mobile_small.yaml]", "resnet.yaml]"),
    "test_fast_path.py::test_oracle_evaluate_equals_reference_batched_and_one_at_a_time": ("mobile.yaml]",),
    "test_fast_path.py::test_one_oracle_asked_batches_of_every_size_in_turn": ("mobile_small.yaml]",),
    "test_agreement.py::test_sources_agree": ("[resnet18]",),
    "test_onnx.py::test_zoo_round_trip": ("[mobilenet_v2]", "[resnet18]", "[shufflenet_v2_x0_5]"),
    "test_onnx.py::test_shipped_space_candidates_round_trip": ("[mobile_small.yaml]",),
    "test_zoo_classic.py::test_yaml_torch_and_onnx_agree": ("[squeezenet1_1]",),
    "test_zoo_classic.py::test_analyze_and_predict_on_every_profile": ("[resnet34]",),
    "test_zoo_mobile.py::test_yaml_torch_onnx_agree": ("[mobilenet_v3_small]",),
    "test_fit.py::test_cli_fit_bad_input": ("[args0-", "[args2-"),
    "test_fit.py::test_cli_bad_batch": ("[0-between 1 and-predict]",),
    "test_new_ops.py::test_bad_shapes_are_one_paragraph_exit_2": ("shuffle: {groups: 2",),
    "test_lowering.py::test_batch_equals_one_at_a_time": ("[mobile_small]", "[nb201]"),
    "test_lowering.py::test_batch_totals_equal_one_at_a_time": ("[mobile_small]", "[resnet]"),
}


# Variants of the full suite that repeat what another variant checks, at 20-30 s each: marked
# long (AUGUR_LONG_TESTS=1 runs them), so that the suite stays under 15 minutes on 2 cores.
LONG_VARIANTS = {
    "test_exact.py::test_choice_between_subnetworks_is_conditioned": ("[resnet-tx1-cpu]",),
    "test_exact.py::test_limits_on_memory_params_macs": ("[mobile_small-tx1-cpu]", "[mobile_small-tk1-cpu]",
                                                         "[mobile_small-tx1-gpu]"),
    "test_fast_path.py::test_oracle_evaluate_equals_reference_batched_and_one_at_a_time": ("nb201.yaml]",),
    "test_onnx.py::test_shipped_space_many_candidates_round_trip": ("[classic.yaml]",),
}


def _long_variant(item) -> bool:
    base = item.nodeid.split("[")[0].split("/")[-1]
    return any(k in item.nodeid for k in LONG_VARIANTS.get(base, ()))


def _quick_variant(item) -> bool:
    """Whether ``item`` runs in the quick run (``QUICK_VARIANTS``)."""
    base = item.nodeid.split("[")[0].split("/")[-1]
    keep = QUICK_VARIANTS.get(base)
    return keep is None or "[" not in item.nodeid or any(k in item.nodeid for k in keep)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` (minutes each) run only with AUGUR_LONG_TESTS=1: the full suite stays
    under 15 minutes on 2 cores, and the long checks are one variable away. The variants of
    ``QUICK_VARIANTS``' tests that the quick run leaves out are marked slow."""
    long_ok = os.environ.get("AUGUR_LONG_TESTS") == "1"
    skip = pytest.mark.skip(reason="a long exhaustive check: set AUGUR_LONG_TESTS=1 to run it")
    for item in items:
        if ("long" in item.keywords or _long_variant(item)) and not long_ok:
            item.add_marker(skip)
        if not _quick_variant(item):
            item.add_marker(pytest.mark.slow)
