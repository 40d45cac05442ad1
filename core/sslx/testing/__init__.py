"""The conformance kit for plugin components, and the small tools it uses.

A plugin's test suite checks each component it ships with one call, which
builds it with tiny real parts (photo patches, a small encoder; see
:mod:`sslx.testing.tinyparts`) and checks its kind's whole contract::

    from sslx.testing import conformance

    def test_my_objective_conforms():
        conformance("objective", MyObjective)

The checks it runs are here too, for components built your own way:
:func:`check_component` (the registry's contract), :func:`check_dataset`,
:func:`check_augmentation`, :func:`check_sampler`, :func:`check_encoder`,
:func:`check_objective` and :func:`check_evaluator`. Each raises
``AssertionError`` naming the component and the rule it breaks (the contracts
themselves are in ``components.py`` and docs/plugins.md). The host's own
tests run them on every registered component. The pytest fixtures
(``sslx_host``, ``sslx_register``, ``sslx_tiny_dataset``, ``sslx_run``) are
in :mod:`sslx.testing.pytest_plugin`, which pytest loads by itself wherever sslx is
installed.
"""

from __future__ import annotations

import io
import math
import pickle
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sslx.components import (
    KINDS,
    Augmentation,
    Batch,
    Component,
    DataInfo,
    Dataset,
    Encoder,
    EvalContext,
    Evaluator,
    ImageSplit,
    Objective,
    ObjectiveOutput,
    PairSampler,
    TrainInfo,
)
from sslx.errors import UserError

if TYPE_CHECKING:
    from sslx.plugins import PluginHost

__all__ = [
    "PixelViews",
    "check_augmentation",
    "check_component",
    "check_dataset",
    "check_encoder",
    "check_evaluator",
    "check_objective",
    "check_sampler",
    "conformance",
    "random_batch",
    "run_experiment",
    "run_in_processes",
    "train_step",
]


def _who(component: Any, kind: str) -> str:
    return f"{kind} {getattr(component, 'name', type(component).__name__)!r}"


class PixelViews(Augmentation):
    """An augmentation that changes nothing: every view, and the evaluation
    view, is the image's pixels as a float32 ``(C, H, W)`` tensor with the
    values kept (0-255). Sampler tests use it to trace each view back to the
    pixels it was cut from::

        views = PixelViews(sslx.NoParams(), split.info)
    """

    name = "pixel_views"

    def seed(self, seed: int) -> None:
        pass

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1).contiguous()

    def eval(self, image: np.ndarray) -> torch.Tensor:
        return self.view(image, 0)

    @property
    def out_channels(self) -> int:
        return self.data.channels


def random_batch(
    num_views: int = 2,
    batch_size: int = 4,
    size: int = 8,
    channels: int = 1,
    index: torch.Tensor | None = None,
    seed: int = 1,
) -> Batch:
    """A batch of ``num_views`` Gaussian-noise views ``(batch_size, channels,
    size, size)``, dataset indices ``0..batch_size-1`` (or ``index``) and
    unknown labels; the same for the same arguments."""
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(batch_size, channels, size, size, generator=gen) for _ in range(num_views)]
    index = torch.arange(batch_size) if index is None else torch.as_tensor(index)
    return Batch(views=views, index=index, label=torch.full((batch_size,), -1))


def train_step(objective: Objective, batch: Batch, step: int, lr: float = 0.5) -> ObjectiveOutput:
    """One optimizer step as the trainer takes it: forward, backward, a plain
    SGD step on the parameters that require gradients, then
    ``on_step_end(step)``. Returns the forward's output."""
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr)
    optimizer.zero_grad()
    out = objective(batch)
    out.loss.backward()
    optimizer.step()
    objective.on_step_end(step)
    return out


