"""talking_digits on the real prepared digits and utterances: sound where
the digit is bright, silence where it is dim, the onset where the split says,
disjoint voices; and preparing utterances (espeak-ng, no download) is idempotent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sslx_datasets import store
from sslx_datasets.digits import NOISE_FLOOR, TalkingDigits, frame_rms

import sslx


@pytest.fixture
def talking(prepared):
    prepared(store.MNIST_FILE, f"{store.TALKING_DIR}/index.json")
    data = TalkingDigits(TalkingDigits.Params(train_size=60, test_size=30))
    return data.split("train"), data.split("test")


def test_sound_is_loud_in_the_bright_frames_and_quiet_in_the_dim_ones(talking):
    train, _ = talking
    assert train.sample_rate == 16000 and train.audio(0).shape == (16000 * 16 // 8,)
    loud, quiet = [], []
    for i in range(len(train)):
        peak = train.frames(i).max(axis=(1, 2, 3)).astype(np.float64)  # brightest pixel of each frame
        bright = peak > 0.7 * peak.max()
        assert bright.any() and not bright.all()
        assert np.all(peak[~bright] <= np.ceil(0.4 * peak.max()))  # dim frames: quiet_brightness
        rms = frame_rms(train.audio(i).astype(np.float64), 16, 8.0, 16000)
        loud += list(rms[bright])
        quiet += list(rms[~bright])
        assert rms[bright].min() > 5 * NOISE_FLOOR
    assert np.median(loud) > 10 * np.median(quiet)
    assert np.median(quiet) == pytest.approx(NOISE_FLOOR, rel=0.2)  # mostly only the noise floor


def test_nothing_is_said_before_the_onset(talking):
    train, _ = talking
    for i in range(len(train)):
        audio, start = train.audio(i), int(round(train.onsets[i] * 16000))
        before = audio[:start].astype(np.float64)
        if len(before) > 100:
            assert np.sqrt(np.mean(before**2)) < 1.5 * NOISE_FLOOR
        sound = np.flatnonzero(np.abs(audio) > 8 * NOISE_FLOOR)  # far above the noise floor: speech
        assert start <= sound[0] <= start + 0.1 * 16000  # begins at the onset (soft starts take a few tens of ms)
        assert np.abs(audio).max() > 0.45  # utterances peak at 0.5
        first = np.flatnonzero(train.active[i])[0]
        assert int(train.onsets[i] * 8) <= first <= train.onsets[i] * 8 + 2  # at the onset, or soon after (soft starts)


def test_clips_show_the_spoken_digit_and_use_disjoint_voices(talking):
    train, test = talking
    assert not set(train.voices) & set(test.voices)
    index = json.loads((store.data_dir() / store.TALKING_DIR / "index.json").read_text())
    assert len(index) == 10 * store.NUM_VOICES
    test_voices = {u["voice"] for u in index if u["split"] == "test"}
    assert set(test.voices) <= test_voices and len(test_voices) == store.TEST_VOICES
    for split in (train, test):
        assert np.array_equal(split.labels, [split.tracks(i).classes[0] for i in range(len(split))])
        assert split.info.num_classes == 10 and split.frames(0).shape == (16, 48, 48, 1)


def test_a_clip_too_short_for_a_name_is_refused(prepared):
    prepared(store.MNIST_FILE, f"{store.TALKING_DIR}/index.json")
    with pytest.raises(sslx.UserError, match=r"length / fps = 0.25 s.*raise dataset.length"):
        TalkingDigits(TalkingDigits.Params(train_size=2, test_size=2, length=2)).split("train")


def test_preparing_utterances_again_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLX_DATA_DIR", str(tmp_path))
    variants = store.voice_variants()[-2:]
    folder = store.prepare_talking_digits(variants=variants, digits=(3, 7))
    index = json.loads((folder / "index.json").read_text())
    assert sorted((u["digit"], u["voice"]) for u in index) == sorted((d, v["voice"]) for d in (3, 7) for v in variants)
    for u in index:
        audio, rate = store.read_wav(folder / u["file"])
        assert rate == 16000 and len(audio) == u["samples"] and 0.2 < len(audio) / rate < 1.0
        assert np.abs(audio[:80]).max() < np.abs(audio).max()  # silence trimmed to a short margin
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    store.prepare_talking_digits(variants=variants, digits=(3, 7))
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_unprepared_utterances_name_the_command(tmp_path, monkeypatch, prepared):
    prepared(store.MNIST_FILE)
    (tmp_path / "mnist").mkdir()
    (tmp_path / store.MNIST_FILE).symlink_to(store.data_dir() / store.MNIST_FILE)
    monkeypatch.setenv("SSLX_DATA_DIR", str(tmp_path))
    with pytest.raises(sslx.UserError, match=r"index.json not found.*`sslx data prepare talking-digits`"):
        TalkingDigits(TalkingDigits.Params(train_size=2, test_size=2)).split("train")
