"""The ``frames`` sampler against its definition, on clips whose frames say
when and where they are: every pixel of frame ``t`` of clip ``i`` holds
``(t, i)``, so each view tells its clip and time. An identity augmentation
keeps the pixel values."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
from sslx_frames.sampler import Frames, draw_times, frames_needed

import sslx
from sslx.engine.data import ViewDataset
from sslx.testing import PixelViews, check_component

INFO = sslx.DataInfo(channels=2, image_size=(4, 4), mean=(0.0, 0.0), std=(1.0, 1.0), num_classes=3)


def timed_clips(count: int, length: int) -> sslx.ArrayClips:
    """``count`` clips of ``length`` 4x4 frames; frame ``t`` of clip ``i`` is filled with ``(t, i)``."""
    t, i = np.meshgrid(np.arange(length), np.arange(count))  # (count, length)
    frames = np.broadcast_to(np.stack([t, i], axis=-1)[:, :, None, None, :], (count, length, 4, 4, 2))
    return sslx.ArrayClips(np.ascontiguousarray(frames, dtype=np.uint8), np.arange(count) % 3, INFO, fps=8.0)


def when(view: torch.Tensor) -> tuple[int, int]:
    """(frame index, clip index) of a view, read from its pixels (all alike)."""
    assert view.shape == (2, 4, 4) and (view == view[:, :1, :1]).all()
    return int(view[0, 0, 0]), int(view[1, 0, 0])


SETTINGS = [  # (clip length, window, min_offset, gap, pairs)
    (16, 2, 1, 6, 2),  # the defaults
    (16, 0, 0, 5, 3),  # positives from the same frame
    (30, 4, 2, 7, 3),
    (13, 2, 1, 6, 2),  # 4 frames more than the defaults' tightest packing (9)
    (9, 2, 1, 6, 2),  # exactly frames_needed: the only layouts are {0,1} and {7,8}
    (20, 6, 2, 7, 1),  # one pair anywhere in the clip
]


@pytest.mark.parametrize("length,window,min_offset,gap,pairs", SETTINGS)
def test_samples_satisfy_the_definition(length, window, min_offset, gap, pairs):
    """For every clip: both views are frames of that clip, the meta's frame
    indices and clip index are the ones the pixels show, the two frames of a
    sample lie min_offset..window apart, every frame of one sample lies at
    least gap frames from every frame of another; the label is the clip's.
    Over the clips, every allowed offset and both orders occur."""
    split = timed_clips(40, length)
    sampler = Frames(Frames.Params(window=window, min_offset=min_offset, gap=gap, pairs=pairs))
    assert sampler.group_size == pairs and sampler.num_views == 2
    augmentation = PixelViews(sslx.NoParams(), INFO)
    offsets = set()
    for index in range(len(split)):
        sampler.seed(100 + index)
        group = sampler.sample_group(split, index, augmentation)
        assert len(group) == pairs
        times = []
        for sample in group:
            (t0, c0), (t1, c1) = (when(v) for v in sample.views)
            assert (c0, c1) == (index, index) and sample.meta["clip"] == index and sample.label is None
            assert sample.meta["frames"].tolist() == [t0, t1]
            assert min_offset <= abs(t1 - t0) <= window
            offsets.add(t1 - t0)
            times.append((t0, t1))
        for k in range(pairs):
            for m in range(pairs):
                if k != m:
                    assert min(abs(a - b) for a in times[k] for b in times[m]) >= gap
    possible = {d for d in range(min_offset, window + 1)} | {-d for d in range(min_offset, window + 1)}
    possible = {d for d in possible if abs(d) <= length - frames_needed(pairs, min_offset, gap) + min_offset}
    assert offsets == possible


def test_the_tightest_clip_has_one_layout_up_to_order():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        times = draw_times(9, window=2, min_offset=1, gap=6, pairs=2, rng=rng)
        assert sorted(map(sorted, times.tolist())) == [[0, 1], [7, 8]]
        seen.add(tuple(map(tuple, times.tolist())))
    assert len(seen) == 8  # which sample comes first, and each pair's order


def test_frames_needed_is_the_tight_packing():
    assert frames_needed(1, 0, 5) == 1
    assert frames_needed(2, 1, 6) == 9  # [0, 1], then [7, 8]
    assert frames_needed(3, 2, 4) == 15  # [0, 2], [6, 8], [12, 14]
    with pytest.raises(ValueError, match="a clip of 8 frames cannot hold 2 samples"):
        draw_times(8, 2, 1, 6, 2, np.random.default_rng(0))


def test_start_times_cover_the_clip():
    """With one pair per clip, every frame of a 12-frame clip is used, the
    first and last included."""
    rng = np.random.default_rng(1)
    used = {int(t) for _ in range(300) for t in draw_times(12, 3, 1, 4, 1, rng).ravel()}
    assert used == set(range(12))


def test_batches_collate_meta_and_are_reproducible_per_batch_seed():
    """Through the host's ViewDataset: a clip's samples follow each other and
    share its index and label, meta becomes tensors (B, 2) and (B,); the
    same batch seed gives the same batch, other seeds other ones."""
    split = timed_clips(6, 24)
    dataset = ViewDataset(split, Frames(Frames.Params(pairs=3, gap=5)), PixelViews(sslx.NoParams(), INFO))
    keys = [(i, 11) for i in (4, 1)]
    batch = dataset.__getitems__(keys)
    assert batch.index.tolist() == [4, 4, 4, 1, 1, 1] and batch.label.tolist() == [1, 1, 1, 1, 1, 1]
    assert batch.meta["frames"].shape == (6, 2) and batch.meta["clip"].tolist() == [4, 4, 4, 1, 1, 1]
    assert torch.equal(batch.views[0][:, 0, 0, 0].long(), batch.meta["frames"][:, 0])
    assert torch.equal(batch.views[1][:, 0, 0, 0].long(), batch.meta["frames"][:, 1])
    again = dataset.__getitems__(keys)
    assert torch.equal(again.meta["frames"], batch.meta["frames"])
    assert all(torch.equal(a, b) for a, b in zip(batch.views, again.views))
    others = [dataset.__getitems__([(i, seed) for i in (4, 1)]).meta["frames"] for seed in (12, 13)]
    assert any(not torch.equal(o, batch.meta["frames"]) for o in others)


def test_generated_moving_digits():
    """Clips of real Fashion-MNIST items moving at 1 to 2 px per frame
    (sslx_datasets.moving_digits): the views are the clip's frames at the
    meta's times, and the object moved at most window * 2 px (plus rounding)
    between the frames of a positive pair."""
    from sslx_datasets.images import read_idx
    from sslx_datasets.moving_digits import moving_digits

    images = read_idx(Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"))[:20]
    labels = read_idx(Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"))[:20].astype(np.int64)
    clips = moving_digits(images, labels, num_clips=6, length=16, canvas=40, num_objects=1, speed=(1.0, 2.0), seed=3)
    info = sslx.DataInfo(channels=1, image_size=(40, 40), mean=(0.0,), std=(1.0,), num_classes=10)
    split = sslx.ArrayClips(clips.frames[..., None], clips.classes[:, 0], info, fps=8.0)
    sampler = Frames(Frames.Params(window=3, gap=5, pairs=2))
    for index in range(6):
        sampler.seed(index)
        for sample in sampler.sample_group(split, index, PixelViews(sslx.NoParams(), info)):
            t0, t1 = sample.meta["frames"].tolist()
            assert torch.equal(sample.views[0][0], torch.tensor(clips.frames[index, t0], dtype=torch.float32))
            assert torch.equal(sample.views[1][0], torch.tensor(clips.frames[index, t1], dtype=torch.float32))
            moved = np.abs(clips.boxes[index, t1, 0, :2] - clips.boxes[index, t0, 0, :2]).max()
            assert moved <= 2 * abs(t1 - t0) + 1


def test_image_datasets_are_a_user_error():
    images = sslx.ArraySplit(np.zeros((3, 4, 4, 2), dtype=np.uint8), None, INFO)
    with pytest.raises(sslx.UserError) as err:
        Frames(Frames.Params()).sample_group(images, 0, PixelViews(sslx.NoParams(), INFO))
    assert str(err.value) == (
        "sampler 'frames' draws frames of video clips, but the dataset's split (ArraySplit) "
        "holds still images: use a video dataset such as 'moving_digits' or "
        "'video_folder', or an image sampler such as 'crops'."
    )


def test_clips_too_short_are_a_user_error():
    split = timed_clips(2, 8)
    Frames(Frames.Params(pairs=1)).sample_group(split, 1, PixelViews(sslx.NoParams(), INFO))
    with pytest.raises(sslx.UserError) as err:
        Frames(Frames.Params()).sample_group(split, 1, PixelViews(sslx.NoParams(), INFO))
    assert str(err.value) == (
        "sampler 'frames': clip 1 of the dataset (ArrayClips) has 8 frames, but 2 samples of two frames at least 1 "
        "apart (min_offset), each at least 6 frames from the others (gap), need 9: lower sampler.pairs, sampler.gap "
        "or sampler.min_offset, or use longer clips (the dataset's clip length)."
    )


@pytest.mark.parametrize(
    "params,message",
    [
        ({"window": 2, "min_offset": 3, "gap": 6}, "min_offset (3) must not exceed window (2)"),
        ({"window": 6, "gap": 6}, "gap (6) must exceed window (6)"),
    ],
)
def test_inconsistent_params_are_rejected(params, message):
    with pytest.raises(pydantic.ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Frames.Params(**params)


@pytest.mark.parametrize("bad", [{"window": -1}, {"min_offset": -1}, {"gap": 0}, {"pairs": 0}, {"views": 2}])
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        Frames.Params(**bad)


def test_picklable_and_conforming():
    sampler = pickle.loads(pickle.dumps(Frames(Frames.Params(pairs=3))))
    sampler.seed(0)
    assert len(sampler.sample_group(timed_clips(1, 30), 0, PixelViews(sslx.NoParams(), INFO))) == 3
    check_component(Frames, "sampler")
    p = Frames.Params()
    assert (p.window, p.min_offset, p.gap, p.pairs) == (2, 1, 6, 2)
