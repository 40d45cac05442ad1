"""Audio-visual correspondence for sslx: the ``audio_video`` pair sampler (a
clip's frame and its own sound at that time), the ``avc`` objective (a
log-mel + CNN audio branch and a symmetric InfoNCE loss between frame and
sound embeddings) and the ``av_retrieval`` evaluator (find a clip's frame
from its sound among N test clips)."""

from __future__ import annotations

import sslx
from sslx_audiovideo.audio import AudioCNN, LogMel, mel_filterbank
from sslx_audiovideo.evaluator import AVRetrieval, retrieval_top1
from sslx_audiovideo.objective import AVC, symmetric_info_nce
from sslx_audiovideo.sampler import AudioVideo, audio_window, window_start

__all__ = ["AVC", "AVRetrieval", "AudioCNN", "AudioVideo", "LogMel", "audio_window", "mel_filterbank",
           "retrieval_top1", "symmetric_info_nce", "window_start"]


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    register(AudioVideo)


@sslx.hookimpl
def sslx_register_objectives(register):
    register(AVC)


@sslx.hookimpl
def sslx_register_evaluators(register):
    register(AVRetrieval)
