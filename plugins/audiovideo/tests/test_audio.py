"""The audio encoder: the log-mel spectrogram against an independent float64
numpy reference (explicit DFT sum, explicit triangle formula), its
gradients, a pure tone landing in its mel band, and the CNN's shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sslx_audiovideo.audio import AudioCNN, LogMel, hop_samples, mel_filterbank

import sslx


def reference_filters(n_fft: int, n_mels: int, rate: int, f_min: float, f_max: float) -> np.ndarray:
    """HTK triangles written out bin by bin."""

    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    lo, hi = mel(f_min), mel(f_max)
    corners = [hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    out = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = corners[m], corners[m + 1], corners[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * rate / n_fft
            if left < f <= centre:
                out[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                out[m, k] = (right - f) / (right - centre)
    return out


def reference_logmel(
    x: np.ndarray, rate: int, n_fft: int, hop: int, n_mels: int, f_min: float, f_max: float, eps: float
) -> np.ndarray:
    """``log(filters @ |DFT(hann * frame)|^2 + eps)`` per frame, frames centred on
    samples ``0, hop, 2 hop, ...`` of the zero-padded signal."""
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / n_fft) for n in range(n_fft)])
    padded = np.concatenate([np.zeros(n_fft // 2), x, np.zeros(n_fft // 2)])
    filters = reference_filters(n_fft, n_mels, rate, f_min, f_max)
    frames = 1 + len(x) // hop
    out = np.zeros((n_mels, frames))
    n = np.arange(n_fft)
    for j in range(frames):
        segment = padded[j * hop : j * hop + n_fft] * window
        power = np.zeros(n_fft // 2 + 1)
        for k in range(n_fft // 2 + 1):
            re = np.sum(segment * np.cos(2 * math.pi * k * n / n_fft))
            im = -np.sum(segment * np.sin(2 * math.pi * k * n / n_fft))
            power[k] = re * re + im * im
        out[:, j] = np.log(filters @ power + eps)
    return out


@pytest.mark.parametrize(
    "rate,n_fft,hop,n_mels,f_min,f_max,length",
    [
        (8000, 64, 16, 8, 0.0, 4000.0, 200),
        (16000, 128, 40, 12, 100.0, 7000.0, 333),
        (1000, 32, 8, 4, 20.0, 450.0, 64),
    ],
)
def test_logmel_matches_the_float64_reference(rate, n_fft, hop, n_mels, f_min, f_max, length):
    x = np.random.default_rng(0).uniform(-1, 1, (2, length))
    module = LogMel(rate, n_fft, hop, n_mels, f_min, f_max, eps=1e-6)
    expected = np.stack([reference_logmel(s, rate, n_fft, hop, n_mels, f_min, f_max, 1e-6) for s in x])
    np.testing.assert_allclose(
        mel_filterbank(n_fft, n_mels, rate, f_min, f_max).numpy(),
        reference_filters(n_fft, n_mels, rate, f_min, f_max),
        rtol=0,
        atol=1e-12,
    )
    out64 = module.double()(torch.from_numpy(x)).numpy()
    assert out64.shape == (2, n_mels, 1 + length // hop) == (2, n_mels, module.frames(length))
    np.testing.assert_allclose(out64, expected, rtol=1e-9, atol=1e-9)
    out32 = module.float()(torch.from_numpy(x).float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_logmel_gradients_pass_gradcheck():
    module = LogMel(1000, n_fft=16, hop=8, n_mels=3, f_min=0.0, f_max=500.0).double()
    x = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-6)


def test_a_pure_tone_is_loudest_in_its_mel_band():
    rate, freq = 16000, 1000.0
    x = torch.sin(2 * math.pi * freq * torch.arange(4000) / rate)[None]
    module = LogMel(rate, n_fft=512, hop=160, n_mels=40)
    spectrum = module(x)[0, :, 5:-5].mean(dim=1)  # away from the padded ends
    weights = mel_filterbank(512, 40, rate, 0.0, rate / 2)[:, round(freq * 512 / rate)]
    assert int(spectrum.argmax()) == int(weights.argmax())


def test_logmel_runs_in_float32_under_autocast():
    module = LogMel(8000, n_fft=64, hop=16, n_mels=8)
    x = torch.randn(2, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert out.dtype == torch.float32 and torch.allclose(out, module(x))


def test_too_many_mel_bands_for_the_fft_is_a_user_error():
    with pytest.raises(sslx.UserError, match="lower n_mels or raise n_fft"):
        mel_filterbank(64, 48, 16000, 0.0, 8000.0)
    with pytest.raises(sslx.UserError, match="f_max"):
        mel_filterbank(512, 40, 16000, 0.0, 9000.0)


def test_hop_in_samples():
    assert hop_samples(16000, 10) == 160 and hop_samples(22050, 10) == 221 and hop_samples(100, 1) == 1


@pytest.mark.parametrize("width,blocks", [(4, 1), (8, 3)])
def test_audio_cnn_features(width, blocks):
    torch.manual_seed(0)
    cnn = AudioCNN(LogMel(8000, n_fft=64, hop=16, n_mels=8), width=width, blocks=blocks)
    x = torch.randn(3, 800, requires_grad=True)
    out = cnn(x)
    assert cnn.out_dim == width * 2 ** (blocks - 1) and out.shape == (3, cnn.out_dim)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the features depend on the sound
    cnn.eval()
    a, b = torch.randn(2, 800).unbind()
    assert not torch.allclose(cnn(a[None]), cnn(b[None]))
