"""The ``sslx`` command line.

User mistakes (:class:`sslx.UserError`) print as one paragraph and exit 2;
set ``SSLX_DEBUG=1`` to see tracebacks. Plugins add commands through the
``sslx_register_commands`` hook.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

import sslx
from sslx import scaffold
from sslx.components import KINDS
from sslx.config import TrainerParams, apply_overrides, json_schema, read_experiment, resolve
from sslx.errors import ProcessStopped, UserError
from sslx.plugins import PluginHost, check_plugin_set, load_plugins, plugins_toml_path
from sslx.registry import default_repr, params_of

KIND_ALIASES = {**{k: k for k in KINDS}, **{k + "s": k for k in KINDS}, "pair_sampler": "sampler"}


def _host(ctx: click.Context) -> PluginHost:
    """The plugin host, loaded once per command line; problems go to stderr."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "host" not in root.obj:
        host = load_plugins(strict=True if root.params.get("strict_plugins") else None)
        for line in host.load_problems():
            click.secho(f"sslx: warning: {line}", err=True, fg="yellow")
        root.obj["host"] = host
    return root.obj["host"]


class SslxGroup(click.Group):
    """Adds plugin commands lazily and prints user errors without a traceback."""

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        root = ctx.find_root()
        root.ensure_object(dict)
        if not root.obj.get("commands_loaded"):
            root.obj["commands_loaded"] = True
            _host(ctx).register_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._load_plugin_commands(ctx)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if os.environ.get("SSLX_DEBUG"):
                raise
            click.secho(f"Error: {exc}", err=True, fg="red")
            ctx.exit(2)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"sslx {sslx.__version__} (Python {sys.version.split()[0]})")
    host = load_plugins(strict=False)
    click.echo("registered plugins:")
    for p in host.plugins:
        state = f"at {p.location}" if p.loaded else f"FAILED: {p.error}"
        click.echo(f"  {p.name}: {p.distribution or '-'} {p.version or ''} {state}")
    ctx.exit()


@click.group(cls=SslxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the sslx version and every registered plugin, then exit.")
@click.option("--strict-plugins", is_flag=True, help="Fail on any plugin problem (same as SSLX_STRICT_PLUGINS=1).")
def cli(strict_plugins: bool) -> None:
    """sslx: self-supervised learning experiments, one plugin per method.

    Run `sslx run experiments/moco.json` to pretrain and evaluate; `sslx eval
    runs/1 --protocol linear` evaluates a finished run again; `sslx export`
    writes its backbone; `sslx plugins` lists what is installed; `sslx describe
    objective moco` documents a component.
    """


set_option = click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE",
    help="Override a value of the experiment, e.g. --set trainer.max_steps=100 (JSON values; repeatable).",
)


def mongo_options(command: Any) -> Any:
    """``--mongo URL`` and ``--mongo-db NAME`` (or SSLX_MONGO_URL / SSLX_MONGO_DB)."""
    command = click.option(
        "--mongo-db", metavar="NAME", envvar="SSLX_MONGO_DB",
        help="The MongoDB database (default: the URL's, else 'sacred'); or set SSLX_MONGO_DB.")(command)
    return click.option(
        "--mongo", "mongo_url", metavar="URL", envvar="SSLX_MONGO_URL",
        help="The MongoDB server to record runs to, e.g. for Omniboard: mongodb://[USER:PASSWORD@]HOST:PORT; or set "
             "SSLX_MONGO_URL to keep a password off the command line. Its password is never recorded or printed.")(command)


def _print_mongo(record: Any) -> None:
    """Where the run went in MongoDB, or why it did not and how to upload it."""
    note = record.mongo
    if note is None:
        return
    if note["status"] == "ok":
        click.echo(f"Recorded to MongoDB {note['url']} (database {note['db']}) as run {note['run_id']}.")
    else:
        click.secho(f"NOT fully recorded to MongoDB {note['url']} (database {note['db']}): {note['status']}. "
                    f"The file store has the whole run; upload it with: sslx sync {record.run_dir} --mongo URL",
                    err=True, fg="yellow")


