"""Fine-tuning evaluation: the whole network trained with (a fraction of) the
labels, on a copy of the encoder."""

from __future__ import annotations

import sslx


@sslx.hookimpl
def sslx_register_evaluators(register):
    from sslx_finetune.evaluator import Finetune

    register(Finetune)
