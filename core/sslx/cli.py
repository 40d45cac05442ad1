"""The ``sslx`` command line: the core verbs (run, eval, export, bench,
validate, plugins, describe, schema); plugins add the others through the
``sslx_register_commands`` hook.

Every failure reaches the user through :func:`report`, in one paragraph
(set ``SSLX_DEBUG=1`` for tracebacks). Heavy libraries are imported by the
command that needs them, so ``sslx --help`` starts at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

import sslx
from sslx.errors import ProcessStopped, UserError
from sslx.registry import KIND_NAMES

if TYPE_CHECKING:
    from sslx.config import ResolvedExperiment
    from sslx.plugins import PluginHost
    from sslx.records import RunRecord

KIND_ALIASES = {**{k: k for k in KIND_NAMES}, **{k + "s": k for k in KIND_NAMES}, "pair_sampler": "sampler"}


def _host(ctx: click.Context, components: bool = True) -> PluginHost:
    """The plugin host, loaded once per command line; its problems go to
    stderr once (with ``components``, those of registering components too)."""
    from sslx.plugins import load_plugins

    root = ctx.find_root()
    root.ensure_object(dict)
    if "host" not in root.obj:
        root.obj["host"] = load_plugins(strict=True if root.params.get("strict_plugins") else None)
        root.obj["warned"] = set()
    host: PluginHost = root.obj["host"]
    for line in host.load_problems(components=components):
        if line not in root.obj["warned"]:
            root.obj["warned"].add(line)
            click.secho(f"sslx: warning: {line}", err=True, fg="yellow")
    return host


def report(ctx: click.Context, exc: BaseException) -> NoReturn:
    """Turn a failure into the user's paragraph and an exit status: 2 for a
    mistake in the input, 1 for a run that failed, 130 for Ctrl-C; a bug
    keeps its traceback (re-raised)."""
    from sslx.distributed import launched_rank, launched_world_size

    rank = launched_rank()
    who = f" (process {rank})" if rank else ""
    failed = getattr(exc, "record", None)  # a RunFailed: the run is recorded
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, KeyboardInterrupt):
        if failed is not None:
            again = f" --nproc {launched_world_size()}" if launched_world_size() > 1 else ""
            click.secho(
                f"\n{failed.what} {failed.run_id} INTERRUPTED, recorded in {failed.run_dir}. "
                f"Continue it with: sslx run --resume {failed.run_dir}{again}",
                err=True,
                fg="yellow",
            )
        ctx.exit(130)
    known = isinstance(reason, (UserError, ProcessStopped, click.ClickException))
    if os.environ.get("SSLX_DEBUG") or not known:
        if failed is not None:
            click.secho(
                f"{failed.what} {failed.run_id} FAILED, recorded in {failed.run_dir} "
                f"(the traceback is in its run.json).",
                err=True,
                fg="red",
            )
        raise reason
    if isinstance(reason, click.ClickException):
        raise reason
    click.secho(f"Error{who}: {reason}", err=True, fg="red")
    if failed is not None:
        click.secho(f"{failed.what} {failed.run_id} FAILED, recorded in {failed.run_dir}.", err=True, fg="red")
    ctx.exit(1 if failed is not None or isinstance(reason, ProcessStopped) or rank else 2)


class SslxGroup(click.Group):
    """Adds the plugins' commands (and their options on core commands)
    before a command runs, keeps the raw arguments for ``--nproc``, and
    reports failures through :func:`report`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.ensure_object(dict)
        ctx.obj.setdefault("argv", list(args))
        return super().parse_args(ctx, args)

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        """Once per command line: the core commands as defined, then the
        plugins' commands and options. In one process the same group may
        serve several command lines (tests, notebooks), each with its own
        plugins: what an earlier one added is removed first, so a plugin
        never needs to guard against adding its options twice."""
        root = ctx.find_root()
        root.ensure_object(dict)
        if not root.obj.get("commands_loaded"):
            root.obj["commands_loaded"] = True
            if not hasattr(self, "_core"):
                self._core = {name: (cmd, list(cmd.params)) for name, cmd in self.commands.items()}
            self.commands = {name: cmd for name, (cmd, _) in self._core.items()}
            for cmd, params in self._core.values():
                cmd.params = list(params)
            _host(ctx, components=False).register_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load_plugin_commands(ctx)  # also for core commands: plugins may add options to them
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, ProcessStopped, KeyboardInterrupt) as exc:
            report(ctx, exc)
        except Exception as exc:
            from sslx.records import RunFailed

            if isinstance(exc, RunFailed):
                report(ctx, exc)
            raise


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from sslx.plugins import load_plugins

    click.echo(f"sslx {sslx.__version__} (Python {sys.version.split()[0]})")
    click.echo("registered plugins:")
    for p in load_plugins(strict=False).plugins:
        state = f"at {p.location}" if p.loaded else f"FAILED: {p.error}"
        click.echo(f"  {p.name}: {p.distribution or '-'} {p.version or ''} {state}")
    ctx.exit()