@cli.command()
@click.argument("experiment", required=False, type=click.Path(path_type=Path))
@set_option
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Where Sacred's file store writes run records.")
@click.option("--name", help="Run name in the records (default: the experiment file's name).")
@click.option("--comment", help="A comment stored with the run.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue a stopped run from its last checkpoint, as a new run linked to the old one. "
                   "EXPERIMENT defaults to the stopped run's recorded config.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train in N local processes under DDP (one per GPU; gloo on the CPU), started by torchrun's "
                   "launcher; trainer.batch_size stays the global batch. For several machines run "
                   "`torchrun ... -m sslx run EXPERIMENT` on each (see the README).")
@mongo_options
@click.pass_context
def run(ctx: click.Context, experiment: Path | None, assignments: tuple[str, ...], runs_dir: Path,
        name: str | None, comment: str | None, resume_dir: Path | None, nproc: int | None, mongo_url: str | None,
        mongo_db: str | None) -> None:
    """Pretrain and evaluate the EXPERIMENT (a JSON file), recorded with Sacred
    in the file store (and MongoDB with --mongo)."""
    from sslx.checkpoint import find_checkpoint
    from sslx.distributed import launched_rank, launched_world_size
    from sslx.mongo import MongoTarget
    from sslx.tracking import RunFailed, record_run

    if nproc is not None and nproc > 1 and launched_world_size() <= 1:
        from sslx.launch import launch

        if mongo_url:  # through the environment: the processes' command lines show no password
            os.environ["SSLX_MONGO_URL"] = mongo_url
        if ctx.find_root().params.get("strict_plugins"):
            os.environ["SSLX_STRICT_PLUGINS"] = "1"
        argv = ["run", *([str(experiment)] if experiment else []), *(f"--set={a}" for a in assignments),
                f"--runs-dir={runs_dir}", *([f"--name={name}"] if name else []),
                *([f"--comment={comment}"] if comment else []), *([f"--resume={resume_dir}"] if resume_dir else []),
                *([f"--mongo-db={mongo_db}"] if mongo_db else [])]
        try:
            launch(nproc, argv)
        except ProcessStopped as exc:
            click.secho(f"Error: {exc}", err=True, fg="red")
            ctx.exit(1)
        except KeyboardInterrupt:
            ctx.exit(130)
        return
    rank = launched_rank()
    try:
        mongo = MongoTarget.from_options(mongo_url, mongo_db)
        host = _host(ctx)
        resume_from = None
        if resume_dir is not None:
            resume_from = find_checkpoint(resume_dir)
            if experiment is None:
                experiment = resume_dir / "config.json"
            if name is None and (resume_dir / "run.json").exists():
                name = json.loads((resume_dir / "run.json").read_text())["experiment"]["name"]
        if experiment is None:
            raise click.UsageError("give an EXPERIMENT file (or --resume RUN_DIR).")
        raw = apply_overrides(read_experiment(experiment), list(assignments))
        exp = resolve(raw, host, source=str(experiment))
        if resume_from is not None:
            _check_resumable(exp.config, resume_dir, resume_from)
    except (UserError, click.UsageError):
        if rank != 0:  # every process meets the same mistake: rank 0 reports it
            ctx.exit(2)
        raise
    if rank != 0:
        _run_other_process(ctx, exp, host, resume_from, rank)
        return
    _print_config(exp.config)
    try:
        record = record_run(exp, host, runs_dir=runs_dir, name=name, comment=comment,
                            experiment_file=experiment, resume_from=resume_from, mongo=mongo)
    except RunFailed as failed:
        reason = failed.reason
        if isinstance(reason, KeyboardInterrupt):
            again = f" --nproc {launched_world_size()}" if launched_world_size() > 1 else ""
            click.secho(f"\nRun {failed.record.run_id} INTERRUPTED, recorded in {failed.record.run_dir}. "
                        f"Continue it with: sslx run --resume {failed.record.run_dir}{again}", err=True, fg="yellow")
            ctx.exit(130)
        if isinstance(reason, (UserError, ProcessStopped)) and not os.environ.get("SSLX_DEBUG"):
            click.secho(f"Error: {reason}", err=True, fg="red")
            click.secho(f"Run {failed.record.run_id} FAILED, recorded in {failed.record.run_dir}.", err=True, fg="red")
            ctx.exit(1)
        click.secho(f"Run {failed.record.run_id} FAILED, recorded in {failed.record.run_dir} "
                    f"(the traceback is in its run.json).", err=True, fg="red")
        raise reason
    click.echo(f"\nRun {record.run_id} {record.status}: {record.run_dir}")
    _print_mongo(record)
    _print_result(record.result)


