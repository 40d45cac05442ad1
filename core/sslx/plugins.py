"""Finding, loading and calling plugins.

Plugins are entry points of the ``sslx`` group, loaded one by one in name
order. A plugin that fails to import, has a malformed hook, or registers a bad
component is reported (distribution, version, error) and skipped; the rest
work. Environment variables:

``SSLX_LOAD_PLUGINS``
    comma-separated plugin (entry-point) or distribution names: load only
    these. Set it to the empty string to load none, the rescue when a plugin
    breaks every command.
``SSLX_STRICT_PLUGINS=1``
    any plugin problem is fatal (for CI and plugin authors).

The rest of the core calls hooks only through :class:`PluginHost`'s typed
methods.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from sslx import hookspecs
from sslx.errors import PluginError, UserError
from sslx.registry import ComponentInfo, Provenance, Registry

if TYPE_CHECKING:
    import click

    from sslx.components import Component, ObjectiveOutput
    from sslx.hookspecs import RecordingRun, RunContext

GROUP = "sslx"
REGISTRARS = {
    "dataset": "sslx_register_datasets",
    "sampler": "sslx_register_pair_samplers",
    "augmentation": "sslx_register_augmentations",
    "encoder": "sslx_register_encoders",
    "objective": "sslx_register_objectives",
    "evaluator": "sslx_register_evaluators",
}


@dataclass
class PluginRecord:
    """One plugin as ``sslx plugins`` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    location: str | None = None
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # set when the plugin was skipped
    warnings: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "location": self.location,
            "hooks": self.hooks,
            "components": self.components,
            "error": self.error,
            "warnings": self.warnings,
        }


def _strict_from_env() -> bool:
    return os.environ.get("SSLX_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


class PluginHost:
    """The plugin manager, the component registry and the typed hook facade."""

    def __init__(self, strict: bool | None = None):
        self.strict = _strict_from_env() if strict is None else strict
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._registry = Registry()
        self._pending: list[PluginRecord] = []  # registered plugins whose components are not yet collected
        self.plugins: list[PluginRecord] = []
        self.notices: list[str] = []  # problems not tied to one plugin

    @property
    def registry(self) -> Registry:
        """The components of every loaded plugin. They are collected (the
        registrar hooks called, which imports the plugins' component modules)
        on first use, so commands that need no component start at once."""
        while self._pending:
            self._collect(self._pending.pop(0))
        return self._registry

    # -- loading -------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Load every ``sslx`` entry point allowed by ``SSLX_LOAD_PLUGINS``."""
        eps = sorted(metadata.entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value))
        wanted = os.environ.get("SSLX_LOAD_PLUGINS")
        allowed: set[str] | None = None
        if wanted is not None:
            allowed = {n.strip() for n in wanted.split(",") if n.strip()}
            known = {ep.name for ep in eps} | {ep.dist.name for ep in eps if ep.dist}
            for missing in sorted(allowed - known):
                self._problem(f"SSLX_LOAD_PLUGINS names {missing!r}, but no installed plugin has that name.")
        seen: set[str] = set()
        for ep in eps:
            dist = ep.dist.name if ep.dist else None
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            record = PluginRecord(name=ep.name, distribution=dist, version=ep.dist.version if ep.dist else None)
            self.plugins.append(record)
            if ep.name in seen:
                self._fail(record, f"another installed distribution already provides a plugin named {ep.name!r}")
                continue
            seen.add(ep.name)
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                self._fail(record, f"import failed: {_describe(exc)}", exc)
                continue
            self._register(obj, record)

    def add_plugin(self, obj: Any, name: str) -> PluginRecord:
        """Register an in-process plugin (an object or module with hook
        implementations), as entry points are. Used by tests and notebooks."""
        record = PluginRecord(name=name)
        self.plugins.append(record)
        self._register(obj, record)
        return record

    def remove_plugin(self, name: str) -> None:
        obj = self.pm.get_plugin(name)
        if obj is not None:
            self.pm.unregister(obj, name=name)
        self._registry.remove_plugin(name)
        self.plugins = [p for p in self.plugins if p.name != name]
        self._pending = [p for p in self._pending if p.name != name]

    def _register(self, obj: Any, record: PluginRecord) -> None:
        try:
            self.pm.register(obj, name=record.name)
        except Exception as exc:  # pluggy validation: wrong hook arguments and the like
            self._fail(record, f"invalid hook implementation: {_describe(exc)}", exc)
            return
        record.location = _location(obj)
        record.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
        for hook in record.hooks:
            caller = getattr(self.pm.hook, hook)
            if caller.spec is None:
                known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("sslx_")))
                record.warnings.append(f"unknown hook {hook!r} (misspelled?); known hooks: {known}")
        if record.warnings and self.strict:
            self._fail(record, "; ".join(record.warnings))
            return
        self._pending.append(record)

    def _collect(self, record: PluginRecord) -> None:
        """Call the plugin's registrar hooks; a failure skips the plugin."""
        if record.error is not None:
            return
        provenance = Provenance(record.name, record.distribution, record.version)
        try:
            for kind, hook in REGISTRARS.items():
                for impl in getattr(self.pm.hook, hook).get_hookimpls():
                    if impl.plugin_name != record.name:
                        continue

                    def register(component: type[Component], name: str | None = None, _kind: str = kind) -> None:
                        info = self._registry.add(_kind, component, provenance, name)
                        record.components.setdefault(_kind, []).append(info.name)

                    impl.function(**({"register": register} if "register" in impl.argnames else {}))
        except Exception as exc:
            self._registry.remove_plugin(record.name)
            record.components = {}
            self._fail(record, f"registering components failed: {_describe(exc)}", exc)

    def _fail(self, record: PluginRecord, message: str, exc: BaseException | None = None) -> None:
        record.error = message
        if self.pm.get_plugin(record.name) is not None:
            self.pm.unregister(name=record.name)
        self._registry.remove_plugin(record.name)
        if os.environ.get("SSLX_DEBUG") and exc is not None:
            traceback.print_exception(exc)
        if self.strict:
            raise PluginError(f"{_who(record)} failed to load (strict mode): {message}") from exc

    def _problem(self, message: str) -> None:
        if self.strict:
            raise PluginError(message)
        self.notices.append(message)

    def load_problems(self, components: bool = True) -> list[str]:
        """One line per plugin problem, for warnings printed by the CLI; with
        ``components``, the plugins' components are collected first, so
        problems registering them are included."""
        if components:
            self.registry  # noqa: B018 - collects the components
        lines = list(self.notices)
        for p in self.plugins:
            if p.error:
                lines.append(f"{_who(p)} was skipped: {p.error}")
            lines.extend(f"{_who(p)}: {w}" for w in p.warnings)
        return lines

    # -- lookups -------------------------------------------------------------

    def component(self, kind: str, name: str) -> ComponentInfo:
        info = self.registry.find(kind, name)
        if info is None:
            raise UserError(self.registry.unknown_name_message(kind, name))
        return info

    def distributions(self) -> list[tuple[str, str]]:
        """(distribution, version) of every loaded plugin, for run records."""
        return sorted({(p.distribution, p.version or "") for p in self.plugins if p.loaded and p.distribution})

    # -- typed hook facade ----------------------------------------------------

    def register_commands(self, cli: click.Group) -> None:
        self.pm.hook.sslx_register_commands(cli=cli)

    def run_started(self, run: RunContext) -> None:
        self.pm.hook.sslx_run_started(run=run)

    def step_finished(self, run: RunContext, step: int, output: ObjectiveOutput, lr: float) -> None:
        self.pm.hook.sslx_step_finished(run=run, step=step, output=output, lr=lr)

    def run_finished(self, run: RunContext, status: str, result: dict[str, float] | None) -> None:
        self.pm.hook.sslx_run_finished(run=run, status=status, result=result)

    def run_observers(self, run: RecordingRun) -> list[Any]:
        """The observers every plugin contributes to record ``run``."""
        return [o for found in self.pm.hook.sslx_run_observers(run=run) if found for o in found]


