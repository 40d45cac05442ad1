"""The audio encoder: a log-mel spectrogram computed with torch, then a small CNN.

Waveforms ``(B, S)`` become log-mel spectrograms ``(B, n_mels, frames)``
(:class:`LogMel`), which a few conv-BN-ReLU blocks and a global average pool
turn into features ``(B, out_dim)`` (:class:`AudioCNN`). Everything is plain
torch, differentiable, and runs on any device.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import sslx


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """The HTK mel scale: ``2595 * log10(1 + hz / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`hz_to_mel`: ``700 * (10 ** (mel / 2595) - 1)``."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)`` in float64, for the
    one-sided spectrum of an ``n_fft``-point DFT (bin ``k`` at ``k *
    sample_rate / n_fft`` Hz).

    ``n_mels + 2`` corner frequencies are equally spaced on the HTK mel scale
    from ``f_min`` to ``f_max``; filter ``m`` rises linearly from 0 at corner
    ``m`` to 1 at corner ``m + 1`` and falls back to 0 at corner ``m + 2``
    (unnormalised, as HTK and torchaudio's ``norm=None``).

    Raises ``sslx.UserError`` when a filter holds no DFT bin (too many mel
    bands for the frequency resolution): it would always output zero.
    """
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise sslx.UserError(
            f"the mel filterbank needs 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max} at "
            f"sample_rate={sample_rate}: set f_max to at most {sample_rate / 2:g} (or null for that) and f_min below it."
        )
    corners = mel_to_hz(
        torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    )
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    lower, centre, upper = corners[:-2, None], corners[1:-1, None], corners[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    empty = (filters.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise sslx.UserError(
            f"{len(empty)} of the {n_mels} mel filters between {f_min:g} and {f_max:g} Hz fall between two DFT bins "
            f"(bins are {sample_rate / n_fft:g} Hz apart with n_fft={n_fft} at {sample_rate} Hz), so they would always "
            f"be zero: lower n_mels or raise n_fft."
        )
    return filters


class LogMel(nn.Module):
    """Log-mel spectrogram: waveforms ``(B, S)`` to ``log(mel + eps)`` of
    shape ``(B, n_mels, 1 + S // hop)``.

    Each frame is ``n_fft`` samples under a periodic Hann window, hop ``hop``
    samples, the signal zero-padded by ``n_fft // 2`` at both ends (frame
    ``j`` is centred on sample ``j * hop``); the power spectrum ``|DFT|^2`` of
    each frame goes through :func:`mel_filterbank`. Computed in float32 (or
    float64 for float64 input), outside autocast: half precision would ruin
    the small powers that the log keeps.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 512,
        hop: int = 160,
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: float | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        if n_fft < 2 or hop < 1:
            raise ValueError(f"n_fft must be >= 2 and hop >= 1, got n_fft={n_fft}, hop={hop}")
        self.sample_rate, self.n_fft, self.hop, self.eps = sample_rate, n_fft, hop, eps
        fbank = mel_filterbank(n_fft, n_mels, sample_rate, f_min, sample_rate / 2 if f_max is None else f_max)
        # kept in float64 (cast to the input's precision in forward); derived from the parameters, so not in checkpoints
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True, dtype=torch.float64), persistent=False)
        self.register_buffer("fbank", fbank, persistent=False)

    def frames(self, num_samples: int) -> int:
        """Spectrogram frames of a waveform of ``num_samples`` samples."""
        return 1 + num_samples // self.hop

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim != 2:
            raise ValueError(f"LogMel expects waveforms (B, S), got shape {tuple(waveform.shape)}")
        with torch.autocast(waveform.device.type, enabled=False):
            dtype = torch.promote_types(waveform.dtype, torch.float32)
            spec = torch.stft(
                waveform.to(dtype),
                self.n_fft,
                hop_length=self.hop,
                win_length=self.n_fft,
                window=self.window.to(dtype),
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # (B, n_fft // 2 + 1, frames)
            mel = torch.einsum("mf,bft->bmt", self.fbank.to(dtype), power)
            return torch.log(mel + self.eps)


class AudioCNN(nn.Module):
    """The audio branch: :class:`LogMel`, a BatchNorm over the log-mel values
    (a learned standardisation: log powers span tens of units), then
    ``blocks`` blocks of 3x3 conv-BN-ReLU over the (mel, time) plane, each but
    the last followed by 2x2 max-pooling, width doubling per block, and a
    global average pool: waveforms ``(B, S)`` to features ``(B, out_dim)``."""

    def __init__(self, logmel: LogMel, width: int = 16, blocks: int = 3):
        super().__init__()
        self.logmel = logmel
        self.input_norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(blocks):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < blocks - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(self.logmel(waveform).unsqueeze(1))  # (B, 1, n_mels, frames)
        return self.body(x).mean(dim=(2, 3))


def hop_samples(sample_rate: int, hop_ms: float) -> int:
    """The hop in samples for ``hop_ms`` milliseconds (at least one)."""
    return max(1, int(math.floor(sample_rate * hop_ms / 1000 + 0.5)))
