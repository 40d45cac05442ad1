"""Linear probes of frozen features: multinomial logistic regression on the
encoder's output (``linear``) and on the pooled feature map of every stage
(``linear_layers``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

import sslx
from sslx.features import extract, extract_features, labeled_or_error, split_labels
from sslx_linear.logistic import (
    fit_logistic,
    holdout_split,
    linear_probe,
    logistic_objective,
    predict,
    standardize,
)

__all__ = [
    "Linear",
    "LinearLayers",
    "fit_logistic",
    "holdout_split",
    "linear_probe",
    "logistic_objective",
    "plot_layers",
    "pool_stages",
    "pooled_size",
    "predict",
    "stage_dims",
    "standardize",
]


class ProbeParams(sslx.Params):
    optimizer: Literal["lbfgs", "sgd"] = Field(
        "lbfgs",
        description="lbfgs: full-batch L-BFGS with strong-Wolfe line search (max_iter); sgd: mini-batch "
        "SGD with momentum 0.9 and a cosine schedule (epochs, batch_size, lr), often faster on many samples.",
    )
    l2: float | list[float] = Field(
        [1e-5, 1e-4, 1e-3],
        description="Weight of the L2 penalty l2*||W||^2 added to the mean cross-entropy (features standardised). "
        "A list: the value of best accuracy on a held-out val_fraction of the training features is used, "
        "then the probe is refit on all of them (on Fashion-MNIST, raw pixels choose 1e-3 and the 128-d "
        "features of a random small_cnn 1e-4).",
    )
    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Part of the training features held out (seeded by the run's seed) to choose l2 when l2 is a list.",
    )
    max_iter: int = Field(100, ge=1, description="L-BFGS iterations per fit.")
    epochs: int = Field(30, ge=1, description="SGD: passes over the training features.")
    batch_size: int = Field(256, ge=1, description="SGD: mini-batch size.")
    lr: float = Field(0.1, gt=0, description="SGD: peak learning rate (cosine decay to zero).")

    @field_validator("l2")
    @classmethod
    def _non_negative(cls, value: float | list[float]) -> float | list[float]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("give at least one l2 value")
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"l2 values must be finite and >= 0, got {value}")
        return value


def _probe(
    ctx: sslx.EvalContext,
    params: ProbeParams,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
) -> tuple[float, float]:
    """:func:`linear_probe` on the labeled training features, seeded by the
    run's seed, leaving the global RNG untouched."""
    known = train_y >= 0
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return linear_probe(
            train_x[known],
            train_y[known],
            test_x,
            test_y,
            num_classes,
            params.l2,
            params.val_fraction,
            seed=ctx.seed,
            optimizer=params.optimizer,
            max_iter=params.max_iter,
            epochs=params.epochs,
            batch_size=params.batch_size,
            lr=params.lr,
        )


def _labels(ctx: sslx.EvalContext, evaluator: str) -> int:
    """The number of classes, or the UserError, before any feature is extracted."""
    return labeled_or_error(
        evaluator, split_labels(ctx.dataset.split("train")), split_labels(ctx.dataset.split("test"))
    )


class Linear(sslx.Evaluator):
    """Linear-probe top-1 accuracy (the standard protocol, e.g. Kolesnikov et
    al., 2019; Chen et al., 2020): multinomial logistic regression with an L2
    penalty trained on the frozen, standardised encoder features of the
    labeled training split, tested on the test split. Needs labels; reports
    ``linear_top1`` in [0, 1] and the L2 weight used, ``linear_l2``.

    Features are those of ``sslx.features.extract_features``, shared with the
    other evaluators of the same evaluation (a ``knn`` next to it costs no
    second pass). With a list of ``l2`` values, the one of best accuracy on a
    seeded held-out part of the training features is chosen, then the probe is
    refit on all of them.
    """

    name = "linear"
    needs_labels = True
    Params = ProbeParams

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        num_classes = _labels(ctx, self.name)
        train_x, train_y = extract_features(ctx, "train")
        test_x, test_y = extract_features(ctx, "test")
        top1, l2 = _probe(ctx, self.params, train_x, train_y, test_x, test_y, num_classes)
        return {"linear_top1": top1, "linear_l2": l2}


