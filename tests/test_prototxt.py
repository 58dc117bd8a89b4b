"""Tests of augur_nas.io.prototxt (Caffe prototxt -> model language).

The zoo figures are checked with a small walker defined here (independent of the loader): it
tracks every layer's (C, H, W) from the returned dict, counts layers per Table-1 type and sums
learnable parameters (Scale's gamma/beta are params; BatchNorm's running statistics are not).
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from augur_nas._errors import AugurError, SpecError, UnsupportedOpError
from augur_nas.io.prototxt import parse_prototxt_text, read_prototxt

from conftest import ZOO


TABLE1_TYPE = {
    "conv": "conv", "dwconv": "conv", "maxpool": "pool", "avgpool": "pool", "globalpool": "pool",
    "fc": "fc", "relu": "relu", "lrn": "lrn", "batchnorm": "batchnorm", "scale": "scale",
    "add": "eltwise", "mul": "eltwise", "concat": "concat", "dropout": "dropout",
    "softmax": "softmax", "flatten": "reshape", "sigmoid": "activation", "tanh": "activation",
}


def _pair(v):
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _out_size(i, k, s, p, d=1, ceil=False):
    span = i + 2 * p - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    n = math.ceil(span / s) + 1
    if p and (n - 1) * s >= i + p:  # Caffe: the last window must start inside the input
        n -= 1
    return n


def walk(model):
    """(Table-1 type counts, params, shapes by layer name) of a model dict."""
    shapes = {"input": (model["input"]["channels"], *model["input"]["resolution"])}
    counts: Counter = Counter()
    params = 0
    for entry in model["layers"]:
        assert len(entry) == 1, entry
        (op, p), = entry.items()
        counts[TABLE1_TYPE[op]] += 1
        ins = [shapes[name] for name in p["inputs"]]  # KeyError = a dangling input
        c, h, w = ins[0]
        if op == "conv":
            (kh, kw), (sh, sw), (ph, pw) = _pair(p["kernel"]), _pair(p["stride"]), _pair(p["pad"])
            d = p.get("dilation", 1)
            assert c % p["groups"] == 0, (p["name"], c, p["groups"])
            params += p["out"] * (c // p["groups"]) * kh * kw + (p["out"] if p["bias"] else 0)
            out = (p["out"], _out_size(h, kh, sh, ph, d), _out_size(w, kw, sw, pw, d))
        elif op in ("maxpool", "avgpool"):
            (kh, kw), (sh, sw), (ph, pw) = _pair(p["kernel"]), _pair(p["stride"]), _pair(p["pad"])
            out = (c, _out_size(h, kh, sh, ph, ceil=p["ceil"]),
                   _out_size(w, kw, sw, pw, ceil=p["ceil"]))
        elif op == "globalpool":
            out = (c, 1, 1)
        elif op == "fc":
            params += p["out"] * c * h * w + (p["out"] if p["bias"] else 0)
            out = (p["out"], 1, 1)
        elif op == "scale":
            params += c * (2 if p["bias"] else 1)
            out = (c, h, w)
        elif op == "batchnorm":
            assert p["affine"] is False  # Caffe BatchNorm: running stats only
            out = (c, h, w)
        elif op == "concat":
            assert all(s[1:] == (h, w) for s in ins), (p["name"], ins)
            out = (sum(s[0] for s in ins), h, w)
        elif op in ("add", "mul"):
            assert all(s == ins[0] for s in ins), (p["name"], ins)
            out = (c, h, w)
        else:
            out = (c, h, w)
        assert p["name"] not in shapes, f"duplicate layer name {p['name']}"
        shapes[p["name"]] = out
    return dict(counts), params, shapes


# ---------------------------------------------------------------------------------------------
# The zoo
# ---------------------------------------------------------------------------------------------

ZOO_EXPECTED = {
    # name: (input resolution, Table-1 counts, params)
    "alexnet": (227, {"conv": 5, "pool": 3, "lrn": 2, "relu": 7, "fc": 3, "dropout": 2,
                      "softmax": 1}, 60_965_224),
    "vgg16": (224, {"conv": 13, "pool": 5, "relu": 15, "fc": 3, "dropout": 2, "softmax": 1},
              138_357_544),
    "googlenet": (224, {"conv": 57, "pool": 14, "lrn": 2, "relu": 57, "fc": 1, "concat": 9,
                        "dropout": 1, "softmax": 1}, 6_998_552),
    "resnet50": (224, {"conv": 53, "pool": 2, "batchnorm": 53, "scale": 53, "relu": 49,
                       "eltwise": 16, "fc": 1, "softmax": 1}, 25_557_032),
    "nin": (224, {"conv": 12, "pool": 4, "relu": 12, "dropout": 1, "softmax": 1}, 7_595_176),
}


@pytest.mark.parametrize("name", sorted(ZOO_EXPECTED))
def test_zoo_counts_and_params(name):
    res, expected_counts, expected_params = ZOO_EXPECTED[name]
    model = read_prototxt(ZOO / f"{name}.prototxt")
    assert model["input"] == {"channels": 3, "resolution": [res, res]}
    counts, params, shapes = walk(model)
    assert counts == expected_counts
    assert params == expected_params
    # a deploy classifier: ends in a softmax over 1000 classes
    last = model["layers"][-1]
    assert list(last) == ["softmax"]
    assert shapes[last["softmax"]["name"]] == (1000, 1, 1)


def test_zoo_shapes_of_known_layers():
    _, _, s = walk(read_prototxt(ZOO / "alexnet.prototxt"))
    assert s["conv1"] == (96, 55, 55) and s["pool1"] == (96, 27, 27)
    assert s["pool5"] == (256, 6, 6)
    _, _, s = walk(read_prototxt(ZOO / "googlenet.prototxt"))
    assert s["inception_3a/output"] == (256, 28, 28)
    assert s["inception_5b/output"] == (1024, 7, 7)
    _, _, s = walk(read_prototxt(ZOO / "resnet50.prototxt"))
    assert s["pool1"] == (64, 56, 56)  # Caffe's ceil rounding: 112 -> 56 without padding
    assert s["res3a_branch2a"] == (128, 28, 28)  # stride 2 on the first 1x1 of the block
    assert s["res5c"] == (2048, 7, 7)
    _, _, s = walk(read_prototxt(ZOO / "nin.prototxt"))
    assert s["pool0"] == (96, 27, 27) and s["pool3"] == (384, 6, 6)


def test_zoo_in_place_layers_are_chained():
    model = read_prototxt(ZOO / "resnet50.prototxt")
    by_name = {next(iter(e.values()))["name"]: e for e in model["layers"]}
    # conv1 -> bn_conv1 -> scale_conv1 -> conv1_relu all write blob "conv1"
    assert by_name["bn_conv1"]["batchnorm"]["inputs"] == ["conv1"]
    assert by_name["scale_conv1"]["scale"]["inputs"] == ["bn_conv1"]
    assert by_name["conv1_relu"]["relu"]["inputs"] == ["scale_conv1"]
    assert by_name["pool1"]["maxpool"]["inputs"] == ["conv1_relu"]
    # the shortcut add reads the branches after their in-place Scale layers
    assert by_name["res2a"]["add"]["inputs"] == ["scale2a_branch1", "scale2a_branch2c"]
    # the next block reads the in-place ReLU after the add, not the add itself
    assert by_name["res2b_branch2a"]["conv"]["inputs"] == ["res2a_relu"]
    assert by_name["res2b"]["add"]["inputs"] == ["res2a_relu", "scale2b_branch2c"]
    assert by_name["conv1"]["conv"]["inputs"] == ["input"]
    assert by_name["conv1"]["conv"]["bias"] is False
    assert by_name["pool5"]["avgpool"]["ceil"] is True


def test_zoo_old_style_layers_files():
    # vgg16 and nin are in Caffe's V1 syntax (`layers { type: CONVOLUTION }`)
    for name in ("vgg16", "nin"):
        assert "layers {" in (ZOO / f"{name}.prototxt").read_text()
    model = read_prototxt(ZOO / "nin.prototxt")
    assert model["name"] == "nin_imagenet"
    ops = [next(iter(e)) for e in model["layers"]]
    assert ops[:3] == ["conv", "relu", "conv"]
    pool4 = next(e["avgpool"] for e in model["layers"] if "avgpool" in e)
    assert pool4["kernel"] == 6 and pool4["stride"] == 1 and pool4["inputs"] == ["relu12"]


# ---------------------------------------------------------------------------------------------
# Syntax and layer translation
# ---------------------------------------------------------------------------------------------

HEAD = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'


def _ops(model):
    return [(op, p) for e in model["layers"] for op, p in e.items()]


def test_input_declarations():
    body = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
    forms = [
        HEAD,
        'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 32\ninput_dim: 32\n',
        'input: "data" input_shape: { dim: [1, 3, 32, 32] }\n',
        'layer { name: "data" type: "Input" top: "data"\n'
        '  input_param { shape: { dim: 1 dim: 3 dim: 32 dim: 32 } } }\n',
    ]
    for head in forms:
        model = parse_prototxt_text(head + body, "net.prototxt")
        assert model["input"] == {"channels": 3, "resolution": [32, 32]}, head
        assert model["layers"] == [{"relu": {"name": "r", "inputs": ["input"]}}]
        assert model["name"] == "net"
    rect = parse_prototxt_text('input: "d" input_dim: 1 input_dim: 1 input_dim: 20 input_dim: 30\n'
                               'layer { name: "r" type: "ReLU" bottom: "d" top: "r" }', None)
    assert rect["input"] == {"channels": 1, "resolution": [20, 30]}
    assert "name" not in rect


def test_text_format_details():
    text = '''# leading comment
name: 'quoted' "name"   # adjacent strings concatenate
input: "data"
input_shape < dim: 1, dim: 3; dim: 16 dim: 16 >
layer {
  name: "c" type: "Convolution" bottom: "data" top: "c"
  param { lr_mult: 1 decay_mult: 1 }            # ignored
  convolution_param {
    num_output: 0x10 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride: 2 group: 1
    dilation: 1 bias_term: false
    weight_filler { type: "xavier" std: 1e-2 }  # a nested `type` is not the layer type
  }
}
layer: { name: "p", type: "Pooling", bottom: "c", top: "p",
         pooling_param: { pool: AVE, global_pooling: true } }
layers { name: "f" type: INNER_PRODUCT bottom: "p" top: "f" inner_product_param { num_output: 10 } }
'''
    model = parse_prototxt_text(text, "x.prototxt")
    assert model["name"] == "quotedname"
    assert model["input"] == {"channels": 3, "resolution": [16, 16]}
    ops = _ops(model)
    assert ops[0] == ("conv", {"out": 16, "kernel": [3, 1], "stride": 2, "pad": [1, 0],
                               "groups": 1, "dilation": 1, "bias": False, "name": "c",
                               "inputs": ["input"]})
    assert ops[1] == ("globalpool", {"mode": "avg", "name": "p", "inputs": ["c"]})
    assert ops[2] == ("fc", {"out": 10, "bias": True, "name": "f", "inputs": ["p"]})


def test_layer_translation():
    text = HEAD + '''
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 group: 1 dilation: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "c1" top: "c1" }
layer { name: "sc" type: "Scale" bottom: "c1" top: "c1" scale_param { bias_term: true } }
layer { name: "sc2" type: "Scale" bottom: "c1" top: "c1" }
layer { name: "r" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "n" type: "LRN" bottom: "c1" top: "n" lrn_param { local_size: 3 beta: 0.5 } }
layer { name: "mp" type: "Pooling" bottom: "n" top: "mp"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "ap" type: "Pooling" bottom: "n" top: "ap"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR } }
layer { name: "sum" type: "Eltwise" bottom: "mp" bottom: "ap" top: "sum" }
layer { name: "prod" type: "Eltwise" bottom: "sum" bottom: "mp" top: "prod"
        eltwise_param { operation: PROD } }
layer { name: "cat" type: "Concat" bottom: "prod" bottom: "sum" top: "cat" }
layer { name: "d" type: "Dropout" bottom: "cat" top: "cat" dropout_param { dropout_ratio: 0.3 } }
layer { name: "fl" type: "Flatten" bottom: "cat" top: "fl" }
layer { name: "fc" type: "InnerProduct" bottom: "fl" top: "fc"
        inner_product_param { num_output: 10 bias_term: false } }
layer { name: "s" type: "Sigmoid" bottom: "fc" top: "s" }
layer { name: "prob" type: "Softmax" bottom: "s" top: "prob" }
'''
    ops = _ops(parse_prototxt_text(text, "t.prototxt"))
    strip = [(op, {k: v for k, v in p.items() if k != "name"}) for op, p in ops]
    assert strip == [
        ("conv", {"out": 8, "kernel": 3, "stride": 1, "pad": 1, "groups": 1, "dilation": 2,
                  "bias": True, "inputs": ["input"]}),
        ("batchnorm", {"affine": False, "inputs": ["c1"]}),
        ("scale", {"bias": True, "inputs": ["bn"]}),
        ("scale", {"bias": False, "inputs": ["sc"]}),  # Caffe's Scale has no bias by default
        ("relu", {"inputs": ["sc2"]}),
        ("lrn", {"size": 3, "alpha": 1, "beta": 0.5, "inputs": ["r"]}),  # Caffe's alpha is 1
        ("maxpool", {"kernel": 3, "stride": 2, "pad": 1, "ceil": True, "inputs": ["n"]}),
        ("avgpool", {"kernel": 2, "stride": 2, "pad": 0, "ceil": False, "inputs": ["n"]}),
        ("add", {"inputs": ["mp", "ap"]}),
        ("mul", {"inputs": ["sum", "mp"]}),
        ("concat", {"inputs": ["prod", "sum"]}),
        ("dropout", {"ratio": 0.3, "inputs": ["cat"]}),
        ("flatten", {"inputs": ["d"]}),
        ("fc", {"out": 10, "bias": False, "inputs": ["fl"]}),
        ("sigmoid", {"inputs": ["fc"]}),
        ("softmax", {"inputs": ["s"]}),
    ]


def test_pooling_stride_defaults_to_one_like_caffe():
    text = HEAD + ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                   'pooling_param { kernel_size: 3 } }')
    (op, p), = _ops(parse_prototxt_text(text, "t"))
    assert (op, p["stride"], p["ceil"]) == ("maxpool", 1, True)


def test_in_place_chains_and_split():
    text = HEAD + '''
layer { name: "c" type: "Convolution" bottom: "data" top: "x"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "r1" type: "ReLU" bottom: "x" top: "x" }
layer { name: "s" type: "Split" bottom: "x" top: "x1" top: "x2" }
layer { name: "r2" type: "ReLU" bottom: "x1" top: "x1" }
layer { name: "e" type: "Eltwise" bottom: "x1" bottom: "x2" top: "x" }
layer { name: "r3" type: "ReLU" bottom: "x" top: "y" }
layer { type: "TanH" bottom: "y" top: "y" }
layer { type: "Softmax" bottom: "y" top: "p" }
'''
    ops = _ops(parse_prototxt_text(text, "t"))
    got = [(op, p["name"], p["inputs"]) for op, p in ops]
    assert got == [
        ("conv", "c", ["input"]),
        ("relu", "r1", ["c"]),
        ("relu", "r2", ["r1"]),           # through the Split
        ("add", "e", ["r2", "r1"]),
        ("relu", "r3", ["e"]),            # blob "x" was re-defined by the Eltwise
        ("tanh", "tanh_6", ["r3"]),       # unnamed layers get unique generated names
        ("softmax", "softmax_7", ["tanh_6"]),
    ]


def test_train_only_layers_are_skipped():
    text = HEAD + '''
layer { name: "train_data" type: "Data" top: "data" include { phase: TRAIN } }
layer { name: "r" type: "ReLU" bottom: "data" top: "r" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "r" top: "loss" include { phase: TRAIN } }
layer { name: "p" type: "Softmax" bottom: "r" top: "p" exclude { phase: TRAIN } }
'''
    ops = _ops(parse_prototxt_text(text, "t"))
    assert [p["name"] for _, p in ops] == ["r", "p"]


# ---------------------------------------------------------------------------------------------
# Errors: the right class, one paragraph naming the file, the line and the layer
# ---------------------------------------------------------------------------------------------


def _error(text, cls=SpecError, source="bad.prototxt"):
    with pytest.raises(cls) as info:
        parse_prototxt_text(text, source)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert f"({source}" in msg
    return msg


def test_syntax_error_unclosed_brace_names_line():
    text = HEAD + ('layer {\n  name: "c"\n  type: "ReLU" bottom: "data" top: "c"\n'
                   'layer { name: "d" type: "ReLU" bottom: "c" top: "d" }\n')
    msg = _error(text)
    assert "syntax error" in msg and "never closed" in msg
    assert msg.endswith("(bad.prototxt, line 3)")  # the '{' of the first layer


def test_syntax_error_missing_colon_names_line_and_field():
    text = HEAD + ('layer {\n  name: "c"\n  type: "Convolution" bottom: "data" top: "c"\n'
                   '  convolution_param { num_output: 8 kernel_size 3 }\n}\n')
    msg = _error(text)
    assert "syntax error" in msg and "`kernel_size`" in msg
    assert msg.endswith("(bad.prototxt, line 6)")


@pytest.mark.parametrize("text, line", [
    ('input: "data"\n}\n', 2),                          # closes nothing
    ('name: "unterminated\n', 1),                       # string not closed on its line
    ('input: "data"\nlayer { name: "c" @ }\n', 2),      # stray character
    ('input: "data"\nlayer { name: "c" > \n', 2),       # mismatched closer
    ('input: "data"\nlayer { name: }\n', 2),            # missing value
])
def test_other_syntax_errors(text, line):
    msg = _error(text)
    assert "syntax error" in msg
    assert msg.endswith(f"(bad.prototxt, line {line})")


def test_unknown_layer_type():
    text = HEAD + ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
                   'layer { name: "up" type: "Deconvolution" bottom: "r" top: "up" }\n')
    msg = _error(text, UnsupportedOpError)
    assert "layer 'up'" in msg and "'Deconvolution'" in msg
    assert msg.endswith("(bad.prototxt, line 4)")
    # a training data layer is reported as such, not as a missing input
    msg = _error('layer { name: "d" type: "Data" top: "data" }', UnsupportedOpError)
    assert "layer 'd'" in msg and "deploy" in msg


def test_unknown_bottom():
    text = HEAD + ('layer { name: "c" type: "Convolution" bottom: "data" top: "conv"\n'
                   '  convolution_param { num_output: 8 kernel_size: 3 } }\n'
                   'layer { name: "r" type: "ReLU"\n  bottom: "cnv" top: "r" }\n')
    with pytest.raises(SpecError) as info:
        parse_prototxt_text(text, "bad.prototxt")
    assert not isinstance(info.value, UnsupportedOpError)
    msg = str(info.value)
    assert "bottom 'cnv'" in msg and "layer 'r' (ReLU)" in msg
    assert "did you mean 'conv'" in msg
    assert msg.endswith("(bad.prototxt, line 6)")  # the line of the bottom


def test_cycle_two_layers():
    text = HEAD + ('layer { name: "a" type: "ReLU" bottom: "y" top: "x" }\n'
                   'layer { name: "b" type: "ReLU" bottom: "x" top: "y" }\n')
    msg = _error(text)
    assert "cycle" in msg and "not a DAG" in msg
    assert "'a' -> 'b' -> 'a'" in msg
    assert "layer 'a' (ReLU)" in msg and msg.endswith("(bad.prototxt, line 3)")


def test_cycle_longer():
    text = HEAD + ('layer { name: "a" type: "ReLU" bottom: "z" top: "x" }\n'
                   'layer { name: "b" type: "ReLU" bottom: "x" top: "y" }\n'
                   'layer { name: "c" type: "Eltwise" bottom: "y" bottom: "data" top: "z" }\n')
    msg = _error(text)
    assert "'a' -> 'c' -> 'b' -> 'a'" in msg and "not a DAG" in msg


def test_cycle_layer_consuming_its_own_output():
    text = HEAD + 'layer { name: "r" type: "ReLU" bottom: "loop" top: "loop" }\n'
    msg = _error(text)
    assert "layer 'r' (ReLU)" in msg and "'loop'" in msg and "cycle" in msg
    assert msg.endswith("(bad.prototxt, line 3)")


def test_forward_reference_without_cycle():
    text = HEAD + ('layer { name: "a" type: "ReLU" bottom: "later" top: "x" }\n'
                   'layer { name: "b" type: "ReLU" bottom: "data" top: "later" }\n')
    msg = _error(text)
    assert "cycle" not in msg
    assert "layer 'a' (ReLU)" in msg and "'later'" in msg and "layer 'b'" in msg


@pytest.mark.parametrize("body, cls, needles", [
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
     '  convolution_param { num_output: 8 kernel_size: 0 } }',
     SpecError, ["`kernel_size`", "layer 'c' (Convolution)", ">= 1", "got 0", "line 4"]),
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
     '  convolution_param { kernel_size: 3 } }',
     SpecError, ["`num_output`", "layer 'c' (Convolution)"]),
    ('layer { name: "f" type: "InnerProduct" bottom: "data" top: "f"\n'
     '  inner_product_param { num_output: 8 bias_term: maybe } }',
     SpecError, ["`bias_term`", "true or false", "maybe", "line 4"]),
    ('layer { name: "f" type: "InnerProduct" bottom: "data" top: "f"\n'
     '  inner_product_param { num_output: 999999999999999999999999999 } }',
     SpecError, ["`num_output`", "layer 'f'"]),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
     'layer { name: "m" type: "Eltwise" bottom: "data" bottom: "r" top: "m"\n'
     '  eltwise_param { operation: MAX } }',
     UnsupportedOpError, ["layer 'm' (Eltwise)", "MAX", "line 4"]),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" relu_param { negative_slope: 0.1 } }',
     UnsupportedOpError, ["layer 'r' (ReLU)", "negative_slope"]),
    ('layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
     '  pooling_param { pool: STOCHASTIC kernel_size: 2 } }',
     UnsupportedOpError, ["layer 'p' (Pooling)", "STOCHASTIC"]),
    ('layer { name: "e" type: "Eltwise" bottom: "data" top: "e" }',
     SpecError, ["layer 'e' (Eltwise)", "at least 2 bottoms"]),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
     'layer { name: "r" type: "ReLU" bottom: "r" top: "r" }',
     SpecError, ["'r'", "used twice", "line 4"]),
    ('layer { name: "c" bottom: "data" top: "c" }',
     SpecError, ["layer 'c'", "no `type`"]),
    ('layer { name: "r" type: "ReLU" bottom: "data" }',
     SpecError, ["layer 'r' (ReLU)", "exactly 1 top"]),
])
def test_invalid_layers(body, cls, needles):
    msg = _error(HEAD + body, cls)
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize("text, needles", [
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }', ["no network input"]),
    ('input: "data"\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }', ["no shape"]),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\n', ["`input_dim`", "3 dimensions"]),
    ('input: "a"\ninput: "b"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
     'input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n', ["2 network inputs"]),
    ('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 0 dim: 8 }\n', ["`dim`", "got 0"]),
    (HEAD, ["no layers"]),
])
def test_invalid_inputs(text, needles):
    with pytest.raises(SpecError) as info:
        parse_prototxt_text(text, "bad.prototxt")
    msg = str(info.value)
    assert "\n" not in msg and "bad.prototxt" in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_read_prototxt_file_errors(tmp_path):
    with pytest.raises(SpecError) as info:
        read_prototxt(tmp_path / "missing.prototxt")
    assert "missing.prototxt" in str(info.value)
    bad = tmp_path / "latin1.prototxt"
    bad.write_bytes(b'name: "caf\xe9"\n')
    with pytest.raises(SpecError) as info:
        read_prototxt(bad)
    assert "UTF-8" in str(info.value) and "line 1" in str(info.value)


def test_mutated_zoo_files_raise_only_augur_errors():
    """No traceback for bad input: random edits of real files either parse or raise AugurError."""
    rng = random.Random(1234)
    sources = [(ZOO / f"{n}.prototxt").read_text().split("\n") for n in ("alexnet", "nin")]
    values = ["0", "-1", "2.5", "1e99", "inf", '"x"', "MAX", "PROD", "true", "{ }", "[1, 2]",
              "99999999999999999999", "09", "0x10", "nan", "}", "{", '"', ""]
    outcomes = Counter()
    for _ in range(250):
        lines = list(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(lines))
            r = rng.random()
            if r < 0.3:
                del lines[i]
            elif r < 0.5:
                lines.insert(rng.randrange(len(lines)), lines[i])
            elif ":" in lines[i]:
                lines[i] = lines[i].split(":")[0] + ": " + rng.choice(values)
            else:
                lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)] + rng.choice(values)
        try:
            parse_prototxt_text("\n".join(lines), "mut.prototxt")
            outcomes["ok"] += 1
        except AugurError as exc:
            assert "\n" not in str(exc) and "mut.prototxt" in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 100 and outcomes["ok"] > 10


# ---------------------------------------------------------------------------------------------
# Against the YAML zoo (through the loader)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ZOO_EXPECTED))
def test_prototxt_agrees_with_yaml_zoo(name):
    yaml_path = ZOO / f"{name}.yaml"
    if not yaml_path.exists():
        pytest.skip(f"no YAML zoo file {yaml_path.name}")
    import augur_nas

    proto_path = ZOO / f"{name}.prototxt"
    a = augur_nas.analyze(augur_nas.load_model(proto_path))
    b = augur_nas.analyze(augur_nas.load_model(yaml_path))
    counts_a = {t: v["count"] for t, v in a["by_type"].items()}
    counts_b = {t: v["count"] for t, v in b["by_type"].items()}
    assert counts_a == counts_b
    assert a["totals"]["params"] == b["totals"]["params"] == ZOO_EXPECTED[name][2]
    assert a["totals"]["macs"] == b["totals"]["macs"]
    assert a["input"] == b["input"]
    # the loader agrees with the walker of this file
    expected_counts = {k: v for k, v in ZOO_EXPECTED[name][1].items()}
    assert counts_a == expected_counts
