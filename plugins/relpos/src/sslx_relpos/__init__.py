"""Relative patch position (Doersch et al., 2015, arXiv:1505.05192): given
the centre tile of a 3x3 grid and one of its 8 neighbours, predict which
neighbour it is."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_relpos.objective import RelativePosition

    register(RelativePosition)
