"""Object tracks for sslx: the ``tracks`` pair sampler (an object's patches in
two frames are positives; other objects' patches negatives) and the ``reid``
evaluator (re-identification top-1 of an object's patch among other objects')."""

from __future__ import annotations

import sslx
from sslx_tracks.reid import ReID
from sslx_tracks.sampler import TrackPatches

__all__ = ["ReID", "TrackPatches"]


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    register(TrackPatches)


@sslx.hookimpl
def sslx_register_evaluators(register):
    register(ReID)