def pooled_size(channels: int, height: int, width: int, max_dim: int) -> int:
    """The side ``s`` of the ``s x s`` average-pooling grid of a ``(channels,
    height, width)`` feature map: the largest ``s`` with ``channels * s * s <=
    max_dim``, at least 1 (so a map of more than ``max_dim`` channels gives
    ``channels`` features) and at most ``min(height, width)``."""
    return max(1, min(math.isqrt(max_dim // channels), height, width))


def pool_stages(maps: dict[str, torch.Tensor], stages: Sequence[str], max_dim: int) -> dict[str, torch.Tensor]:
    """Each stage's ``(B, C, H, W)`` map average-pooled to ``s x s`` (``s``
    from :func:`pooled_size`) and flattened to ``(B, C*s*s)``, in ``stages`` order."""
    out = {}
    for stage in stages:
        m = maps[stage]
        out[stage] = F.adaptive_avg_pool2d(m, pooled_size(m.shape[1], m.shape[2], m.shape[3], max_dim)).flatten(1)
    return out


@torch.no_grad()
def stage_dims(encoder: sslx.Encoder, max_dim: int, image_size: tuple[int, int] | None = None) -> dict[str, int]:
    """The feature dimension ``linear_layers`` probes at each stage of
    ``encoder`` for ``max_dim``, from one forward pass of a blank image of
    ``image_size`` (default: the dataset's, ``encoder.data.image_size``)."""
    size = image_size or encoder.data.image_size
    if size is None:
        raise ValueError("the dataset's images vary in size: pass image_size, the side of the evaluation views")
    param = next(encoder.parameters(), None)
    x = torch.zeros(1, encoder.data.channels, *size, device=param.device if param is not None else "cpu")
    was_training = encoder.training
    encoder.eval()
    try:
        pooled = pool_stages(encoder.forward_stages(x), encoder.stages, max_dim)
    finally:
        encoder.train(was_training)
    return {stage: int(f.shape[1]) for stage, f in pooled.items()}


class LayersParams(ProbeParams):
    max_dim: int = Field(
        2048,
        ge=1,
        description="Each stage's feature map is average-pooled to the largest s x s "
        "grid with channels*s*s <= max_dim (s >= 1, at most the map's size), then flattened.",
    )


def plot_layers(
    path: Path, encoder_name: str, stages: Sequence[str], top1: Sequence[float], dims: Sequence[int]
) -> None:
    """Write the per-stage accuracies as a PNG line plot (Agg, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 1.3 * len(stages) + 1.5), 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = list(range(len(stages)))
    ax.plot(xs, top1, marker="o")
    for x, acc in zip(xs, top1):
        ax.annotate(f"{acc:.3f}", (x, acc), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{s}\n{d} d" for s, d in zip(stages, dims)], fontsize=8)
    ax.set_xlim(-0.5, len(stages) - 0.5)
    ax.set_ylim(max(0.0, min(top1) - 0.1), min(1.05, max(top1) + 0.08))
    ax.set_xlabel("stage (pooled feature dimension)")
    ax.set_ylabel("linear probe top-1")
    ax.set_title(f"Linear probe per stage: {encoder_name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")


class LinearLayers(sslx.Evaluator):
    """Per-stage linear-probe top-1 accuracy (the per-layer protocol of Goyal
    et al., 2019, and Misra & van der Maaten, 2020): the feature map after
    every stage of the frozen encoder is average-pooled to an s x s grid of
    at most ``max_dim`` values and probed like ``linear``. Needs labels and an
    encoder with stages; reports ``layer.<stage>.linear_top1`` per stage and
    writes the plot ``layer_probe.png`` of accuracy against depth.
    """

    name = "linear_layers"
    needs_labels = True
    Params = LayersParams

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        num_classes = _labels(ctx, self.name)
        encoder = ctx.encoder
        encoder_name = getattr(encoder, "name", type(encoder).__name__)
        stages = tuple(getattr(encoder, "stages", ()) or ())
        no_stages = sslx.UserError(
            f"evaluator {self.name!r} probes every stage of the encoder, but encoder {encoder_name!r} does not "
            f"expose its stages (Encoder.stages and forward_stages): use an encoder that does (resnet18, "
            f"resnet50, small_cnn), or remove the evaluator."
        )
        if not stages:
            raise no_stages
        max_dim = self.params.max_dim

        def pooled(enc: sslx.Encoder, x: torch.Tensor) -> dict[str, torch.Tensor]:
            maps = enc.forward_stages(x)
            missing = [s for s in stages if s not in maps]
            if missing:
                raise sslx.UserError(
                    f"encoder {enc.name!r}: forward_stages returned no map for its stages {missing} "
                    f"(it returned {sorted(maps)}), so evaluator 'linear_layers' cannot probe them."
                )
            return pool_stages(maps, stages, max_dim)

        key = ("linear_layers", max_dim)
        try:
            train_f, train_y = extract(ctx, "train", pooled, key=key)
            test_f, test_y = extract(ctx, "test", pooled, key=key)
        except NotImplementedError:
            raise no_stages from None
        metrics, accs, dims = {}, [], []
        for stage in stages:
            top1, _ = _probe(ctx, self.params, train_f[stage], train_y, test_f[stage], test_y, num_classes)
            metrics[f"layer.{stage}.linear_top1"] = top1
            accs.append(top1)
            dims.append(int(train_f[stage].shape[1]))
        plot_layers(ctx.artifact_path("layer_probe.png"), encoder_name, stages, accs, dims)
        return metrics
