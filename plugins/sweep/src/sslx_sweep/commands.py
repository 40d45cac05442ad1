"""The ``sslx sweep`` command."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import click

from sslx.errors import UserError


@click.command("sweep", context_settings={"ignore_unknown_options": True})
@click.argument("experiment", required=False, type=click.Path(path_type=Path))
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- RUN OPTIONS]")
@click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE", help="A setting every point shares (repeatable)."
)
@click.option(
    "--grid",
    multiple=True,
    metavar="KEY=VALUES",
    help="Values of one setting, e.g. --grid trainer.lr=0.03,0.1 or --grid 'objective.queue_size=[256,4096]' "
    "(repeatable: every combination is a point).",
)
@click.option(
    "--points",
    "points_file",
    type=click.Path(path_type=Path),
    metavar="FILE.json",
    help='Points listed in a JSON file: [{"trainer.lr": 0.1}, {"trainer.lr": 0.3, "objective.temperature": 0.2}] '
    "(combined with --grid and --seeds).",
)
@click.option("--seeds", metavar="N|S1,S2,...", help="Run every point with seeds 0..N-1, or with the seeds listed.")
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    metavar="N",
    help="Points at a time (local default: one per --gpus-per-run GPUs, else 1; on the CPU the running points "
    "share the cores evenly; on SLURM: jobs queued at a time, default all).",
)
@click.option(
    "--gpus-per-run",
    type=click.IntRange(min=1),
    metavar="G",
    help="GPUs of each point (default 1 where there are GPUs; more train under --nproc).",
)
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option("--partition", help="SLURM: the partition.")
@click.option(
    "--time",
    "time_min",
    type=click.IntRange(min=1),
    default=240,
    show_default=True,
    help="SLURM: each point's time limit, minutes.",
)
@click.option("--cpus-per-run", type=click.IntRange(min=1), help="SLURM: CPU cores of each point (default: SLURM's).")
@click.option("--mem-gb", type=click.IntRange(min=1), help="SLURM: memory of each point, GB.")
@click.option(
    "--slurm-option",
    "slurm_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="SLURM: any sbatch option, e.g. --slurm-option account=vision (repeatable).",
)
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where the points' runs are recorded.",
)
@click.option(
    "--sweeps-dir",
    type=click.Path(path_type=Path),
    default=Path("sweeps"),
    show_default=True,
    help="Where the sweep's plan and logs go.",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    metavar="SWEEP_DIR",
    help="Finish a sweep: run its unstarted points, continue its stopped ones from their checkpoints; finished points are kept.",
)
@click.option("--retry-failed", is_flag=True, help="With --resume: also run the failed points again.")
@click.option("--dry-run", is_flag=True, help="List the points and check each one's config, then stop.")
def sweep(
    experiment: Path | None,
    run_args: tuple[str, ...],
    assignments: tuple[str, ...],
    grid: tuple[str, ...],
    points_file: Path | None,
    seeds: str | None,
    parallel: int | None,
    gpus_per_run: int | None,
    executor: str,
    partition: str | None,
    time_min: int,
    cpus_per_run: int | None,
    mem_gb: int | None,
    slurm_options: tuple[str, ...],
    runs_dir: Path,
    sweeps_dir: Path,
    resume_dir: Path | None,
    retry_failed: bool,
    dry_run: bool,
) -> None:
    """Run EXPERIMENT at every point of a grid of settings times seeds, each
    point an ordinary `sslx run` recorded with the tags sweep=ID and point=K.
    A failing point never stops the others; `sslx sweep --resume SWEEP_DIR`
    finishes what is unfinished. Options after `--` go to every `sslx run`
    (for example `-- --mongo`).

    \b
    sslx sweep experiments/moco.json --grid objective.queue_size=256,4096 --seeds 3
    sslx compare --filter tags.sweep=ID --group-by objective.queue_size
    """
    from sslx_sweep import sweep as sw
    from sslx_sweep.executors import make_executor

    if resume_dir is not None:
        if experiment is not None or grid or points_file or seeds or assignments:
            raise UserError(
                "--resume SWEEP_DIR continues a sweep as it was planned: give no EXPERIMENT, --set, --grid, --points or --seeds with it."
            )
        folder = resume_dir
        plan = sw.Plan.load(folder)
    else:
        if experiment is None:
            raise click.UsageError("give an EXPERIMENT file (or --resume SWEEP_DIR).")
        if retry_failed:
            raise UserError("--retry-failed goes with --resume SWEEP_DIR: a new sweep has no failed points.")
        listed = sw.read_points_file(points_file) if points_file else []
        points = sw.make_points(grid, listed, sw.seed_list(seeds))
        _check_points(experiment, list(assignments), points)
        slurm = _slurm_settings(partition, time_min, cpus_per_run, mem_gb, slurm_options, gpus_per_run)
        plan = sw.Plan(
            id=sw.new_id(),
            experiment=str(experiment.resolve()),
            fixed=list(assignments),
            points=points,
            runs_dir=str(runs_dir.resolve()),
            parallel=parallel or 0,
            executor={"kind": executor, "gpus_per_run": gpus_per_run, "slurm": slurm},
            run_args=list(run_args[1:] if run_args[:1] == ("--",) else run_args),
            created=sw.now(),
        )
        folder = sweeps_dir / plan.id
        click.echo(f"sweep {plan.id}: {len(points)} point(s) of {experiment}")
        for p in points:
            click.echo(f"  point {p.index}: {p.label}")
        if dry_run:
            return
        plan.save(folder)
    runner = make_executor(plan, folder)
    click.echo(
        f"sweep {plan.id} in {folder}: {len(plan.points)} point(s), {runner.slots} at a time; runs in {plan.runs_dir}"
    )

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)  # a process manager's stop: as Ctrl-C, points record it
    try:
        states = sw.run_sweep(plan, folder, runner, lambda line: click.echo(f"[sweep {plan.id}] {line}"), retry_failed)
    except KeyboardInterrupt:
        click.secho(
            f"sweep {plan.id} stopped; its running points recorded where they stopped. Finish it with "
            f"`sslx sweep --resume {folder}`.",
            err=True,
            fg="yellow",
        )
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [i for i, s in states.items() if s.status == sw.FAILED]
    stopped = [i for i, s in states.items() if s.status == sw.STOPPED]
    done = sum(s.status == sw.DONE for s in states.values())
    click.echo(f"sweep {plan.id}: {done} of {len(plan.points)} point(s) completed, {len(failed)} failed.")
    keys = [k for k in dict.fromkeys(k for p in plan.points for k in p.settings) if k != "seed"]
    by = "".join(f" --group-by {k}" for k in keys) or " --group-by objective.name"
    click.echo(f"  compare: sslx compare --source {plan.runs_dir} --filter tags.sweep={plan.id}{by}")
    if failed or stopped:  # failed runs, not a mistake in the command: exit status 1, as for `sslx run`
        problems = [f"point(s) {', '.join(map(str, failed))} failed"] if failed else []
        if stopped:
            problems.append(f"point(s) {', '.join(map(str, stopped))} were stopped from outside (resumable)")
        retry = " --retry-failed" if failed else ""
        click.secho(
            f"sweep {plan.id}: {' and '.join(problems)} (their logs: {folder / 'logs'}). "
            f"{'Fix the cause, then ' if failed else ''}`sslx sweep --resume {folder}{retry}` runs them again.",
            err=True,
            fg="red",
        )
        raise SystemExit(1)


def _check_points(experiment: Path, fixed: list[str], points: list[Any]) -> None:
    """Every point's config resolves against the installed plugins, before any runs."""
    from sslx.config import apply_overrides, read_experiment, resolve
    from sslx.plugins import load_plugins

    host = load_plugins()
    raw = read_experiment(experiment)
    for point in points:
        sets = [*fixed, *point.assignments]
        try:
            resolve(apply_overrides(raw, sets), host, source=str(experiment), overrides=tuple(sets))
        except UserError as exc:
            raise UserError(f"sweep point {point.index} ({point.label}): {exc}") from None


def _slurm_settings(
    partition: str | None,
    time_min: int,
    cpus: int | None,
    mem_gb: int | None,
    options: tuple[str, ...],
    gpus_per_run: int | None,
) -> dict[str, Any]:
    extra = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--slurm-option {item!r}: expected KEY=VALUE, for example --slurm-option account=vision.")
        extra[key.strip()] = value
    return {
        "partition": partition,
        "time_min": time_min,
        "cpus_per_run": cpus,
        "mem_gb": mem_gb,
        "gpus_per_run": gpus_per_run,
        "extra": extra,
    }
