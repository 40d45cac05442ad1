"""The ``sslx compare`` command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sslx.errors import UserError

if TYPE_CHECKING:
    from sslx_compare.comparison import RunSummary


@click.command("compare")
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option(
    "--source",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="The file store to read: a runs folder written by `sslx run`.",
)
@click.option(
    "--mongo",
    "mongo_url",
    metavar="URL",
    is_flag=False,
    flag_value="",
    default=None,
    help="Read a Sacred MongoDB database instead of --source; --mongo alone uses $SSLX_MONGO_URL "
    "(keeps a password off the command line).",
)
@click.option(
    "--mongo-db",
    metavar="NAME",
    envvar="SSLX_MONGO_DB",
    help="The database (default: the URL's, else 'sacred'; or $SSLX_MONGO_DB).",
)
@click.option("--last", type=int, metavar="N", help="Only the N most recent of the matching runs (by start time).")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keep runs whose dotted config key equals VALUE (JSON), e.g. objective.name=moco, "
    "trainer.lr=0.06; also tags.NAME=, status=, name=, id=, method= (repeatable; all must match).",
)
@click.option(
    "--group-by",
    "group_keys",
    multiple=True,
    metavar="KEY",
    help="Aggregate the selected runs over seeds: one row per value of KEY (a dotted config key such as "
    "trainer.lr, tags.NAME for a run's tag, or name, method, status; repeatable), each final metric as "
    "mean ± std (runs). Warns when a group's runs differ in more than the seed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV with the same columns.")
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(path_type=Path),
    metavar="FILE.png",
    help="Also write curves of the --metric names for the listed runs to this PNG; with --group-by, "
    "each group's mean curve with a ±1 std band, and bars of the final metrics beneath.",
)
@click.option(
    "--metric",
    "metric_names",
    multiple=True,
    metavar="NAME",
    help="A metric to plot, one subplot each (repeatable; default train.loss).",
)
def compare(
    runs: tuple[str, ...],
    source: Path,
    mongo_url: str | None,
    mongo_db: str | None,
    last: int | None,
    filters: tuple[str, ...],
    group_keys: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    plot_file: Path | None,
    metric_names: tuple[str, ...],
) -> None:
    """Compare recorded runs: id, name, method, status, duration, the config
    keys that differ between them and their final metrics.

    RUN is a run folder or a run id within --source (with --mongo: a run id in
    the database); without RUN, every run. Durations in --json/--csv are seconds.

    With --group-by, one row per group of the selected runs that share the
    keys' values (a run lacking a key groups under null): the key values, the
    number of runs and, per final metric, its mean, sample standard deviation
    (ddof=1, null for a single run) and the number of runs that have it; --json
    gives {"mean", "std", "n"} per metric and "differs" (the config keys other
    than seed that still differ within the group), --csv the columns
    METRIC.mean, METRIC.std, METRIC.n. --plot then draws, per --metric, each
    group's mean over the steps that all its runs logged with a ±1 std band,
    and in one more row of the same PNG a bar chart per final metric with the
    std as error bars.
    """
    from sslx_compare import comparison as cmp

    if as_json and as_csv:
        raise UserError("--json and --csv: choose one output format.")
    if mongo_url == "":
        mongo_url = os.environ.get("SSLX_MONGO_URL")
        if not mongo_url:
            raise UserError(
                "--mongo without a URL reads $SSLX_MONGO_URL, which is not set: "
                "give --mongo mongodb://host:port or set SSLX_MONGO_URL."
            )
    if mongo_url is not None:
        from sslx_mongo.target import MongoTarget

        target = MongoTarget.from_options(mongo_url, mongo_db)
        found = cmp.load_mongo_runs(target, list(runs)) if target else []
    else:
        found = cmp.load_file_runs(source, list(runs))
    selected = cmp.select(found, list(filters), last)
    if group_keys:
        _compare_groups(selected, list(group_keys), as_json, as_csv, plot_file, list(metric_names))
        return
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


def _compare_groups(
    selected: list[RunSummary],
    keys: list[str],
    as_json: bool,
    as_csv: bool,
    plot_file: Path | None,
    metric_names: list[str],
) -> None:
    """``compare --group-by``: the groups' table, then their plot."""
    from sslx_compare import comparison as cmp

    groups = cmp.group_runs(selected, keys)
    keys, metrics, rows = cmp.group_table(groups)
    if as_json:
        click.echo(cmp.format_group_json(rows))
    elif as_csv:
        click.echo(cmp.format_group_csv(keys, metrics, rows), nl=False)
    else:
        click.echo(cmp.format_group_text(keys, metrics, rows))
    if plot_file is not None:
        if not groups:
            raise UserError(f"--plot {plot_file}: no runs to plot; loosen --filter or --last.")
        cmp.plot_groups(groups, metric_names or ["train.loss"], plot_file)
        click.echo(f"wrote {plot_file}", err=True)
