"""The component contracts: what a plugin's dataset, sampler, augmentation,
encoder, objective and evaluator must provide.

A run is data flowing forward through these pieces::

    Dataset.split("train") -> PairSampler.sample(...) -> Augmentation.view(...)
        -> Batch -> Objective(encoder)(batch) -> loss    (trainer steps)
    Dataset.split("train"/"test") -> Augmentation.eval(...) -> Encoder -> Evaluator

Every component class declares ``name`` (its registry name) and ``Params``, a
pydantic model whose fields (types, defaults, descriptions, bounds) are the
component's parameters in the experiment file. The class docstring's first
paragraph is the component's description in ``sslx describe``.
"""

from __future__ import annotations

import abc
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from sslx.errors import UserError


class Params(BaseModel):
    """Base for component parameter models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """A component without parameters."""


# ----------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class DataInfo:
    """What the rest of a run needs to know about the images of a dataset."""

    channels: int
    image_size: tuple[int, int] | None  # (height, width); None when images vary in size
    mean: tuple[float, ...]  # per-channel mean of pixel values scaled to [0, 1]
    std: tuple[float, ...]
    num_classes: int | None  # None when the dataset has no labels


class ImageSplit(abc.ABC):
    """One split of an image dataset, indexable like a list.

    ``image(i)`` returns an ``(H, W, C)`` uint8 array; ``labels`` is an int64
    array with ``-1`` for unlabeled items, or ``None`` when nothing is labeled.
    """

    labels: np.ndarray | None
    info: DataInfo

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def image(self, index: int) -> np.ndarray: ...


class ArraySplit(ImageSplit):
    """An in-memory split over an ``(N, H, W, C)`` uint8 array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, info: DataInfo):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be an (N, H, W, C) uint8 array, got {images.dtype}{images.shape}")
        self.images = images
        self.labels = labels
        self.info = info

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> np.ndarray:
        return self.images[index]


@dataclass(frozen=True)
class Tracks:
    """The objects followed through one clip (ground truth or a tracker's output).

    ``boxes[t, k]`` is ``(x0, y0, x1, y1)`` of object ``k`` in frame ``t``
    (pixels, ``x1``/``y1`` exclusive); ``ids`` are identities unique within
    the split; ``classes`` their labels (``-1`` unknown); ``visible[t, k]``
    the fraction of the object that shows in frame ``t`` (0 when absent).
    """

    boxes: np.ndarray  # (T, K, 4) int
    ids: np.ndarray  # (K,) int
    classes: np.ndarray  # (K,) int
    visible: np.ndarray  # (T, K) float


