"""pytest fixtures for testing sslx plugins, loaded by pytest wherever sslx is
installed (the ``pytest11`` entry point of the sslx distribution).

``sslx_host``
    an isolated plugin host: no installed plugin is loaded, only the tiny
    components of :mod:`sslx.testing.tinyparts` (dataset ``tiny_images``,
    augmentation ``tiny_views``, sampler ``tiny_pairs``, encoder
    ``tiny_encoder``, objective ``tiny_infonce``), so a test sees exactly
    the plugins it registers.
``sslx_register(obj, name=None)``
    registers a plugin (a module or object with hook implementations) on
    ``sslx_host`` for this test; returns its ``PluginRecord`` (``.error``
    says why it was refused, if it was).
``sslx_tiny_dataset``
    a ``tiny_images`` dataset: real photo patches, 4 classes.
``sslx_run(config, steps=3)``
    trains an experiment dict on ``sslx_host`` in this process for a few
    steps, writing no records; returns the ``MemoryRecorder``.

Example, in a plugin's tests::

    import sslx_mymethod

    def test_trains(sslx_register, sslx_run):
        sslx_register(sslx_mymethod)
        recorder = sslx_run({"dataset": {"name": "tiny_images"}, "augmentation": {"name": "tiny_views"},
                             "sampler": {"name": "tiny_pairs"}, "encoder": {"name": "tiny_encoder"},
                             "objective": {"name": "mymethod"}, "evaluators": [],
                             "trainer": {"batch_size": 16}})
        assert len(recorder.metrics["train.loss"]) == 3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sslx.plugins import PluginHost


@pytest.fixture
def sslx_host() -> Any:
    """An isolated sslx plugin host holding only the tiny components."""
    from sslx.plugins import PluginHost
    from sslx.testing.tinyparts import TinyPlugin

    host = PluginHost(strict=False)
    host.add_plugin(TinyPlugin(), "sslx-testing")
    return host


@pytest.fixture
def sslx_register(sslx_host: PluginHost) -> Callable[..., Any]:
    """``sslx_register(obj, name=None)``: register a plugin on ``sslx_host`` for this test."""

    def register(obj: Any, name: str | None = None) -> Any:
        return sslx_host.add_plugin(obj, name or str(getattr(obj, "__name__", type(obj).__name__)))

    return register


@pytest.fixture
def sslx_tiny_dataset() -> Any:
    """A ``tiny_images`` dataset: real photo patches, 4 classes, 32x32 RGB."""
    from sslx.testing.tinyparts import TinyImages

    return TinyImages(TinyImages.Params())


@pytest.fixture
def sslx_run(sslx_host: PluginHost) -> Callable[..., Any]:
    """``sslx_run(config, steps=3, host=None)``: train an experiment dict in-process, no records."""
    from sslx.testing import run_experiment

    def run(config: dict[str, Any], steps: int = 3, host: PluginHost | None = None) -> Any:
        return run_experiment(config, host or sslx_host, steps)

    return run
