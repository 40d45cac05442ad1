"""sslx: a plugin-based experiment platform for self-supervised learning.

Plugin authors need only what this module exports: the ``hookimpl`` marker,
the component base classes and parameter model, ``UserError`` for mistakes the
user must fix, and the helpers in :mod:`sslx.distributed`, :mod:`sslx.modules`
and :mod:`sslx.features`.

The package is light to import: the component classes (which need torch and
pydantic) are imported on first use, so ``import sslx`` and a plugin module
that only declares hooks cost no torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sslx.errors import UserError
from sslx.hookspecs import hookimpl

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sslx.components import (
        ArrayClips,
        ArraySplit,
        Augmentation,
        Batch,
        BatchedAugmentation,
        ClipSplit,
        DataInfo,
        Dataset,
        Encoder,
        EvalContext,
        Evaluator,
        ExportedBackbone,
        ImageSplit,
        NoParams,
        Objective,
        ObjectiveOutput,
        PairSampler,
        Params,
        Sample,
        Tracks,
        TrainInfo,
    )

__all__ = [
    "ArrayClips",
    "ArraySplit",
    "Augmentation",
    "Batch",
    "BatchedAugmentation",
    "ClipSplit",
    "DataInfo",
    "Dataset",
    "Encoder",
    "EvalContext",
    "Evaluator",
    "ExportedBackbone",
    "ImageSplit",
    "NoParams",
    "Objective",
    "ObjectiveOutput",
    "PairSampler",
    "Params",
    "Sample",
    "Tracks",
    "TrainInfo",
    "UserError",
    "__version__",
    "hookimpl",
]
_COMPONENTS = frozenset(__all__) - {"UserError", "__version__", "hookimpl"}  # from sslx.components, on first use


def __getattr__(name: str) -> Any:
    if name in _COMPONENTS:
        return getattr(import_module("sslx.components"), name)
    raise AttributeError(f"module 'sslx' has no attribute {name!r}")
