"""PyTorch definitions of the seven zoo networks (spaces/zoo/*.yaml), written as their authors
(the Caffe model zoo) or torchvision write them, for tests that import them with ``from_torch``.

- ``alexnet()``: Caffe's models/bvlc_alexnet/deploy.prototxt (grouped conv2/4/5, LRN, ceil pools),
  input 227.
- ``vgg16()``: torchvision's vgg16 (configuration D), input 224.
- ``googlenet()``: Caffe's models/bvlc_googlenet/deploy.prototxt without the two auxiliary heads
  (training only), input 224.
- ``resnet50()``: Kaiming He's Caffe ResNet-50-deploy.prototxt (stride 2 on the first 1x1 conv of
  a downsampling bottleneck, convs without bias, ceil pool1, 7x7 average pool), input 224.
- ``nin()``: NIN-ImageNet of the Caffe model zoo (Lin Min's gist), input 224.
- ``resnet18()``, ``MobileNetV2()``: torchvision's, input 224.

``ZOO_TORCH`` maps each zoo name to ``(factory, input_shape)``. Importing this module needs torch.
"""

from __future__ import annotations

import torch
from torch import nn


# ---------------------------------------------------------------------------------------------
# torchvision's mobilenet_v2 (torchvision 0.9 style: ConvBNActivation / InvertedResidual)


def _make_divisible(v, divisor, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    # Make sure that round down does not go down by more than 10%.
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNActivation(nn.Sequential):
    def __init__(self, in_planes, out_planes, kernel_size=3, stride=1, groups=1, norm_layer=None,
                 activation_layer=None, dilation=1):
        padding = (kernel_size - 1) // 2 * dilation
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if activation_layer is None:
            activation_layer = nn.ReLU6
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, dilation=dilation,
                      groups=groups, bias=False),
            norm_layer(out_planes),
            activation_layer(inplace=True),
        )
        self.out_channels = out_planes


ConvBNReLU = ConvBNActivation


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio, norm_layer=None):
        super().__init__()
        self.stride = stride
        assert stride in [1, 2]
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            # pw
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer))
        layers.extend([
            # dw
            ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_layer=norm_layer),
            # pw-linear
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        else:
            return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, width_mult=1.0, inverted_residual_setting=None,
                 round_nearest=8, block=None, norm_layer=None):
        super().__init__()
        if block is None:
            block = InvertedResidual
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        input_channel = 32
        last_channel = 1280
        if inverted_residual_setting is None:
            inverted_residual_setting = [
                # t, c, n, s
                [1, 16, 1, 1],
                [6, 24, 2, 2],
                [6, 32, 3, 2],
                [6, 64, 4, 2],
                [6, 96, 3, 1],
                [6, 160, 3, 2],
                [6, 320, 1, 1],
            ]
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features = [ConvBNReLU(3, input_channel, stride=2, norm_layer=norm_layer)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(block(input_channel, output_channel, stride, expand_ratio=t,
                                      norm_layer=norm_layer))
                input_channel = output_channel
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(0.2),
            nn.Linear(self.last_channel, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def _forward_impl(self, x):
        x = self.features(x)
        # Cannot use "squeeze" as batch-size can be 1
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x

    def forward(self, x):
        return self._forward_impl(x)


# ---------------------------------------------------------------------------------------------
# torchvision's resnet18


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2,
                                       dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2,
                                       dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2,
                                       dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                base_width=self.base_width, dilation=self.dilation,
                                norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def _forward_impl(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)

        return x

    def forward(self, x):
        return self._forward_impl(x)


def resnet18():
    return ResNet(BasicBlock, [2, 2, 2, 2])


def mobilenet_v2():
    return MobileNetV2()


# ---------------------------------------------------------------------------------------------
# Caffe's bvlc_alexnet (deploy.prototxt): the one-tower version of Krizhevsky et al. 2012 with
# conv2/conv4/conv5 split into two groups; LRN after relu1/relu2, before the pools; pools round up.


class AlexNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),               # conv1: 227 -> 55
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75),           # norm1
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),    # pool1: 55 -> 27
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),   # conv2
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75),           # norm2
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),    # pool2: 27 -> 13
            nn.Conv2d(256, 384, kernel_size=3, padding=1),            # conv3
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),  # conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),  # conv5
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),    # pool5: 13 -> 6
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),                             # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),                                    # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),                             # fc8
        )
        self.prob = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return self.prob(x)


def alexnet():
    return AlexNet()


# ---------------------------------------------------------------------------------------------
# torchvision's vgg16 (VGG configuration D; its AdaptiveAvgPool2d((7, 7)) is the identity at 224)


class VGG(nn.Module):
    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def make_layers(cfg, batch_norm=False):
    layers = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


