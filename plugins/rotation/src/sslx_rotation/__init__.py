"""RotNet: learn features by predicting by how many quarter turns an image
was rotated (Gidaris et al., 2018, arXiv:1803.07728)."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_rotation.objective import Rotation

    register(Rotation)
