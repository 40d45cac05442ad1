"""Weighted k-nearest-neighbour evaluation of frozen features."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_evaluators(register):
    from sslx_knn.evaluator import KNN

    register(KNN)
