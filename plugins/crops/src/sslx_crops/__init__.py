"""The crops-across-images pair sampler."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    from sslx_crops.sampler import Crops

    register(Crops)
