"""Errors that are the user's to fix.

Anything raised as a :class:`UserError` is printed by the CLI as one clear
paragraph (no traceback): it names the file, JSON path or plugin involved, says
what was expected and what to do. Everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input the user controls: an experiment file, data, a plugin."""


class ConfigError(UserError):
    """One or more problems in an experiment file, each tied to a JSON path.

    ``problems`` holds ``(path, message)`` pairs; ``path`` is a JSON pointer
    such as ``/objective/temperature`` (``""`` for the whole document).
    ``overrides`` maps the pointers that ``--set`` assignments changed to the
    assignment, which a problem there names instead of the file.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]], overrides: dict[str, str] | None = None):
        self.source = source
        self.problems = problems
        lines = [
            f"{_origin(path, source, overrides or {})}{':' + path if path else ''}: {message}"
            for path, message in problems
        ]
        super().__init__("\n".join(lines))


def _origin(path: str, source: str, overrides: dict[str, str]) -> str:
    """Where the value at ``path`` came from: the ``--set`` that wrote it or a part above it, else ``source``."""
    for pointer, assignment in overrides.items():
        if path == pointer or path.startswith(pointer + "/"):
            return f"--set {assignment} (over {source})"
    return source


class PluginError(UserError):
    """A plugin failed to load or to register its components."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the run stops and is recorded as failed."""


class ProcessStopped(Exception):
    """A process of a distributed run stopped because another one failed or
    the launcher stopped the run (the run is recorded as failed with this
    reason; the failing process's own error says why)."""
