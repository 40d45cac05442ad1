"""Encoders: torchvision ResNets (with a small-image stem) and a small CNN.

Every encoder maps ``(B, C, H, W)`` images to ``(B, out_dim)`` features and
names its stages for per-layer probing (``forward_stages``).
"""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_encoders(register):
    from sslx_encoders.models import ResNet18, ResNet50, SmallCNN

    register(ResNet18)
    register(ResNet50)
    register(SmallCNN)
