"""Every registered component passes the shared conformance checks of
``sslx.testing``: the registry's contract, then its kind's behaviour, built
as the first shipped experiment that uses it builds it (with that
experiment's data, views and encoder) or, if none does, with the kit's tiny
parts. Every shipped experiment's objective passes ``check_objective`` on a
real batch of its own views (multi-crop, jigsaw tiles and one-view batches
included). The checks catch purposely broken components, with a readable
message."""

from __future__ import annotations

import json
import pickle
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import EXPERIMENTS
from pydantic import Field

import sslx
from sslx.components import KINDS
from sslx.engine.data import ViewDataset
from sslx.engine.trainer import build, eval_context
from sslx.plugins import load_plugins
from sslx.testing import (
    check_augmentation,
    check_component,
    check_dataset,
    check_encoder,
    check_evaluator,
    check_objective,
    check_sampler,
    conformance,
    random_batch,
)

HOST = load_plugins(strict=True)
COMPONENTS = [(kind, name) for kind in KINDS for name in HOST.registry.names(kind)]


def first_experiment_using(kind: str, name: str) -> str | None:
    for path in sorted(EXPERIMENTS.glob("*.json")):
        config = json.loads(path.read_text())
        used = [e["name"] for e in config.get("evaluators", [])] if kind == "evaluator" else [config[kind]["name"]]
        if name in used:
            return path.stem
    return None


def image_folders(root, dataset) -> dict:
    """``image_folder``'s parameters for the tiny photo patches written as PNG
    files, one subfolder per photograph."""
    from PIL import Image

    for split in ("train", "test"):
        data = dataset.split(split)
        for i in range(len(data)):
            folder = root / split / f"photo{data.labels[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.image(i)).save(folder / f"{i}.png")
    return {"root": str(root / "train"), "test_root": str(root / "test"), "labeled": True}


@pytest.mark.parametrize("kind,name", COMPONENTS, ids=[f"{k}-{n}" for k, n in COMPONENTS])
def test_registered_component_conforms(kind, name, tiny, tmp_path, sslx_tiny_dataset):
    cls = HOST.component(kind, name).cls
    experiment = first_experiment_using(kind, name)
    if experiment is None:  # nothing ships with it: the kit's tiny parts
        needs = {"image_folder": lambda: image_folders(tmp_path, sslx_tiny_dataset)}  # required parameters
        conformance(kind, cls, needs[name]() if name in needs else None)
        return
    check_component(cls, kind)
    exp = tiny(experiment)
    parts = build(exp)
    split = parts.dataset.split("train")
    if kind == "dataset":
        check_dataset(parts.dataset)
    elif kind == "augmentation":
        check_augmentation(parts.augmentation, split)
    elif kind == "sampler":
        check_sampler(parts.sampler, split, parts.augmentation)
    elif kind == "encoder":
        check_encoder(parts.encoder, replace(split.info, channels=parts.augmentation.out_channels))
    elif kind == "evaluator":
        index = [e["name"] for e in exp.config["evaluators"]].index(name)
        info, params = exp.evaluators[index]
        check_evaluator(info.cls(params), eval_context(exp, parts, torch.device("cpu")))
    # objectives: test_shipped_objective_conforms_on_its_own_views


@pytest.mark.parametrize("experiment", sorted(p.stem for p in EXPERIMENTS.glob("*.json")))
def test_shipped_objective_conforms_on_its_own_views(experiment, tiny):
    exp = tiny(experiment, "trainer.batch_size=8")
    parts = build(exp)
    batch = ViewDataset(parts.dataset.split("train"), parts.sampler, parts.augmentation).__getitems__(
        [(i, 7) for i in range(8)]
    )

    def make():
        return build(exp).objective

    check_objective(make, batch, steps=3)


# --- the checks catch what they are meant to catch -------------------------------------------


class _Base(sslx.Objective):
    """A linear read-out of the encoder's features pulled towards a target."""

    name = "conformance_probe"

    def __init__(self, params, encoder, info):
        super().__init__(params, encoder, info)
        self.head = torch.nn.Linear(encoder.out_dim, 4)

    def forward(self, batch):
        z = self.head(self.encoder(batch.views[0]))
        return sslx.ObjectiveOutput(loss=(z - self.target()).pow(2).mean(), embeddings=z.detach())

    def target(self):
        return torch.zeros(())