def _run_other_process(ctx: click.Context, exp: Any, host: Any, resume_from: Path | None, rank: int) -> None:
    """A process other than rank 0 of a launch: it trains its share and
    records nothing (rank 0 records the run); its own failures are printed
    with its rank."""
    from sslx.trainer import NullRecorder, train

    try:
        train(exp, host, NullRecorder(), resume_from=resume_from)
    except KeyboardInterrupt:
        ctx.exit(130)
    except (UserError, ProcessStopped) as exc:
        if os.environ.get("SSLX_DEBUG"):
            raise
        click.secho(f"Error (process {rank}): {exc}", err=True, fg="red")
        ctx.exit(1)


@cli.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--protocol", "-p", required=True, metavar="NAME",
              help="The evaluator to run (see `sslx describe evaluator`), e.g. linear, linear_layers, finetune, knn.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="A parameter of the protocol (k=50, label_fraction=0.1), or a trainer./dataset./augmentation. "
                   "setting of the run (trainer.device=cpu); JSON values, repeatable.")
@click.option("--runs-dir", type=click.Path(path_type=Path),
              help="Where to record the evaluation run (default: beside RUN_DIR, in the same file store).")
@click.option("--name", help="Run name in the records (default: <evaluated run's name>.eval.<protocol>).")
@click.option("--comment", help="A comment stored with the run.")
@mongo_options
@click.pass_context
def eval_(ctx: click.Context, run_dir: Path, protocol: str, assignments: tuple[str, ...], runs_dir: Path | None,
          name: str | None, comment: str | None, mongo_url: str | None, mongo_db: str | None) -> None:
    """Evaluate the trained encoder of RUN_DIR (a run folder or a checkpoint)
    with one protocol, recorded as a new Sacred run that names RUN_DIR."""
    from sslx.mongo import MongoTarget
    from sslx.tracking import RunFailed, record_evaluation

    mongo = MongoTarget.from_options(mongo_url, mongo_db)
    try:
        record = record_evaluation(run_dir, protocol, list(assignments), _host(ctx), runs_dir=runs_dir, name=name,
                                   comment=comment, mongo=mongo)
    except RunFailed as failed:
        if isinstance(failed.reason, UserError) and not os.environ.get("SSLX_DEBUG"):
            click.secho(f"Error: {failed.reason}", err=True, fg="red")
            click.secho(f"Evaluation run {failed.record.run_id} FAILED, recorded in {failed.record.run_dir}.",
                        err=True, fg="red")
            ctx.exit(1)
        raise failed.reason
    click.echo(f"\nEvaluation run {record.run_id} {record.status}: {record.run_dir} (evaluates {run_dir})")
    _print_mongo(record)
    _print_result(record.result)


@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The file to write.")
@click.option("--format", "fmt", type=click.Choice(["torchvision", "safetensors"]),
              help="torchvision: a torch.save'd state dict (+ FILE.json describing it); safetensors: a .safetensors "
                   "file with the description in its metadata. Default: from the file's extension.")
@click.pass_context
def export_(ctx: click.Context, run_dir: Path, out: Path, fmt: str | None) -> None:
    """Write only the encoder weights of RUN_DIR (a run folder or a checkpoint),
    keyed for the matching standalone model (torchvision's ResNet, or the sslx
    encoder), and print the code that loads them with strict=True."""
    from sslx.export import export_backbone

    result = export_backbone(run_dir, out, fmt, _host(ctx))
    meta = result.metadata
    click.echo(f"wrote {result.path} ({result.format}): {meta['model']}, {meta['out_dim']}-d features, "
               f"from step {meta['source']['step']} of {meta['source']['checkpoint']}")
    click.echo(f"inputs: {meta['input']['channels']} channel(s) scaled to [0, 1], normalised with mean "
               f"{meta['input']['mean']} and std {meta['input']['std']}")
    click.echo("load it with:\n\n" + "\n".join("    " + line for line in result.load_code.splitlines()))


