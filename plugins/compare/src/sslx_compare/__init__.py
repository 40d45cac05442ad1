"""sslx-compare: ``sslx compare``, recorded runs side by side.

This entry module stays light (click, sslx): the comparison, pymongo and
matplotlib are imported when the command runs.
"""

from __future__ import annotations

import click

import sslx
from sslx_compare import commands


@sslx.hookimpl
def sslx_register_commands(cli: click.Group) -> None:
    cli.add_command(commands.compare)