class _PythonCounter(_Base):
    """Keeps its step count in a plain attribute, which checkpoints miss."""

    def __init__(self, params, encoder, info):
        super().__init__(params, encoder, info)
        self.steps_done = 0

    def target(self):
        return torch.tensor(float(self.steps_done))

    def on_step_end(self, step):
        self.steps_done = step


class _BufferCounter(_PythonCounter):
    """The same counter as a buffer: a checkpoint restores it."""

    def __init__(self, params, encoder, info):
        super().__init__(params, encoder, info)
        del self.steps_done
        self.register_buffer("steps_done", torch.zeros(()))

    def on_step_end(self, step):
        self.steps_done.fill_(step)


class _Detached(_Base):
    """Never lets the gradient reach the encoder."""

    def forward(self, batch):
        z = self.head(self.encoder(batch.views[0]).detach())
        return sslx.ObjectiveOutput(loss=z.pow(2).mean(), embeddings=z.detach())


class _Encoder(sslx.Encoder):
    """Pooled 3x3 convolution."""

    name = "conformance_encoder"
    out_dim = 5
    stages = ()

    def __init__(self):
        super().__init__(sslx.Params(), DATA)
        self.conv = torch.nn.Conv2d(1, 5, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)
INFO = sslx.TrainInfo(data=DATA, num_views=1, batch_size=4, total_steps=10, dataset_size=4)


def _maker(cls):
    return lambda: cls(sslx.Params(), _Encoder(), INFO)


def test_state_outside_the_state_dict_is_caught():
    check_objective(_maker(_BufferCounter), random_batch(num_views=1))
    with pytest.raises(AssertionError, match="register_buffer"):
        check_objective(_maker(_PythonCounter), random_batch(num_views=1))


def test_a_gradient_that_never_reaches_the_encoder_is_caught():
    with pytest.raises(AssertionError, match="does not reach the encoder"):
        check_objective(_maker(_Detached), random_batch(num_views=1))


def test_unseeded_construction_is_caught():
    class _Random(_Base):
        def __init__(self, params, encoder, info):
            super().__init__(params, encoder, info)
            self.register_buffer("noise", torch.from_numpy(__import__("numpy").random.rand(3)))

    with pytest.raises(AssertionError, match="differ in 'noise'"):
        check_objective(_maker(_Random), random_batch(num_views=1))


def test_the_global_rng_is_left_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_objective(_maker(_BufferCounter), random_batch(num_views=1))
    assert torch.equal(torch.rand(3), expected)


def test_undocumented_parameters_and_bad_names_are_caught():
    class Documented(_Base):
        """Documented."""

        name = "documented"

        class Params(sslx.Params):
            alpha: float = Field(1.0, description="A weight.")

    check_component(Documented, "objective")

    class Undocumented(Documented):
        """Has an undocumented parameter."""

        class Params(sslx.Params):
            alpha: float = 1.0

    with pytest.raises(AssertionError, match=r"without a description.*alpha"):
        check_component(Undocumented, "objective")

    class BadName(Documented):
        """Badly named."""

        name = "Bad Name"

    with pytest.raises(AssertionError, match="lowercase identifier"):
        check_component(BadName, "objective")
    with pytest.raises(AssertionError, match="must derive from sslx.Encoder"):
        check_component(Documented, "encoder")


# --- the kit's other checks catch what they are meant to catch ---------------------------------


class _NonScalar(_Base):
    """Returns one loss per sample instead of their mean."""

    def forward(self, batch):
        z = self.head(self.encoder(batch.views[0]))
        return sslx.ObjectiveOutput(loss=z.pow(2).mean(dim=1), embeddings=z.detach())


def test_an_objective_returning_a_non_scalar_loss_is_caught():
    with pytest.raises(AssertionError, match=r"objective 'conformance_probe': loss must be a floating 0-dim tensor"):
        check_objective(_maker(_NonScalar), random_batch(num_views=1))


class _Misdeclared(_Encoder):
    """Declares 7 features and returns 5."""

    out_dim = 7
    stages = ("conv",)

    def forward_stages(self, x):
        return {"conv": self.conv(x)}


def test_an_encoder_whose_output_size_differs_from_its_declaration_is_caught():
    with pytest.raises(
        AssertionError,
        match=r"encoder 'conformance_encoder': output is \(4, 5\), "
        r"expected \(batch, out_dim\) = \(4, 7\)",
    ):
        check_encoder(_Misdeclared(), DATA)


