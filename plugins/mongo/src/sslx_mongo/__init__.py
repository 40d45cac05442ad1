"""sslx-mongo: record runs to MongoDB as Sacred's Mongo observer does.

``sslx run --mongo URL`` / ``sslx eval --mongo URL`` (or ``SSLX_MONGO_URL``)
attach :class:`sslx_mongo.observer.SafeMongoObserver` through
``sslx_run_observers``; ``sslx sync`` uploads file-store runs (or completes
them); ``sslx board`` shows the database with Omniboard.

This entry module stays light (click, sslx): pymongo and Sacred are imported
when a run asks for the database or a command runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import sslx
from sslx_mongo import commands

if TYPE_CHECKING:
    from sslx.hookspecs import RecordingRun


@sslx.hookimpl
def sslx_register_commands(cli: click.Group) -> None:
    for name in ("run", "eval"):
        commands.add_mongo_params(cli.commands[name])
    cli.add_command(commands.sync)
    cli.add_command(commands.board)


@sslx.hookimpl
def sslx_run_observers(run: RecordingRun) -> Sequence[Any] | None:
    """The MongoDB observer when ``--mongo`` (or SSLX_MONGO_URL) is given; a
    UserError for a URL that is not one, before the run starts."""
    url = run.options.get("mongo_url")
    if not url:
        return None
    from sslx_mongo.observer import SafeMongoObserver
    from sslx_mongo.target import MongoTarget

    target = MongoTarget.from_options(url, run.options.get("mongo_db"))
    return [SafeMongoObserver(target, run.uid, Path(run.runs_dir), run.tags)] if target else None
