"""MoCo v2: a momentum (EMA) key encoder and a queue of keys as negatives."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_moco.objective import MoCo

    register(MoCo)