@cli.command("sync")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...", type=click.Path(path_type=Path))
@mongo_options
def sync_(run_dirs: tuple[Path, ...], mongo_url: str | None, mongo_db: str | None) -> None:
    """Upload recorded runs (run folders such as runs/3, or a whole runs/
    folder) to MongoDB in the layout Sacred's Mongo observer writes: config,
    status, metrics, artifacts, host. A run already there (recorded live, or
    synced before) is updated, never duplicated."""
    from sslx.mongo import MongoTarget, sync_runs

    target = MongoTarget.from_options(mongo_url, mongo_db)
    if target is None:
        raise UserError("sslx sync needs the database: give --mongo mongodb://HOST:PORT or set SSLX_MONGO_URL.")
    for result in sync_runs(list(run_dirs), target):
        verb = "created" if result.created else "updated"
        click.echo(f"{result.run_dir} -> MongoDB {target.shown} (database {target.db}) run {result.run_id} {verb}: "
                   f"{result.status}, {result.metrics} metrics, {result.artifacts} artifacts")
        for name in result.missing:
            click.secho(f"sslx: warning: {result.run_dir}: artifact {name} is listed in run.json but its file is "
                        "gone; it was not uploaded.", err=True, fg="yellow")


@cli.command()
@mongo_options
@click.option("--port", type=click.IntRange(1, 65535), default=9000, show_default=True,
              help="The port Omniboard serves on (on all interfaces).")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None,
              help="Where Omniboard is (or is installed on first use); default $XDG_CACHE_HOME/sslx/omniboard, "
                   "else ~/.cache/sslx/omniboard.")
def board(mongo_url: str | None, mongo_db: str | None, port: int, folder: Path | None) -> None:
    """Show the runs in MongoDB with Omniboard, Sacred's web dashboard,
    until Ctrl-C. Omniboard (a Node.js program) is installed with npm into
    --dir on first use."""
    from sslx.board import default_folder, start_board
    from sslx.mongo import MongoTarget

    target = MongoTarget.from_options(mongo_url, mongo_db)
    if target is None:
        raise UserError("sslx board needs the database to show: give --mongo mongodb://HOST:PORT or set "
                        "SSLX_MONGO_URL (the one your runs were recorded to with `sslx run --mongo`).")
    with start_board(target, port, folder or default_folder(), say=click.echo) as omniboard:
        click.echo(f"Omniboard for MongoDB {target.shown} (database {target.db}) at {omniboard.url}  "
                   "(Ctrl-C stops it)")
        try:
            omniboard.wait()
        except KeyboardInterrupt:
            click.echo("Stopping Omniboard.")


def _print_result(result: dict[str, float] | None) -> None:
    for key, value in (result or {}).items():
        shown = f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"  # an L2 weight of 1e-05 too
        click.echo(f"  {key} = {shown}")


# Settings that may differ between a stopped run and its continuation.
RESUMABLE_CHANGES = {"epochs", "max_steps", "num_workers", "threads", "progress", "log_every", "checkpoint_every",
                     "eval_every", "eval_batch_size", "device", "sync_batchnorm"}


def _check_resumable(config: dict[str, Any], run_dir: Path, checkpoint: Path) -> None:
    from sslx.checkpoint import load

    saved = load(checkpoint)["config"]
    diffs = []
    for key in sorted(set(config) | set(saved)):
        if key == "trainer":
            for k in sorted(set(config[key]) | set(saved.get(key, {}))):
                if k not in RESUMABLE_CHANGES and config[key].get(k) != saved.get(key, {}).get(k):
                    diffs.append(f"trainer.{k}")
        elif key != "description" and config.get(key) != saved.get(key):
            diffs.append(key)
    if diffs:
        raise UserError(
            f"cannot resume {run_dir}: the experiment differs from the one it was trained with in "
            f"{', '.join(diffs)}. Resume with the run's own config (`sslx run --resume {run_dir}`); only "
            f"trainer.{{{', '.join(sorted(RESUMABLE_CHANGES))}}} may change."
        )