def load_plugins(strict: bool | None = None) -> PluginHost:
    """Build a host with every allowed installed plugin loaded."""
    host = PluginHost(strict=strict)
    host.load_entry_points()
    return host


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _who(record: PluginRecord) -> str:
    if record.distribution:
        return f"plugin {record.name!r} ({record.distribution} {record.version})"
    return f"plugin {record.name!r}"


def _location(obj: Any) -> str | None:
    module = sys.modules.get(getattr(obj, "__module__", "") or "") if not hasattr(obj, "__file__") else obj
    path = getattr(module, "__file__", None)
    return str(Path(path).parent) if path else None


# ----------------------------------------------------------------------------
# plugins.toml: the first-party plugin set


@dataclass
class ListedPlugin:
    distribution: str
    path: str
    requirement: str  # a version specifier such as ">=0.1,<0.2"
    installed: str | None  # installed version, None when missing
    problem: str | None


def plugins_toml_path() -> Path | None:
    """``$SSLX_PLUGINS_TOML``, else the ``plugins.toml`` of the source checkout."""
    env = os.environ.get("SSLX_PLUGINS_TOML")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "plugins.toml"
    return here if here.exists() else None


def check_plugin_set(path: Path, host: PluginHost | None = None) -> list[ListedPlugin]:
    """Compare plugins.toml with what is installed (and, given a host, loaded)."""
    import tomllib

    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read the plugin list: {exc}") from exc
    loaded = {p.distribution: p for p in host.plugins} if host else {}
    out = []
    for i, entry in enumerate(data.get("plugin", [])):
        dist, req = entry.get("name"), entry.get("version", "")
        if not isinstance(dist, str):
            raise UserError(f"{path}: [[plugin]] entry {i + 1} has no `name`.")
        try:
            spec = SpecifierSet(req)
        except InvalidSpecifier as exc:
            raise UserError(f"{path}: plugin {dist!r} has an invalid version requirement {req!r}: {exc}") from exc
        try:
            installed: str | None = metadata.version(dist)
        except metadata.PackageNotFoundError:
            installed = None
        problem = None
        if installed is None:
            problem = f"{dist} is listed in {path.name} but not installed: run `make setup`."
        else:
            try:
                ok = spec.contains(Version(installed), prereleases=True)
            except InvalidVersion:
                ok = False
            if not ok:
                problem = f"{dist} {installed} is installed but {path.name} requires {dist}{req}: run `make setup`."
            elif dist in loaded and loaded[dist].error:
                problem = f"{dist} {installed} is installed but failed to load: {loaded[dist].error}"
        out.append(ListedPlugin(dist, entry.get("path", ""), req, installed, problem))
    return out