@click.group(cls=SslxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the sslx version and every registered plugin, then exit.",
)
@click.option("--strict-plugins", is_flag=True, help="Fail on any plugin problem (same as SSLX_STRICT_PLUGINS=1).")
def cli(strict_plugins: bool) -> None:
    """sslx: self-supervised learning experiments, one plugin per method.

    Run `sslx run EXPERIMENT.json` to pretrain and evaluate; `sslx eval
    runs/1 --protocol NAME` evaluates a finished run again; `sslx export`
    writes its backbone; `sslx plugins` lists what is installed; `sslx describe
    KIND NAME` documents a component.
    """


set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a value of the experiment, e.g. --set trainer.max_steps=100 (JSON values; repeatable).",
)


def _experiment(ctx: click.Context, experiment: Path, assignments: tuple[str, ...]) -> ResolvedExperiment:
    """An experiment file with ``--set`` overrides, validated against the plugins."""
    from sslx.config import apply_overrides, read_experiment, resolve

    raw = apply_overrides(read_experiment(experiment), list(assignments))
    return resolve(raw, _host(ctx), source=str(experiment), overrides=assignments)


def _print_recorded(record: RunRecord, evaluates: Path | None = None) -> None:
    """How the run ended, where it is recorded (also by plugin recorders), its result."""
    of = f" (evaluates {evaluates})" if evaluates else ""
    click.echo(f"\n{record.what} {record.run_id} {record.status}: {record.run_dir}{of}")
    for r in record.reports:
        if r.complete:
            click.echo(r.message)
        else:
            click.secho(r.message, err=True, fg="yellow")
    for key, value in (record.result or {}).items():
        shown = f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"  # an L2 weight of 1e-05 too
        click.echo(f"  {key} = {shown}")