def _print_config(config: dict[str, Any]) -> None:
    click.echo(f"sslx {sslx.__version__} | seed {config['seed']}")
    for section in ("dataset", "augmentation", "sampler", "encoder", "objective"):
        click.echo(f"  {section:<12} {json.dumps(config[section])}")
    for item in config["evaluators"]:
        click.echo(f"  {'evaluator':<12} {json.dumps(item)}")
    click.echo(f"  {'trainer':<12} {json.dumps(config['trainer'])}")


@cli.command()
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option("--source", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="The file store to read: a runs folder written by `sslx run`.")
@click.option("--mongo", "mongo_url", metavar="URL", is_flag=False, flag_value="", default=None,
              help="Read a Sacred MongoDB database instead of --source; --mongo alone uses $SSLX_MONGO_URL "
                   "(keeps a password off the command line).")
@click.option("--mongo-db", metavar="NAME", envvar="SSLX_MONGO_DB",
              help="The database (default: the URL's, else 'sacred'; or $SSLX_MONGO_DB).")
@click.option("--last", type=int, metavar="N", help="Only the N most recent of the matching runs (by start time).")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Keep runs whose dotted config key equals VALUE (JSON), e.g. objective.name=moco, "
                   "trainer.lr=0.06; also status=, name=, id=, method= (repeatable; all must match).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV with the same columns.")
@click.option("--plot", "plot_file", type=click.Path(path_type=Path), metavar="FILE.png",
              help="Also write curves of the --metric names for the listed runs to this PNG.")
@click.option("--metric", "metric_names", multiple=True, metavar="NAME",
              help="A metric to plot, one subplot each (repeatable; default train.loss).")
def compare(runs: tuple[str, ...], source: Path, mongo_url: str | None, mongo_db: str | None, last: int | None,
            filters: tuple[str, ...], as_json: bool, as_csv: bool, plot_file: Path | None,
            metric_names: tuple[str, ...]) -> None:
    """Compare recorded runs: id, name, method, status, duration, the config
    keys that differ between them and their final metrics.

    RUN is a run folder or a run id within --source (with --mongo: a run id in
    the database); without RUN, every run. Durations in --json/--csv are seconds.
    """
    from sslx import compare as cmp
    from sslx.mongo import MongoTarget

    if as_json and as_csv:
        raise UserError("--json and --csv: choose one output format.")
    if mongo_url == "":
        mongo_url = os.environ.get("SSLX_MONGO_URL")
        if not mongo_url:
            raise UserError("--mongo without a URL reads $SSLX_MONGO_URL, which is not set: "
                            "give --mongo mongodb://host:port or set SSLX_MONGO_URL.")
    if mongo_url is not None:
        found = cmp.load_mongo_runs(MongoTarget.from_options(mongo_url, mongo_db), list(runs))
    else:
        found = cmp.load_file_runs(source, list(runs))
    selected = cmp.select(found, list(filters), last)
    columns, rows = cmp.table(selected)
    if as_json:
        click.echo(cmp.format_json(columns, rows))
    elif as_csv:
        click.echo(cmp.format_csv(columns, rows), nl=False)
    else:
        click.echo(cmp.format_text(columns, rows))
    if plot_file is not None:
        if not selected:
            raise UserError(f"--plot {plot_file}: no runs to plot; loosen --filter or --last.")
        cmp.plot(selected, list(metric_names) or ["train.loss"], plot_file)
        click.echo(f"wrote {plot_file}", err=True)


@cli.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@set_option
@click.option("--seconds", type=click.FloatRange(min=1), default=20.0, show_default=True,
              help="About how long to measure, both measurements together.")
@click.pass_context
def bench(ctx: click.Context, experiment: Path, assignments: tuple[str, ...], seconds: float) -> None:
    """Measure an EXPERIMENT's training speed and print JSON: end-to-end
    view-images/s (the real trainer and data path), the model-only ceiling on
    the same device (the step on a batch already there), their ratio, and
    peak memory. Records nothing."""
    from sslx.bench import bench as measure

    raw = apply_overrides(read_experiment(experiment), list(assignments))
    exp = resolve(raw, _host(ctx), source=str(experiment))
    click.echo(json.dumps({"experiment": str(experiment), **measure(exp, _host(ctx), seconds)}, indent=2))


