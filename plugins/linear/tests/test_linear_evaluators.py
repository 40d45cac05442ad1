"""The ``linear`` and ``linear_layers`` evaluators end to end: a frozen random
encoder whose features decide the labels, a slice of the real Fashion-MNIST,
the feature cache shared with ``knn``, the per-stage plot, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
import torch
from sslx_augmentations.views import MoCoV2Views
from sslx_datasets.images import FashionMNIST
from sslx_encoders.models import SmallCNN
from sslx_knn.evaluator import KNN
from sslx_linear.logistic import linear_probe
from sslx_linear.probes import Linear, LinearLayers, plot_layers, pooled_size, stage_dims
from torch import nn

import sslx
from sslx.testing import check_component

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def context(dataset: sslx.Dataset, encoder: sslx.Encoder, seed: int = 0) -> sslx.EvalContext:
    info = dataset.split("train").info
    return sslx.EvalContext(
        encoder=encoder,
        dataset=dataset,
        augmentation=MoCoV2Views(MoCoV2Views.Params(), info),
        device=torch.device("cpu"),
        batch_size=128,
        num_workers=0,
        progress=False,
        seed=seed,
    )


@pytest.fixture(scope="module")
def fashion_mnist() -> FashionMNIST:
    return FashionMNIST(FashionMNIST.Params(train_size=600, test_size=300))


def small_cnn(info: sslx.DataInfo, width: int, blocks: int, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(SmallCNN.Params(width=width, blocks=blocks), info)


def features(encoder: sslx.Encoder, augmentation: sslx.Augmentation, split: sslx.ImageSplit) -> torch.Tensor:
    """Eval views of every image through the encoder in eval mode, in one batch."""
    encoder.eval()
    with torch.no_grad():
        return encoder(torch.stack([augmentation.eval(split.image(i)) for i in range(len(split))]))


class Images(sslx.Dataset):
    """In-memory random 8x8 grayscale images with given labels per split."""

    name = "test_images"
    INFO = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)

    def __init__(self, sizes: dict[str, int], labels: dict[str, np.ndarray | None] | None = None):
        super().__init__(sslx.NoParams())
        rng = np.random.default_rng(0)
        self.images = {name: rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8) for name, n in sizes.items()}
        self.labels = labels or {name: None for name in sizes}

    def split(self, name: str) -> sslx.ArraySplit:
        labels = self.labels[name]
        return sslx.ArraySplit(self.images[name], None if labels is None else np.asarray(labels, np.int64), self.INFO)


def test_linear_recovers_a_linear_labelling_of_frozen_random_features():
    """Labels decided by a random linear map of a frozen random encoder's own
    features are linearly separable in exactly the features the probe sees:
    evaluate() classifies the test split almost perfectly. Unknown (-1)
    training labels are left out."""
    dataset = Images({"train": 1500, "test": 400})
    encoder = small_cnn(Images.INFO, width=8, blocks=2)
    ctx = context(dataset, encoder)
    gen = torch.Generator().manual_seed(1)
    mix = torch.randn(encoder.out_dim, 4, generator=gen)
    train_f = features(encoder, ctx.augmentation, dataset.split("train"))
    mean, std = train_f.mean(0), train_f.std(0)
    labels = {
        name: ((features(encoder, ctx.augmentation, dataset.split(name)) - mean) / std @ mix).argmax(1).numpy()
        for name in ("train", "test")
    }
    assert min(np.bincount(labels["test"], minlength=4)) > 40  # every class is well represented
    labels["train"][::5] = -1
    dataset.labels = labels
    result = Linear(Linear.Params(l2=[1e-6, 1e-5])).evaluate(ctx)
    assert result["linear_top1"] > 0.95
    assert result["linear_l2"] in (1e-6, 1e-5)


def test_linear_on_fashion_mnist_shares_features_with_knn(fashion_mnist):
    """On real images a random encoder's features are linearly informative
    (well above chance, 0.1; about 0.6 here); the result is the probe of the same features
    computed in one batch; one pass over each split serves linear and knn;
    training mode and the global RNG are left as they were."""
    encoder = small_cnn(fashion_mnist.split("train").info, width=8, blocks=3)
    encoder.train()
    passes = []
    encoder.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    ctx = context(fashion_mnist, encoder, seed=3)
    rng = torch.get_rng_state()
    result = Linear(Linear.Params()).evaluate(ctx)
    assert set(result) == {"linear_top1", "linear_l2"} and all(isinstance(v, float) for v in result.values())
    assert result["linear_l2"] in (1e-5, 1e-4, 1e-3)
    assert result["linear_top1"] > 0.45
    assert encoder.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert sum(passes) == 900 and set(ctx.cache) == {("train", "features"), ("test", "features")}

    knn = KNN(KNN.Params()).evaluate(ctx)
    assert sum(passes) == 900  # knn reused the cached features
    assert knn == KNN(KNN.Params()).evaluate(context(fashion_mnist, encoder, seed=3))

    train_split, test_split = fashion_mnist.split("train"), fashion_mnist.split("test")
    top1, l2 = linear_probe(
        features(encoder, ctx.augmentation, train_split),
        torch.as_tensor(train_split.labels),
        features(encoder, ctx.augmentation, test_split),
        torch.as_tensor(test_split.labels),
        10,
        [1e-5, 1e-4, 1e-3],
        seed=3,
    )
    encoder.train()
    assert l2 == result["linear_l2"] and top1 == pytest.approx(result["linear_top1"], abs=2 / 300)

    again = Linear(Linear.Params()).evaluate(context(fashion_mnist, encoder, seed=3))
    assert again == result


def test_linear_sgd_on_fashion_mnist(fashion_mnist):
    encoder = small_cnn(fashion_mnist.split("train").info, width=8, blocks=3)
    params = Linear.Params(optimizer="sgd", l2=1e-4, epochs=20, batch_size=64)
    result = Linear(params).evaluate(context(fashion_mnist, encoder))
    assert result["linear_top1"] > 0.45 and result["linear_l2"] == 1e-4
    assert Linear(params).evaluate(context(fashion_mnist, encoder)) == result


def test_pooled_size_is_the_largest_grid_within_max_dim():
    """Against a brute-force search: the largest s <= min(H, W) with
    C*s*s <= max_dim, or 1 when even 1x1 exceeds it."""
    for channels in (1, 3, 16, 64, 100, 512, 2048, 3000):
        for height, width in ((1, 1), (4, 4), (7, 7), (28, 28), (56, 56), (7, 9)):
            for max_dim in (1, 100, 2048, 9216):
                fits = [s for s in range(1, min(height, width) + 1) if channels * s * s <= max_dim]
                assert pooled_size(channels, height, width, max_dim) == (max(fits) if fits else 1)
    assert pooled_size(64, 56, 56, 9216) == 12  # the ~9k-d per-layer features of Goyal et al., 2019 (64*12*12)
    assert pooled_size(512, 4, 4, 2048) == 2 and pooled_size(4096, 4, 4, 2048) == 1


def adaptive_mean(fmap: torch.Tensor, s: int) -> torch.Tensor:
    """Adaptive average pooling of a (C, H, W) map to s x s by its definition:
    cell (i, j) averages rows floor(i H / s) .. ceil((i+1) H / s) - 1 (and so
    columns), in float64; flattened channel-major."""
    c, h, w = fmap.shape
    out = torch.zeros(c, s, s, dtype=torch.float64)
    for i in range(s):
        for j in range(s):
            rows = slice(i * h // s, math.ceil((i + 1) * h / s))
            cols = slice(j * w // s, math.ceil((j + 1) * w / s))
            out[:, i, j] = fmap[:, rows, cols].double().mean(dim=(1, 2))
    return out.flatten()


def test_linear_layers_on_fashion_mnist(fashion_mnist):
    """One accuracy per stage (above chance), the pooled features as defined,
    the plot written as a PNG and registered as an artifact."""
    info = fashion_mnist.split("train").info
    encoder = small_cnn(info, width=4, blocks=3)
    encoder.train()
    ctx = context(fashion_mnist, encoder)
    result = LinearLayers(LinearLayers.Params(max_dim=256)).evaluate(ctx)
    assert list(result) == [f"layer.{stage}.linear_top1" for stage in encoder.stages]
    assert all(0.3 < v <= 1.0 for v in result.values())
    assert encoder.training

    ((train_f, _),) = [v for k, v in ctx.cache.items() if k[0] == "train"]
    image = ctx.augmentation.eval(fashion_mnist.split("train").image(5))[None]
    encoder.eval()
    with torch.no_grad():
        maps = encoder.forward_stages(image)
    encoder.train()
    for stage in encoder.stages:
        c, h, w = maps[stage].shape[1:]
        s = pooled_size(c, h, w, 256)
        assert train_f[stage].shape == (600, c * s * s) and c * s * s <= 256
        torch.testing.assert_close(train_f[stage][5].double(), adaptive_mean(maps[stage][0], s), rtol=1e-4, atol=1e-5)
    assert [train_f[s].shape[1] for s in encoder.stages] == [256, 200, 256]  # 4*8*8, 8*5*5, 16*4*4
    assert stage_dims(encoder, 256) == {"block1": 256, "block2": 200, "block3": 256} and encoder.training
    # 32 px: maps of 16x16, 8x8, 8x8, where s would be 22, 16, 11 without the cap
    assert stage_dims(encoder, 2048, image_size=(32, 32)) == {
        "block1": 4 * 16**2,
        "block2": 8 * 8**2,
        "block3": 16 * 8**2,
    }

    path = ctx.artifacts["layer_probe.png"]
    assert path.exists() and path.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # not a blank image


def test_plot_layers_writes_a_png(tmp_path):
    path = tmp_path / "plot.png"
    plot_layers(path, "resnet18", ["stem", "layer1"], [0.5, 0.75], [2048, 1600])
    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1000


class Flat(sslx.Encoder):
    """The mean of the image, scaled: no stages."""

    name = "flat_mean"
    out_dim = 1
    stages: tuple[str, ...] = ()

    def __init__(self, data: sslx.DataInfo):
        super().__init__(sslx.NoParams(), data)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))[:, None] * self.scale


class Unexposed(Flat):
    """Names a stage but keeps the default forward_stages."""

    stages = ("body",)


@pytest.mark.parametrize("encoder_cls", [Flat, Unexposed])
def test_linear_layers_needs_an_encoder_with_stages(encoder_cls):
    dataset = Images({"train": 16, "test": 8}, {"train": np.arange(16) % 2, "test": np.arange(8) % 2})
    ctx = context(dataset, encoder_cls(Images.INFO))
    with pytest.raises(sslx.UserError, match="encoder 'flat_mean' does not expose its stages") as err:
        LinearLayers(LinearLayers.Params()).evaluate(ctx)
    assert "linear_layers" in str(err.value)
    assert Linear(Linear.Params()).evaluate(ctx)["linear_top1"] >= 0  # the plain probe works with any encoder


@pytest.mark.parametrize("evaluator", [Linear, LinearLayers])
@pytest.mark.parametrize(
    "train_labels,test_labels",
    [
        (None, None),
        (np.arange(16) % 2, None),
        (np.full(16, -1), np.arange(8) % 2),
        (np.arange(16) % 2, np.array([0, 1] * 3 + [0, -1])),
    ],
)
def test_unlabeled_data_is_a_user_error(evaluator, train_labels, test_labels):
    dataset = Images({"train": 16, "test": 8}, {"train": train_labels, "test": test_labels})
    encoder = small_cnn(Images.INFO, width=4, blocks=1)
    ctx = context(dataset, encoder)
    with pytest.raises(sslx.UserError, match=f"evaluator '{evaluator.name}' needs labeled"):
        evaluator(evaluator.Params()).evaluate(ctx)
    assert not ctx.cache  # refused before extracting any feature


@pytest.mark.parametrize(
    "bad",
    [
        {"l2": -1.0},
        {"l2": []},
        {"l2": [1e-3, -1e-3]},
        {"l2": float("nan")},
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"optimizer": "adam"},
        {"max_iter": 0},
        {"epochs": 0},
        {"lr": 0.0},
        {"alpha": 1},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        Linear.Params(**bad)


def test_params_accept_a_value_or_a_list():
    assert Linear.Params(l2=0.0).l2 == 0.0 and Linear.Params(l2=[0.1]).l2 == [0.1]
    assert LinearLayers.Params(l2=1e-3, max_dim=9216).max_dim == 9216
    with pytest.raises(pydantic.ValidationError):
        LinearLayers.Params(max_dim=0)


@pytest.mark.parametrize("cls", [Linear, LinearLayers])
def test_evaluators_conform(cls):
    check_component(cls, "evaluator")
