"""The sslx plugin contract: every hook a plugin may implement.

A plugin is a module (or object) with functions decorated by
``@sslx.hookimpl`` (pluggy's ``HookimplMarker("sslx")``) whose names are
hooks below. It is found through the ``sslx`` entry-point group::

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from sslx.components import Component, ObjectiveOutput

hookspec = pluggy.HookspecMarker("sslx")
hookimpl = pluggy.HookimplMarker("sslx")


class Register(Protocol):
    """The callable passed to registrar hooks.

    A class that is not a subclass of the hook's base class, has no valid
    ``name`` (lower-case letters, digits and underscores, starting with a
    letter) or no ``Params`` model is refused: the plugin is reported and
    skipped. A name two plugins register is unusable, with an error naming
    both.
    """

    def __call__(self, component: type[Component], name: str | None = None) -> None:
        """Register ``component`` under ``name`` (default: ``component.name``)."""


class RunContext(Protocol):
    """What lifecycle hooks see of a run.

    Under DDP every process has its own, and only rank 0's is recorded.

    :ivar config: the validated experiment, defaults filled in.
    :ivar run_dir: the ``pathlib.Path`` of the run's record, or ``None`` when
        the run is not recorded or this is not rank 0.
    """

    config: dict[str, Any]
    run_dir: Any

    def log_scalar(self, name: str, value: float, step: int) -> None:
        """Record a metric (use dotted names such as ``myplugin.grad_norm``);
        a no-op on processes other than rank 0."""


class RecordingRun(Protocol):
    """What ``sslx_run_observers`` sees of a run about to be recorded.

    :ivar uid: the run's ``sslx_uid``, also in its ``info.json``: stamp your
        records with it so that a run is never recorded twice.
    :ivar name: the run's name.
    :ivar config: the run's config (for ``sslx eval`` runs:
        ``{"evaluates", "protocol", "pretraining"}``).
    :ivar runs_dir: the ``pathlib.Path`` of the file store the run goes to.
    :ivar options: the values of the options plugins added to ``sslx run``
        and ``sslx eval`` (see ``sslx_register_commands``), by parameter name.
    :ivar tags: the run's tags (``sslx run --tag KEY=VALUE``, also its
        ``info.tags``), e.g. the ``sweep`` and ``point`` of a sweep's run.
    """

    uid: str
    name: str
    config: dict[str, Any]
    runs_dir: Any
    options: Mapping[str, Any]
    tags: Mapping[str, str]


@dataclass
class RecorderReport:
    """What a recorder says when a run has ended (see ``sslx_run_observers``).

    :ivar key: the key of ``note`` in the run's ``info.json`` (e.g. ``"mongo"``).
    :ivar note: plain JSON data kept there: where the run went, what is missing.
    :ivar message: one line for the user, printed after the run.
    :ivar complete: whether the recorder holds the whole run; when false
        ``message`` is printed as a warning and should say how to complete it.
    """

    key: str
    note: dict[str, Any]
    message: str
    complete: bool = True


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

    Fires at most once per command line, after plugins are loaded, when
    ``sslx`` lists its commands (``sslx --help``) or is given one it does not
    define itself.

    A plugin may also add options to sslx's own ``run`` and ``eval``
    commands (``cli.commands["run"].params.append(click.Option(...))``);
    their values reach ``sslx_run_observers`` as ``run.options``.

    :param cli: the root ``click`` group; call ``cli.add_command(...)``.
    """


@hookspec
def sslx_run_observers(run: RecordingRun) -> Sequence[Any] | None:
    """Give observers that record a run somewhere besides the file store.

    Fires once per recorded run (``sslx run``, ``sslx eval``; under DDP on
    rank 0 only), before the run starts, in every plugin that has it. The
    file store under ``runs/`` is always written and stays the source of
    truth; these observers add copies (a database, an experiment tracker).

    Return ``None`` when the run's options do not ask for your recorder, else
    a list of Sacred observers (subclasses of
    ``sacred.observers.RunObserver``): Sacred calls their events (started,
    heartbeat, ``log_metrics``, artifact, completed, failed, interrupted).
    An observer must never fail the run: catch your service's errors and
    say so once. After the run has ended, whatever its outcome, sslx calls
    the observer's ``finish()`` if it has one (release connections there);
    a :class:`RecorderReport` it returns is kept in the run's ``info.json``
    and its message printed. Raise ``sslx.UserError`` for bad options: the
    run then does not start.

    :param run: the run about to be recorded; ``run.options`` holds the
        values of the options your plugin added to the command line.
    :return: the observers to attach, or ``None``.
    """


# ----------------------------------------------------------------------------
# lifecycle hooks: called during a training run, in every plugin that has them


@hookspec
def sslx_run_started(run: RunContext) -> None:
    """A training run has started; components are built, no step taken yet.

    Fires once per run, before the first step (also when the run resumes from
    a checkpoint); under DDP in every process.

    :param run: the run; ``run.config`` is the validated experiment.
    """


@hookspec
def sslx_step_finished(run: RunContext, step: int, output: ObjectiveOutput, lr: float) -> None:
    """An optimizer step has finished.

    Fires after every optimizer step, after the objective's ``on_step_end``;
    under DDP in every process, with that process's output.

    Keep it cheap: it is on the hot path. Raising an exception fails the run
    (its last checkpoint is kept).

    :param run: the run; use ``run.log_scalar`` to record metrics.
    :param step: the step just taken, counting from 1 (a resumed run goes on
        from its checkpoint's step).
    :param output: what the objective returned for this step (tensors may live
        on the accelerator; ``.item()`` forces a synchronisation).
    :param lr: the learning rate used for this step.
    """


@hookspec
def sslx_run_finished(run: RunContext, status: str, result: dict[str, float] | None) -> None:
    """A training run has ended.

    Fires once per run that fired ``sslx_run_started``, whether it completed,
    failed or was interrupted; under DDP in every process.

    :param run: the run.
    :param status: ``"COMPLETED"``, ``"FAILED"`` or ``"INTERRUPTED"``.
    :param result: the final evaluation metrics when completed (empty on
        processes other than rank 0), else ``None``.
    """
