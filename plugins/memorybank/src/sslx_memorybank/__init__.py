"""Instance discrimination with a memory bank (NPID): every training image is
its own class, represented by a slowly updated entry of a memory bank."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_memorybank.objective import NPID

    register(NPID)
