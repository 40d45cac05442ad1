"""Jigsaw puzzles (Noroozi & Favaro, 2016, arXiv:1603.09246): the tiles of
an image are shuffled by one of a fixed set of permutations and the network
predicts which one, from the features of every tile."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_objectives(register):
    from sslx_jigsaw.objective import Jigsaw

    register(Jigsaw)