@cli.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@set_option
@click.pass_context
def validate(ctx: click.Context, experiment: Path, assignments: tuple[str, ...]) -> None:
    """Check an EXPERIMENT file against the installed plugins; print it with defaults filled in."""
    raw = apply_overrides(read_experiment(experiment), list(assignments))
    exp = resolve(raw, _host(ctx), source=str(experiment))
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
    host = _host(ctx)
    toml = plugins_toml_path()
    listed = check_plugin_set(toml, host) if toml else []
    problems = host.load_problems() + [lp.problem for lp in listed if lp.problem]
    if as_json:
        click.echo(json.dumps({
            "sslx": sslx.__version__,
            "plugins": [p.as_dict() for p in host.plugins],
            "plugin_set": {"file": str(toml) if toml else None,
                           "listed": [lp.__dict__ for lp in listed]},
            "problems": problems,
        }, indent=2))
    else:
        for p in host.plugins:
            click.echo(f"{p.name}  {p.distribution or '(in-process)'} {p.version or ''}")
            if p.error:
                click.secho(f"    FAILED: {p.error}", fg="red")
                continue
            click.echo(f"    hooks: {', '.join(p.hooks) or '-'}")
            for kind, names in sorted(p.components.items()):
                click.echo(f"    {kind}: {', '.join(names)}")
        if toml:
            click.echo(f"\nplugin set ({toml}): {len(listed) - sum(bool(lp.problem) for lp in listed)}/{len(listed)} ok")
        for line in problems:
            click.secho(f"problem: {line}", fg="red")
    ctx.exit(1 if problems else 0)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), help="Write to this file instead of printing.")
@click.pass_context
def schema(ctx: click.Context, out: Path | None) -> None:
    """Print the JSON Schema of experiment files for the installed plugins
    (point your editor at it with a "$schema" key)."""
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
    if kind == "trainer":
        title, source = "trainer settings (the experiment's `trainer` section)", None
        description, params, schema = TrainerParams.__doc__ or "", params_of(TrainerParams), TrainerParams.model_json_schema()
    elif kind in KIND_ALIASES:
        if name is None:
            host = _host(ctx)
            raise UserError(f"give the NAME of the {KIND_ALIASES[kind]} to describe: {', '.join(host.registry.names(KIND_ALIASES[kind]))}.")
        info = _host(ctx).component(KIND_ALIASES[kind], name)
        title, source = f"{info.kind} {info.name!r} from {info.provenance}", info.provenance
        description, params, schema = info.description, info.params, info.json_schema()
    else:
        raise UserError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}, or trainer.")
    if as_json:
        click.echo(json.dumps({
            "kind": "trainer" if source is None else info.kind,
            "name": None if source is None else info.name,
            "plugin": source and source.plugin, "distribution": source and source.distribution,
            "version": source and source.version, "description": description,
            "parameters": [{"name": p.name, "type": p.type, "default": None if p.required else p.default,
                            "required": p.required, "description": p.description} for p in params],
            "json_schema": schema,
        }, indent=2, default=str))
        return
    click.echo(f"{title}\n\n  {description}\n")
    if not params:
        click.echo("  (no parameters)")
    for p in params:
        click.echo(f"  {p.name} : {p.type} = {default_repr(p.default)}")
        if p.description:
            click.echo(f"      {p.description}")


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(list(scaffold.EXAMPLES)), default="objective", show_default=True,
              help="The kind of the example component.")
@click.option("--dir", "parent", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              help="The folder to create sslx-NAME/ in (default: the current folder).")
@click.pass_context
def new_plugin(ctx: click.Context, name: str, kind: str, parent: Path) -> None:
    """Create sslx-NAME/ (with - for _), a plugin distribution ready to
    install: one working KIND component registered as NAME (edit it into
    yours), its tests on the conformance kit, an experiment that trains it, a
    README."""
    scaffold.check_name(name)  # before loading the plugins, which new_plugin checks the name against
    root = scaffold.new_plugin(name, kind, parent, _host(ctx))
    click.echo(f"Created {root}/: the {kind} {name!r} in src/sslx_{name}/__init__.py. Next:\n\n"
               f"  cd {root}\n"
               f"  pip install --no-build-isolation -e '.[test]'\n"
               f"  python -m pytest\n"
               f"  sslx run experiments/{name}.json")


def main() -> None:
    cli(prog_name="sslx")


if __name__ == "__main__":
    main()
