"""The frames pair sampler: two frames close in time in one video clip are
positives; frames far apart in time in the same clip, and frames of other
clips, are negatives (temporal coherence, as in slow-feature and
time-contrastive learning)."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    from sslx_frames.sampler import Frames

    register(Frames)
