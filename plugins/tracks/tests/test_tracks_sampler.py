"""The ``tracks`` sampler on generated clips with known ground truth: what
it draws satisfies the definition of its positives and negatives."""

from __future__ import annotations

import pickle

import numpy as np
import pydantic
import pytest
import torch
from sslx_tracks.patches import cut
from sslx_tracks.reid import ReID
from sslx_tracks.sampler import TrackPatches

import sslx
from sslx.engine.data import ViewDataset
from sslx.testing import check_component

OBJECT_SIDE = 14  # the silhouettes' boxes are their full 14 px squares
INK_INSIDE = 0.75  # least fraction of an object's visible ink inside each of its crops


def batch_of(split, sampler, augmentation, seed=5, items=None):
    """One batch as the training loader makes it, over every clip (or ``items``)."""
    items = range(len(split)) if items is None else items
    return ViewDataset(split, sampler, augmentation).__getitems__([(i, seed) for i in items])


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"objects": 3, "min_gap": 3, "max_gap": 5, "min_visible": 0.7},
        {"objects": 1, "min_gap": 6, "max_gap": 11, "jitter": 0.0, "context": 1.0, "patch_size": 28},
        {"objects": 2, "min_visible": 0.0, "context": 2.0, "jitter": 0.3, "patch_size": 16},
    ],
)
def test_positives_are_one_object_in_two_frames_within_the_gaps(object_clips, pixel_views, dominant, params):
    sampler = TrackPatches(TrackPatches.Params(**params))
    p = sampler.params
    split = object_clips.split
    batch = batch_of(split, sampler, pixel_views)
    n = len(split) * p.objects
    assert sampler.num_views == 2 and sampler.group_size == p.objects
    assert len(batch) == n and [tuple(v.shape) for v in batch.views] == [(n, 1, p.patch_size, p.patch_size)] * 2
    assert batch.meta["frames"].shape == (n, 2) and batch.meta["boxes"].shape == (n, 2, 4)
    assert torch.equal(batch.meta["clip"], batch.index)
    assert torch.equal(batch.index, torch.arange(len(split)).repeat_interleave(p.objects))
    checked_alone = 0
    for s in range(n):
        clip = int(batch.index[s])
        tracks = split.tracks(clip)
        k = int(np.flatnonzero(tracks.ids == int(batch.meta["track_id"][s]))[0])  # the sample's object
        t1, t2 = batch.meta["frames"][s].tolist()
        assert p.min_gap <= abs(t1 - t2) <= p.max_gap
        assert tracks.visible[t1, k] >= p.min_visible and tracks.visible[t2, k] >= p.min_visible
        assert int(batch.label[s]) == int(tracks.classes[k])
        for v, t in enumerate((t1, t2)):
            crop = batch.meta["boxes"][s, v].numpy()
            # the view is the crop the meta names, pixel for pixel
            expected = cut(split.frames(clip)[t], crop, p.patch_size)
            assert torch.equal(batch.views[v][s], torch.tensor(expected, dtype=torch.float32).permute(2, 0, 1))
            # ... a square around the object's box, as large as context and jitter allow
            side = crop[2] - crop[0]
            assert side == crop[3] - crop[1]
            nominal = p.context * OBJECT_SIDE
            assert np.floor(nominal * (1 - p.jitter)) - 1 <= side <= np.ceil(nominal * (1 + p.jitter)) + 1
            centre, box_centre = (crop[:2] + crop[2:]) / 2, (tracks.boxes[t, k, :2] + tracks.boxes[t, k, 2:]) / 2
            assert np.all(np.abs(centre - box_centre) <= p.jitter * (side + 1) + 1)
            # ... that holds the object's ink (what shows of it in the frame)
            ink = split.frames(clip)[t, ..., 0] == object_clips.value[clip, k]
            x0, y0, x1, y1 = np.clip(crop, 0, 64)
            assert ink[y0:y1, x0:x1].sum() >= INK_INSIDE * ink.sum()
            # ... and, away from other objects, mostly that object's ink (read before resizing, which blends values)
            others = np.delete(tracks.boxes[t], k, axis=0)
            alone = np.all(
                (others[:, 0] >= crop[2])
                | (others[:, 2] <= crop[0])
                | (others[:, 1] >= crop[3])
                | (others[:, 3] <= crop[1])
            )
            if alone and tracks.visible[t, k] >= 0.5:
                assert dominant(split.frames(clip)[t, y0:y1, x0:x1]) == object_clips.value[clip, k]
                checked_alone += 1
    assert checked_alone >= 4


def test_samples_of_one_clip_are_distinct_objects(object_clips, pixel_views):
    sampler = TrackPatches(TrackPatches.Params(objects=3))
    split = object_clips.split
    batch = batch_of(split, sampler, pixel_views)
    ids = batch.meta["track_id"].view(len(split), 3)
    for clip in range(len(split)):
        assert sorted(ids[clip].tolist()) == sorted(split.tracks(clip).ids.tolist())
    assert len(set(batch.meta["track_id"].tolist())) == len(batch)  # ids are unique in the split


