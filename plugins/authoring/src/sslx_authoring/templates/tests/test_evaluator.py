"""Tests of the evaluator 'example': its behaviour, the conformance kit's
checks of its contract, and a few training steps with the kit's tiny
components. The fixtures sslx_register and sslx_run come with sslx (its
pytest plugin); tests/test_installed.py checks the installed plugin.
"""

from __future__ import annotations

import math

import sslx_example.evaluator
import torch
from sslx_example.evaluator import ExampleEvaluator, nearest_centroid

from sslx.testing import conformance

# The conformance kit's tiny experiment, with this plugin's evaluator in it.
TINY = {
    "dataset": {"name": "tiny_images"},
    "augmentation": {"name": "tiny_views"},
    "sampler": {"name": "tiny_pairs"},
    "encoder": {"name": "tiny_encoder"},
    "objective": {"name": "tiny_infonce"},
    "evaluators": [{"name": "example"}],
    "trainer": {"batch_size": 16},
}


def test_each_point_gets_the_class_of_the_nearest_centroid():
    """Class 0's centroid is (10, 0), class 1's (0, 1), class 2 has none:
    (2, 1) points towards class 0 but lies nearer to class 1's centroid."""
    train = torch.tensor([[10.0, 1.0], [10.0, -1.0], [0.1, 1.0], [-0.1, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[2.0, 1.0], [-1.0, -0.2]])
    assert nearest_centroid(train, labels, test, num_classes=3, cosine=True).tolist() == [0, 1]
    assert nearest_centroid(train, labels, test, num_classes=3, cosine=False).tolist() == [1, 1]


def test_conforms():
    conformance("evaluator", ExampleEvaluator)


def test_trains_with_the_tiny_components(sslx_register, sslx_run):
    assert sslx_register(sslx_example.evaluator).error is None
    recorder = sslx_run(TINY, steps=3)
    losses = [loss for _, loss in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    [(_, top1)] = recorder.metrics["eval.example_top1"]
    assert 0 <= top1 <= 1
