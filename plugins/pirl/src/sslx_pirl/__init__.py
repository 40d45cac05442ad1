"""PIRL: pretext-invariant representations. An image and the shuffled jigsaw
tiles of the same image are pulled towards one memory-bank entry."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_pirl.objective import PIRL

    register(PIRL)
