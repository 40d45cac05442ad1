"""Conformance checks for plugin components, and the small tools they use.

A plugin's test suite calls the check for each component it ships; the host's
own tests (``tests/test_conformance.py``) run them on every registered
component with the real views of the shipped experiments::

    from sslx.testing import check_component, check_objective, random_batch

    def test_my_objective_conforms():
        check_component(MyObjective, "objective")
        check_objective(lambda: MyObjective(MyObjective.Params(), make_encoder(), info),
                        random_batch(num_views=2))

Each check raises ``AssertionError`` naming the component and the contract it
breaks (see ``components.py`` for the contracts themselves).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch

from sslx.components import KINDS, Augmentation, Batch, Component, Objective, ObjectiveOutput

__all__ = ["PixelViews", "check_component", "check_objective", "random_batch", "run_in_processes", "train_step"]


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


def random_batch(num_views: int = 2, batch_size: int = 4, size: int = 8, channels: int = 1,
                 index: torch.Tensor | None = None, seed: int = 1) -> Batch:
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
    assert isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", name), \
        f"{who}: `name` must be a lowercase identifier such as 'my_method', got {name!r}"
    assert (cls.__doc__ or "").strip(), f"{who} needs a docstring: its first paragraph is its description in `sslx describe`"
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


def check_objective(make: Callable[[], Objective], batch: Batch, steps: int = 2) -> None:
    """The trainer's contract with an objective, checked on ``batch``:

    - ``make()`` (called after ``torch.manual_seed(0)``) builds the same
      objective every time: a seeded run starts from the same weights;
    - forward returns an ``ObjectiveOutput`` with a finite scalar loss that
      requires grad, embeddings ``(B, D)`` or ``None``, one finite number per
      metric;
    - the loss's gradient reaches the encoder, and is finite;
    - everything that decides the next step is in ``state_dict`` (what a
      checkpoint saves): an objective trained ``steps`` steps and a fresh one
      loaded from its ``state_dict`` take the same next step, to the bit;
      state kept in plain attributes (a Python step counter, a list) makes
      them differ.

    The global torch RNG is restored afterwards."""
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
        resumed.load_state_dict(trained.state_dict())
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
            assert torch.equal(a, b), f"{who}: after one more step, the copy loaded from its state_dict differs in {key!r}"


def _process_entry(rank: int, fn: Callable[..., None], world_size: int, store: str, args: tuple) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        fn(rank, *args)
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
