"""BYOL: an online network predicts a moving-average target network's
projection of the other view."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_byol.objective import BYOL

    register(BYOL)
