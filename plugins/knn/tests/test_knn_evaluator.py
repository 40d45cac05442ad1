"""The ``knn`` evaluator end to end on a small slice of the real
Fashion-MNIST, and its refusal of unlabeled data."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F
from sslx_augmentations.views import MoCoV2Views
from sslx_datasets.images import FashionMNIST
from sslx_encoders.models import SmallCNN
from sslx_knn.evaluator import KNN

import sslx


def context(dataset: sslx.Dataset, encoder: sslx.Encoder, augmentation: sslx.Augmentation) -> sslx.EvalContext:
    return sslx.EvalContext(
        encoder=encoder,
        dataset=dataset,
        augmentation=augmentation,
        device=torch.device("cpu"),
        batch_size=128,
        num_workers=0,
        artifacts_dir=None,
        progress=False,
    )


@pytest.fixture(scope="module")
def fashion_mnist() -> FashionMNIST:
    return FashionMNIST(FashionMNIST.Params(train_size=512, test_size=256))


def features(encoder: sslx.Encoder, augmentation: sslx.Augmentation, split: sslx.ImageSplit) -> torch.Tensor:
    """Eval views of every image through the encoder in eval mode, in one batch."""
    encoder.eval()
    with torch.no_grad():
        return encoder(torch.stack([augmentation.eval(split.image(i)) for i in range(len(split))]))


@pytest.mark.parametrize("k,temperature", [(200, 0.1), (20, 0.07)])
def test_evaluate_on_fashion_mnist(fashion_mnist, k, temperature):
    """evaluate() returns {'knn_top1': accuracy in [0, 1]}, the accuracy of
    a float64 kNN vote on the same features, well above chance (0.1) even
    for a random encoder; the encoder's training mode is restored."""
    info = fashion_mnist.split("train").info
    augmentation = MoCoV2Views(MoCoV2Views.Params(), info)
    torch.manual_seed(0)
    encoder = SmallCNN(SmallCNN.Params(width=8, blocks=3), info)
    encoder.train()
    result = KNN(KNN.Params(k=k, temperature=temperature)).evaluate(context(fashion_mnist, encoder, augmentation))
    assert set(result) == {"knn_top1"} and isinstance(result["knn_top1"], float)
    assert 0.0 <= result["knn_top1"] <= 1.0
    assert encoder.training

    # independent recomputation: per-image features, then the vote in float64
    train_split, test_split = fashion_mnist.split("train"), fashion_mnist.split("test")
    train_f = F.normalize(features(encoder, augmentation, train_split).double(), dim=1)
    test_f = F.normalize(features(encoder, augmentation, test_split).double(), dim=1)
    train_y, test_y = torch.as_tensor(train_split.labels), torch.as_tensor(test_split.labels)
    correct = 0
    for x, y in zip(test_f, test_y):
        sims = train_f @ x
        top = torch.argsort(sims, descending=True)[:k]
        votes = [0.0] * 10
        for j in top.tolist():
            votes[int(train_y[j])] += math.exp(float(sims[j]) / temperature)
        correct += int(np.argmax(votes) == int(y))
    assert result["knn_top1"] == pytest.approx(correct / len(test_y), abs=2 / 256)
    assert result["knn_top1"] > 0.25


class RandomImages(sslx.Dataset):
    """An in-memory dataset of random 8x8 grayscale images with the given labels."""

    name = "random_images"

    def __init__(self, train_labels, test_labels):
        super().__init__(sslx.NoParams())
        self.labels = {"train": train_labels, "test": test_labels}

    def split(self, name: str) -> sslx.ArraySplit:
        labels = self.labels[name]
        n = 16
        images = np.random.default_rng(len(name)).integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
        info = sslx.DataInfo(
            channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None if labels is None else 2
        )
        return sslx.ArraySplit(images, None if labels is None else np.asarray(labels, dtype=np.int64), info)


@pytest.mark.parametrize(
    "train_labels,test_labels",
    [
        (None, None),  # nothing labeled
        ([0, 1] * 8, None),  # unlabeled test split
        ([-1] * 16, [0, 1] * 8),  # train items all unknown
        ([0, 1] * 8, [0, 1] * 7 + [0, -1]),  # one unknown test item
    ],
)
def test_unlabeled_data_is_a_user_error(train_labels, test_labels):
    dataset = RandomImages(train_labels, test_labels)
    info = dataset.split("train").info
    ctx = context(dataset, SmallCNN(SmallCNN.Params(width=4, blocks=1), info), MoCoV2Views(MoCoV2Views.Params(), info))
    with pytest.raises(sslx.UserError, match="labeled"):
        KNN(KNN.Params()).evaluate(ctx)


def test_partly_labeled_train_split_uses_its_labeled_items():
    """Train items labeled -1 are left out of the vote; evaluation works."""
    dataset = RandomImages([0, 1] * 4 + [-1] * 8, [0, 1] * 8)
    info = dataset.split("train").info
    ctx = context(dataset, SmallCNN(SmallCNN.Params(width=4, blocks=1), info), MoCoV2Views(MoCoV2Views.Params(), info))
    result = KNN(KNN.Params(k=3)).evaluate(ctx)
    assert 0.0 <= result["knn_top1"] <= 1.0


@pytest.mark.parametrize("bad", [{"k": 0}, {"temperature": 0.0}, {"neighbours": 5}])
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        KNN.Params(**bad)