class ClipSplit(ImageSplit):
    """One split of a video dataset: clips of frames, with their audio and
    object tracks where the dataset has them.

    ``frames(i)`` is a ``(T, H, W, C)`` uint8 array shown at ``fps`` frames per
    second; ``audio(i)`` the clip's mono sound as float32 in ``[-1, 1]`` at
    ``sample_rate``, starting with the clip's first frame. As an
    :class:`ImageSplit` (what evaluators read) item ``i`` is the middle frame
    of clip ``i``, labeled with the clip's label.
    """

    fps: float
    sample_rate: int | None = None  # None: the clips have no audio

    @abc.abstractmethod
    def frames(self, index: int) -> np.ndarray: ...

    def audio(self, index: int) -> np.ndarray | None:
        return None

    def tracks(self, index: int) -> Tracks | None:
        return None

    def image(self, index: int) -> np.ndarray:
        frames = self.frames(index)
        return frames[len(frames) // 2]


class ArrayClips(ClipSplit):
    """An in-memory clip split: ``frames`` ``(N, T, H, W, C)`` uint8; ``audio``
    ``(N, S)`` float32 or None; ``tracks`` one :class:`Tracks` per clip or None."""

    def __init__(
        self,
        frames: np.ndarray,
        labels: np.ndarray | None,
        info: DataInfo,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        tracks: list[Tracks] | None = None,
    ):
        if frames.ndim != 5 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be an (N, T, H, W, C) uint8 array, got {frames.dtype}{frames.shape}")
        if (audio is None) != (sample_rate is None):
            raise ValueError("audio and sample_rate go together")
        self.clips = frames
        self.labels = labels
        self.info = info
        self.fps = fps
        self._audio = audio
        self.sample_rate = sample_rate
        self._tracks = tracks

    def __len__(self) -> int:
        return len(self.clips)

    def frames(self, index: int) -> np.ndarray:
        return self.clips[index]

    def audio(self, index: int) -> np.ndarray | None:
        return None if self._audio is None else self._audio[index]

    def tracks(self, index: int) -> Tracks | None:
        return None if self._tracks is None else self._tracks[index]


class Component:
    """Shared by every component class: a registry name and a parameter model."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = NoParams


class Dataset(Component, abc.ABC):
    """A source of items, split into ``"train"`` (pretraining; its labels are
    used only by evaluators) and ``"test"``."""

    def __init__(self, params: Params):
        self.params = params

    @abc.abstractmethod
    def split(self, name: str) -> ImageSplit:
        """Return the split called ``name`` (``"train"`` or ``"test"``)."""

    def report(self) -> dict[str, Any]:
        """Facts about the loaded data worth keeping with the run (for example
        how many undecodable packets were skipped); recorded in the run's
        info under ``data``. Called once the training split is loaded."""
        return {}


class Augmentation(Component, abc.ABC):
    """Turns one image into one augmented view, with its own random state.

    The host reseeds the augmentation (``seed``) before each batch, so the views
    of a seeded run are the same whatever the number of loader workers.
    """

    def __init__(self, params: Params, data: DataInfo):
        self.params = params
        self.data = data

    @abc.abstractmethod
    def seed(self, seed: int) -> None:
        """Reset the random state; called by the host before each batch."""

    @abc.abstractmethod
    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        """Return augmented view number ``view`` of an ``(H, W, C)`` uint8 image
        as a normalised float32 ``(C, h, w)`` tensor."""

    @abc.abstractmethod
    def eval(self, image: np.ndarray) -> torch.Tensor:
        """Return the deterministic evaluation view of an image (same layout)."""

    @property
    @abc.abstractmethod
    def out_channels(self) -> int:
        """Number of channels of the views."""

    def batched(self) -> BatchedAugmentation | None:
        """The same views made a whole batch at a time on the training device
        (``trainer.augment_on_device``), or ``None`` where the augmentation
        has no such path."""
        return None


class BatchedAugmentation(abc.ABC):
    """An augmentation's batched path: the views of a batch of images (a
    uint8 ``(n, C, H, W)`` tensor on the training device) made at once,
    every sample with its own random parameters. ``draw`` makes the random
    parameters of view ``view`` for ``n`` samples from ``generator`` (a dict
    of tensors whose first dimension is the sample), ``apply`` makes the
    views; splitting the two lets each process of a distributed run draw for
    the global batch and apply its own rows."""

    @abc.abstractmethod
    def draw(
        self, view: int, n: int, image_shape: tuple[int, int, int], generator: torch.Generator
    ) -> dict[str, torch.Tensor]: ...

    @abc.abstractmethod
    def apply(self, view: int, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalised float32 views ``(n, C, h, w)`` of ``images`` (uint8 ``(n, C, H, W)``)."""


@dataclass
class Sample:
    """One sample as a pair sampler makes it: ``views`` are positives of each
    other; ``label`` overrides the item's label (for example an object's
    class); ``meta`` holds numbers about where the views come from (frame
    times, patch positions, track ids), collated into ``Batch.meta``."""

    views: list[torch.Tensor]
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class PairSampler(Component, abc.ABC):
    """Turns dataset items into views and says which views are positives.

    Each dataset item gives ``group_size`` samples of ``num_views`` views.
    Views of one sample are positives of each other; views of different
    samples are negatives, including samples of the same item: a sampler
    with ``group_size > 1`` draws the samples of an item so that they are
    true negatives of each other (far-apart patches of one image, distant
    times of one video, different objects of one clip).

    A sampler implements ``sample`` (one sample per item) or ``sample_group``,
    drawing its random choices from ``self.rng``. Samplers must be picklable:
    they run inside DataLoader workers.
    """

    group_size: int = 1
    # True when each sample is just ``num_views`` augmented views of its item's
    # image: the views can then be made on the device (trainer.augment_on_device)
    views_of_one_image: ClassVar[bool] = False

    def __init__(self, params: Params):
        self.params = params
        self.rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        """Reset ``self.rng``, the generator of the sampler's own random
        choices (which patches, frames, objects); called by the host before
        each batch, so seeded runs draw the same samples."""
        self.rng = np.random.default_rng(seed)

    @property
    @abc.abstractmethod
    def num_views(self) -> int: ...

    def sample(self, split: ImageSplit, index: int, augmentation: Augmentation) -> list[torch.Tensor]:
        """Return the views of sample ``index``."""
        raise NotImplementedError(f"sampler {self.name!r} implements neither sample nor sample_group")

    def sample_group(self, split: ImageSplit, index: int, augmentation: Augmentation) -> list[Sample]:
        """Return the ``group_size`` samples of item ``index``."""
        return [Sample(self.sample(split, index, augmentation))]


