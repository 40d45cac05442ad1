"""The ``avc`` objective: the symmetric InfoNCE loss against an explicit
float64 log-softmax written with loops (value and gradients), the
objective's loss as that of its normalised embeddings, its metric,
conformance with the trainer's contract, and user errors."""

from __future__ import annotations

import math

import pytest
import torch
from sslx_audiovideo.objective import AVC, symmetric_info_nce
from sslx_encoders.models import SmallCNN

import sslx
from sslx.testing import check_objective

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.0,), std=(1.0,), num_classes=None)
TINY_AUDIO = dict(
    sample_rate=1000, n_fft=32, hop_ms=16, n_mels=6, audio_width=4, audio_blocks=2, embedding_dim=8, proj_hidden_dim=16
)


def reference_loss(video: torch.Tensor, audio: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of -log softmax (video i against every sound) at its own
    sound, and over columns likewise, averaged; written term by term."""
    b = video.shape[0]
    v = [video[i] / video[i].norm() for i in range(b)]
    a = [audio[j] / audio[j].norm() for j in range(b)]
    s = [[(v[i] * a[j]).sum() / temperature for j in range(b)] for i in range(b)]
    v2a = sum(-(s[i][i] - torch.log(sum(torch.exp(s[i][j]) for j in range(b)))) for i in range(b)) / b
    a2v = sum(-(s[j][j] - torch.log(sum(torch.exp(s[i][j]) for i in range(b)))) for j in range(b)) / b
    return (v2a + a2v) / 2


@pytest.mark.parametrize("b,d,temperature", [(2, 3, 1.0), (5, 4, 0.1), (7, 16, 0.5)])
def test_loss_and_gradients_match_the_reference(b, d, temperature):
    gen = torch.Generator().manual_seed(b)
    video = torch.randn(b, d, dtype=torch.float64, generator=gen, requires_grad=True)
    audio = torch.randn(b, d, dtype=torch.float64, generator=gen, requires_grad=True)
    loss = symmetric_info_nce(video, audio, temperature)
    expected = reference_loss(video, audio, temperature)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss, (video, audio))
    expected_grads = torch.autograd.grad(expected, (video, audio))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda v, a: symmetric_info_nce(v, a, temperature), (video, audio))


def test_loss_extremes():
    """Matched one-hot pairs with a small temperature: near zero; every sound
    the same: log(B) (chance)."""
    eye = torch.eye(4)
    assert float(symmetric_info_nce(eye, eye, 0.01)) < 1e-6
    torch.testing.assert_close(symmetric_info_nce(eye, torch.ones(4, 4), 0.1), torch.tensor(math.log(4)))


def test_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        symmetric_info_nce(torch.ones(2, 3), torch.ones(2, 3), 0.0)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        symmetric_info_nce(torch.ones(2, 3), torch.ones(3, 3), 0.1)


def make_avc(seed: int = 0, num_views: int = 2, **params) -> AVC:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=6, total_steps=10, dataset_size=12, group_size=2)
    return AVC(AVC.Params(**{**TINY_AUDIO, **params}), encoder, info)


def av_batch(b: int = 6, samples: int = 300, rate: int | None = 1000, seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    meta = {} if rate is None else {"sample_rate": torch.full((b,), rate)}
    return sslx.Batch(
        views=[torch.randn(b, 1, 8, 8, generator=gen), torch.rand(b, samples, generator=gen) * 2 - 1],
        index=torch.arange(b) // 2,
        label=torch.full((b,), -1),
        meta=meta,
    )


def test_objective_conforms():
    check_objective(make_avc, av_batch())


def test_forward_is_the_loss_of_its_embeddings_and_logs_audio_to_video_top1():
    objective = make_avc().train()
    batch = av_batch()
    torch.manual_seed(3)
    out = objective(batch)
    video = objective.embed_video(batch.views[0])
    audio = objective.embed_audio(batch.views[1])
    assert video.shape == audio.shape == (6, 8)
    torch.testing.assert_close(video.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(out.embeddings, video.detach())
    torch.testing.assert_close(
        out.loss, reference_loss(video.double(), audio.double(), 0.1).float(), rtol=1e-5, atol=1e-6
    )
    own = [int((audio[i] @ video.T).argmax()) == i for i in range(6)]
    assert float(out.metrics["av_top1"]) == pytest.approx(sum(own) / 6)


def test_training_steps_pair_frames_with_their_sounds():
    """Six fixed (frame, sound) pairs, each sound a tone of its own pitch: a
    few dozen steps make every sound find its frame."""
    torch.manual_seed(0)
    t = torch.arange(300) / 1000
    frames = torch.randn(6, 1, 8, 8)
    sounds = torch.stack([torch.sin(2 * math.pi * (60 + 60 * k) * t) for k in range(6)])
    batch = sslx.Batch(views=[frames, sounds], index=torch.arange(6), label=torch.full((6,), -1))
    objective = make_avc()
    optimizer = torch.optim.Adam(objective.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = objective(batch)
        first = first if first is not None else float(out.loss.detach())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert float(out.loss.detach()) < first / 3 and float(out.metrics["av_top1"]) == 1.0


def test_user_errors():
    with pytest.raises(sslx.UserError, match="needs 2 views.*audio_video"):
        make_avc(num_views=1)
    objective = make_avc()
    with pytest.raises(sslx.UserError, match="objective.sample_rate to 16000"):
        objective(av_batch(rate=16000))
    with pytest.raises(sslx.UserError, match=r"\[frames \(B, C, H, W\), waveforms \(B, S\)\].*audio_video"):
        objective(sslx.Batch(views=[torch.randn(2, 1, 8, 8)] * 2, index=torch.arange(2), label=torch.zeros(2)))
    with pytest.raises(sslx.UserError, match="lower n_mels or raise n_fft"):
        make_avc(n_mels=40)
    objective(av_batch(rate=None))  # batches without the rate (made by hand) are not checked
    objective(av_batch(rate=1000))
