"""The ``audio_video`` sampler on clips whose frames and sound encode where
they come from (see conftest.py): a positive's sound is centred on its
frame's time, one clip's samples are at least ``min_shift`` apart (so each
one's sound is the other's shifted in time), windows fit inside the sound
where they can and are zero-padded where they cannot, and draws are seeded."""

from __future__ import annotations

import itertools
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from sslx_audiovideo.evaluator import AVRetrieval
from sslx_audiovideo.objective import AVC
from sslx_audiovideo.sampler import AudioVideo, spaced_frames

import sslx
from sslx.engine.data import ViewDataset
from sslx.testing import check_component


def draw(sampler, split, index, augmentation, seed=0):
    sampler.seed(seed)
    return sampler.sample_group(split, index, augmentation)


@pytest.mark.parametrize(
    "audio_seconds,pairs,min_shift,fps,rate",
    [
        (0.5, 2, 0.75, 8.0, 1000),
        (0.25, 3, 0.5, 8.0, 1000),
        (0.3, 2, 0.4, 10.0, 800),
        (0.5, 1, 0.75, 8.0, 1000),
    ],
)
def test_positives_are_a_frame_and_its_own_sound_at_that_time(
    make_clips, decode_sound, identity, audio_seconds, pairs, min_shift, fps, rate
):
    clips = make_clips(num_clips=3, length=20, fps=fps, sample_rate=rate)
    sampler = AudioVideo(AudioVideo.Params(audio_seconds=audio_seconds, pairs=pairs, min_shift=min_shift))
    assert sampler.group_size == pairs and sampler.num_views == 2
    length = int(round(audio_seconds * rate))
    for index, seed in itertools.product(range(3), range(20)):
        group = draw(sampler, clips, index, identity, seed)
        assert len(group) == pairs
        for s in group:
            video, sound = s.views
            f = s.meta["frame_index"]
            assert torch.all(video == index * 100 + f), "the video view is the frame the meta names"
            assert s.meta["time"] == pytest.approx(f / fps) and s.meta["clip"] == index
            assert sound.dtype == torch.float32 and sound.shape == (length,)
            clip, times = decode_sound(sound.numpy() / s.meta["gain"], clips)
            assert np.all(clip == index), "the sound is the clip's own"
            centre = times[length // 2]  # the sample at the window's centre
            assert abs(centre - s.meta["time"]) <= 1 / rate + 1e-9, "the sound is centred on the frame's time"
            np.testing.assert_allclose(times, s.meta["audio_start"] + np.arange(length) / rate, atol=0.1 / rate)
            assert s.meta["sample_rate"] == rate


@pytest.mark.parametrize("pairs,min_shift", [(2, 0.75), (3, 0.5), (4, 0.25)])
def test_one_clips_samples_are_its_sound_shifted_by_at_least_min_shift(
    make_clips, decode_sound, identity, pairs, min_shift
):
    clips = make_clips(num_clips=2, length=20, fps=8.0, sample_rate=1000)
    sampler = AudioVideo(AudioVideo.Params(audio_seconds=0.25, pairs=pairs, min_shift=min_shift, gain_db=0))
    seen_shifts = set()
    for seed in range(50):
        group = draw(sampler, clips, 1, identity, seed)
        for a, b in itertools.combinations(group, 2):
            shift = b.meta["time"] - a.meta["time"]
            assert abs(shift) >= min_shift - 1e-9
            _, ta = decode_sound(a.views[1].numpy(), clips)
            _, tb = decode_sound(b.views[1].numpy(), clips)
            np.testing.assert_allclose(tb - ta, shift, atol=1.5e-3)  # the same sound, shifted by the time difference
            seen_shifts.add(round(abs(shift), 3))
    assert len(seen_shifts) > 2, "the shifts vary from draw to draw"


def test_windows_lie_inside_the_sound_and_every_fitting_frame_is_drawn(make_clips, identity):
    """16 frames at 8 fps, 1000 Hz: a 0.5 s window fits around frames 2..14 only."""
    clips = make_clips(num_clips=2, length=16, fps=8.0, sample_rate=1000)  # clip 1's sound is never 0
    sampler = AudioVideo(AudioVideo.Params(audio_seconds=0.5, pairs=2, min_shift=0.75))
    counts = Counter()
    for seed in range(400):
        for s in draw(sampler, clips, 1, identity, seed):
            counts[s.meta["frame_index"]] += 1
            start = round(s.meta["audio_start"] * 1000)
            assert 0 <= start and start + 500 <= 2000
            assert bool((s.views[1] != 0).all()), "no zero padding when the window fits"
    assert set(counts) == set(range(2, 15))


def test_a_sound_too_short_for_the_window_is_zero_padded(make_clips, decode_sound, identity):
    """1 s of frames (8 at 8 fps) and a 1 s window: it fits only around frame 4, so two
    times 0.5 s apart come from all frames, with zeros where the window leaves the clip."""
    clips = make_clips(num_clips=2, length=8, fps=8.0, sample_rate=1000)
    sampler = AudioVideo(AudioVideo.Params(audio_seconds=1.0, pairs=2, min_shift=0.5, gain_db=0))
    for seed in range(30):
        for s in draw(sampler, clips, 1, identity, seed):
            sound = s.views[1].numpy()
            start = round(s.meta["audio_start"] * 1000)
            inside = (np.arange(1000) + start >= 0) & (np.arange(1000) + start < 1000)
            assert np.all(sound[~inside] == 0)
            clip, times = decode_sound(sound[inside], clips)
            assert np.all(clip == 1)
            np.testing.assert_allclose(times, (np.arange(1000)[inside] + start) / 1000, atol=1e-6)
            assert abs(s.meta["audio_start"] + 0.5 - s.meta["time"]) <= 1e-3


def test_gain_is_uniform_in_plus_minus_gain_db(make_clips, identity):
    clips = make_clips(num_clips=1)
    sampler = AudioVideo(AudioVideo.Params(gain_db=6.0))
    gains_db = np.array(
        [20 * np.log10(s.meta["gain"]) for seed in range(300) for s in draw(sampler, clips, 0, identity, seed)]
    )
    assert gains_db.min() >= -6 and gains_db.max() <= 6
    assert gains_db.min() < -5 and gains_db.max() > 5 and abs(gains_db.mean()) < 0.6
    unchanged = AudioVideo(AudioVideo.Params(gain_db=0))
    assert all(s.meta["gain"] == 1.0 for s in draw(unchanged, clips, 0, identity))


def test_spaced_frames_draws_every_valid_set_equally_often():
    """Frames 0..5, two of them at least 3 apart: six possible sets."""
    rng = np.random.default_rng(0)
    counts = Counter(tuple(spaced_frames(rng, 0, 5, 2, 3).tolist()) for _ in range(6000))
    assert set(counts) == {(0, 3), (0, 4), (0, 5), (1, 4), (1, 5), (2, 5)}
    assert all(800 < c < 1200 for c in counts.values())
    assert spaced_frames(rng, 0, 5, 3, 3) is None  # 0, 3, 6 does not fit
    assert spaced_frames(rng, 2, 8, 3, 3).tolist() == [2, 5, 8]  # exactly one way


def test_draws_are_seeded_and_the_sampler_pickles(make_clips, identity):
    clips = make_clips(num_clips=2)
    sampler = AudioVideo(AudioVideo.Params(pairs=2))

    def signature(s, seed):
        return [
            (x.meta["frame_index"], x.meta["gain"], x.views[1].numpy().tobytes())
            for x in draw(s, clips, 1, identity, seed)
        ]

    assert signature(sampler, 3) == signature(sampler, 3)
    assert signature(pickle.loads(pickle.dumps(sampler)), 3) == signature(sampler, 3)
    assert len({str(signature(sampler, seed)) for seed in range(10)}) > 5


def test_view_dataset_collates_groups_and_meta(make_clips, identity):
    clips = make_clips(num_clips=3)
    batch = ViewDataset(clips, AudioVideo(AudioVideo.Params(pairs=2)), identity).__getitems__([(2, 5), (0, 5)])
    assert batch.views[0].shape == (4, 1, 4, 4) and batch.views[1].shape == (4, 500)
    assert batch.index.tolist() == [2, 2, 0, 0] and batch.label.tolist() == [2, 2, 0, 0]
    assert batch.meta["clip"].tolist() == [2, 2, 0, 0]
    assert set(batch.meta) == {"time", "audio_start", "frame_index", "clip", "sample_rate", "gain"}
    assert (batch.meta["time"][0] - batch.meta["time"][1]).abs() >= 0.75


def test_user_errors(make_clips, identity):
    sampler = AudioVideo(AudioVideo.Params())
    images = sslx.ArraySplit(np.zeros((2, 4, 4, 1), np.uint8), None, identity.data)
    with pytest.raises(sslx.UserError, match="image items, not clips.*talking_digits"):
        draw(sampler, images, 0, identity)
    silent = sslx.ArrayClips(np.zeros((2, 16, 4, 4, 1), np.uint8), None, identity.data, fps=8.0)
    with pytest.raises(sslx.UserError, match="clips without audio.*audio set to true"):
        draw(sampler, silent, 0, identity)
    short = make_clips(num_clips=1, length=5, fps=8.0)  # 0.625 s: two times 0.75 s apart do not fit
    with pytest.raises(sslx.UserError, match=r"clip 0 has only 5 frames.*sampler\.pairs or sampler\.min_shift"):
        draw(sampler, short, 0, identity)


def test_components_conform():
    check_component(AudioVideo, "sampler")
    check_component(AVC, "objective")
    check_component(AVRetrieval, "evaluator")
