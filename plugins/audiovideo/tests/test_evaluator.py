"""The ``av_retrieval`` evaluator with a hand-built objective whose
embeddings are known: each clip's frame and sound embed to one-hot codes
chosen by the test, so the top-1 of every case is known in advance (all
found, collisions, a subset of clips). Also: it shows the objective the
middle frame and the sound centred on that frame's time, in eval mode
without gradients, restores the modes, and explains user errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sslx_audiovideo.evaluator import AVRetrieval, retrieval_top1
from sslx_encoders.models import SmallCNN
from torch import nn

import sslx

LENGTH, FPS, RATE = 12, 8.0, 1000


class HandObjective(nn.Module):
    """Embeds clip ``c``'s frames as one-hot ``video_codes[c]`` and its sound
    as one-hot ``audio_codes[c]``, decoding ``c`` from the pixels and the
    sound (conftest.py's coding), and records what it was shown."""

    def __init__(self, clips: sslx.ArrayClips, decode, video_codes, audio_codes):
        super().__init__()
        self.clips, self.decode = clips, decode
        self.video_codes, self.audio_codes = torch.as_tensor(video_codes), torch.as_tensor(audio_codes)
        self.part = nn.BatchNorm1d(2)  # a submodule to check that modes are restored one by one
        self.calls: list[tuple[str, bool, bool]] = []
        self.frames_shown: list[tuple[int, int]] = []
        self.sounds_shown: list[tuple[int, float]] = []

    def embed_video(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(("video", self.training, torch.is_grad_enabled()))
        code = images[:, 0, 0, 0].long()
        clip, frame = code // LENGTH, code % LENGTH
        self.frames_shown += list(zip(clip.tolist(), frame.tolist()))
        return F.one_hot(self.video_codes[clip], 16).float()

    def embed_audio(self, waveforms: torch.Tensor) -> torch.Tensor:
        self.calls.append(("audio", self.training, torch.is_grad_enabled()))
        clip, time = self.decode(waveforms[:, waveforms.shape[1] // 2].numpy(), self.clips)
        self.sounds_shown += list(zip(clip.tolist(), time.tolist()))
        return F.one_hot(self.audio_codes[torch.as_tensor(clip)], 16).float()


@pytest.fixture
def evaluate(make_clips, decode_sound, identity, clips_dataset):
    """``evaluate(video_codes, audio_codes, num_clips=100, seed=0) -> (metrics, objective)``
    over ``len(video_codes)`` coded test clips."""

    def run(video_codes, audio_codes, num_clips=100, seed=0):
        clips = make_clips(num_clips=len(video_codes), length=LENGTH, fps=FPS, sample_rate=RATE, stride=LENGTH)
        objective = HandObjective(clips, decode_sound, video_codes, audio_codes)
        objective.train()
        objective.part.eval()
        ctx = sslx.EvalContext(
            encoder=SmallCNN(SmallCNN.Params(width=4, blocks=1), identity.data),
            dataset=clips_dataset({"train": clips, "test": clips}),
            augmentation=identity,
            device=torch.device("cpu"),
            batch_size=4,
            num_workers=0,
            progress=False,
            seed=seed,
            objective=objective,
        )
        metrics = AVRetrieval(AVRetrieval.Params(num_clips=num_clips, audio_seconds=0.5)).evaluate(ctx)
        return metrics, objective

    return run


def test_every_clip_found(evaluate):
    metrics, _ = evaluate(range(6), range(6))
    assert metrics == {"av_retrieval_top1": 1.0, "av_retrieval_v2a_top1": 1.0, "av_retrieval_clips": 6.0}


def test_collisions_cost_what_they_should(evaluate):
    # two clips embed alike in both branches: each direction loses one (a tie goes to the first)
    metrics, _ = evaluate([0, 0, 2, 3, 4, 5], [0, 0, 2, 3, 4, 5])
    assert metrics["av_retrieval_top1"] == pytest.approx(5 / 6) and metrics["av_retrieval_v2a_top1"] == pytest.approx(
        5 / 6
    )
    # clip 1's sound sounds like clip 0: audio->video misses clip 1; video->audio misses it too, and
    # clip 1's frame, which no sound matches, ties at zero similarity and goes to clip 0
    metrics, _ = evaluate(range(6), [0, 0, 2, 3, 4, 5])
    assert metrics["av_retrieval_top1"] == pytest.approx(5 / 6) and metrics["av_retrieval_v2a_top1"] == pytest.approx(
        5 / 6
    )
    # a shuffle that leaves clips 0 and 4 in place (clip 5's code matches no frame): only those two are found
    metrics, _ = evaluate(range(6), [0, 2, 3, 1, 4, 7])
    assert metrics["av_retrieval_top1"] == pytest.approx(2 / 6) and metrics["av_retrieval_v2a_top1"] == pytest.approx(
        2 / 6
    )


def test_retrieval_top1_by_hand():
    """Sound codes [0, 0, 2] against frame codes [0, 1, 2]: audio->video finds
    clips 0 and 2 (clip 1's sound goes to clip 0); video->audio finds clip 0
    (tie with sound 1, first wins) and clip 2, but frame 1 matches no sound
    and goes to sound 0. Then a case where the two directions differ."""
    video = F.one_hot(torch.tensor([0, 1, 2]), 3).float()
    audio = F.one_hot(torch.tensor([0, 0, 2]), 3).float()
    assert retrieval_top1(audio, video) == pytest.approx(2 / 3)
    assert retrieval_top1(video, audio) == pytest.approx(2 / 3)
    # sound 1 is closer to frame 0 (0.9) than to its own (0.1), but still the closest sound to frame 1
    audio = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1]])
    assert retrieval_top1(audio, video) == pytest.approx(2 / 3)
    assert retrieval_top1(video, audio) == 1.0


def test_the_objective_sees_middle_frames_and_their_sound_in_eval_mode_without_grad(evaluate):
    _, objective = evaluate(range(6), range(6))
    assert objective.frames_shown == [(c, LENGTH // 2) for c in range(6)]
    assert [c for c, _ in objective.sounds_shown] == list(range(6))
    for _, time in objective.sounds_shown:
        assert abs(time - (LENGTH // 2) / FPS) <= 1 / RATE
    assert {(kind, training, grad) for kind, training, grad in objective.calls} == {
        ("video", False, False),
        ("audio", False, False),
    }
    assert len(objective.calls) == 4  # 6 clips in batches of 4, both branches
    assert objective.training and not objective.part.training  # modes restored module by module


def test_a_seeded_subset_of_clips(evaluate):
    metrics, objective = evaluate(range(12), range(12), num_clips=5, seed=3)
    chosen = [c for c, _ in objective.frames_shown]
    assert metrics["av_retrieval_clips"] == 5.0 and metrics["av_retrieval_top1"] == 1.0
    assert chosen == sorted(set(chosen)) and len(chosen) == 5
    _, again = evaluate(range(12), range(12), num_clips=5, seed=3)
    assert [c for c, _ in again.frames_shown] == chosen
    others = {
        tuple(c for c, _ in evaluate(range(12), range(12), num_clips=5, seed=s)[1].frames_shown) for s in range(5)
    }
    assert len(others) > 1


def test_user_errors(make_clips, identity, clips_dataset):
    clips = make_clips(num_clips=2)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=1), identity.data)

    def context(objective, test):
        return sslx.EvalContext(
            encoder=encoder,
            dataset=clips_dataset({"train": clips, "test": test}),
            augmentation=identity,
            device=torch.device("cpu"),
            batch_size=4,
            num_workers=0,
            objective=objective,
        )

    evaluator = AVRetrieval(AVRetrieval.Params())
    with pytest.raises(sslx.UserError, match="no objective.*use objective 'avc'"):
        evaluator.evaluate(context(None, clips))
    with pytest.raises(sslx.UserError, match="without them: use objective 'avc'"):
        evaluator.evaluate(context(nn.Linear(2, 2), clips))
    hand = HandObjective(clips, None, [0], [0])
    silent = sslx.ArrayClips(np.zeros((3, 8, 4, 4, 1), np.uint8), None, identity.data, fps=8.0)
    with pytest.raises(sslx.UserError, match="clips with sound.*talking_digits"):
        evaluator.evaluate(context(hand, silent))
    with pytest.raises(sslx.UserError, match="has 1 test clip.*at least 2"):
        evaluator.evaluate(context(hand, make_clips(num_clips=1)))