@dataclass
class Batch:
    """A training batch: ``views[v][b]`` is view ``v`` of sample ``b``; views of
    the same sample are positives, views of different samples negatives.
    ``index`` holds the dataset index of each sample's item (for memory
    banks; samples of one item share it when the sampler's ``group_size`` is
    above 1), ``label`` the labels (``-1`` unknown; never used for training),
    ``meta`` the samplers' per-sample numbers (see :class:`Sample`)."""

    views: list[torch.Tensor]
    index: torch.Tensor
    label: torch.Tensor
    meta: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device, non_blocking: bool = True, channels_last: bool = False) -> Batch:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        return Batch(
            views=[
                v.to(device, non_blocking=non_blocking, memory_format=layout if v.ndim == 4 else torch.preserve_format)
                for v in self.views
            ],
            index=self.index.to(device, non_blocking=non_blocking),
            label=self.label.to(device, non_blocking=non_blocking),
            meta={k: v.to(device, non_blocking=non_blocking) for k, v in self.meta.items()},
        )

    def __len__(self) -> int:
        return len(self.index)


class Encoder(Component, nn.Module):
    """A backbone: images ``(B, C, H, W)`` to features ``(B, out_dim)``.

    ``stages`` names the intermediate layers that ``forward_stages`` returns
    (used by per-layer probes).
    """

    out_dim: int
    stages: tuple[str, ...]

    def __init__(self, params: Params, data: DataInfo):
        nn.Module.__init__(self)
        self.params = params
        self.data = data

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the feature map after each stage, keyed by stage name."""
        raise NotImplementedError(f"encoder {self.name!r} does not expose its stages")

    def export(self) -> ExportedBackbone:
        """The backbone as a standalone model loads it (``sslx export``).

        The default is this module's own ``state_dict`` with code that builds
        the encoder through the registry; encoders that wrap a well-known model
        (torchvision's ResNets) return that model's keys and construction code
        instead, so users need no sslx to load the weights."""
        params = self.params.model_dump(mode="json")
        code = (
            "from sslx.plugins import load_plugins\n"
            "from sslx import DataInfo\n"
            f"info = load_plugins().component('encoder', {self.name!r})\n"
            f"model = info.cls(info.cls.Params(**{params!r}), DataInfo(channels={self.data.channels}, "
            f"image_size={self.data.image_size!r}, mean={self.data.mean!r}, std={self.data.std!r}, num_classes=None))"
        )
        return ExportedBackbone(state=self.state_dict(), code=code, model=f"sslx encoder {self.name!r} {params}")


@dataclass
class ExportedBackbone:
    """An encoder's weights as a standalone model expects them.

    ``state`` loads with ``model.load_state_dict(state, strict=True)`` into
    the model that ``code`` (Python, defining ``model``) builds; ``model``
    names that model in one line.
    """

    state: dict[str, torch.Tensor]
    code: str
    model: str


@dataclass(frozen=True)
class TrainInfo:
    """What an objective may know about the training run it is part of."""

    data: DataInfo
    num_views: int
    batch_size: int  # global batch size, in samples
    total_steps: int
    dataset_size: int  # items in the training split
    group_size: int = 1  # samples per item (see PairSampler)


@dataclass
class ObjectiveOutput:
    """What an objective's forward returns.

    ``loss`` is the scalar to minimise; ``embeddings`` (``(B, D)``, optional)
    are what the host monitors for collapse; ``metrics`` are extra scalars
    logged under ``train.<name>``.
    """

    loss: torch.Tensor
    embeddings: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(Component, nn.Module):
    """A self-supervised method: owns the encoder and its heads, momentum
    encoders, queues or banks, and computes the loss of a batch.

    All state that must survive a restart lives in ``state_dict`` (parameters
    and buffers), so checkpoints capture it.

    Under DDP the host wraps the objective in ``DistributedDataParallel``; an
    objective whose forward leaves some trainable parameters without a
    gradient in some steps (frozen prototypes, an unused branch) sets
    ``ddp_find_unused_parameters = True``.
    """

    ddp_find_unused_parameters: ClassVar[bool] = False

    def __init__(self, params: Params, encoder: Encoder, info: TrainInfo):
        nn.Module.__init__(self)
        self.params = params
        self.encoder = encoder
        self.info = info

    def require_views(self, count: int, what: str = "", hint: str = "") -> None:
        """Raise a ``UserError`` unless the sampler gives ``count`` views per
        sample; ``what`` says what the views are, ``hint`` adds to the fix."""
        if self.info.num_views != count:
            raise UserError(
                f"objective {self.name!r} needs {count} view{'s' if count != 1 else ''} per sample{what}, but the sampler gives "
                f"{self.info.num_views}: set sampler.views to {count}{hint}."
            )

    def require_one_sample_per_item(self, why: str) -> None:
        """Raise a ``UserError`` when the sampler draws several samples from
        one item (``group_size > 1``); ``why`` says what needs one."""
        if self.info.group_size != 1:
            raise UserError(
                f"objective {self.name!r} needs one sample per dataset item ({why}), but the sampler draws "
                f"{self.info.group_size}: use a sampler with one sample per item (its group_size is 1)."
            )

    def forward(self, batch: Batch) -> ObjectiveOutput:
        raise NotImplementedError

    def on_step_end(self, step: int) -> None:
        """Called after each optimizer step (``step`` counts from 1): momentum
        updates and the like go here."""


@dataclass
class EvalContext:
    """Everything an evaluator may use.

    Most evaluators measure ``encoder`` alone; those of a method's other
    parts (the audio branch of an audio-video objective) find them in
    ``objective``. ``cache`` is shared by the evaluators of one evaluation,
    so features of a split are extracted once (see
    :func:`sslx.features.extract`). Files an evaluator wants kept with the
    run (plots, tables) go to :meth:`artifact_path`; the host records them as
    the run's artifacts.
    """

    encoder: Encoder
    dataset: Dataset
    augmentation: Augmentation
    device: torch.device
    batch_size: int
    num_workers: int
    artifacts_dir: Path | None = None  # where evaluators write files (None: a new temporary folder)
    progress: bool = True
    memory_format: torch.memory_format = torch.contiguous_format  # of the encoder's input images
    seed: int = 0  # the run's seed, for evaluators that draw random numbers
    cache: dict[Any, Any] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    objective: Objective | None = None  # the trained objective (heads, other modalities' encoders), where known

    def artifact_path(self, name: str) -> Path:
        """A path in ``artifacts_dir`` for a file to keep with the run as the
        artifact ``name`` (write it there; the host records it afterwards)."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        if self.artifacts_dir is None:
            self.artifacts_dir = Path(tempfile.mkdtemp(prefix="sslx-eval-"))
        self.artifacts[name] = Path(self.artifacts_dir) / name
        return self.artifacts[name]


class Evaluator(Component, abc.ABC):
    """Measures a (frozen or fine-tuned) encoder; returns metrics without the
    ``eval.`` prefix, which the host adds. An evaluator that scores against
    labels sets ``needs_labels``."""

    needs_labels: ClassVar[bool] = False

    def __init__(self, params: Params):
        self.params = params

    def check_data(self, dataset: Dataset) -> None:
        """Raise a ``UserError`` if ``dataset`` lacks what this evaluator
        needs. Called before training starts, so that a run never trains for
        hours to find its evaluation impossible; the default checks that both
        splits are labeled when ``needs_labels`` is set."""
        if self.needs_labels:
            from sslx.features import labeled_or_error, split_labels

            labeled_or_error(self.name, split_labels(dataset.split("train")), split_labels(dataset.split("test")))

    @abc.abstractmethod
    def evaluate(self, ctx: EvalContext) -> dict[str, float]: ...


KINDS: dict[str, type[Component]] = {
    "dataset": Dataset,
    "sampler": PairSampler,
    "augmentation": Augmentation,
    "encoder": Encoder,
    "objective": Objective,
    "evaluator": Evaluator,
}
"""Component kinds by name, with the base class each must derive from."""