@cli.command()
@click.argument("experiment", required=False, type=click.Path(path_type=Path))
@set_option
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where Sacred's file store writes run records.",
)
@click.option("--name", help="Run name in the records (default: the experiment file's name).")
@click.option("--comment", help="A comment stored with the run.")
@click.option(
    "--tag",
    "tag_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="A tag stored with the run (info.tags), e.g. --tag sweep=3f2a --tag point=4; `sslx compare` groups "
    "and filters by tags.KEY. A resumed run keeps its predecessor's tags (repeatable).",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    help="Continue a stopped run from its last checkpoint, as a new run linked to the old one. "
    "EXPERIMENT defaults to the stopped run's recorded config.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Train in N local processes under DDP (one per GPU; gloo on the CPU), started by torchrun's "
    "launcher; trainer.batch_size stays the global batch. For several machines run "
    "`torchrun ... -m sslx run EXPERIMENT` on each (see the README).",
)
@click.pass_context
def run(
    ctx: click.Context,
    experiment: Path | None,
    assignments: tuple[str, ...],
    runs_dir: Path,
    name: str | None,
    comment: str | None,
    tag_items: tuple[str, ...],
    resume_dir: Path | None,
    nproc: int | None,
    **options: Any,
) -> None:
    """Pretrain and evaluate the EXPERIMENT (a JSON file), recorded with Sacred
    in the file store (and by any recorder plugin whose options are given)."""
    from sslx.distributed import launched_rank, launched_world_size

    if nproc is not None and nproc > 1 and launched_world_size() <= 1:
        from sslx.engine.launch import launch

        launch(nproc, ctx.find_root().obj["argv"])  # the same command line in every process
        return
    rank = launched_rank()
    try:
        exp, experiment, name, resume_from = _resolve_run(ctx, experiment, assignments, name, resume_dir, rank)
        tags = _tags(tag_items, resume_dir)
    except (UserError, click.UsageError):
        if rank != 0:  # every process meets the same mistake: rank 0 reports it
            ctx.exit(2)
        raise
    if rank != 0:  # a process of a launch other than rank 0 trains its share and records nothing
        from sslx.engine.trainer import NullRecorder, train

        train(exp, _host(ctx), NullRecorder(), resume_from=resume_from)
        return
    from sslx.records import record_run

    _print_config(exp.config)
    record = record_run(
        exp,
        _host(ctx),
        runs_dir=runs_dir,
        name=name,
        comment=comment,
        experiment_file=experiment,
        resume_from=resume_from,
        options=options,
        tags=tags,
    )
    _print_recorded(record)


def _tags(items: tuple[str, ...], resume_dir: Path | None) -> dict[str, str]:
    """``--tag KEY=VALUE`` items over the tags of the run a resume continues."""
    from sslx.records import RunFolder

    tags: dict[str, str] = {}
    if resume_dir is not None and RunFolder(resume_dir).is_run():
        tags.update(RunFolder(resume_dir).info.get("tags") or {})
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE, e.g. --tag sweep=3f2a.", param_hint="--tag")
        tags[key.strip()] = value
    return tags


def _resolve_run(
    ctx: click.Context,
    experiment: Path | None,
    assignments: tuple[str, ...],
    name: str | None,
    resume_dir: Path | None,
    rank: int,
) -> tuple[ResolvedExperiment, Path, str | None, Path | None]:
    """The experiment to run, its file, its name and the checkpoint it continues."""
    from sslx.engine.checkpoint import find_checkpoint, load
    from sslx.records import CONFIG, RunFolder, check_resumable

    resume_from, previous = None, None
    if resume_dir is not None:
        resume_from = find_checkpoint(resume_dir)
        previous = RunFolder(resume_dir) if RunFolder(resume_dir).is_run() else None
        experiment = experiment or resume_dir / CONFIG
        name = name or (previous.name if previous else None)
    if experiment is None:
        raise click.UsageError("give an EXPERIMENT file (or --resume RUN_DIR).")
    exp = _experiment(ctx, experiment, assignments)
    if resume_from is not None and resume_dir is not None:
        status = previous.status if previous else None
        check_resumable(exp.config, load(resume_from)["config"], resume_dir, status)
        if previous is not None and status == "DIED" and not rank:  # its records end where it was killed: say so
            previous.mark_failed(
                "its process died without recording its end (killed, out of memory, or the machine stopped)",
                by="sslx run --resume",
            )
    return exp, experiment, name, resume_from


@cli.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--protocol",
    "-p",
    required=True,
    metavar="NAME",
    help="The evaluator to run: one that `sslx describe evaluator` lists.",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter of the protocol (k=50, label_fraction=0.1), or a trainer./dataset./augmentation. "
    "setting of the run (trainer.device=cpu); JSON values, repeatable.",
)
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path),
    help="Where to record the evaluation run (default: beside RUN_DIR, in the same file store).",
)
@click.option("--name", help="Run name in the records (default: <evaluated run's name>.eval.<protocol>).")
@click.option("--comment", help="A comment stored with the run.")
@click.pass_context
def eval_(
    ctx: click.Context,
    run_dir: Path,
    protocol: str,
    assignments: tuple[str, ...],
    runs_dir: Path | None,
    name: str | None,
    comment: str | None,
    **options: Any,
) -> None:
    """Evaluate the trained encoder of RUN_DIR (a run folder or a checkpoint)
    with one protocol, recorded as a new Sacred run that names RUN_DIR."""
    from sslx.records import record_evaluation

    record = record_evaluation(
        run_dir, protocol, list(assignments), _host(ctx), runs_dir=runs_dir, name=name, comment=comment, options=options
    )
    _print_recorded(record, evaluates=run_dir)


