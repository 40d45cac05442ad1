"""The encoders: torchvision ResNets (with a small-image stem) and a small CNN.

Every encoder maps ``(B, C, H, W)`` images to ``(B, out_dim)`` features and
names its stages for per-layer probing (``forward_stages``). torchvision is
imported when a ResNet is built, not when this module is imported.
"""

from __future__ import annotations

from typing import Literal

import torch
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
        import torchvision

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
        self.small = bool(small)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def export(self) -> sslx.ExportedBackbone:
        """torchvision's own model and keys: ``torchvision.models.<arch>()``
        with this encoder's stem and ``fc`` replaced by ``Identity``."""
        lines = ["import torch", "import torchvision", f"model = torchvision.models.{self.arch}()"]
        stem = []
        if self.small:
            lines.append(
                f"model.conv1 = torch.nn.Conv2d({self.data.channels}, 64, kernel_size=3, stride=1, padding=1, bias=False)"
            )
            lines.append("model.maxpool = torch.nn.Identity()")
            stem.append(f"3x3 stride-1 conv1 for {self.data.channels}-channel images, no max-pool")
        elif self.data.channels != 3:
            lines.append(
                f"model.conv1 = torch.nn.Conv2d({self.data.channels}, 64, kernel_size=7, stride=2, padding=3, bias=False)"
            )
            stem.append(f"conv1 for {self.data.channels}-channel images")
        lines.append("model.fc = torch.nn.Identity()")
        stem.append("fc = Identity")
        state = {k.removeprefix("net."): v for k, v in self.state_dict().items()}
        return sslx.ExportedBackbone(
            state=state, code="\n".join(lines), model=f"torchvision.models.{self.arch} ({', '.join(stem)})"
        )

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
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if i < params.blocks - 1:
                block.append(nn.MaxPool2d(2, ceil_mode=True))
            layers.append(nn.Sequential(*block))
            c_in = c_out
        self.blocks = nn.ModuleList(layers)
        self.stages = tuple(f"block{i + 1}" for i in range(params.blocks))
        self.out_dim = c_in

    def export(self) -> sslx.ExportedBackbone:
        """This module's own keys, loaded into :func:`small_cnn`."""
        p = self.params
        code = f"from sslx_encoders.models import small_cnn\nmodel = small_cnn(in_channels={self.data.channels}, width={p.width}, blocks={p.blocks})"
        return sslx.ExportedBackbone(
            state=self.state_dict(),
            code=code,
            model=f"sslx_encoders.models.small_cnn (width {p.width}, {p.blocks} blocks)",
        )

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


def small_cnn(in_channels: int = 3, width: int = 32, blocks: int = 4) -> SmallCNN:
    """A :class:`SmallCNN` without an experiment, e.g. to load weights written
    by ``sslx export``: images ``(B, in_channels, H, W)`` to ``(B, width *
    2**(blocks-1))`` features."""
    data = sslx.DataInfo(
        channels=in_channels, image_size=None, mean=(0.0,) * in_channels, std=(1.0,) * in_channels, num_classes=None
    )
    return SmallCNN(SmallCNN.Params(width=width, blocks=blocks), data)