class _Unpicklable(sslx.PairSampler):
    """Holds a lock, which cannot be pickled."""

    name = "unpicklable"

    def __init__(self, params):
        super().__init__(params)
        self.lock = threading.Lock()

    @property
    def num_views(self):
        return 2

    def sample(self, split, index, augmentation):
        image = split.image(index)
        return [augmentation.view(image, 0), augmentation.view(image, 1)]


def test_a_sampler_that_cannot_be_pickled_is_caught(sslx_tiny_dataset):
    from sslx.testing.tinyparts import TinyViews

    split = sslx_tiny_dataset.split("train")
    with pytest.raises(
        AssertionError,
        match=r"sampler 'unpicklable' cannot be pickled, so DataLoader workers "
        r"cannot receive it: cannot pickle '_thread.lock'",
    ):
        check_sampler(_Unpicklable(sslx.NoParams()), split, TinyViews(TinyViews.Params(), split.info))
    with pytest.raises(TypeError):
        pickle.dumps(threading.Lock())


class _OneDraw(sslx.Augmentation):
    """Draws its random parameters once per batch, not once per sample."""

    name = "one_draw"

    def seed(self, seed):
        self.shift = float(np.random.default_rng(seed).normal())

    def view(self, image, view):
        return torch.from_numpy(image.astype(np.float32) / 255 + self.shift).permute(2, 0, 1).contiguous()

    def eval(self, image):
        return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1).contiguous()

    @property
    def out_channels(self):
        return self.data.channels


def test_an_augmentation_with_one_draw_per_batch_is_caught(sslx_tiny_dataset):
    split = sslx_tiny_dataset.split("train")
    with pytest.raises(AssertionError, match="each sample needs its own random parameters"):
        check_augmentation(_OneDraw(sslx.NoParams(), split.info), split)


def test_a_dataset_with_labels_beyond_its_classes_is_caught(sslx_tiny_dataset):
    split = sslx_tiny_dataset.split("train")

    class Overflowing(sslx.Dataset):
        """Says 3 classes, has 4."""

        name = "overflowing"

        def split(self, name):
            if name not in ("train", "test"):
                raise sslx.UserError("no such split")
            return sslx.ArraySplit(split.images, split.labels, replace(split.info, num_classes=3))

    with pytest.raises(
        AssertionError,
        match=r"dataset 'overflowing', split 'train': label 3 is not below "
        r"info.num_classes \(3\)",
    ):
        check_dataset(Overflowing(sslx.NoParams()))


def test_an_evaluator_that_trains_the_shared_encoder_is_caught():
    from sslx.testing import tiny_context

    class Meddling(sslx.Evaluator):
        """Fine-tunes the encoder in place."""

        name = "meddling"

        def evaluate(self, ctx):
            with torch.no_grad():
                next(ctx.encoder.parameters()).add_(1.0)
            return {"score": 1.0}

    with pytest.raises(AssertionError, match=r"evaluator 'meddling' changed the encoder .*copy.deepcopy"):
        check_evaluator(Meddling(sslx.NoParams()), tiny_context())


# --- the pytest fixtures ----------------------------------------------------------------------


class _Plugin:
    """A method plugin registered for one test."""

    @sslx.hookimpl
    def sslx_register_objectives(self, register):
        class Probe(_Base):
            """A linear read-out pulled towards zero (trains)."""

            name = "fixture_probe"

        register(Probe)


TINY_RUN = {
    "dataset": {"name": "tiny_images"},
    "augmentation": {"name": "tiny_views"},
    "sampler": {"name": "tiny_pairs"},
    "encoder": {"name": "tiny_encoder"},
    "evaluators": [],
    "trainer": {"batch_size": 16},
}


def test_the_fixtures_give_an_isolated_host_that_runs_registered_plugins(sslx_host, sslx_register, sslx_run):
    assert sorted(sslx_host.registry.names("objective")) == ["tiny_infonce"], "no installed plugin leaks in"
    sslx_register(_Plugin(), "probe-plugin")
    recorder = sslx_run({**TINY_RUN, "objective": {"name": "fixture_probe"}}, steps=4)
    assert [step for step, _ in recorder.metrics["train.loss"]] == [1, 2, 3, 4]
    contrastive = sslx_run({**TINY_RUN, "objective": {"name": "tiny_infonce"}}, steps=2)
    assert all(np.isfinite(v) for _, v in contrastive.metrics["train.loss"])


def test_the_kit_parts_conform_themselves():
    from sslx.testing.tinyparts import TINY_COMPONENTS

    for kind, cls in TINY_COMPONENTS.items():
        conformance(kind, cls)
