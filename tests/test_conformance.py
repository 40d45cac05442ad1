"""Every registered component passes the shared conformance checks of
``sslx.testing``; every shipped experiment's objective passes
``check_objective`` on a real batch of its own views (multi-crop, jigsaw
tiles and one-view batches included)."""

from __future__ import annotations

import pytest
import torch
from helpers import EXPERIMENTS
from pydantic import Field

import sslx
from sslx.components import KINDS
from sslx.data import ViewDataset
from sslx.plugins import load_plugins
from sslx.testing import check_component, check_objective, random_batch
from sslx.trainer import build

HOST = load_plugins(strict=True)
COMPONENTS = [(kind, name) for kind in KINDS for name in HOST.registry.names(kind)]


@pytest.mark.parametrize("kind,name", COMPONENTS, ids=[f"{k}-{n}" for k, n in COMPONENTS])
def test_registered_component_conforms(kind, name):
    check_component(HOST.component(kind, name).cls, kind)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in EXPERIMENTS.glob("*.json")))
def test_shipped_objective_conforms_on_its_own_views(experiment, tiny):
    exp = tiny(experiment, "trainer.batch_size=8")
    parts = build(exp)
    batch = ViewDataset(parts.dataset.split("train"), parts.sampler, parts.augmentation).__getitems__(
        [(i, 7) for i in range(8)])

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
