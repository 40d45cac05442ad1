"""sslx-sweep: ``sslx sweep``, many runs of one experiment.

This entry module stays light (click, sslx): the sweep and submitit are
imported when the command runs.
"""

from __future__ import annotations

import click

import sslx
from sslx_sweep import commands


@sslx.hookimpl
def sslx_register_commands(cli: click.Group) -> None:
    cli.add_command(commands.sweep)
