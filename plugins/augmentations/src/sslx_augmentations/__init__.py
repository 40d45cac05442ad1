"""View augmentations built on albumentations (image by image, on CPU workers).

Two pipelines with the published defaults, in :mod:`sslx_augmentations.views`:
``simclr`` (Chen et al., 2020) and ``mocov2`` (Chen et al., 2020, "Improved
baselines"). Both are the same sequence of operations with different
strengths; every strength is a parameter. ``multicrop`` (SwAV's, in
:mod:`sslx_augmentations.multicrop`) uses the same operations for large and
small crops; ``pirl`` and ``tiles`` (in :mod:`sslx_augmentations.jigsaw`) cut
crops into jigsaw tiles. Grayscale input is handled: colour jitter reduces to
brightness and contrast, random grayscale is skipped, views keep one channel.
"""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_augmentations(register):
    from sslx_augmentations.jigsaw import PIRLViews, TilesViews
    from sslx_augmentations.multicrop import MultiCrop
    from sslx_augmentations.views import MoCoV2Views, SimCLRViews

    register(SimCLRViews)
    register(MoCoV2Views)
    register(MultiCrop)
    register(PIRLViews)
    register(TilesViews)