VGG_CFGS = {
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg16():
    # init_weights=False: the tests only count; skipping the init saves ~1 s on 138M weights
    return VGG(make_layers(VGG_CFGS["D"]), init_weights=False)


# ---------------------------------------------------------------------------------------------
# Caffe's bvlc_googlenet (deploy.prototxt), without the auxiliary classifiers loss1/loss2


class Inception(nn.Module):
    """1x1 | 1x1 reduce -> 3x3 | 1x1 reduce -> 5x5 | maxpool 3x3/1 pad 1 -> 1x1 (pool_proj), every
    conv followed by ReLU, concatenated in that order (inception_*/output)."""

    def __init__(self, in_channels, c1, c3r, c3, c5r, c5, pool_proj):
        super().__init__()
        self.branch1 = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=1), nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels, c3r, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3r, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_channels, c5r, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(c5r, c5, kernel_size=5, padding=2), nn.ReLU(inplace=True))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            nn.Conv2d(in_channels, pool_proj, kernel_size=1), nn.ReLU(inplace=True))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Sequential(                                    # conv1/7x7_s2: 224 -> 112
            nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(inplace=True))
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)   # 112 -> 56
        self.norm1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        self.conv2_reduce = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(
            nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.norm2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)   # 56 -> 28

        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.pool3 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)   # 28 -> 14

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.pool4 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)   # 14 -> 7

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.pool5 = nn.AvgPool2d(kernel_size=7, stride=1)                   # 7 -> 1
        self.drop = nn.Dropout(0.4)
        self.classifier = nn.Linear(1024, num_classes)                       # loss3/classifier
        self.prob = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.norm1(self.pool1(self.conv1(x)))
        x = self.pool2(self.norm2(self.conv2(self.conv2_reduce(x))))
        x = self.pool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        x = self.pool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.drop(self.pool5(x))
        x = torch.flatten(x, 1)
        return self.prob(self.classifier(x))


def googlenet():
    return GoogLeNet()


# ---------------------------------------------------------------------------------------------
# Kaiming He's original Caffe ResNet-50 (ResNet-50-deploy.prototxt), on torchvision's ResNet
# skeleton. Differences from torchvision's resnet50 ("v1.5"): the stride of a downsampling
# bottleneck is on its first 1x1 conv (branch2a), not on the 3x3; pool1 is 3x3/2 without padding,
# rounding up (Caffe); pool5 is a 7x7 average pool. torch's affine BatchNorm2d stands for Caffe's
# BatchNorm (statistics) + Scale (gamma, beta) pair. The published prototxt leaves conv1 with
# Caffe's default bias_term (64 more parameters); like spaces/zoo/resnet50.{yaml,prototxt} (and
# torchvision) conv1 has no bias here.


class CaffeBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.conv1 = conv1x1(inplanes, planes, stride)      # res*_branch2a (stride here)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)                # res*_branch2b
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)  # res*_branch2c
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample                        # res*_branch1 (projection)
        self.stride = stride

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class CaffeResNet(ResNet):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__(block, layers, num_classes=num_classes)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # pool1: 112 -> 56
        self.avgpool = nn.AvgPool2d(kernel_size=7, stride=1)                  # pool5: 7 -> 1
        self.prob = nn.Softmax(dim=1)

    def forward(self, x):
        return self.prob(self._forward_impl(x))


def resnet50():
    return CaffeResNet(CaffeBottleneck, [3, 4, 6, 3])


# ---------------------------------------------------------------------------------------------
# Network in Network, ImageNet model of the Caffe model zoo (Lin, Chen & Yan 2013; Lin Min's
# gist mavenlin/d802a5849de39225bcc6): mlpconv blocks of a conv and two 1x1 "cccp" convs


class NIN(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4), nn.ReLU(inplace=True),       # 224 -> 54
            nn.Conv2d(96, 96, kernel_size=1), nn.ReLU(inplace=True),                 # cccp1
            nn.Conv2d(96, 96, kernel_size=1), nn.ReLU(inplace=True),                 # cccp2
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),                   # pool0: 27
            nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(inplace=True),     # conv2
            nn.Conv2d(256, 256, kernel_size=1), nn.ReLU(inplace=True),               # cccp3
            nn.Conv2d(256, 256, kernel_size=1), nn.ReLU(inplace=True),               # cccp4
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),                   # pool2: 13
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),    # conv3
            nn.Conv2d(384, 384, kernel_size=1), nn.ReLU(inplace=True),               # cccp5
            nn.Conv2d(384, 384, kernel_size=1), nn.ReLU(inplace=True),               # cccp6
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),                   # pool3: 6
            nn.Dropout(0.5),
            nn.Conv2d(384, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True),   # conv4-1024
            nn.Conv2d(1024, 1024, kernel_size=1), nn.ReLU(inplace=True),             # cccp7-1024
            nn.Conv2d(1024, num_classes, kernel_size=1), nn.ReLU(inplace=True),      # cccp8-1024
            nn.AvgPool2d(kernel_size=6, stride=1),                                   # pool4: 1
        )
        self.prob = nn.Softmax(dim=1)

    def forward(self, x):
        return self.prob(self.features(x))


def nin():
    return NIN()


# ---------------------------------------------------------------------------------------------

ZOO_TORCH = {
    "alexnet": (alexnet, (1, 3, 227, 227)),
    "vgg16": (vgg16, (1, 3, 224, 224)),
    "googlenet": (googlenet, (1, 3, 224, 224)),
    "resnet50": (resnet50, (1, 3, 224, 224)),
    "nin": (nin, (1, 3, 224, 224)),
    "resnet18": (resnet18, (1, 3, 224, 224)),
    "mobilenet_v2": (mobilenet_v2, (1, 3, 224, 224)),
}
