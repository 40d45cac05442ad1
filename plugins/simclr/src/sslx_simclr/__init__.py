"""SimCLR: a projection head and the NT-Xent loss over two views."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_simclr.objective import SimCLR

    register(SimCLR)
