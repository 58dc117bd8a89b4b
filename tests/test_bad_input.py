"""Bad input through the CLI: exit code 2, one paragraph naming the file, the key path and the
problem, never a traceback, never a hang."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import pytest

from augur_nas.cli import main
from conftest import ROOT

TIME_LIMIT_S = 20

OK_HEAD = "input: {channels: 3, resolution: 32}\n"


def _alias_bomb(levels=10, width=9):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n" + OK_HEAD + "layers: [relu]\n"


@contextlib.contextmanager
def time_limit(seconds):
    def boom(signum, frame):
        raise TimeoutError(f"took more than {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_cli(args, capsys):
    """main(args) in-process: (exit code, stderr)."""
    capsys.readouterr()
    with time_limit(TIME_LIMIT_S):
        rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.err


def check_message(err: str, path, *expected):
    assert "Traceback" not in err, err
    msg = err.strip()
    assert msg, "no message on stderr"
    assert "\n" not in msg, f"more than one paragraph:\n{err}"
    assert msg.startswith("augur-nas "), msg
    assert str(path) in msg, f"the message does not name the file:\n{msg}"
    for e in expected:
        assert e in msg, f"{e!r} not in:\n{msg}"


# (file name, text, substrings the message must hold: key path and problem)
CASES = [
    # YAML level
    ("malformed", "input: {channels: 3, resolution: 32\nlayers: [\n", ["not valid YAML", "line 2"]),
    ("tab_indent", "input:\n\tchannels: 3\n", ["not valid YAML", "line 2"]),
    ("python_tag", "input: !!python/object/apply:os.system ['echo pwned']\nlayers: [relu]\n",
     ["safe loading refuses", "python"]),
    ("python_object", "!!python/object:builtins.dict {}\n", ["safe loading refuses"]),
    ("alias_bomb", _alias_bomb(), ["alias"]),
    ("deep_lists", "layers: " + "[" * 10_000 + "]" * 10_000 + "\n", ["nests"]),
    ("deep_maps", "layers: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", ["nests"]),
    ("deep_100", "layers: " + "[" * 100 + "]" * 100 + "\n", ["nests deeper than"]),
    ("duplicate_key", OK_HEAD + "layers:\n  - conv: {out: 8, out: 16, kernel: 3}\n", ["`out` twice", "line 3"]),
    ("duplicate_top", OK_HEAD + OK_HEAD + "layers: [relu]\n", ["`input` twice"]),
    ("empty", "", ["is empty"]),
    ("comment_only", "# nothing\n", ["is empty"]),
    ("null_doc", "null\n", ["must hold a mapping"]),
    ("list_doc", "- 1\n- 2\n", ["must hold a mapping", "a list"]),
    ("unhashable_key", "? [a, b]\n: 1\n" + OK_HEAD + "layers: [relu]\n", ["unhashable"]),
    # unknown things
    ("unknown_op", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3}\n  - frobnicate: {x: 1}\n",
     ["layers[1].frobnicate", "unknown layer type `frobnicate`"]),
    ("unknown_macro", OK_HEAD + "layers:\n  - superblock: {out: 8}\n", ["layers[0].superblock", "unknown layer type"]),
    ("unknown_param", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, strides: 2}\n",
     ["layers[0].conv.strides", "no parameter `strides`"]),
    ("unknown_top_key", OK_HEAD + "layer: [relu]\nlayers: [relu]\n", ["unknown top-level key `layer`"]),
    ("unknown_input_key", "input: {channels: 3, resolution: 32, batch: 4}\nlayers: [relu]\n", ["input.batch"]),
    ("unknown_ref", OK_HEAD + "choices: {k: {choice: [3, 5]}}\nlayers:\n  - conv: {out: 8, kernel: $kk}\n",
     ["layers[0].conv.kernel", "`$kk`", "known: k"]),
    ("unknown_cell", OK_HEAD + "layers:\n  - cell: {type: nope}\n", ["layers[0].cell", "`nope`"]),
    ("unknown_input_name", OK_HEAD + "layers:\n  - add: {inputs: [input, nowhere]}\n",
     ["layers[0].add.inputs", "`nowhere`"]),
    ("unknown_act", OK_HEAD + "layers:\n  - mbconv: {out: 8, act: mish}\n", ["layers[0].mbconv.act", "mish"]),
    # wrong value types
    ("out_string", OK_HEAD + "layers:\n  - conv: {out: eight, kernel: 3}\n", ["layers[0].conv.out", "an integer", "'eight'"]),
    ("out_float", OK_HEAD + "layers:\n  - conv: {out: 8.5, kernel: 3}\n", ["layers[0].conv.out", "an integer"]),
    ("kernel_triple", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: [3, 3, 3]}\n", ["layers[0].conv.kernel", "[h, w]"]),
    ("bias_int", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, bias: 1}\n", ["layers[0].conv.bias", "true or false"]),
    ("channels_string", "input: {channels: three, resolution: 32}\nlayers: [relu]\n", ["input.channels"]),
    ("resolution_nan", "input: {channels: 3, resolution: .nan}\nlayers: [relu]\n", ["input.resolution"]),
    ("resolution_pair1", "input: {channels: 3, resolution: [32]}\nlayers: [relu]\n", ["input.resolution", "[h, w]"]),
    ("pad_inf", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, pad: .inf}\n", ["layers[0].conv.pad"]),
    ("pad_word", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, pad: valid}\n", ["layers[0].conv.pad", "`same`"]),
    ("pad_pair_same", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, pad: [1, same]}\n", ["layers[0].conv.pad[1]"]),
    ("pool_pad_same", OK_HEAD + "layers:\n  - maxpool: {kernel: 2, pad: same}\n", ["layers[0].maxpool.pad"]),
    ("layers_string", OK_HEAD + "layers: relu\n", ["(", "layers)", "non-empty list"]),
    ("layers_empty", OK_HEAD + "layers: []\n", ["layers)", "non-empty list"]),
    ("params_int", OK_HEAD + "layers:\n  - conv: 5\n", ["layers[0].conv", "mapping"]),
    ("entry_list", OK_HEAD + "layers:\n  - [relu]\n", ["layers[0]", "a list"]),
    ("entry_two_ops", OK_HEAD + "layers:\n  - {conv: {out: 8, kernel: 3}, relu: {}}\n", ["layers[0]", "exactly one op"]),
    ("name_list", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, name: [a]}\n", ["layers[0].conv.name"]),
    ("inputs_int", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, inputs: 5}\n", ["layers[0].conv.inputs"]),
    ("width_string", OK_HEAD + "width_multiplier: abc\nlayers: [relu]\n", ["width_multiplier", "a number"]),
    ("width_zero", OK_HEAD + "width_multiplier: 0\nlayers: [relu]\n", ["width_multiplier", "> 0"]),
    ("depth_string", OK_HEAD + "layers:\n  - stage: {block: relu, depth: x}\n", ["layers[0].stage.depth"]),
    ("branch_path_int", OK_HEAD + "layers:\n  - branch: {paths: [[relu], 5]}\n", ["layers[0].branch.paths[1]"]),
    ("cell_edge_int", OK_HEAD + "cells: {c: {nodes: 3, edge: 5}}\nlayers:\n  - cell: {type: c}\n", ["cells.c.edge[1<-0]"]),
    ("choice_of_lists", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: {choice: [3, [5]]}}\n", ["layers[0].conv.kernel"]),
    ("mode_int", OK_HEAD + "layers:\n  - globalpool: {mode: 3}\n", ["layers[0].globalpool.mode", "avg, max"]),
    # choices that would change a layer's structure
    ("bias_choice", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, bias: {choice: [true, false]}}\n",
     ["layers[0].conv.bias", "cannot be a choice"]),
    ("ceil_choice", OK_HEAD + "layers:\n  - maxpool: {kernel: 3, ceil: {choice: [true, false]}}\n",
     ["layers[0].maxpool.ceil", "cannot be a choice"]),
    ("skip_choice", OK_HEAD + "layers:\n  - mbconv: {out: 8, skip: {choice: [true, false]}}\n",
     ["layers[0].mbconv.skip", "cannot be a choice"]),
    ("norm_choice", OK_HEAD + "layers:\n  - bottleneck: {mid: 8, norm: {choice: [caffe, batchnorm]}}\n",
     ["layers[0].bottleneck.norm", "cannot be a choice"]),
    ("join_choice", OK_HEAD + "layers:\n  - branch: {paths: [[relu], [relu]], join: {choice: [add, concat]}}\n",
     ["layers[0].branch.join", "cannot be a choice"]),
    ("share_choice", OK_HEAD + "layers:\n  - stage: {block: relu, depth: 2, share: {choice: [true, false]}}\n",
     ["layers[0].stage.share", "cannot be a choice"]),
    ("width_flag_choice", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, width: {choice: [true, false]}}\n",
     ["layers[0].conv.width", "cannot be a choice"]),
    ("pad_choice_same", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, pad: {choice: [same, 1]}}\n",
     ["layers[0].conv.pad", "`same`"]),
    # missing keys
    ("missing_out", OK_HEAD + "layers:\n  - conv: {kernel: 3}\n", ["layers[0].conv.out", "needs the parameter `out`"]),
    ("missing_input", "layers: [relu]\n", ["input)", "top-level `input`"]),
    ("missing_resolution", "input: {channels: 3}\nlayers: [relu]\n", ["input.resolution"]),
    ("missing_layers", OK_HEAD, ["layers)", "top-level `layers`"]),
    ("missing_depth", OK_HEAD + "layers:\n  - stage: {block: relu}\n", ["layers[0].stage", "`depth`"]),
    ("missing_mid", OK_HEAD + "layers:\n  - bottleneck: {out: 64}\n", ["layers[0].bottleneck.mid"]),
    # shapes
    ("kernel_too_big", "input: {channels: 3, resolution: 8}\nlayers:\n  - conv: {out: 8, kernel: 11}\n",
     ["layers[0].conv", "larger than its input", "11x11 over 8x8"]),
    ("kernel_after_fc", OK_HEAD + "layers:\n  - fc: {out: 10}\n  - conv: {out: 8, kernel: 3}\n",
     ["layers[1].conv", "larger than its input"]),
    ("pool_too_big", "input: {channels: 3, resolution: 4}\nlayers:\n  - maxpool: {kernel: 7, stride: 1}\n",
     ["layers[0].maxpool", "larger than its input"]),
    ("shrinks_to_nothing", "input: {channels: 3, resolution: 16}\nlayers:\n"
     + "  - conv: {out: 8, kernel: 3, stride: 2}\n" * 4, ["layers[3].conv", "larger than its input"]),
    ("out_zero", OK_HEAD + "layers:\n  - conv: {out: 0, kernel: 3}\n", ["layers[0].conv.out", ">= 1"]),
    ("resolution_zero", "input: {channels: 3, resolution: 0}\nlayers: [relu]\n", ["input.resolution", ">= 1"]),
    ("channels_zero", "input: {channels: 0, resolution: 8}\nlayers: [relu]\n", ["input.channels"]),
    ("stride_negative", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, stride: -1}\n", ["layers[0].conv.stride", ">= 1"]),
    ("pad_negative", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, pad: -5}\n", ["layers[0].conv.pad", ">= 0"]),
    ("dilation_zero", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, dilation: 0}\n", ["layers[0].conv.dilation"]),
    ("stride_choice_zero", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, stride: {choice: [1, 0]}}\n",
     ["layers[0].conv.stride", ">= 1"]),
    ("depth_negative", OK_HEAD + "layers:\n  - stage: {block: relu, depth: -1}\n", ["layers[0].stage.depth", ">= 0"]),
    ("lrn_size_negative", OK_HEAD + "layers:\n  - lrn: {size: -1}\n", ["layers[0].lrn.size"]),
    ("expand_tiny", OK_HEAD + "layers:\n  - mbconv: {out: 8, expand: 0.01}\n", ["layers[0].mbconv.expand", ">= 1"]),
    ("concat_mismatch", OK_HEAD + "layers:\n  - conv: {name: a, out: 8, kernel: 3, inputs: [input]}\n"
     "  - conv: {name: b, out: 8, kernel: 1, inputs: [input]}\n  - concat: {inputs: [a, b]}\n",
     ["layers[2].concat", "different spatial sizes", "30x30 and 32x32"]),
    ("add_mismatch", OK_HEAD + "layers:\n  - conv: {name: a, out: 8, kernel: 1, inputs: [input]}\n"
     "  - conv: {name: b, out: 4, kernel: 1, inputs: [input]}\n  - add: {inputs: [a, b]}\n",
     ["layers[2].add", "different shapes"]),
    ("groups_mismatch", OK_HEAD + "layers:\n  - conv: {out: 8, kernel: 3, groups: 2}\n", ["layers[0].conv", "`groups`"]),
    ("join_one_input", OK_HEAD + "layers:\n  - concat: {inputs: [input]}\n", ["layers[0].concat.inputs", "two"]),
    ("duplicate_name", OK_HEAD + "layers:\n  - relu: {name: a}\n  - relu: {name: a}\n", ["layers[1].relu", "`a` is used twice"]),
    # empty choices
    ("empty_param_choice", OK_HEAD + "layers:\n  - conv: {out: {choice: []}, kernel: 3}\n",
     ["layers[0].conv.out", "non-empty list"]),
    ("empty_layer_choice", OK_HEAD + "layers:\n  - choice: []\n", ["layers[0].choice", "non-empty list"]),
    ("empty_resolution_choice", "input: {channels: 3, resolution: {choice: []}}\nlayers: [relu]\n",
     ["input.resolution", "non-empty list"]),
    ("empty_named_choice", OK_HEAD + "choices: {k: {choice: []}}\nlayers: [relu]\n", ["choices.k", "non-empty list"]),
    ("empty_cell_choice", OK_HEAD + "cells: {c: {nodes: 3, edge: {choice: []}}}\nlayers:\n  - cell: {type: c}\n",
     ["cells.c.edge[1<-0]", "non-empty list"]),
    ("empty_depth_choice", OK_HEAD + "layers:\n  - stage: {block: relu, depth: {choice: []}}\n",
     ["layers[0].stage.depth", "non-empty list"]),
    ("choice_null", OK_HEAD + "layers:\n  - conv: {out: {choice: }, kernel: 3}\n", ["layers[0].conv.out"]),
    # sizes that would overflow or never finish
    ("huge_int", OK_HEAD + "layers:\n  - conv: {out: 100000000000000000000000, kernel: 3}\n",
     ["layers[0].conv.out", "at most"]),
    ("huge_resolution", "input: {channels: 3, resolution: 10000000000}\nlayers: [relu]\n", ["input.resolution", "at most"]),
    ("huge_tensor", "input: {channels: 3, resolution: 60000}\nlayers:\n  - conv: {out: 16000000, kernel: 3, pad: 1}\n",
     ["layers[0].conv", "too large"]),
    ("huge_depth", OK_HEAD + "layers:\n  - stage: {block: {conv: {out: 8, kernel: 3, pad: 1}}, depth: 1000000}\n",
     ["layers[0].stage.depth", "at most"]),
    ("huge_unroll", OK_HEAD + "layers:\n  - stage: {depth: 800, block: {stage: {depth: 800, block: relu}}}\n",
     ["layers[0].stage", "more than 50,000 layers"]),
    ("huge_cell", OK_HEAD + "cells: {c: {nodes: 1000, edge: relu}}\nlayers:\n  - cell: {type: c}\n", ["cells.c.nodes"]),
    # a search space where a model is expected
    ("space_not_model", "input: {channels: 3, resolution: {choice: [32, 64]}}\nlayers: [relu]\n",
     ["search space with 2 candidates"]),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_yaml_analyze(name, text, expected, write, capsys):
    path = write(f"{name}.yaml", text)
    t0 = time.perf_counter()
    rc, err = run_cli(["analyze", str(path)], capsys)
    assert rc == 2, err
    check_message(err, path, *expected)
    assert time.perf_counter() - t0 < TIME_LIMIT_S


SPACE_CASES = [c for c in CASES if c[0] in ("malformed", "python_tag", "alias_bomb", "unknown_op", "kernel_too_big",
                                              "empty_layer_choice", "huge_unroll")]


@pytest.mark.parametrize("name,text,expected", SPACE_CASES, ids=[c[0] for c in SPACE_CASES])
def test_bad_yaml_space(name, text, expected, write, capsys):
    path = write(f"{name}.yaml", text)
    rc, err = run_cli(["space", str(path)], capsys)
    assert rc == 2, err
    check_message(err, path, *expected)


def test_python_tag_is_never_run(write, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = write("tag.yaml", f"input: !!python/object/apply:os.system ['touch {marker}']\nlayers: [relu]\n")
    rc, err = run_cli(["analyze", str(path)], capsys)
    assert rc == 2 and not marker.exists()
    check_message(err, path, "safe loading refuses")


def test_shape_error_in_some_candidates_of_a_space(write, capsys):
    path = write("space.yaml", "input: {channels: 3, resolution: {choice: [8, 224]}}\nlayers:\n"
                               "  - conv: {out: 8, kernel: 11, stride: 4}\n  - maxpool: {kernel: 3, stride: 2}\n")
    rc, err = run_cli(["space", str(path)], capsys)
    assert rc == 2
    check_message(err, path, "layers[0].conv", "larger than its input", "input.resolution=8")


def test_directory_missing_binary_and_extension(tmp_path, write, capsys):
    d = tmp_path / "adir.yaml"
    d.mkdir()
    rc, err = run_cli(["analyze", str(d)], capsys)
    assert rc == 2
    check_message(err, d, "is a directory")
    missing = tmp_path / "missing.yaml"
    for cmd in ("analyze", "space"):
        rc, err = run_cli([cmd, str(missing)], capsys)
        assert rc == 2
        check_message(err, missing, "no such file")
    rc, err = run_cli(["analyze", str(tmp_path / "missing.prototxt")], capsys)
    assert rc == 2
    check_message(err, tmp_path / "missing.prototxt")
    b = write("binary.yaml", bytes(range(256)) * 8)
    rc, err = run_cli(["analyze", str(b)], capsys)
    assert rc == 2
    check_message(err, b, "not UTF-8")
    for name in ("model.txt", "model"):
        p = write(name, OK_HEAD + "layers: [relu]\n")
        rc, err = run_cli(["analyze", str(p)], capsys)
        assert rc == 2
        check_message(err, p, "unknown extension")


def test_file_too_large(write, capsys):
    p = write("big.yaml", OK_HEAD + "layers:\n" + "  - relu\n" * 700_000)
    rc, err = run_cli(["analyze", str(p)], capsys)
    assert rc == 2
    check_message(err, p, "byte limit")


def test_bad_prototxt(write, capsys):
    p = write("bad.prototxt", "layer {{{ \n")
    rc, err = run_cli(["analyze", str(p)], capsys)
    assert rc == 2
    check_message(err, p)
    p = write("frob.prototxt", 'name: "x"\nlayer { name: "a" type: "Frob" bottom: "data" top: "a" }\n')
    rc, err = run_cli(["analyze", str(p)], capsys)
    assert rc == 2
    check_message(err, p, "Frob")


# --------------------------------------------------------------------------------------------- subprocess

SUBPROCESS_CASES = ["alias_bomb", "deep_lists", "python_tag", "huge_unroll", "malformed"]


@pytest.mark.slow
def test_bad_input_in_a_real_process(tmp_path):
    """The installed entry point, in fresh processes (run side by side), with a hard timeout."""
    texts = {c[0]: (c[1], c[2]) for c in CASES}
    procs = []
    for name in SUBPROCESS_CASES:
        path = tmp_path / f"{name}.yaml"
        path.write_text(texts[name][0])
        procs.append((name, path, subprocess.Popen([sys.executable, "-m", "augur_nas.cli", "analyze", str(path)],
                                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for extra in ("dir", "missing"):
        path = tmp_path / f"{extra}.yaml"
        if extra == "dir":
            path.mkdir()
        procs.append((extra, path, subprocess.Popen([sys.executable, "-m", "augur_nas.cli", "analyze", str(path)],
                                                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for name, path, proc in procs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{name}: the CLI hung")
        assert proc.returncode == 2, (name, err)
        assert out == ""
        check_message(err, path, *(texts[name][1] if name in texts else []))


@pytest.mark.parametrize("cmd,arg,value", [
    ("measure", "--max-wait-s", "-1"), ("measure", "--max-wait-s", "nan"), ("measure", "--spread-s", "-0.5"),
    ("measure", "--warmup-s", "inf"), ("measure", "--retries", "-2"), ("validate", "--retries", "x"),
    ("fit-residual", "--max-wait-s", "-3")])
def test_timing_options_must_not_be_negative(cmd, arg, value, capsys):
    """The measuring commands' waits, spreads, warm-ups and retries: a negative (or non-finite)
    value is a usage error, exit 2, not a silent 'never'."""
    extra = {"measure": ["spaces/zoo/alexnet.yaml"], "validate": ["--device", "x86-2core-ort"],
             "fit-residual": ["--device", "x.yaml", "--space", "spaces/mobile.yaml", "--samples", "2"]}[cmd]
    with pytest.raises(SystemExit) as e:
        main([cmd, *extra, f"{arg}={value}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert arg in err and "must be" in err and "Traceback" not in err
