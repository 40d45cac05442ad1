"""Encoders: output sizes, stages (names, order, shapes, consistency with
forward), the ResNet stem choice, input channels, and gradient flow."""

from __future__ import annotations

import pydantic
import pytest
import torch
from sslx_encoders.models import ResNet18, ResNet50, SmallCNN
from torch import nn

import sslx


def info(channels: int, side: int | None) -> sslx.DataInfo:
    return sslx.DataInfo(
        channels=channels,
        image_size=None if side is None else (side, side),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        num_classes=None,
    )


def images(b: int, channels: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, channels, side, side, generator=torch.Generator().manual_seed(seed))


def first_conv(encoder: nn.Module) -> nn.Conv2d:
    return next(m for m in encoder.modules() if isinstance(m, nn.Conv2d))


def assert_every_parameter_gets_a_gradient(encoder: nn.Module, x: torch.Tensor) -> None:
    encoder.train()
    out = encoder(x)
    # a random projection: a plain sum would be flat through train-mode BatchNorm
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# -- SmallCNN -------------------------------------------------------------------------


@pytest.mark.parametrize("width,blocks,channels,side", [(32, 4, 1, 28), (4, 1, 3, 9), (8, 3, 3, 32), (4, 6, 1, 20)])
def test_small_cnn_shapes_and_stages(width, blocks, channels, side):
    torch.manual_seed(0)
    encoder = SmallCNN(SmallCNN.Params(width=width, blocks=blocks), info(channels, side))
    assert encoder.out_dim == width * 2 ** (blocks - 1)
    assert encoder.stages == tuple(f"block{i + 1}" for i in range(blocks))
    assert first_conv(encoder).in_channels == channels
    x = images(3, channels, side)
    encoder.eval()
    with torch.no_grad():
        out = encoder(x)
        stages = encoder.forward_stages(x)
    assert out.shape == (3, encoder.out_dim)
    assert list(stages) == list(encoder.stages)
    expected_side = side
    for i, name in enumerate(encoder.stages):
        if i < blocks - 1:
            expected_side = -(-expected_side // 2)  # each block but the last ends with a 2x2 max-pool (ceil mode)
        fmap = stages[name]
        assert fmap.ndim == 4 and fmap.shape == (3, width * 2**i, expected_side, expected_side), name
    torch.testing.assert_close(stages[encoder.stages[-1]].mean(dim=(2, 3)), out)


def test_small_cnn_default_is_256_dimensional():
    encoder = SmallCNN(SmallCNN.Params(), info(1, 28))
    assert (encoder.params.width, encoder.params.blocks, encoder.out_dim) == (32, 4, 256)
    with torch.no_grad():
        assert encoder(images(2, 1, 28)).shape == (2, 256)


def test_small_cnn_gradients_reach_every_parameter():
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=3), info(3, 16))
    assert_every_parameter_gets_a_gradient(encoder, images(4, 3, 16))


def test_small_cnn_features_are_per_image_in_eval_mode():
    """In eval mode an image's features do not depend on the rest of the batch."""
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), info(1, 12)).eval()
    x = images(4, 1, 12)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x)[2:3], encoder(x[2:3]))


@pytest.mark.parametrize("bad", [{"width": 2}, {"blocks": 0}, {"blocks": 7}, {"depth": 3}])
def test_small_cnn_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        SmallCNN.Params(**bad)


# -- ResNet-18 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels,side,small_images,expect_small",
    [
        (1, 28, "auto", True),  # Fashion-MNIST: small stem, one input channel
        (3, 32, "auto", True),  # CIFAR-sized
        (3, 64, False, False),  # the ImageNet stem on request
        (1, 64, False, False),  # ImageNet stem on a grayscale input
        (3, 96, "auto", False),  # above 64 px auto keeps the ImageNet stem
        (3, None, "auto", False),  # images of varying size: ImageNet stem
    ],
)
def test_resnet18_stem_shapes_and_stages(channels, side, small_images, expect_small):
    torch.manual_seed(0)
    encoder = ResNet18(ResNet18.Params(small_images=small_images), info(channels, side))
    conv1 = encoder.net.conv1
    assert conv1.in_channels == channels and encoder.out_dim == 512
    if expect_small:
        assert (conv1.kernel_size, conv1.stride) == ((3, 3), (1, 1)) and isinstance(encoder.net.maxpool, nn.Identity)
    else:
        assert (conv1.kernel_size, conv1.stride) == ((7, 7), (2, 2)) and isinstance(encoder.net.maxpool, nn.MaxPool2d)

    side = side or 64
    x = images(2, channels, side)
    encoder.eval()
    with torch.no_grad():
        out = encoder(x)
        stages = encoder.forward_stages(x)
    assert out.shape == (2, 512)
    assert list(stages) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    stem_side = side if expect_small else side // 4  # stride-2 conv and stride-2 max-pool
    widths = {"stem": 64, "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    for i, (name, fmap) in enumerate(stages.items()):
        expected_side = stem_side if i <= 1 else -(-stem_side // 2 ** (i - 1))
        assert fmap.shape == (2, widths[name], expected_side, expected_side), name
    # global average pooling of layer4 is the feature vector (eval mode)
    torch.testing.assert_close(stages["layer4"].mean(dim=(2, 3)), out, rtol=1e-5, atol=1e-5)


def test_resnet18_gradients_reach_every_parameter():
    encoder = ResNet18(ResNet18.Params(), info(1, 16))
    assert_every_parameter_gets_a_gradient(encoder, images(2, 1, 16))


def test_resnet18_zero_init_residual():
    encoder = ResNet18(ResNet18.Params(zero_init_residual=True), info(3, 32))
    last_bns = [block.bn2.weight for layer in (encoder.net.layer1, encoder.net.layer4) for block in layer]
    assert all(torch.equal(w, torch.zeros_like(w)) for w in last_bns)
    default = ResNet18(ResNet18.Params(), info(3, 32))
    assert all(w.abs().sum() > 0 for w in [b.bn2.weight for b in default.net.layer1])


def test_resnet_params_reject_invalid_values():
    with pytest.raises(pydantic.ValidationError):
        ResNet18.Params(small_images="sometimes")


# -- ResNet-50 ---------------------------------------------------------------------------


def test_resnet50_quick_forward():
    torch.manual_seed(0)
    encoder = ResNet50(ResNet50.Params(), info(3, 32)).eval()
    assert encoder.out_dim == 2048
    with torch.no_grad():
        out = encoder(images(2, 3, 32))
    assert out.shape == (2, 2048) and torch.isfinite(out).all()
