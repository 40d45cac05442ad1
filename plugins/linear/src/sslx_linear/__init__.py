"""Linear probes of frozen features: multinomial logistic regression on the
encoder's output (``linear``) and on the pooled feature map of every stage
(``linear_layers``)."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_evaluators(register):
    from sslx_linear.probes import Linear, LinearLayers

    register(Linear)
    register(LinearLayers)
