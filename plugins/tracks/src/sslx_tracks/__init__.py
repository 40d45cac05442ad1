"""Object tracks for sslx: the ``tracks`` pair sampler (an object's patches in
two frames are positives; other objects' patches negatives, in
:mod:`sslx_tracks.sampler`) and the ``reid`` evaluator (re-identification
top-1 of an object's patch among other objects', in :mod:`sslx_tracks.reid`)."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    from sslx_tracks.sampler import TrackPatches

    register(TrackPatches)


@sslx.hookimpl
def sslx_register_evaluators(register):
    from sslx_tracks.reid import ReID

    register(ReID)
