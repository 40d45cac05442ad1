"""The sslx plugin contract: every hook a plugin may implement.

A plugin is a module (or object) with functions decorated by
``@sslx.hookimpl`` whose names are hooks below. It is found through the
``sslx`` entry-point group::

    [project.entry-points.sslx]
    mymethod = "sslx_mymethod"

Registrar hooks receive a ``register`` callable; call it once per component
class. The host records which plugin registered what, refuses duplicate names
and checks each class against its kind's base class (see
:mod:`sslx.components`). Lifecycle hooks observe a run; they must not depend
on the order in which plugins are called, which is undefined.

Hooks gain arguments over time but never lose or rename one; an
implementation may accept any subset of a hook's arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from sslx.components import Component, ObjectiveOutput

hookspec = pluggy.HookspecMarker("sslx")
hookimpl = pluggy.HookimplMarker("sslx")


class Register(Protocol):
    """The callable passed to registrar hooks."""

    def __call__(self, component: type[Component], name: str | None = None) -> None:
        """Register ``component`` under ``name`` (default: ``component.name``)."""


class RunContext(Protocol):
    """What lifecycle hooks see of a run."""

    config: dict[str, Any]  # the validated experiment, defaults filled in
    run_dir: Any  # pathlib.Path of the run's record, or None when unrecorded

    def log_scalar(self, name: str, value: float, step: int) -> None:
        """Record a metric (use dotted names such as ``myplugin.grad_norm``)."""


# ----------------------------------------------------------------------------
# registrar hooks: called once when plugins are loaded


@hookspec
def sslx_register_datasets(register: Register) -> None:
    """Register dataset classes (subclasses of :class:`sslx.Dataset`).

    Fires once, when plugins are loaded.

    :param register: call ``register(MyDataset)`` for each dataset class.
    """


@hookspec
def sslx_register_pair_samplers(register: Register) -> None:
    """Register pair sampler classes (subclasses of :class:`sslx.PairSampler`).

    Fires once, when plugins are loaded.

    :param register: call ``register(MySampler)`` for each sampler class.
    """


@hookspec
def sslx_register_augmentations(register: Register) -> None:
    """Register augmentation classes (subclasses of :class:`sslx.Augmentation`).

    Fires once, when plugins are loaded.

    :param register: call ``register(MyAugmentation)`` for each class.
    """


@hookspec
def sslx_register_encoders(register: Register) -> None:
    """Register encoder classes (subclasses of :class:`sslx.Encoder`).

    Fires once, when plugins are loaded.

    :param register: call ``register(MyEncoder)`` for each encoder class.
    """


@hookspec
def sslx_register_objectives(register: Register) -> None:
    """Register objective (method) classes (subclasses of :class:`sslx.Objective`).

    Fires once, when plugins are loaded.

    :param register: call ``register(MyObjective)`` for each objective class.
    """


@hookspec
def sslx_register_evaluators(register: Register) -> None:
    """Register evaluator classes (subclasses of :class:`sslx.Evaluator`).

    Fires once, when plugins are loaded.

    :param register: call ``register(MyEvaluator)`` for each evaluator class.
    """


@hookspec
def sslx_register_commands(cli: click.Group) -> None:
    """Add commands to the ``sslx`` command line.

    Fires once, when the CLI starts, after plugins are loaded.

    :param cli: the root ``click`` group; call ``cli.add_command(...)``.
    """


# ----------------------------------------------------------------------------
# lifecycle hooks: called during a training run, in every plugin that has them


@hookspec
def sslx_run_started(run: RunContext) -> None:
    """A training run has started; components are built, no step taken yet.

    Fires once per run (on the process that records it), before the first step.

    :param run: the run; ``run.config`` is the validated experiment.
    """


@hookspec
def sslx_step_finished(run: RunContext, step: int, output: ObjectiveOutput, lr: float) -> None:
    """An optimizer step has finished.

    Fires after every optimizer step, after the objective's ``on_step_end``.
    Keep it cheap: it is on the hot path. Raising an exception fails the run
    (its last checkpoint is kept).

    :param run: the run; use ``run.log_scalar`` to record metrics.
    :param step: the step just taken, counting from 1.
    :param output: what the objective returned for this step (tensors may live
        on the accelerator; ``.item()`` forces a synchronisation).
    :param lr: the learning rate used for this step.
    """


@hookspec
def sslx_run_finished(run: RunContext, status: str, result: dict[str, float] | None) -> None:
    """A training run has ended.

    Fires once per run, whether it completed, failed or was interrupted.

    :param run: the run.
    :param status: ``"COMPLETED"``, ``"FAILED"`` or ``"INTERRUPTED"``.
    :param result: the final evaluation metrics when completed, else ``None``.
    """
