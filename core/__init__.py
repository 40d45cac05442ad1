"""sslx: a plugin-based experiment platform for self-supervised learning.

Plugin authors need only what this module exports: the ``hookimpl`` marker,
the component base classes and parameter model, ``UserError`` for mistakes the
user must fix, and the distributed helpers in :mod:`sslx.distributed`.
"""

__version__ = "0.1.0"

from sslx.components import (  # noqa: E402
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
from sslx.errors import UserError  # noqa: E402
from sslx.hookspecs import hookimpl  # noqa: E402

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
