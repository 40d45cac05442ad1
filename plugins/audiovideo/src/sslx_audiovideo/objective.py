"""The ``avc`` objective: audio-visual correspondence with a symmetric InfoNCE loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx import distributed
from sslx.modules import projection_mlp
from sslx_audiovideo.audio import AudioCNN, LogMel, hop_samples


def symmetric_info_nce(
    video: torch.Tensor, audio: torch.Tensor, temperature: float, gather: bool = True
) -> torch.Tensor:
    """Symmetric InfoNCE between paired embeddings (as in CLIP, Radford et
    al., 2021, and audio-visual instance discrimination, Morgado et al., 2021).

    With ``s[i, j] = <v_i, a_j> / temperature`` over L2-normalised rows, the
    loss is the mean of ``-log softmax_j s[i, j]`` at ``j = i`` (each video
    picks its own sound among the batch's) and ``-log softmax_i s[i, j]`` at
    ``i = j`` (each sound picks its own video), each averaged over the batch.
    With ``gather`` under DDP the candidates come from every process.

    Args:
        video, audio: ``(B, D)`` embeddings; row ``b`` of each is one sample.
        temperature: softmax temperature, > 0.

    Returns:
        The scalar loss (float32, or float64 for float64 input).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if video.shape != audio.shape or video.ndim != 2:
        raise ValueError(f"video and audio must both be (B, D), got {tuple(video.shape)} and {tuple(audio.shape)}")
    with torch.autocast(video.device.type, enabled=False):
        dtype = torch.promote_types(video.dtype, torch.float32)
        v = F.normalize(video.to(dtype), dim=1)
        a = F.normalize(audio.to(dtype), dim=1)
        all_v, all_a = (distributed.gather(v), distributed.gather(a)) if gather else (v, a)
        offset = distributed.rank() * v.shape[0] if gather else 0
        target = torch.arange(v.shape[0], device=v.device) + offset
        video_to_audio = F.cross_entropy(v @ all_a.T / temperature, target)
        audio_to_video = F.cross_entropy(a @ all_v.T / temperature, target)
        return (video_to_audio + audio_to_video) / 2


class AVC(sslx.Objective):
    """Audio-visual correspondence: the encoder embeds a clip's frame, an
    audio branch (log-mel spectrogram computed with torch, then a small CNN)
    embeds the sound around that frame's time, and a symmetric InfoNCE loss
    makes each frame pick its own sound among the batch's and each sound its
    own frame (negatives: other clips, and the same clip shifted in time).
    Needs sampler 'audio_video' (2 views: frame, waveform). Logs the batch's
    audio-to-video top-1 as train.av_top1."""

    name = "avc"

    class Params(sslx.Params):
        embedding_dim: int = Field(128, ge=1, description="Size of the L2-normalised embeddings the loss compares.")
        proj_hidden_dim: int = Field(256, ge=1, description="Hidden width of the two projection MLPs (video, audio).")
        temperature: float = Field(0.1, gt=0, le=10, description="Softmax temperature of the InfoNCE loss (fixed).")
        audio_width: int = Field(
            16, ge=4, le=256, description="Channels of the audio CNN's first block (doubling each block)."
        )
        audio_blocks: int = Field(3, ge=1, le=6, description="Conv-BN-ReLU blocks of the audio CNN.")
        sample_rate: int = Field(
            16000,
            ge=1000,
            description="Sample rate of the audio views in Hz: must be the dataset's (checked on the first batch).",
        )
        n_fft: int = Field(
            512, ge=16, description="DFT size of the spectrogram frames, in samples (also the Hann window's length)."
        )
        hop_ms: float = Field(10.0, gt=0, description="Hop between spectrogram frames in milliseconds.")
        n_mels: int = Field(40, ge=1, description="Mel bands of the spectrogram.")
        f_min: float = Field(0.0, ge=0, description="Lowest frequency of the mel filterbank in Hz.")
        f_max: float | None = Field(
            None, gt=0, description="Highest frequency of the mel filterbank in Hz (null: half the sample rate)."
        )
        gather_distributed: bool = Field(
            True, description="Take negatives from every process's batch under DDP (no effect in one process)."
        )

    def __init__(self, params: Params, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2, " (a frame and its sound)", " with sampler 'audio_video'")
        p = params
        logmel = LogMel(p.sample_rate, p.n_fft, hop_samples(p.sample_rate, p.hop_ms), p.n_mels, p.f_min, p.f_max)
        self.audio_encoder = AudioCNN(logmel, p.audio_width, p.audio_blocks)
        self.video_head = projection_mlp(encoder.out_dim, p.proj_hidden_dim, p.embedding_dim)
        self.audio_head = projection_mlp(self.audio_encoder.out_dim, p.proj_hidden_dim, p.embedding_dim)
        self._rate_checked = False  # the check never changes a step, so it needs no checkpointing

    def embed_video(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised video embeddings ``(B, embedding_dim)`` of frames ``(B, C, H, W)``."""
        return F.normalize(self.video_head(self.encoder(images)).float(), dim=1)

    def embed_audio(self, waveforms: torch.Tensor) -> torch.Tensor:
        """L2-normalised audio embeddings ``(B, embedding_dim)`` of waveforms ``(B, S)``."""
        return F.normalize(self.audio_head(self.audio_encoder(waveforms)).float(), dim=1)

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        images, waveforms = self._views(batch)
        video = self.embed_video(images)
        audio = self.embed_audio(waveforms)
        loss = symmetric_info_nce(video, audio, self.params.temperature, gather=self.params.gather_distributed)
        with torch.no_grad():
            top1 = ((audio @ video.T).argmax(dim=1) == torch.arange(len(audio), device=audio.device)).float().mean()
        return sslx.ObjectiveOutput(loss=loss, embeddings=video.detach(), metrics={"av_top1": top1})

    def _views(self, batch: sslx.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, waveforms = batch.views
        if images.ndim != 4 or waveforms.ndim != 2:
            raise sslx.UserError(
                f"objective 'avc' needs views [frames (B, C, H, W), waveforms (B, S)], but got shapes "
                f"{tuple(images.shape)} and {tuple(waveforms.shape)}: use sampler 'audio_video'."
            )
        if not self._rate_checked and "sample_rate" in batch.meta:
            rates = sorted({int(r) for r in batch.meta["sample_rate"].tolist()})
            if rates != [self.params.sample_rate]:
                raise sslx.UserError(
                    f"objective 'avc' computes spectrograms for audio at objective.sample_rate = "
                    f"{self.params.sample_rate} Hz, but the dataset's audio is at {rates} Hz: set "
                    f"objective.sample_rate to {rates[0]} (or the dataset's sample_rate to {self.params.sample_rate})."
                )
            self._rate_checked = True
        return images, waveforms