def check_component(cls: type[Component], kind: str) -> None:
    """The registry's contract: ``cls`` derives from the base class of
    ``kind``, has a registry name (lowercase letters, digits, ``_``), a
    docstring whose first paragraph ``sslx describe`` shows, and a
    ``Params`` model whose every field has a description."""
    base = KINDS[kind]
    who = f"{kind} {getattr(cls, 'name', cls.__name__)!r} ({cls.__module__}.{cls.__qualname__})"
    assert isinstance(cls, type) and issubclass(cls, base), f"{who} must derive from sslx.{base.__name__}"
    name = cls.__dict__.get("name") or getattr(cls, "name", None)
    assert isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", name), (
        f"{who}: `name` must be a lowercase identifier such as 'my_method', got {name!r}"
    )
    assert (cls.__doc__ or "").strip(), (
        f"{who} needs a docstring: its first paragraph is its description in `sslx describe`"
    )
    undocumented = [field for field, info in cls.Params.model_fields.items() if not (info.description or "").strip()]
    assert not undocumented, f"{who}: parameters without a description (Field(description=...)): {undocumented}"


def _output_problems(out: object, batch: Batch) -> list[str]:
    if not isinstance(out, ObjectiveOutput):
        return [f"forward must return sslx.ObjectiveOutput, got {type(out).__name__}"]
    problems = []
    loss = out.loss
    if not (isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.is_floating_point()):
        problems.append(f"loss must be a floating 0-dim tensor, got {loss!r}")
    elif not torch.isfinite(loss):
        problems.append(f"loss is not finite: {float(loss)}")
    elif not loss.requires_grad:
        problems.append("loss does not require grad: nothing would train")
    if out.embeddings is not None:
        e = out.embeddings
        if not (isinstance(e, torch.Tensor) and e.ndim == 2 and e.shape[0] == len(batch)):
            problems.append(f"embeddings must be (batch, dim) = ({len(batch)}, D), got {getattr(e, 'shape', e)}")
    for key, value in out.metrics.items():
        v = torch.as_tensor(value)
        if v.numel() != 1 or not torch.isfinite(v).all():
            problems.append(f"metric {key!r} must be one finite number, got {value!r}")
    return problems