@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The file to write.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["torchvision", "safetensors"]),
    help="torchvision: a torch.save'd state dict (+ FILE.json describing it); safetensors: a .safetensors "
    "file with the description in its metadata. Default: from the file's extension.",
)
@click.pass_context
def export_(ctx: click.Context, run_dir: Path, out: Path, fmt: str | None) -> None:
    """Write only the encoder weights of RUN_DIR (a run folder or a checkpoint),
    keyed for the matching standalone model (torchvision's ResNet, or the sslx
    encoder), and print the code that loads them with strict=True."""
    from sslx.engine.export import export_backbone

    result = export_backbone(run_dir, out, fmt, _host(ctx))
    meta = result.metadata
    click.echo(
        f"wrote {result.path} ({result.format}): {meta['model']}, {meta['out_dim']}-d features, "
        f"from step {meta['source']['step']} of {meta['source']['checkpoint']}"
    )
    click.echo(
        f"inputs: {meta['input']['channels']} channel(s) scaled to [0, 1], normalised with mean "
        f"{meta['input']['mean']} and std {meta['input']['std']}"
    )
    click.echo("load it with:\n\n" + "\n".join("    " + line for line in result.load_code.splitlines()))


def _print_config(config: dict[str, Any]) -> None:
    click.echo(f"sslx {sslx.__version__} | seed {config['seed']}")
    for section in ("dataset", "augmentation", "sampler", "encoder", "objective"):
        click.echo(f"  {section:<12} {json.dumps(config[section])}")
    for item in config["evaluators"]:
        click.echo(f"  {'evaluator':<12} {json.dumps(item)}")
    click.echo(f"  {'trainer':<12} {json.dumps(config['trainer'])}")


@cli.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@set_option
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="About how long to measure, both measurements together.",
)
@click.pass_context
def bench(ctx: click.Context, experiment: Path, assignments: tuple[str, ...], seconds: float) -> None:
    """Measure an EXPERIMENT's training speed and print JSON: end-to-end
    view-images/s (the real trainer and data path), the model-only ceiling on
    the same device (the step on a batch already there), their ratio, and
    peak memory. Records nothing."""
    from sslx.engine.bench import bench as measure

    exp = _experiment(ctx, experiment, assignments)
    click.echo(json.dumps({"experiment": str(experiment), **measure(exp, _host(ctx), seconds)}, indent=2))


