"""SwAV: online clustering of the views into learned prototypes, with codes
from Sinkhorn-Knopp and a swapped-prediction loss; works with multi-crop."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_swav.objective import SwAV

    register(SwAV)
