"""Samplers that draw several samples from one item (``group_size``), the
per-sample ``meta`` and labels they hand over, their own seeded generator,
clip splits, and what a dataset reports into the run's info."""

from __future__ import annotations

import pickle
import types

import numpy as np
import pytest
import torch
from pydantic import Field

import sslx
from sslx.config import TrainerParams, resolve
from sslx.engine.data import ViewDataset, train_loader
from sslx.engine.trainer import MemoryRecorder, total_steps, train
from sslx.errors import UserError
from sslx.testing import PixelViews

INFO = sslx.DataInfo(channels=1, image_size=(4, 4), mean=(0.0,), std=(1.0,), num_classes=3)


class Rows(sslx.PairSampler):
    """Draws ``size`` distinct rows of an image per item; a sample is two
    copies of its row, with the row number in ``meta`` and as its label."""

    name = "rows_test"

    class Params(sslx.Params):
        size: int = Field(2, ge=1, le=4, description="Rows per image.")

    @property
    def group_size(self):
        return self.params.size

    @property
    def num_views(self):
        return 2

    def sample_group(self, split, index, augmentation):
        image = split.image(index)
        rows = self.rng.choice(image.shape[0], self.params.size, replace=False)
        return [
            sslx.Sample(
                [torch.as_tensor(image[r], dtype=torch.float32)] * 2,
                label=int(r),
                meta={"row": int(r), "item": [index, int(r)]},
            )
            for r in rows
        ]


def images(n=12):
    """Image ``i`` has the value ``10 * i + row`` in every pixel of each row."""
    return (
        (10 * np.arange(n)[:, None, None, None] + np.arange(4)[None, :, None, None]).repeat(4, axis=2).astype(np.uint8)
    )


def split(n=12):
    return sslx.ArraySplit(images(n), np.arange(n) % 3, INFO)


def test_a_group_becomes_consecutive_samples_with_their_meta_and_labels():
    data = ViewDataset(split(), Rows(Rows.Params(size=3)), PixelViews(sslx.NoParams(), INFO))
    batch = data.__getitems__([(5, 11), (2, 11)])
    assert len(batch) == 6 and [v.shape for v in batch.views] == [(6, 4, 1)] * 2
    assert batch.index.tolist() == [5, 5, 5, 2, 2, 2]
    rows = batch.meta["row"]
    assert batch.label.tolist() == rows.tolist(), "a sample's own label replaces its item's"
    assert batch.meta["item"].shape == (6, 2) and batch.meta["item"][:, 0].tolist() == batch.index.tolist()
    # each sample's views are the pixels of its own row of its own image
    expected = (10 * batch.index + rows).float()
    assert torch.equal(batch.views[0][:, :, 0], expected[:, None].expand(6, 4))
    assert len(set(rows[:3].tolist())) == 3 and len(set(rows[3:].tolist())) == 3, "the samples of an item differ"


def test_sampler_choices_follow_the_batch_seed_and_survive_pickling():
    sampler = Rows(Rows.Params(size=2))
    data = ViewDataset(split(), sampler, PixelViews(sslx.NoParams(), INFO))
    keys = [(i, 123) for i in range(12)]
    first = data.__getitems__(keys).meta["row"]
    again = pickle.loads(pickle.dumps(data)).__getitems__(keys).meta["row"]
    other = data.__getitems__([(i, 124) for i in range(12)]).meta["row"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_the_loader_draws_batch_size_over_group_size_items():
    data = ViewDataset(split(), Rows(Rows.Params(size=2)), PixelViews(sslx.NoParams(), INFO))
    batch = next(iter(train_loader(data, 8, seed=0, start_step=0, num_workers=0, pin_memory=False)))
    assert len(batch) == 8 and len(set(batch.index.tolist())) == 4


def test_batch_size_must_be_a_multiple_of_the_group_size():
    assert total_steps(TrainerParams(batch_size=8, epochs=2), 12, group_size=2) == 6  # 4 items a batch, 3 a epoch
    with pytest.raises(UserError, match=r"multiple of the 3 samples .* set trainer.batch_size to 6"):
        total_steps(TrainerParams(batch_size=8), 12, group_size=3)
    with pytest.raises(UserError, match=r"larger than the training split \(12 items of 4 samples\)"):
        total_steps(TrainerParams(batch_size=64), 12, group_size=4)


def test_one_sample_per_item_objectives_refuse_groups():
    encoder = types.SimpleNamespace()
    objective = sslx.Objective.__new__(sslx.Objective)
    objective.__dict__.update(info=sslx.TrainInfo(INFO, 2, 8, 10, 12, group_size=2), encoder=encoder)
    objective.name = "bank_test"
    with pytest.raises(UserError, match="'bank_test' needs one sample per dataset item .* draws 2"):
        objective.require_one_sample_per_item("a bank entry per item")


def test_a_clip_split_is_an_image_split_of_middle_frames():
    frames = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5, 1, 1, 1).repeat(2, axis=2).repeat(2, axis=3)
    audio = np.zeros((3, 80), np.float32)
    clips = sslx.ArrayClips(frames, np.array([0, 1, 2]), INFO, fps=4.0, audio=audio, sample_rate=16)
    assert len(clips) == 3 and clips.frames(1).shape == (5, 2, 2, 1)
    assert clips.image(1)[0, 0, 0] == 1 * 5 + 2, "frame T // 2"
    assert clips.audio(2).shape == (80,) and clips.tracks(0) is None
    with pytest.raises(ValueError, match="audio and sample_rate go together"):
        sslx.ArrayClips(frames, None, INFO, fps=4.0, audio=audio)


