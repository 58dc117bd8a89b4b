"""PyTorch definitions of the mobile zoo networks (spaces/zoo/*.yaml), written after torchvision
0.29's definitions (and huawei-noah's official GhostNet code) but without torchvision, for the
tests that import them with ``from_torch`` (tests/test_zoo_mobile.py).

Family builders, each faithful to its reference layer by layer (the same convs, bias flags,
norms, activations and residual edges, in the same order):

- ``mobilenet_v3(cfg, last, last_fc)``: torchvision's MobileNetV3 (InvertedResidual with an SE
  of make_divisible(expanded // 4, 8) channels, relu, hardsigmoid).
- ``mnasnet(depths)``: torchvision's MNASNet (B1, no SE), ``depths`` = _get_depths(alpha).
- ``efficientnet(stem, stages, head)``: torchvision's EfficientNet / EfficientNetV2 (MBConv with an
  SE of max(1, in // 4) channels, SiLU, sigmoid; FusedMBConv). Stochastic depth is identity at
  inference and is left out (it traces to nothing).
- ``ghostnet()``: GhostNet 1.0 of huawei-noah/Efficient-AI-Backbones (ghostnet_pytorch).
- ``shufflenet_v2(channels)``: torchvision's ShuffleNetV2 (chunk, view-transpose-view shuffle).
- ``convnext()``: torchvision's ConvNeXt-Tiny (channels-last LayerNorm and Linear, layer scale;
  stochastic depth, identity at inference, left out).

``ZOO_MOBILE`` maps each zoo name to ``(factory, input_shape)``. Importing this module needs torch.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _make_divisible(v, divisor, min_value=None):
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn_act(cin, cout, k, stride=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeeze, act=nn.ReLU, gate=nn.Hardsigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x):
        s = self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))
        return x * s


class InvertedResidual(nn.Module):
    """MobileNetV3 / MnasNet / EfficientNet's block; ``se`` builds the squeeze-excite (or None)."""

    def __init__(self, cin, hidden, cout, k, stride, act, se=None):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers = []
        if hidden != cin:
            layers.append(conv_bn_act(cin, hidden, 1, act=act))
        layers.append(conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=act))
        if se is not None:
            layers.append(se(hidden))
        layers.append(conv_bn_act(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res else y


class FusedMBConv(nn.Module):
    def __init__(self, cin, expand, cout, k, stride):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        hidden = cin * expand
        if hidden != cin:
            self.block = nn.Sequential(conv_bn_act(cin, hidden, k, stride, act=nn.SiLU),
                                       conv_bn_act(hidden, cout, 1, act=None))
        else:
            self.block = conv_bn_act(cin, cout, k, stride, act=nn.SiLU)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res else y


# ---------------------------------------------------------------------------------------------
# MobileNetV3 (torchvision's tables: in, kernel, expanded, out, SE, activation, stride)

MBV3_LARGE = [(16, 3, 16, 16, 0, "RE", 1), (16, 3, 64, 24, 0, "RE", 2), (24, 3, 72, 24, 0, "RE", 1),
              (24, 5, 72, 40, 1, "RE", 2), (40, 5, 120, 40, 1, "RE", 1), (40, 5, 120, 40, 1, "RE", 1),
              (40, 3, 240, 80, 0, "HS", 2), (80, 3, 200, 80, 0, "HS", 1), (80, 3, 184, 80, 0, "HS", 1),
              (80, 3, 184, 80, 0, "HS", 1), (80, 3, 480, 112, 1, "HS", 1), (112, 3, 672, 112, 1, "HS", 1),
              (112, 5, 672, 160, 1, "HS", 2), (160, 5, 960, 160, 1, "HS", 1), (160, 5, 960, 160, 1, "HS", 1)]
MBV3_SMALL = [(16, 3, 16, 16, 1, "RE", 2), (16, 3, 72, 24, 0, "RE", 2), (24, 3, 88, 24, 0, "RE", 1),
              (24, 5, 96, 40, 1, "HS", 2), (40, 5, 240, 40, 1, "HS", 1), (40, 5, 240, 40, 1, "HS", 1),
              (40, 5, 120, 48, 1, "HS", 1), (48, 5, 144, 48, 1, "HS", 1), (48, 5, 288, 96, 1, "HS", 2),
              (96, 5, 576, 96, 1, "HS", 1), (96, 5, 576, 96, 1, "HS", 1)]


def mobilenet_v3(cfg, last_fc, num_classes=1000):
    def mbv3_se(c):
        return SqueezeExcite(c, _make_divisible(c // 4, 8))

    layers = [conv_bn_act(3, 16, 3, 2, act=nn.Hardswish)]
    for cin, k, hidden, cout, se, act, stride in cfg:
        layers.append(InvertedResidual(cin, hidden, cout, k, stride, nn.ReLU if act == "RE" else nn.Hardswish,
                                       mbv3_se if se else None))
    last = 6 * cfg[-1][3]
    layers.append(conv_bn_act(cfg[-1][3], last, 1, act=nn.Hardswish))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Linear(last, last_fc), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(last_fc, num_classes))


# ---------------------------------------------------------------------------------------------
# MnasNet (torchvision's MNASNet: stacks of kernel, stride, expansion, repeats)

MNAS_STACKS = [(3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1)]


class _Mean(nn.Module):
    def forward(self, x):
        return x.mean([2, 3])


def mnasnet(depths, num_classes=1000):
    layers = [conv_bn_act(3, depths[0], 3, 2),
              conv_bn_act(depths[0], depths[0], 3, 1, groups=depths[0]),
              conv_bn_act(depths[0], depths[1], 1, act=None)]
    for i, (k, s, e, r) in enumerate(MNAS_STACKS):
        cin, cout = depths[i + 1], depths[i + 2]
        for j in range(r):
            layers.append(InvertedResidual(cin if j == 0 else cout, (cin if j == 0 else cout) * e, cout, k,
                                           s if j == 0 else 1, nn.ReLU))
    layers.append(conv_bn_act(depths[7], 1280, 1))
    return nn.Sequential(*layers, _Mean(), nn.Dropout(0.2), nn.Linear(1280, num_classes))


# ---------------------------------------------------------------------------------------------
# EfficientNet (B0 table: expand, kernel, stride, in, out, repeats) and EfficientNetV2-S

EFFNET_B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
EFFNET_V2_S = [("fused", 1, 3, 1, 24, 24, 2), ("fused", 4, 3, 2, 24, 48, 4), ("fused", 4, 3, 2, 48, 64, 4),
               ("mb", 4, 3, 2, 64, 128, 6), ("mb", 6, 3, 1, 128, 160, 9), ("mb", 6, 3, 2, 160, 256, 15)]


def efficientnet(stages, depth_mult=1.0, num_classes=1000):
    """``stages``: (kind, expand, kernel, stride, in, out, repeats); repeats scaled by ceil(n * d)."""
    layers = [conv_bn_act(3, stages[0][4], 3, 2, act=nn.SiLU)]
    for kind, e, k, s, cin, cout, n in stages:
        for j in range(int(math.ceil(n * depth_mult))):
            c_in, stride = (cin, s) if j == 0 else (cout, 1)
            if kind == "fused":
                layers.append(FusedMBConv(c_in, e, cout, k, stride))
            else:
                squeeze = max(1, c_in // 4)

                def se(c, squeeze=squeeze):
                    return SqueezeExcite(c, squeeze, act=nn.SiLU, gate=nn.Sigmoid)

                layers.append(InvertedResidual(c_in, c_in * e, cout, k, stride, nn.SiLU, se))
    layers.append(conv_bn_act(stages[-1][5], 1280, 1, act=nn.SiLU))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(0.2),
                         nn.Linear(1280, num_classes))


# ---------------------------------------------------------------------------------------------
# GhostNet 1.0 (huawei-noah/Efficient-AI-Backbones, ghostnet_pytorch/ghostnet.py; its
# hard_sigmoid, relu6(x + 3) / 6, is nn.Hardsigmoid). cfg: kernel, exp size, out, SE, stride

GHOST_CFG = [(3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 0.25, 2), (5, 120, 40, 0.25, 1),
             (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
             (3, 672, 112, 0.25, 1), (5, 672, 160, 0.25, 2), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1),
             (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)]


class GhostModule(nn.Module):
    def __init__(self, inp, oup, kernel_size=1, ratio=2, dw_size=3, stride=1, relu=True):
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_channels), nn.ReLU(inplace=True) if relu else nn.Sequential())
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False),
            nn.BatchNorm2d(new_channels), nn.ReLU(inplace=True) if relu else nn.Sequential())

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        return torch.cat([x1, x2], dim=1)  # the reference's [:, :oup] keeps all: oup is even here


