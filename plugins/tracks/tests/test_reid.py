"""The ``reid`` evaluator against hand computations, on hand-made clips whose
pixel values tell which object and which frame a patch shows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sslx_tracks.reid import ReID, reid_top1
from torch import nn

import sslx

LENGTH, SIDE, CANVAS = 16, 10, 64
INFO = sslx.DataInfo(channels=1, image_size=(CANVAS, CANVAS), mean=(0.0,), std=(1.0,), num_classes=2)


def intensity(obj: int, t: int) -> int:
    """The value of object ``obj`` (0..3 over the split) in frame ``t``."""
    return 64 * obj + 4 * t + 1


def decode(value: int) -> tuple[int, int]:
    """``(object, frame)`` from a pixel value."""
    return (value - 1) // 64, (value - 1) % 64 // 4


def hand_made_clips() -> sslx.ArrayClips:
    """Two 16-frame clips of two 10 px squares, one moving down the left half,
    one up the right half (never near each other). Clip 0's first object is
    hidden in frames 0-5; clip 1's second object shows only in frames 0-3, so
    it has no two frames 8 apart."""
    frames = np.zeros((2, LENGTH, CANVAS, CANVAS, 1), dtype=np.uint8)
    tracks = []
    for clip in range(2):
        boxes = np.zeros((LENGTH, 2, 4), dtype=np.int64)
        visible = np.ones((LENGTH, 2))
        if clip == 0:
            visible[:6, 0] = 0
        else:
            visible[4:, 1] = 0
        for t, k in itertools.product(range(LENGTH), range(2)):
            x, y = (8, 2 + 3 * t) if k == 0 else (40, 52 - 3 * t)
            boxes[t, k] = (x, y, x + SIDE, y + SIDE)
            if visible[t, k]:
                frames[clip, t, y : y + SIDE, x : x + SIDE] = intensity(2 * clip + k, t)
        tracks.append(
            sslx.Tracks(boxes=boxes, ids=np.array([2 * clip, 2 * clip + 1]), classes=np.array([0, 1]), visible=visible)
        )
    return sslx.ArrayClips(frames, np.array([0, 1]), INFO, fps=8.0, tracks=tracks)


class Clips(sslx.Dataset):
    """A dataset whose test split is the given clips."""

    name = "hand_made_clips"

    def __init__(self, split: sslx.ImageSplit):
        super().__init__(sslx.NoParams())
        self.test = split

    def split(self, name: str) -> sslx.ImageSplit:
        return self.test


class ObjectCode(sslx.Encoder):
    """A test encoder: the one-hot code of the object a patch shows (read
    from its most frequent nonzero value); ``collide`` maps objects to the
    code of another. Records how it was called."""

    name = "object_code"

    def __init__(self, collide: dict[int, int] | None = None):
        super().__init__(sslx.NoParams(), INFO)
        self.collide = collide or {}
        self.out_dim = 4
        self.scale = nn.Parameter(torch.ones(()))  # gives the module a parameter, as real encoders have
        self.calls: list[tuple[int, bool, bool]] = []  # (batch size, training, grad enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), self.training, torch.is_grad_enabled()))
        objects = [decode(dominant(patch))[0] for patch in x]
        codes = torch.tensor([self.collide.get(o, o) for o in objects])
        return F.one_hot(codes, self.out_dim).float() * self.scale


def dominant(patch: torch.Tensor) -> int:
    values = patch.round().long().flatten()
    return int(torch.bincount(values[values > 0]).argmax())


def context(encoder: sslx.Encoder, pixel_views, split=None, batch_size: int = 2) -> sslx.EvalContext:
    return sslx.EvalContext(
        encoder=encoder,
        dataset=Clips(split or hand_made_clips()),
        augmentation=pixel_views,
        device=torch.device("cpu"),
        batch_size=batch_size,
        num_workers=0,
        progress=False,
        seed=3,
    )


@pytest.mark.parametrize("seed", range(6))
def test_queries_and_gallery_follow_the_definition(pixel_views, seed):
    """Each object that has two frames `gap` apart where it is visible gives a
    query and, at least `gap` frames later, a gallery patch; the others none."""
    split = hand_made_clips()
    queries, gallery, ids = ReID(ReID.Params()).patches(split, pixel_views, seed)
    assert ids.tolist() == [0, 1, 2]  # clip 1's second object has no frames 8 apart
    assert queries.shape == gallery.shape == (3, 1, 32, 32)
    for n, obj in enumerate(ids.tolist()):
        (q_obj, t_q), (g_obj, t_g) = decode(dominant(queries[n])), decode(dominant(gallery[n]))
        assert q_obj == g_obj == obj
        assert t_g - t_q >= 8
        assert split.tracks(obj // 2).visible[[t_q, t_g], obj % 2].min() >= 0.5
        if obj == 0:
            assert t_q >= 6  # hidden before


def test_choices_vary_with_the_seed_and_repeat_with_it(pixel_views):
    split = hand_made_clips()
    reid = ReID(ReID.Params(gap=2))
    a, b, c = (reid.patches(split, pixel_views, s) for s in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_an_encoder_that_tells_objects_apart_scores_one(pixel_views):
    encoder = ObjectCode().train()
    metrics = ReID(ReID.Params()).evaluate(context(encoder, pixel_views))
    assert metrics == {"reid_top1": 1.0, "reid_gallery": 3.0}
    # batches of ctx.batch_size, in eval mode without gradients; training mode restored
    assert [c[0] for c in encoder.calls] == [2, 1, 2, 1]
    assert not any(training or grad for _, training, grad in encoder.calls)
    assert encoder.training
    encoder.eval()
    ReID(ReID.Params()).evaluate(context(encoder, pixel_views))
    assert not encoder.training


def test_colliding_objects_score_the_expected_fraction(pixel_views):
    """Objects 0 and 1 share a code: both queries find gallery row 0 (object
    0's; ties go to the first row), so object 1's query is wrong: 2 of 3."""
    metrics = ReID(ReID.Params()).evaluate(context(ObjectCode(collide={1: 0}), pixel_views))
    assert metrics == {"reid_top1": pytest.approx(2 / 3), "reid_gallery": 3.0}
    # with every object sharing one code, only the first query is right
    metrics = ReID(ReID.Params(gap=2)).evaluate(context(ObjectCode(collide={1: 0, 2: 0, 3: 0}), pixel_views))
    assert metrics == {"reid_top1": pytest.approx(1 / 4), "reid_gallery": 4.0}


def test_num_clips_limits_the_gallery(pixel_views):
    metrics = ReID(ReID.Params(num_clips=1, gap=2)).evaluate(context(ObjectCode(), pixel_views))
    assert metrics == {"reid_top1": 1.0, "reid_gallery": 2.0}


@pytest.mark.parametrize("size", [(5, 3, 4), (40, 40, 16), (7, 1, 2)])
def test_reid_top1_against_a_float64_loop(size):
    n, dim, num_ids = size
    gen = torch.Generator().manual_seed(n)
    q, g = torch.randn(n, dim, generator=gen), torch.randn(n, dim, generator=gen)
    ids = torch.randint(0, num_ids, (n,), generator=gen)
    got = reid_top1(F.normalize(q, dim=1), F.normalize(g, dim=1), ids)
    qd, gd = q.double().tolist(), g.double().tolist()

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)

    right = 0
    for i in range(n):
        sims = [cosine(qd[i], gd[j]) for j in range(n)]
        right += int(ids[max(range(n), key=sims.__getitem__)] == ids[i])
    assert got == pytest.approx(right / n, abs=1e-12)


def test_a_test_split_without_tracks_is_a_user_error(pixel_views):
    clips = hand_made_clips()
    no_tracks = sslx.ArrayClips(clips.clips, clips.labels, INFO, fps=8.0)
    with pytest.raises(sslx.UserError, match=r"evaluator 'reid' needs clips with object tracks"):
        ReID(ReID.Params()).evaluate(context(ObjectCode(), pixel_views, split=no_tracks))


def test_no_object_with_frames_far_enough_apart_is_a_user_error(pixel_views):
    with pytest.raises(sslx.UserError, match=r"found no object at least 0.5 visible in two frames 16 or more apart"):
        ReID(ReID.Params(gap=16)).evaluate(context(ObjectCode(), pixel_views))
