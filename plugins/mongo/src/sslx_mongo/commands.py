"""The MongoDB options of ``sslx run`` / ``sslx eval`` and the commands
``sslx sync`` and ``sslx board``. Light: pymongo and Sacred are imported by the
command that runs."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sslx.errors import UserError

URL_OPTION: dict[str, Any] = {
    "metavar": "URL",
    "envvar": "SSLX_MONGO_URL",
    "help": "The MongoDB server runs are recorded to, e.g. for Omniboard: mongodb://[USER:PASSWORD@]HOST:PORT; or set "
    "SSLX_MONGO_URL to keep a password off the command line. Its password is never recorded or printed.",
}
DB_OPTION: dict[str, Any] = {
    "metavar": "NAME",
    "envvar": "SSLX_MONGO_DB",
    "help": "The MongoDB database (default: the URL's, else 'sacred'); or set SSLX_MONGO_DB.",
}


def mongo_params() -> list[click.Option]:
    """``--mongo URL`` and ``--mongo-db NAME``, as options to add to a command."""
    return [click.Option(["--mongo", "mongo_url"], **URL_OPTION), click.Option(["--mongo-db", "mongo_db"], **DB_OPTION)]


def mongo_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command with ``--mongo URL`` and ``--mongo-db NAME``."""
    command = click.option("--mongo-db", "mongo_db", **DB_OPTION)(command)
    return click.option("--mongo", "mongo_url", **URL_OPTION)(command)


def add_mongo_params(command: click.Command) -> None:
    """Give ``command`` (sslx's ``run`` or ``eval``) the MongoDB options."""
    command.params.extend(mongo_params())


def _target(mongo_url: str | None, mongo_db: str | None, command: str) -> Any:
    from sslx_mongo.target import MongoTarget

    target = MongoTarget.from_options(mongo_url, mongo_db)
    if target is None:
        raise UserError(
            f"sslx {command} needs the database: give --mongo mongodb://HOST:PORT or set SSLX_MONGO_URL "
            "(the server your runs were recorded to with `sslx run --mongo`)."
        )
    return target


@click.command("sync")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...", type=click.Path(path_type=Path))
@mongo_options
def sync(run_dirs: tuple[Path, ...], mongo_url: str | None, mongo_db: str | None) -> None:
    """Upload recorded runs (run folders such as runs/3, or a whole runs/
    folder) to MongoDB in the layout Sacred's Mongo observer writes: config,
    status, metrics, artifacts, host. A run already there (recorded live, in
    part or whole, or synced before) is completed in place, never duplicated;
    what is already there whole is not written again."""
    from sslx_mongo.sync import sync_runs

    target = _target(mongo_url, mongo_db, "sync")
    for result in sync_runs(list(run_dirs), target):
        verb = "created" if result.created else "updated"
        click.echo(
            f"{result.run_dir} -> {target.where} run {result.run_id} {verb}: {result.status}, "
            f"{result.metrics} metric series and {result.artifacts} artifacts written"
        )
        for name in result.gone:
            click.secho(
                f"sslx: warning: {result.run_dir}: artifact {name} is listed in run.json but its file is "
                "gone; it was not uploaded.",
                err=True,
                fg="yellow",
            )
        if result.missing:
            click.secho(
                f"sslx: warning: {result.run_dir}: read back after the sync, the database still lacks "
                f"{'; '.join(result.missing)}. Run `sslx sync` again.",
                err=True,
                fg="yellow",
            )


def _stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP end ``sslx board`` as Ctrl-C does (the board
    is stopped on the way out) instead of killing it with Omniboard left
    behind; and SIGINT itself, which a process started in the background of
    a non-interactive shell inherits as ignored."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


@click.command("board")
@mongo_options
@click.option(
    "--port", type=click.IntRange(1, 65535), default=9000, show_default=True, help="The port Omniboard serves on."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address Omniboard listens on. Omniboard has no authentication and a Delete button: anyone "
    "who reaches it can read and delete your runs. Keep the loopback address and reach it from "
    "elsewhere through an SSH tunnel (ssh -L 9000:127.0.0.1:9000 HOST), or put a reverse proxy with "
    "authentication in front; give 0.0.0.0 only on a network you trust.",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    default=None,
    help="Where Omniboard is (or is installed on first use); default $XDG_CACHE_HOME/sslx/omniboard, "
    "else ~/.cache/sslx/omniboard.",
)
def board(mongo_url: str | None, mongo_db: str | None, port: int, host: str, folder: Path | None) -> None:
    """Show the runs in MongoDB with Omniboard, Sacred's web dashboard,
    until Ctrl-C (or SIGTERM, SIGHUP). Omniboard (a Node.js program) is
    installed with npm into --dir on first use; it listens on the loopback
    address only unless --host says otherwise."""
    from sslx_mongo.board import default_folder, start_board

    target = _target(mongo_url, mongo_db, "board")
    _stop_on_signals()
    with start_board(target, port, folder or default_folder(), host=host, say=click.echo) as omniboard:
        wide = "" if host == "127.0.0.1" else f", listening on {host} without authentication"
        click.echo(f"Omniboard for {target.where} at {omniboard.url}{wide}  (Ctrl-C stops it)")
        try:
            omniboard.wait()
        except KeyboardInterrupt:
            click.echo("Stopping Omniboard.")
