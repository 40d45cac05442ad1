"""Barlow Twins: the cross-correlation of two views' embeddings made close to
the identity matrix."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_barlowtwins.objective import BarlowTwins

    register(BarlowTwins)
