"""Finished runs: their trained encoders, and evaluating them later
(``sslx eval``).

Every checkpoint carries the config it was trained with, so a run folder (or
a checkpoint file alone) is enough to rebuild its encoder exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sslx.components import Params
from sslx.config import ResolvedExperiment, apply_overrides, resolve, resolve_component
from sslx.engine import checkpoint as ckpt
from sslx.engine.share import CoreShare
from sslx.engine.trainer import (
    Parts,
    Recorder,
    build,
    eval_context,
    pick_device,
    run_evaluators,
    seed_everything,
    to_device,
)
from sslx.errors import UserError
from sslx.registry import ComponentInfo

if TYPE_CHECKING:
    from sslx.plugins import PluginHost

# Sections of the pretraining config that `sslx eval --set` may change: where the
# data comes from, how it is viewed, and how the evaluation runs (never the model).
EVAL_CHANGEABLE = ("dataset", "augmentation", "trainer")


def load_trained(
    path: Path, host: PluginHost, assignments: Sequence[str] = ()
) -> tuple[ResolvedExperiment, Parts, int]:
    """The experiment a checkpoint was trained with (``assignments`` applied:
    ``KEY=VALUE`` strings as in ``--set``), its components, and its step; the
    encoder's weights are loaded with ``strict=True``, the rest of the
    objective's state where its shapes still fit."""
    state = ckpt.load(path)
    if not isinstance(state, dict) or "objective" not in state or "config" not in state:
        raise UserError(f"{path}: not an sslx training checkpoint (it has no 'objective' and 'config' entries).")
    bad = [k for k, v in ckpt.encoder_state(state).items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(
            f"{path}: the encoder in this checkpoint holds NaN or infinite values ({len(bad)} tensors, e.g. "
            f"{', '.join(bad[:3])}): the run diverged before it was written, so its features mean nothing. Evaluate "
            f"an earlier checkpoint, or train again with a lower trainer.lr."
        )
    config = apply_overrides(state["config"], list(assignments))
    exp = resolve(config, host, source=f"{path} (the config it was trained with)")
    parts = build(exp)
    try:
        parts.encoder.load_state_dict(ckpt.encoder_state(state), strict=True)
    except RuntimeError as exc:
        raise UserError(
            f"{path}: the saved weights do not fit encoder {exp.config['encoder']}: {exc}. Was the "
            f"encoder plugin changed since the run? Install the version the run used."
        ) from None
    # the objective's own parts too (heads, the audio branch of a two-modality method) for evaluators that
    # use them; state sized by the data (a memory bank under another dataset) keeps its fresh values
    own = parts.objective.state_dict()
    rest = {k: v for k, v in state["objective"].items() if k in own and own[k].shape == v.shape}
    parts.objective.load_state_dict(rest, strict=False)
    return exp, parts, int(state["step"])


@dataclass
class EvaluationJob:
    """One evaluator, ready to run on a trained encoder."""

    exp: ResolvedExperiment
    parts: Parts
    step: int
    evaluator: tuple[ComponentInfo, Params]
    protocol_config: dict[str, Any]

    def run(self, recorder: Recorder) -> dict[str, float]:
        """Evaluate; metrics are logged at the checkpoint's step, files kept as artifacts."""
        t = self.exp.trainer
        seed_everything(self.exp.seed)
        device = pick_device(t.device)
        to_device(self.parts.objective, device, t.channels_last)
        recorder.set_info("device", str(device))
        with CoreShare(t.threads) as share:
            share.apply()
            return run_evaluators([self.evaluator], eval_context(self.exp, self.parts, device), recorder, self.step)


def prepare_evaluation(checkpoint: Path, protocol: str, assignments: list[str], host: PluginHost) -> EvaluationJob:
    """Validate ``protocol`` (an evaluator name) and ``assignments`` against the
    checkpoint's config and load its encoder. Assignments whose first key is a
    section in ``EVAL_CHANGEABLE`` change the pretraining config; the others
    are the evaluator's parameters."""
    run_sets: list[str] = []
    protocol_sets: list[str] = []
    for a in assignments:
        key = a.partition("=")[0].strip()
        first = key.split(".")[0]
        if "." in key and first not in EVAL_CHANGEABLE:
            raise UserError(
                f"--set {a!r}: an evaluation may change only {', '.join(EVAL_CHANGEABLE)} settings of "
                f"the run, or the evaluator's own parameters (plain keys such as k=50)."
            )
        (run_sets if first in EVAL_CHANGEABLE else protocol_sets).append(a)
    raw = apply_overrides({"name": protocol}, protocol_sets)
    source = f"--protocol {protocol}" + "".join(f" --set {a}" for a in protocol_sets)
    evaluator = resolve_component(host, "evaluator", raw, source)
    exp, parts, step = load_trained(checkpoint, host, run_sets)
    protocol_config = {"name": evaluator[0].name, **evaluator[1].model_dump(mode="json")}
    return EvaluationJob(exp, parts, step, evaluator, protocol_config)
