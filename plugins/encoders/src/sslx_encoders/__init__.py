"""Encoders: torchvision ResNets (with a small-image stem) and a small CNN.

Every encoder maps ``(B, C, H, W)`` images to ``(B, out_dim)`` features and
names its stages for per-layer probing (``forward_stages``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from pydantic import Field
from torch import nn

import sslx


class ResNetParams(sslx.Params):
    small_images: bool | Literal["auto"] = Field(
        "auto",
        description="Use a 3x3 stride-1 first convolution and no max-pool (the usual stem for images of 32 px or "
        "less); auto: on when the dataset's images are at most 64 px.",
    )
    zero_init_residual: bool = Field(False, description="Start each residual block's last BatchNorm at zero.")


class ResNet(sslx.Encoder):
    """A torchvision ResNet without its classifier."""

    Params = ResNetParams
    arch = "resnet18"
    stages = ("stem", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, params: ResNetParams, data: sslx.DataInfo):
        super().__init__(params, data)
        net = getattr(torchvision.models, self.arch)(weights=None, zero_init_residual=params.zero_init_residual)
        small = params.small_images
        if small == "auto":
            small = data.image_size is not None and max(data.image_size) <= 64
        if small:
            net.conv1 = nn.Conv2d(data.channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif data.channels != 3:
            net.conv1 = nn.Conv2d(data.channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if small or data.channels != 3:
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n = self.net
        out = {"stem": n.maxpool(n.relu(n.bn1(n.conv1(x))))}
        h = out["stem"]
        for name in self.stages[1:]:
            h = getattr(n, name)(h)
            out[name] = h
        return out


class ResNet18(ResNet):
    """ResNet-18 (He et al., 2016) from torchvision, 512-d features."""

    name = "resnet18"
    arch = "resnet18"


class ResNet50(ResNet):
    """ResNet-50 (He et al., 2016) from torchvision, 2048-d features."""

    name = "resnet50"
    arch = "resnet50"


class SmallCNN(sslx.Encoder):
    """A small convolutional network for CPU runs and tests: ``blocks`` blocks
    of two 3x3 convolutions with BatchNorm and ReLU, each but the last followed
    by 2x2 max-pooling, then global average pooling. Width doubles per block."""

    name = "small_cnn"

    class Params(sslx.Params):
        width: int = Field(32, ge=4, le=512, description="Channels of the first block (doubling each block).")
        blocks: int = Field(4, ge=1, le=6, description="Number of blocks; each is a stage for probing.")

    def __init__(self, params: Params, data: sslx.DataInfo):
        super().__init__(params, data)
        layers = []
        c_in = data.channels
        for i in range(params.blocks):
            c_out = params.width * 2**i
            block = [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            ]
            if i < params.blocks - 1:
                block.append(nn.MaxPool2d(2, ceil_mode=True))
            layers.append(nn.Sequential(*block))
            c_in = c_out
        self.blocks = nn.ModuleList(layers)
        self.stages = tuple(f"block{i + 1}" for i in range(params.blocks))
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, block in zip(self.stages, self.blocks):
            x = block(x)
            out[name] = x
        return out


@sslx.hookimpl
def sslx_register_encoders(register):
    register(ResNet18)
    register(ResNet50)
    register(SmallCNN)
