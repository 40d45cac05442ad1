"""The patches pair sampler (CPC style): square patches of one image on a
grid of cells; a patch and a near patch of the same image are positives,
far patches of the same image and patches of other images are negatives."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    from sslx_patches.sampler import Patches

    register(Patches)
