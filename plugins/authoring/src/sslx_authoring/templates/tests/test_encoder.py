"""Tests of the encoder 'example': its behaviour, the conformance kit's
checks of its contract, and a few training steps with the kit's tiny
components. The fixtures sslx_register and sslx_run come with sslx (its
pytest plugin); tests/test_installed.py checks the installed plugin.
"""

from __future__ import annotations

import math

import sslx_example.encoder
import torch
from sslx_example.encoder import ExampleEncoder

import sslx
from sslx.testing import conformance

# The conformance kit's tiny experiment, with this plugin's encoder in it.
TINY = {
    "dataset": {"name": "tiny_images"},
    "augmentation": {"name": "tiny_views"},
    "sampler": {"name": "tiny_pairs"},
    "encoder": {"name": "example", "width": 4},
    "objective": {"name": "tiny_infonce"},
    "evaluators": [],
    "trainer": {"batch_size": 16},
}


def test_each_stage_halves_the_resolution_and_the_features_pool_the_last():
    info = sslx.DataInfo(channels=1, image_size=(28, 28), mean=(0.5,), std=(0.25,), num_classes=None)
    encoder = ExampleEncoder(ExampleEncoder.Params(width=4), info).eval()
    x = torch.randn(2, 1, 28, 28)
    maps = encoder.forward_stages(x)
    assert [tuple(m.shape) for m in maps.values()] == [(2, 4, 14, 14), (2, 8, 7, 7), (2, 16, 4, 4)]
    assert encoder.out_dim == 16
    torch.testing.assert_close(encoder(x), maps["stage3"].mean(dim=(2, 3)))


def test_conforms():
    conformance("encoder", ExampleEncoder)


def test_trains_with_the_tiny_components(sslx_register, sslx_run):
    assert sslx_register(sslx_example.encoder).error is None
    recorder = sslx_run(TINY, steps=3)
    losses = [loss for _, loss in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