def test_every_object_and_pair_gets_drawn(object_clips, pixel_views):
    """With two of three objects per clip, each object is drawn over a few
    batches, and the gaps cover 1 to max_gap: the draws are random, not fixed."""
    sampler = TrackPatches(TrackPatches.Params(objects=2, max_gap=4))
    split = object_clips.split
    ids, gaps = set(), set()
    for seed in range(8):
        batch = batch_of(split, sampler, pixel_views, seed=seed)
        ids |= set(batch.meta["track_id"].tolist())
        gaps |= set((batch.meta["frames"][:, 1] - batch.meta["frames"][:, 0]).abs().tolist())
    assert ids == {int(i) for c in range(len(split)) for i in split.tracks(c).ids}
    assert gaps == {1, 2, 3, 4}


def test_same_batch_seed_gives_the_same_batch(object_clips, pixel_views):
    sampler = TrackPatches(TrackPatches.Params())
    a = batch_of(object_clips.split, sampler, pixel_views, seed=11)
    sampler.seed(123)  # whatever state it was left in
    b = batch_of(object_clips.split, sampler, pixel_views, seed=11)
    c = batch_of(object_clips.split, sampler, pixel_views, seed=12)
    assert all(torch.equal(x, y) for x, y in zip(a.views, b.views))
    assert all(torch.equal(a.meta[k], b.meta[k]) for k in a.meta)
    assert not all(torch.equal(a.meta[k], c.meta[k]) for k in ("frames", "boxes", "track_id"))


def test_sampler_is_picklable_and_the_copy_draws_the_same(object_clips, pixel_views):
    sampler = TrackPatches(TrackPatches.Params(objects=3, jitter=0.2))
    copy = pickle.loads(pickle.dumps(sampler))
    a = batch_of(object_clips.split, sampler, pixel_views, seed=3)
    b = batch_of(object_clips.split, copy, pixel_views, seed=3)
    assert copy.group_size == 3 and all(torch.equal(a.meta[k], b.meta[k]) for k in a.meta)


def test_components_conform():
    check_component(TrackPatches, "sampler")
    check_component(ReID, "evaluator")


# ---------------------------------------------------------------------------- user errors


def test_clips_without_tracks_are_a_user_error(object_clips, pixel_views):
    split = object_clips.split
    no_tracks = sslx.ArrayClips(split.clips, split.labels, split.info, fps=8.0)
    images = sslx.ArraySplit(split.clips[:, 0], split.labels, split.info)
    sampler = TrackPatches(TrackPatches.Params())
    with pytest.raises(sslx.UserError, match=r"needs clips with object tracks.*video dataset without object tracks"):
        sampler.sample_group(no_tracks, 0, pixel_views)
    with pytest.raises(sslx.UserError, match=r"needs clips with object tracks.*an image dataset.*moving_digits"):
        sampler.sample_group(images, 0, pixel_views)


def test_too_few_objects_is_a_user_error(object_clips, pixel_views):
    sampler = TrackPatches(TrackPatches.Params(objects=4))
    with pytest.raises(sslx.UserError, match=r"4 distinct objects.*clip 0 has 3: set sampler.objects to at most 3"):
        sampler.sample_group(object_clips.split, 0, pixel_views)


def test_no_frame_pair_meeting_the_constraints_is_a_user_error(object_clips, pixel_views):
    split = object_clips.split
    sampler = TrackPatches(TrackPatches.Params(objects=1, min_gap=12, max_gap=20))  # clips have 12 frames
    with pytest.raises(sslx.UserError, match=r"needs 1 objects per clip .* 12 to 20 apart, but clip 2 has 0"):
        sampler.sample_group(split, 2, pixel_views)
    # one object hidden in all but one frame: two objects per clip remain possible, three not
    t = split.tracks(0)
    visible = t.visible.copy()
    visible[1:, 1] = 0.0
    hidden = sslx.ArrayClips(
        split.clips[:1], split.labels[:1], split.info, fps=8.0, tracks=[sslx.Tracks(t.boxes, t.ids, t.classes, visible)]
    )
    drawn = TrackPatches(TrackPatches.Params(objects=2)).sample_group(hidden, 0, pixel_views)
    assert sorted(s.meta["track_id"] for s in drawn) == sorted(t.ids[[0, 2]].tolist())
    with pytest.raises(
        sslx.UserError, match=r"needs 3 objects per clip .* but clip 0 has 2: lower sampler.min_visible"
    ):
        TrackPatches(TrackPatches.Params(objects=3)).sample_group(hidden, 0, pixel_views)


def test_params_reject_inverted_gaps():
    with pytest.raises(pydantic.ValidationError, match="min_gap .* is above max_gap"):
        TrackPatches.Params(min_gap=5, max_gap=4)
