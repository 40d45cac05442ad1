"""Weighted k-nearest-neighbour evaluation of frozen features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx.features import extract_features, labeled_or_error


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predict test labels by a similarity-weighted vote of the ``k`` nearest
    training samples (Wu et al., 2018, arXiv:1805.01978, sec. 3.4).

    Features are L2-normalised; neighbour ``j`` of a test sample votes for its
    class with weight ``exp(cos_sim / temperature)``.

    Returns:
        ``(N_test,)`` predicted labels.
    """
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    k = min(k, train.shape[0])
    preds = []
    for start in range(0, test.shape[0], chunk_size):
        sims = test[start : start + chunk_size] @ train.T
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = (top_sims / temperature).exp()
        votes = torch.zeros(sims.shape[0], num_classes, device=sims.device, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


class KNN(sslx.Evaluator):
    """Weighted kNN top-1 accuracy (Wu et al., 2018): encoder features of the
    test split classified by a similarity-weighted vote of their k nearest
    training features. Needs labels; reports ``knn_top1`` in [0, 1]."""

    name = "knn"
    needs_labels = True

    class Params(sslx.Params):
        k: int = Field(200, ge=1, description="Neighbours that vote (200 is the usual choice).")
        temperature: float = Field(0.1, gt=0, description="Vote weight exp(similarity / temperature).")

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        train_f, train_y = extract_features(ctx, "train")
        test_f, test_y = extract_features(ctx, "test")
        num_classes = labeled_or_error(self.name, train_y, test_y)
        known = train_y >= 0
        pred = knn_predict(train_f[known], train_y[known], test_f, num_classes, self.params.k, self.params.temperature)
        return {"knn_top1": float((pred == test_y).float().mean())}
