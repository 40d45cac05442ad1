"""``sslx data``: prepare the data folder (``sslx data prepare all``) and show where it is.

Registered with every command line, so this module imports only click: the
preparation machinery (:mod:`sslx_datasets.store`) is imported when a
subcommand runs.
"""

from __future__ import annotations

import time

import click

ITEMS = ("mnist", "clips", "talking-digits")  # what `prepare` offers, in order: the keys of store.PREPARE


@click.group("data")
def data() -> None:
    """Prepare and locate the data the bundled datasets read (MNIST, real clips, spoken digits)."""


@data.command("prepare")
@click.argument("item", type=click.Choice([*ITEMS, "all"]), default="all")
@click.option("--force", is_flag=True, help="Prepare again even what is already complete.")
def prepare(item: str, force: bool) -> None:
    """Download or generate ITEM (mnist, clips, talking-digits, or all) into the data folder.

    Idempotent: what is already complete is skipped. The folder is
    $SSLX_DATA_DIR, else $XDG_CACHE_HOME/sslx, else ~/.cache/sslx.
    """
    from sslx_datasets import store

    start = time.monotonic()
    for name in ITEMS if item == "all" else (item,):
        store.PREPARE[name](force=force)
    click.echo(f"data folder {store.data_dir()} ready ({time.monotonic() - start:.1f} s)")


@data.command("path")
def path() -> None:
    """Print the data folder."""
    from sslx_datasets import store

    click.echo(str(store.data_dir()))
