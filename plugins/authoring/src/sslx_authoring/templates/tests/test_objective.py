"""Tests of the objective 'example': its behaviour, the conformance kit's
checks of its contract, and a few training steps with the kit's tiny
components. The fixtures sslx_register and sslx_run come with sslx (its
pytest plugin); tests/test_installed.py checks the installed plugin.
"""

from __future__ import annotations

import math

import sslx_example.objective
import torch
from sslx_example.objective import ExampleObjective, alignment, uniformity

from sslx.testing import conformance

# The conformance kit's tiny experiment, with this plugin's objective in it.
TINY = {
    "dataset": {"name": "tiny_images"},
    "augmentation": {"name": "tiny_views"},
    "sampler": {"name": "tiny_pairs"},
    "encoder": {"name": "tiny_encoder"},
    "objective": {"name": "example"},
    "evaluators": [],
    "trainer": {"batch_size": 16},
}


def test_the_two_terms_on_points_worked_out_by_hand():
    """Identical views are perfectly aligned; two opposite points on the
    sphere are 2 apart, so their potential is exp(-4t); a collapsed batch
    has the highest uniformity loss, 0."""
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert alignment(z, z).item() == 0
    assert alignment(z, z.flip(0)).item() == 4.0
    assert uniformity(z, t=2.0).item() == -8.0
    assert abs(uniformity(torch.tensor([[0.0, 1.0]] * 3), t=2.0).item()) < 1e-6


def test_conforms():
    conformance("objective", ExampleObjective)


def test_trains_with_the_tiny_components(sslx_register, sslx_run):
    assert sslx_register(sslx_example.objective).error is None
    recorder = sslx_run(TINY, steps=3)
    losses = [loss for _, loss in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