@cli.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@set_option
@click.pass_context
def validate(ctx: click.Context, experiment: Path, assignments: tuple[str, ...]) -> None:
    """Check an EXPERIMENT file against the installed plugins; print it with defaults filled in."""
    exp = _experiment(ctx, experiment, assignments)
    click.echo(json.dumps(exp.config, indent=2))
    click.secho(f"{experiment}: valid", err=True, fg="green")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins: version, hooks, components, load errors; check plugins.toml.

    Exits 1 when any plugin failed to load or a plugin listed in plugins.toml is
    missing or at an incompatible version.
    """
    from sslx.plugins import check_plugin_set, plugins_toml_path

    host = _host(ctx)
    toml = plugins_toml_path()
    listed = check_plugin_set(toml, host) if toml else []
    problems = host.load_problems() + [lp.problem for lp in listed if lp.problem]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "sslx": sslx.__version__,
                    "plugins": [p.as_dict() for p in host.plugins],
                    "plugin_set": {"file": str(toml) if toml else None, "listed": [lp.__dict__ for lp in listed]},
                    "problems": problems,
                },
                indent=2,
            )
        )
        ctx.exit(1 if problems else 0)
    for p in host.plugins:
        click.echo(f"{p.name}  {p.distribution or '(in-process)'} {p.version or ''}")
        if p.error:
            click.secho(f"    FAILED: {p.error}", fg="red")
            continue
        click.echo(f"    hooks: {', '.join(p.hooks) or '-'}")
        for kind, names in sorted(p.components.items()):
            click.echo(f"    {kind}: {', '.join(names)}")
    loaded = sum(p.loaded for p in host.plugins)
    click.echo(f"\n{loaded} of {len(host.plugins)} installed plugins loaded.")
    if toml:
        ok = len(listed) - sum(bool(lp.problem) for lp in listed)
        click.echo(
            f"First-party plugin set ({toml}): {ok} of {len(listed)} distributions installed at the "
            "listed versions and loaded."
        )
    for line in problems:
        click.secho(f"problem: {line}", fg="red")
    ctx.exit(1 if problems else 0)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), help="Write to this file instead of printing.")
@click.pass_context
def schema(ctx: click.Context, out: Path | None) -> None:
    """Print the JSON Schema of experiment files for the installed plugins
    (point your editor at it with a "$schema" key)."""
    from sslx.config import json_schema

    text = json.dumps(json_schema(_host(ctx)), indent=2)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n")
        click.echo(f"wrote {out}", err=True)


@cli.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the JSON Schema of the parameters).")
@click.pass_context
def describe(ctx: click.Context, kind: str, name: str | None, as_json: bool) -> None:
    """Document a component, KIND (dataset, sampler, augmentation, encoder,
    objective, evaluator) and NAME, or the trainer settings (`sslx describe trainer`)."""
    from sslx.registry import default_repr, params_of

    source = None
    if kind == "trainer":
        from sslx.config import TrainerParams

        title, what = "trainer settings (the experiment's `trainer` section)", "trainer"
        description, params, schema = (
            TrainerParams.__doc__ or "",
            params_of(TrainerParams),
            TrainerParams.model_json_schema(),
        )
    elif kind in KIND_ALIASES:
        host = _host(ctx)
        if name is None:
            raise UserError(
                f"give the NAME of the {KIND_ALIASES[kind]} to describe: "
                f"{', '.join(host.registry.names(KIND_ALIASES[kind]))}."
            )
        info = host.component(KIND_ALIASES[kind], name)
        title, what, source = f"{info.kind} {info.name!r} from {info.provenance}", info.kind, info.provenance
        description, params, schema = info.description, info.params, info.json_schema()
    else:
        raise UserError(f"unknown kind {kind!r}: use one of {', '.join(KIND_NAMES)}, or trainer.")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kind": what,
                    "name": name if source else None,
                    "plugin": source and source.plugin,
                    "distribution": source and source.distribution,
                    "version": source and source.version,
                    "description": description,
                    "parameters": [
                        {
                            "name": p.name,
                            "type": p.type,
                            "default": None if p.required else p.default,
                            "required": p.required,
                            "description": p.description,
                        }
                        for p in params
                    ],
                    "json_schema": schema,
                },
                indent=2,
                default=str,
            )
        )
        return
    click.echo(f"{title}\n\n  {description}\n")
    if source is not None and what in ("augmentation", "sampler"):
        from sslx.components import Augmentation

        cls = info.cls
        on_device = (
            cls.batched is not Augmentation.batched
            if issubclass(cls, Augmentation)
            else bool(getattr(cls, "views_of_one_image", False))
        )
        click.echo(f"  works with trainer.augment_on_device: {'yes' if on_device else 'no'}\n")
    if not params:
        click.echo("  (no parameters)")
    for p in params:
        click.echo(f"  {p.name} : {p.type} = {default_repr(p.default)}")
        if p.description:
            click.echo(f"      {p.description}")


def main() -> None:
    cli(prog_name="sslx")


if __name__ == "__main__":
    main()
