"""VICReg: variance-invariance-covariance regularisation of two views' embeddings."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_vicreg.objective import VICReg

    register(VICReg)
