"""Audio-visual correspondence for sslx: the ``audio_video`` pair sampler (a
clip's frame and its own sound at that time, :mod:`sslx_audiovideo.sampler`),
the ``avc`` objective (a log-mel + CNN audio branch and a symmetric InfoNCE
loss between frame and sound embeddings, :mod:`sslx_audiovideo.objective`)
and the ``av_retrieval`` evaluator (find a clip's frame from its sound among
N test clips, :mod:`sslx_audiovideo.evaluator`)."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    from sslx_audiovideo.sampler import AudioVideo

    register(AudioVideo)


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_audiovideo.objective import AVC

    register(AVC)


@sslx.hookimpl
def sslx_register_evaluators(register):
    from sslx_audiovideo.evaluator import AVRetrieval

    register(AVRetrieval)