class GhostBottleneck(nn.Module):
    def __init__(self, in_chs, mid_chs, out_chs, dw_kernel_size=3, stride=1, se_ratio=0.0):
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, (dw_kernel_size - 1) // 2,
                                     groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, _make_divisible(mid_chs * se_ratio, 4)) if se_ratio else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, (dw_kernel_size - 1) // 2, groups=in_chs,
                          bias=False),
                nn.BatchNorm2d(in_chs), nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False), nn.BatchNorm2d(out_chs))

    def forward(self, x):
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(residual)


def ghostnet(num_classes=1000):
    layers = [conv_bn_act(3, 16, 3, 2)]
    cin = 16
    for k, mid, cout, se, s in GHOST_CFG:
        layers.append(GhostBottleneck(cin, mid, cout, k, s, se))
        cin = cout
    layers.append(conv_bn_act(cin, 960, 1))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(960, 1280, 1, 1, 0, bias=True),
                         nn.ReLU(inplace=True), nn.Flatten(1), nn.Dropout(0.2), nn.Linear(1280, num_classes))


# ---------------------------------------------------------------------------------------------
# ShuffleNetV2 (torchvision's: stages_repeats [4, 8, 4], stages_out_channels per width)


def channel_shuffle(x, groups: int):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        bf = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else bf, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def shufflenet_v2(channels, repeats=(4, 8, 4), num_classes=1000):
    layers = [nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = channels[0]
    for r, cout in zip(repeats, channels[1:4]):
        layers += [ShuffleUnit(cin, cout, 2)] + [ShuffleUnit(cout, cout, 1) for _ in range(r - 1)]
        cin = cout
    layers += [nn.Conv2d(cin, channels[4], 1, 1, 0, bias=False), nn.BatchNorm2d(channels[4]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, _Mean(), nn.Linear(channels[4], num_classes))


# ---------------------------------------------------------------------------------------------
# ConvNeXt-Tiny (torchvision's: CNBlock with channels-last LayerNorm and Linear, layer scale,
# stochastic depth identity at inference and left out)


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim, layer_scale=1e-6):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=True)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))).permute(0, 3, 1, 2)
        return self.layer_scale * y + x