class Reporting(sslx.Dataset):
    """Twelve tiny images and a report of how they were loaded."""

    name = "reporting_test"

    def split(self, name):
        return split()

    def report(self):
        return {"packets_skipped": 1, "files": {"a.avi": {"frames": 12}}}


class Flat(sslx.Encoder):
    """Flattened pixels (a row of an image) through one linear layer."""

    name = "flat_test"

    def __init__(self, params, data):
        super().__init__(params, data)
        self.out_dim = 4
        self.layer = torch.nn.Linear(4, 4)  # a row of 4 pixels

    def forward(self, x):
        return self.layer(x.flatten(1))


class GroupsPlugin:
    @sslx.hookimpl
    def sslx_register_datasets(self, register):
        register(Reporting)

    @sslx.hookimpl
    def sslx_register_pair_samplers(self, register):
        register(Rows)

    @sslx.hookimpl
    def sslx_register_augmentations(self, register):
        register(PixelViews)

    @sslx.hookimpl
    def sslx_register_encoders(self, register):
        register(Flat)


def test_a_run_records_the_dataset_report_and_trains_on_groups(host):
    host.add_plugin(GroupsPlugin(), "groups_test")
    exp = resolve(
        {
            "dataset": {"name": "reporting_test"},
            "augmentation": {"name": "pixel_views"},
            "sampler": {"name": "rows_test", "size": 2},
            "encoder": {"name": "flat_test"},
            "objective": {"name": "simclr"},
            "evaluators": [],
            "trainer": {"batch_size": 8, "max_steps": 3, "num_workers": 0, "progress": False, "log_every": 1},
        },
        host,
    )
    rec = MemoryRecorder()
    train(exp, host, rec)
    assert rec.info["data"] == {"packets_skipped": 1, "files": {"a.avi": {"frames": 12}}}
    assert [s for s, _ in rec.metrics["train.loss"]] == [1, 2, 3]


class Refusing(Rows):
    """Refuses every item, as a sampler does with data it cannot use."""

    name = "refusing_test"

    def sample_group(self, split, index, augmentation):
        raise UserError("sampler 'refusing_test' needs clips with audio, but dataset 'x' has none: use talking_digits.")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_sampler_refusing_the_data_is_one_paragraph_even_from_a_worker(host, workers):
    class Plugin(GroupsPlugin):
        @sslx.hookimpl
        def sslx_register_pair_samplers(self, register):
            register(Refusing)

    host.add_plugin(Plugin(), "refusing_test")
    exp = resolve(
        {
            "dataset": {"name": "reporting_test"},
            "augmentation": {"name": "pixel_views"},
            "sampler": {"name": "refusing_test"},
            "encoder": {"name": "flat_test"},
            "objective": {"name": "simclr"},
            "evaluators": [],
            "trainer": {"batch_size": 4, "max_steps": 1, "num_workers": workers, "progress": False},
        },
        host,
    )
    with pytest.raises(UserError) as caught:
        train(exp, host, MemoryRecorder())
    assert (
        str(caught.value)
        == "sampler 'refusing_test' needs clips with audio, but dataset 'x' has none: use talking_digits."
    )


def test_a_group_of_the_wrong_size_is_a_plugin_bug_named():
    class Short(Rows):
        def sample_group(self, split, index, augmentation):
            return super().sample_group(split, index, augmentation)[:1]

    data = ViewDataset(split(), Short(Rows.Params(size=2)), PixelViews(sslx.NoParams(), INFO))
    with pytest.raises(
        RuntimeError, match="sampler 'rows_test' returned 1 samples for item 3, but its group_size is 2"
    ):
        data.__getitems__([(3, 1)])