def _through_a_checkpoint(state: dict[str, Any], who: str) -> dict[str, Any]:
    """``state`` written and read back the way sslx checkpoints are
    (``torch.save``, then ``torch.load(weights_only=True)``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        return torch.load(buffer, weights_only=True)
    except Exception as exc:
        raise AssertionError(
            f"{who}: its state_dict does not survive a checkpoint (torch.load with "
            f"weights_only=True): {exc}; keep state in tensors, numbers and strings"
        ) from None


def check_objective(make: Callable[[], Objective], batch: Batch, steps: int = 2) -> None:
    """The trainer's contract with an objective, checked on ``batch``:

    - ``make()`` (called after ``torch.manual_seed(0)``) builds the same
      objective every time: a seeded run starts from the same weights;
    - forward returns an ``ObjectiveOutput`` with a finite scalar loss that
      requires grad, embeddings ``(B, D)`` or ``None``, one finite number per
      metric;
    - the loss's gradient reaches the encoder, and is finite;
    - it runs without a process group (torch.distributed not initialised);
    - everything that decides the next step is in ``state_dict`` and
      survives a checkpoint (``torch.save``, then ``torch.load`` with
      ``weights_only=True``): an objective trained ``steps`` steps and a
      fresh one loaded from that checkpoint take the same next step, to the
      bit; state kept in plain attributes (a Python step counter, a list)
      makes them differ.

    The global torch RNG is restored afterwards."""
    import torch.distributed as dist

    assert not (dist.is_available() and dist.is_initialized()), (
        "check_objective checks the single-process path: call it outside a process group"
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        trained = make()
        who = f"objective {getattr(trained, 'name', type(trained).__name__)!r}"
        torch.manual_seed(0)
        again = make()
        for (key, a), b in zip(trained.state_dict().items(), again.state_dict().values(), strict=True):
            assert torch.equal(a, b), f"{who}: two objectives built after torch.manual_seed(0) differ in {key!r}"

        trained.train()
        torch.manual_seed(1)
        out = trained(batch)
        problems = _output_problems(out, batch)
        assert not problems, f"{who}: " + "; ".join(problems)
        out.loss.backward()
        grads = [p.grad for p in trained.encoder.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"{who}: the loss's gradient does not reach the encoder"
        assert all(torch.isfinite(g).all() for g in grads), f"{who}: the encoder's gradient is not finite"
        trained.zero_grad(set_to_none=True)
        trained.on_step_end(1)  # the step whose forward ran above (objectives keep work for after the optimizer step)

        for step in range(2, steps + 1):
            torch.manual_seed(step)
            train_step(trained, batch, step)
        torch.manual_seed(0)
        resumed = make()
        resumed.load_state_dict(_through_a_checkpoint(trained.state_dict(), who))
        resumed.train()
        losses = []
        for objective in (trained, resumed):
            torch.manual_seed(steps + 1)
            losses.append(train_step(objective, batch, steps + 1).loss.detach())
        assert torch.equal(losses[0], losses[1]), (
            f"{who}: a copy loaded from its state_dict takes a different step (loss {float(losses[1])} instead of "
            f"{float(losses[0])}): state that decides the step lives outside parameters and buffers, so a resumed "
            f"run would differ; register it with register_buffer"
        )
        for (key, a), b in zip(trained.state_dict().items(), resumed.state_dict().values(), strict=True):
            assert torch.equal(a, b), (
                f"{who}: after one more step, the copy loaded from its state_dict differs in {key!r}"
            )


def _process_entry(rank: int, fn: Callable[..., None], world_size: int, store: str, args: tuple) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        fn(rank, *args)
        dist.barrier()  # no process tears the group down while another still talks to it
    finally:
        dist.destroy_process_group()


def run_in_processes(fn: Callable[..., None], world_size: int, *args: object) -> None:
    """Call ``fn(rank, *args)`` in ``world_size`` fresh CPU processes joined in
    one gloo process group, as ``torchrun`` would start them; raise if any of
    them fails. ``fn`` must be importable (a module-level function) and
    return its results through files. For checking that an objective gives
    the same answer in several processes as in one::

        def worker(rank, out_dir):
            torch.save(my_loss_and_grads(rank), f"{out_dir}/rank{rank}.pt")

        run_in_processes(worker, 2, str(tmp_path))
    """
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="sslx-processes-") as tmp:
        mp.spawn(_process_entry, args=(fn, world_size, f"{tmp}/store", args), nprocs=world_size, join=True)


# ----------------------------------------------------------------------------
# the other kinds


def check_dataset(dataset: Dataset, items: int = 4) -> None:
    """A dataset's contract: ``split("train")`` and ``split("test")`` are
    non-empty :class:`~sslx.ImageSplit` s whose ``info`` is consistent
    (channels, one mean and std per channel, std > 0); ``image(i)`` is an
    ``(H, W, C)`` uint8 array with ``C`` channels and the declared size;
    ``labels`` are ``None`` or one int64 per item, ``-1`` or a class below
    ``num_classes``; an unknown split is a ``UserError``; ``report()`` is a
    dict."""
    who = _who(dataset, "dataset")
    for name in ("train", "test"):
        split = dataset.split(name)
        where = f"{who}, split {name!r}"
        assert isinstance(split, ImageSplit), (
            f"{where}: split() must return an sslx.ImageSplit, got {type(split).__name__}"
        )
        assert len(split) > 0, f"{where} is empty"
        info = split.info
        assert isinstance(info, DataInfo), f"{where}: info must be an sslx.DataInfo"
        assert info.channels >= 1 and len(info.mean) == len(info.std) == info.channels, (
            f"{where}: info needs one mean and one std per channel ({info.channels}), got {info.mean} and {info.std}"
        )
        assert all(s > 0 for s in info.std), f"{where}: every std must be positive, got {info.std}"
        for i in np.linspace(0, len(split) - 1, min(items, len(split))).astype(int):
            image = split.image(int(i))
            assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3, (
                f"{where}: image({i}) must be an (H, W, C) uint8 array, got {getattr(image, 'dtype', type(image))}"
                f"{getattr(image, 'shape', '')}"
            )
            assert image.shape[2] == info.channels, (
                f"{where}: image({i}) has {image.shape[2]} channels, info says {info.channels}"
            )
            if info.image_size is not None:
                assert tuple(image.shape[:2]) == tuple(info.image_size), (
                    f"{where}: image({i}) is {image.shape[:2]}, info.image_size says {info.image_size}"
                )
        labels = split.labels
        if labels is not None:
            assert isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (len(split),), (
                f"{where}: labels must be an int64 array with one label per item, got {getattr(labels, 'dtype', '')}"
                f"{getattr(labels, 'shape', type(labels))}"
            )
            known = labels[labels != -1]
            assert (known >= 0).all(), f"{where}: labels are -1 (unknown) or class numbers >= 0"
            if info.num_classes is not None and known.size:
                assert known.max() < info.num_classes, (
                    f"{where}: label {known.max()} is not below info.num_classes ({info.num_classes})"
                )
    try:
        dataset.split("no_such_split")
    except UserError:
        pass
    else:
        raise AssertionError(f"{who}: split('no_such_split') must raise sslx.UserError naming the splits there are")
    assert isinstance(dataset.report(), dict), f"{who}: report() must return a dict"


def check_augmentation(augmentation: Augmentation, split: ImageSplit, samples: int = 6) -> None:
    """An augmentation's contract on real images of ``split``: ``view`` and
    ``eval`` return finite float32 ``(out_channels, h, w)`` tensors (a view
    cut into tiles may be ``(tiles, out_channels, h, w)``; views of one size,
    as a batch stacks them); the same seed gives the same views;
    views drawn one after another differ (each sample gets its own random
    parameters) and so do views under another seed; ``eval`` is
    deterministic."""
    who = _who(augmentation, "augmentation")
    images = [split.image(i) for i in range(min(samples, len(split)))]

    def draw(seed: int) -> list[torch.Tensor]:
        augmentation.seed(seed)
        return [augmentation.view(image, 0) for image in images] + [augmentation.view(images[0], 0)]

    first, again, other = draw(1), draw(1), draw(2)
    evaluated = augmentation.eval(images[0])
    assert isinstance(evaluated, torch.Tensor) and evaluated.ndim == 3, (
        f"{who}: eval must return a (C, h, w) tensor, got {tuple(getattr(evaluated, 'shape', ())) or type(evaluated)}"
    )
    for x in [*first, evaluated]:
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim in (3, 4), (
            f"{who}: views must be float32 (C, h, w) tensors (or (tiles, C, h, w) for tiles), got "
            f"{getattr(x, 'dtype', type(x))}{tuple(getattr(x, 'shape', ()))}"
        )
        assert x.shape[-3] == augmentation.out_channels, (
            f"{who}: a view has {x.shape[-3]} channels, out_channels says {augmentation.out_channels}"
        )
        assert torch.isfinite(x).all(), f"{who}: a view has non-finite values"
        assert x.abs().max() < 1e4, f"{who}: view values reach {float(x.abs().max()):.3g}: normalise them"
    assert len({tuple(x.shape) for x in first}) == 1, (
        f"{who}: views of one augmentation must have one size, got {sorted({tuple(x.shape) for x in first})}"
    )
    assert all(torch.equal(a, b) for a, b in zip(first, again)), f"{who}: the same seed must give the same views"
    assert not torch.equal(first[0], first[-1]), (
        f"{who}: two views of one image drawn one after the other are identical: each sample needs its own random parameters"
    )
    assert any(not torch.equal(a, b) for a, b in zip(first, other)), f"{who}: another seed gives the same views"
    assert torch.equal(augmentation.eval(images[0]), augmentation.eval(images[0])), f"{who}: eval must be deterministic"


def check_sampler(sampler: PairSampler, split: ImageSplit, augmentation: Augmentation, items: int = 4) -> None:
    """A pair sampler's contract, through the host's own batching: each item
    gives ``group_size`` samples of ``num_views`` views (the views of a
    sample, its positives, all come from that item: ``batch.index``), views
    stack into a batch, the same seeds give the same batch, and the sampler
    survives pickling (DataLoader workers receive it pickled) with the same
    behaviour."""
    from sslx.engine.data import ViewDataset

    who = _who(sampler, "sampler")
    assert isinstance(sampler.num_views, int) and sampler.num_views >= 1, f"{who}: num_views must be a positive int"
    keys = [
        (int(i), 1000 + k) for k, i in enumerate(np.linspace(0, len(split) - 1, min(items, len(split))).astype(int))
    ]
    dataset = ViewDataset(split, sampler, augmentation)
    try:
        batch = dataset.__getitems__(keys)
    except RuntimeError as exc:
        raise AssertionError(f"{who}: {exc}") from None
    n = len(keys) * sampler.group_size
    assert len(batch.views) == sampler.num_views, (
        f"{who}: num_views is {sampler.num_views}, a sample has {len(batch.views)}"
    )
    assert all(v.shape[0] == n for v in batch.views), (
        f"{who}: {len(keys)} items x group_size {sampler.group_size} must give {n} samples"
    )
    expected = torch.tensor([i for i, _ in keys]).repeat_interleave(sampler.group_size)
    assert torch.equal(batch.index, expected), f"{who}: each item's samples must come from that item"
    again = dataset.__getitems__(keys)
    assert all(torch.equal(a, b) for a, b in zip(batch.views, again.views)), (
        f"{who}: the same seeds must give the same samples"
    )
    try:
        copy = pickle.loads(pickle.dumps(sampler))
    except Exception as exc:
        raise AssertionError(f"{who} cannot be pickled, so DataLoader workers cannot receive it: {exc}") from None
    moved = ViewDataset(split, copy, augmentation).__getitems__(keys)
    assert all(torch.equal(a, b) for a, b in zip(batch.views, moved.views)), (
        f"{who}: an unpickled copy samples differently"
    )


def check_encoder(encoder: Encoder, data: DataInfo, batch_size: int = 4, size: int = 32) -> None:
    """An encoder's contract on the CPU: ``forward`` maps ``(B, C, H, W)`` to
    ``(B, out_dim)``; ``forward_stages`` returns a map per declared stage,
    the last of which the features are pooled from; in train mode the
    output's gradient reaches every trainable parameter and is finite; eval
    mode gives the same output twice."""
    who = _who(encoder, "encoder")
    h, w = data.image_size or (size, size)
    x = torch.randn(batch_size, data.channels, h, w, generator=torch.Generator().manual_seed(0))
    assert isinstance(encoder.out_dim, int) and encoder.out_dim >= 1, f"{who}: out_dim must be a positive int"
    encoder.train()
    out = encoder(x)
    assert isinstance(out, torch.Tensor) and out.shape == (batch_size, encoder.out_dim), (
        f"{who}: output is {tuple(getattr(out, 'shape', ()))}, expected (batch, out_dim) = ({batch_size}, {encoder.out_dim})"
    )
    out.float().square().mean().backward()
    params = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"{who}: parameters without a gradient from the output: {missing[:5]}"
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in params), f"{who}: non-finite gradients"
    encoder.zero_grad(set_to_none=True)
    stages = tuple(encoder.stages)
    assert stages, f"{who}: declare its stages (names of the layers forward_stages returns)"
    with torch.no_grad():
        maps = encoder.forward_stages(x)
        assert list(maps) == list(stages), f"{who}: forward_stages returns {list(maps)}, stages says {list(stages)}"
        assert all(m.shape[0] == batch_size for m in maps.values()), f"{who}: every stage map keeps the batch"
        encoder.eval()
        assert torch.equal(encoder(x), encoder(x)), f"{who}: eval mode must be deterministic"
    encoder.train()


def check_evaluator(evaluator: Evaluator, ctx: EvalContext) -> dict[str, float]:
    """An evaluator's contract: ``evaluate(ctx)`` returns a non-empty dict of
    names (without the ``eval.`` prefix) to finite numbers, and leaves the
    encoder as it found it (weights and train/eval mode): the evaluators
    after it use the same encoder. Returns the metrics."""
    who = _who(evaluator, "evaluator")
    before = {k: v.clone() for k, v in ctx.encoder.state_dict().items()}
    mode = ctx.encoder.training
    metrics = evaluator.evaluate(ctx)
    assert isinstance(metrics, dict) and metrics, f"{who}: evaluate must return a non-empty dict of metrics"
    for key, value in metrics.items():
        assert isinstance(key, str) and not key.startswith("eval."), (
            f"{who}: metric names come without 'eval.', got {key!r}"
        )
        assert isinstance(value, (int, float)) and math.isfinite(value), (
            f"{who}: metric {key!r} must be a finite number, got {value!r}"
        )
    changed = [k for k, v in ctx.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert not changed, f"{who} changed the encoder ({changed[:3]}): train a copy (copy.deepcopy(ctx.encoder))"
    assert ctx.encoder.training == mode, f"{who} left the encoder in {'train' if ctx.encoder.training else 'eval'} mode"
    return metrics


# ----------------------------------------------------------------------------
# one call per component


def tiny_context(
    data: Dataset | None = None, encoder: Encoder | None = None, augmentation: Augmentation | None = None
) -> EvalContext:
    """An evaluation context on the tiny parts (or the ones given)."""
    from sslx.testing.tinyparts import TinyEncoder, TinyImages, TinyViews

    data = data or TinyImages(TinyImages.Params())
    info = data.split("train").info
    torch.manual_seed(0)
    return EvalContext(
        encoder=encoder or TinyEncoder(TinyEncoder.Params(), info),
        dataset=data,
        augmentation=augmentation or TinyViews(TinyViews.Params(), info),
        device=torch.device("cpu"),
        batch_size=64,
        num_workers=0,
        progress=False,
    )


def conformance(kind: str, cls: type[Component], params: dict[str, Any] | None = None, views: int = 2) -> None:
    """Check component class ``cls`` of ``kind`` completely: the registry's
    contract (:func:`check_component`), then, built from ``params`` (a dict
    as in an experiment file; default: its defaults) with the tiny real parts
    of :mod:`sslx.testing.tinyparts`, its kind's behaviour. An objective is built on
    the tiny encoder and checked on a batch of ``views`` views per sample."""
    from sslx.engine.data import ViewDataset
    from sslx.testing.tinyparts import TinyEncoder, TinyImages, TinyPairs, TinyViews

    check_component(cls, kind)
    build: Any = cls  # called with its kind's arguments, checked by check_component
    p = cls.Params(**(params or {}))
    data = TinyImages(TinyImages.Params())
    split = data.split("train")
    views_of = TinyViews(TinyViews.Params(), split.info)
    if kind == "dataset":
        check_dataset(build(p))
    elif kind == "augmentation":
        check_augmentation(build(p, split.info), split)
    elif kind == "sampler":
        check_sampler(build(p), split, views_of)
    elif kind == "encoder":
        check_encoder(build(p, split.info), split.info)
    elif kind == "evaluator":
        check_evaluator(build(p), tiny_context(data))
    elif kind == "objective":
        batch = ViewDataset(split, TinyPairs(TinyPairs.Params(views=views)), views_of).__getitems__(
            [(i, 7 + i) for i in range(8)]
        )
        info = TrainInfo(data=split.info, num_views=views, batch_size=8, total_steps=10, dataset_size=len(split))

        def make() -> Objective:
            return build(p, TinyEncoder(TinyEncoder.Params(), split.info), info)

        check_objective(make, batch)
    else:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")


def run_experiment(config: dict[str, Any], host: PluginHost, steps: int = 3) -> Any:
    """Resolve an experiment dict (the schema of experiments/*.json) on
    ``host`` and train it in this process for ``steps`` steps, evaluators at
    the end, writing no records; returns the
    :class:`~sslx.engine.trainer.MemoryRecorder` (``metrics["train.loss"]`` is a
    list of ``(step, value)``)."""
    import copy

    from sslx.config import resolve
    from sslx.engine.trainer import MemoryRecorder, train

    config = copy.deepcopy(config)
    trainer = config.setdefault("trainer", {})
    trainer.update({"max_steps": steps, "progress": False, "num_workers": trainer.get("num_workers", 0)})
    trainer.setdefault("log_every", 1)
    recorder = MemoryRecorder()
    train(resolve(config, host, source="run_experiment"), host, recorder)
    return recorder