def convnext(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes=1000):
    layers = [nn.Conv2d(3, dims[0], 4, 4, bias=True), LayerNorm2d(dims[0], eps=1e-6)]
    for i, (d, c) in enumerate(zip(depths, dims)):
        if i:
            layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], c, 2, 2, bias=True)]
        layers += [CNBlock(c) for _ in range(d)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                         nn.Linear(dims[-1], num_classes))


def _b0_stages():
    return [("mb",) + row for row in EFFNET_B0]


ZOO_MOBILE = {
    "mobilenet_v3_large": (lambda: mobilenet_v3(MBV3_LARGE, 1280), (1, 3, 224, 224)),
    "mobilenet_v3_small": (lambda: mobilenet_v3(MBV3_SMALL, 1024), (1, 3, 224, 224)),
    "mnasnet1_0": (lambda: mnasnet([32, 16, 24, 40, 80, 96, 192, 320]), (1, 3, 224, 224)),
    "mnasnet0_5": (lambda: mnasnet([16, 8, 16, 24, 40, 48, 96, 160]), (1, 3, 224, 224)),
    "efficientnet_b0": (lambda: efficientnet(_b0_stages()), (1, 3, 224, 224)),
    "efficientnet_b1": (lambda: efficientnet(_b0_stages(), 1.1), (1, 3, 240, 240)),
    "efficientnet_v2_s": (lambda: efficientnet(EFFNET_V2_S), (1, 3, 384, 384)),
    "ghostnet": (ghostnet, (1, 3, 224, 224)),
    "shufflenet_v2_x0_5": (lambda: shufflenet_v2([24, 48, 96, 192, 1024]), (1, 3, 224, 224)),
    "shufflenet_v2_x1_0": (lambda: shufflenet_v2([24, 116, 232, 464, 1024]), (1, 3, 224, 224)),
    "convnext_tiny": (convnext, (1, 3, 224, 224)),
}
