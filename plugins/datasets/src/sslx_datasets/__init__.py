"""Datasets: Fashion-MNIST from local files, folders of your own images,
MNIST digits and clips made of them (moving, talking), and real video files;
plus ``sslx data`` to prepare the data folder they read.

The components live in :mod:`sslx_datasets.images`, :mod:`sslx_datasets.digits`
and :mod:`sslx_datasets.video`; the hooks import them when they register them,
so loading the plugin imports no numpy, PIL or PyAV.
"""

from __future__ import annotations

import click

import sslx


@sslx.hookimpl
def sslx_register_datasets(register):
    from sslx_datasets.digits import MNIST, MovingDigits, TalkingDigits
    from sslx_datasets.images import FashionMNIST, ImageFolder
    from sslx_datasets.video import VideoFolder

    register(FashionMNIST)
    register(ImageFolder)
    register(MNIST)
    register(MovingDigits)
    register(TalkingDigits)
    register(VideoFolder)


@sslx.hookimpl
def sslx_register_commands(cli: click.Group) -> None:
    from sslx_datasets.commands import data

    cli.add_command(data)
