"""The host-owned registry of components, with the provenance of each.

Light to import (no torch, no pydantic): the host builds it before knowing
whether a command needs any component.
"""

from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sslx.errors import PluginError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from sslx.components import Component

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# The kinds of component, in the order of a run (sslx.components.KINDS holds their base classes).
KIND_NAMES = ("dataset", "sampler", "augmentation", "encoder", "objective", "evaluator")


@dataclass(frozen=True)
class Provenance:
    """Where a component came from."""

    plugin: str  # the plugin's registered name (its entry-point name)
    distribution: str | None  # the installed distribution, None for in-process plugins
    version: str | None

    def __str__(self) -> str:
        if self.distribution:
            return f"plugin {self.plugin!r} ({self.distribution} {self.version})"
        return f"plugin {self.plugin!r}"


@dataclass(frozen=True)
class ParamInfo:
    name: str
    type: str
    default: Any  # PydanticUndefined when required
    description: str
    required: bool


@dataclass(frozen=True)
class ComponentInfo:
    kind: str
    name: str
    cls: type[Component]
    provenance: Provenance

    def build(self, *args: Any) -> Any:
        """An instance: ``cls(params, *context)`` (what the arguments are depends on the kind)."""
        cls: Any = self.cls
        return cls(*args)

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.split("\n\n")[0].replace("\n", " ").strip()

    @property
    def params(self) -> list[ParamInfo]:
        return params_of(self.cls.Params)

    def json_schema(self) -> dict[str, Any]:
        schema = self.cls.Params.model_json_schema()
        schema.setdefault("properties", {})["name"] = {"const": self.name}
        schema["required"] = ["name", *schema.get("required", [])]
        schema["description"] = self.description
        return schema


def params_of(model: type[BaseModel]) -> list[ParamInfo]:
    """The documented parameters of a pydantic parameter model."""
    return [
        ParamInfo(
            name=name,
            type=_type_name(f.annotation),
            default=f.get_default(call_default_factory=True),
            description=f.description or "",
            required=f.is_required(),
        )
        for name, f in model.model_fields.items()
    ]


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    text = re.sub(r"Annotated\[(\w+), [^\]]*\]", r"\1", text)
    return re.sub(r"Literal\[([^\]]*)\]", lambda m: m.group(1).replace(", ", " | "), text)


def default_repr(value: Any) -> str:
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    if value is PydanticUndefined:
        return "(required)"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return repr(value) if isinstance(value, str) else str(value).replace("None", "null")


class Registry:
    """Components by kind and name. A duplicate name is an error naming both owners."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, ComponentInfo]] = {kind: {} for kind in KIND_NAMES}
        # Names claimed by two plugins: unusable until one is removed, so no plugin wins silently.
        self._conflicts: dict[tuple[str, str], list[Provenance]] = {}

    def add(self, kind: str, cls: type[Component], provenance: Provenance, name: str | None = None) -> ComponentInfo:
        from pydantic import BaseModel

        from sslx.components import KINDS

        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"{provenance} registered {cls!r} as a {kind}, but it is not a subclass of sslx.{base.__name__}."
            )
        name = name or getattr(cls, "name", None)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(
                f"{provenance} registered a {kind} named {name!r}: names are lower-case letters, digits and "
                f"underscores, starting with a letter. Set `name` on {cls.__name__} or pass name= to register."
            )
        params = getattr(cls, "Params", None)
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise PluginError(f"{provenance}: {kind} {name!r} needs a `Params` pydantic model (sslx.Params).")
        existing = self._items[kind].get(name)
        if existing is not None:
            self._conflicts[(kind, name)] = [existing.provenance, provenance]
            raise PluginError(
                f"{kind} {name!r} is registered twice: by {existing.provenance} and by {provenance}. "
                f"Uninstall one of them, or limit the loaded plugins with SSLX_LOAD_PLUGINS."
            )
        info = ComponentInfo(kind=kind, name=name, cls=cls, provenance=provenance)
        self._items[kind][name] = info
        return info

    def remove_plugin(self, plugin: str) -> None:
        for items in self._items.values():
            for name in [n for n, i in items.items() if i.provenance.plugin == plugin]:
                del items[name]

    def names(self, kind: str) -> list[str]:
        return sorted(n for n in self._items[kind] if (kind, n) not in self._conflicts)

    def find(self, kind: str, name: str) -> ComponentInfo | None:
        if (kind, name) in self._conflicts:
            return None
        return self._items[kind].get(name)

    def all(self) -> list[ComponentInfo]:
        return [
            info for kind in KIND_NAMES for name, info in sorted(self._items[kind].items()) if self.find(kind, name)
        ]

    def unknown_name_message(self, kind: str, name: object) -> str:
        owners = self._conflicts.get((kind, name)) if isinstance(name, str) else None
        if owners:
            return (
                f"{kind} {name!r} is provided by two plugins, {owners[0]} and {owners[1]}, so it cannot be used. "
                f"Uninstall one of them, or load only one with SSLX_LOAD_PLUGINS."
            )
        names = self.names(kind)
        hint = ""
        if isinstance(name, str):
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            if close:
                hint = f" Did you mean {' or '.join(repr(c) for c in close)}?"
        listing = ", ".join(names) if names else "none (no plugin provides one: check `sslx plugins`)"
        return (
            f"unknown {kind} {name!r}.{hint} Registered {kind}s: {listing}. "
            f"Fix the name, or install the plugin that provides it."
        )
