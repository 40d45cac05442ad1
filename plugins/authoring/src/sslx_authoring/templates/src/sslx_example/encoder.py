"""The encoder 'example': a small all-convolutional network.

Made with `sslx new-plugin example --kind encoder`. The encoder's contract is
in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

import sslx


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    """A 3x3 convolution (``stride`` 2 halves the resolution), BatchNorm, ReLU."""
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ExampleEncoder(sslx.Encoder):
    """A small all-convolutional network: three stages, each a 3x3
    convolution with stride 2 (halving the resolution) and a 3x3
    convolution, both followed by BatchNorm and ReLU, with width, 2 x width
    and 4 x width channels; global average pooling of the last stage gives
    4 x width features."""

    name = "example"
    stages = ("stage1", "stage2", "stage3")

    class Params(sslx.Params):
        width: int = Field(
            16,
            ge=4,
            le=256,
            description="Channels of the first stage (doubling each stage); the features have 4 x width.",
        )

    def __init__(self, params: Params, data: sslx.DataInfo):
        super().__init__(params, data)
        channels = [data.channels, params.width, 2 * params.width, 4 * params.width]
        self.body = nn.ModuleDict(
            {
                name: nn.Sequential(*conv_bn_relu(c_in, c_out, 2), *conv_bn_relu(c_out, c_out, 1))
                for name, c_in, c_out in zip(self.stages, channels[:-1], channels[1:], strict=True)
            }
        )
        self.out_dim = channels[-1]

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, stage in self.body.items():
            x = stage(x)
            out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)["stage3"].mean(dim=(2, 3))


@sslx.hookimpl
def sslx_register_encoders(register):
    register(ExampleEncoder)
