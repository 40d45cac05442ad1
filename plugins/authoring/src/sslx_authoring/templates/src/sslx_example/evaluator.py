"""The evaluator 'example': nearest-class-centroid accuracy on frozen features.

Made with `sslx new-plugin example --kind evaluator`. The evaluator's contract
is in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx.features import extract_features, labeled_or_error


@torch.no_grad()
def nearest_centroid(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    cosine: bool = True,
) -> torch.Tensor:
    """The class of the nearest class centroid of each test feature.

    A class's centroid is the mean of its training features; with ``cosine``
    the features are L2-normalised first and centroids compared by cosine
    similarity, else by Euclidean distance. Classes without training
    features are never predicted. Returns ``(N_test,)`` labels."""
    if cosine:
        train_features, test_features = F.normalize(train_features, dim=1), F.normalize(test_features, dim=1)
    counts = torch.bincount(train_labels, minlength=num_classes)
    sums = torch.zeros(num_classes, train_features.shape[1], device=train_features.device)
    centroids = sums.index_add_(0, train_labels, train_features.float()) / counts.clamp(min=1)[:, None]
    if cosine:
        scores = test_features.float() @ F.normalize(centroids, dim=1).T
    else:
        scores = -torch.cdist(test_features.float(), centroids)
    return scores.masked_fill(counts == 0, float("-inf")).argmax(dim=1)


class ExampleEvaluator(sslx.Evaluator):
    """Nearest-class-centroid accuracy: each class of the training split is
    summarised by the mean of its frozen encoder features, and each test
    image gets the class of the nearest centroid. A linear classifier with no
    training at all; reports example_top1 in [0, 1]. Needs labels."""

    name = "example"
    needs_labels = True

    class Params(sslx.Params):
        cosine: bool = Field(
            True,
            description="Compare L2-normalised features by cosine similarity (true) or raw "
            "features by Euclidean distance (false).",
        )

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        train_f, train_y = extract_features(ctx, "train")
        test_f, test_y = extract_features(ctx, "test")
        num_classes = labeled_or_error(self.name, train_y, test_y)
        known = train_y >= 0
        pred = nearest_centroid(train_f[known], train_y[known], test_f, num_classes, self.params.cosine)
        return {f"{self.name}_top1": float((pred == test_y).float().mean())}


@sslx.hookimpl
def sslx_register_evaluators(register):
    register(ExampleEvaluator)
