"""``sslx new-plugin``: a new plugin distribution with one working component.

:func:`new_plugin` writes ``sslx-<name>/``, a complete installable
distribution: ``pyproject.toml`` with the ``sslx`` entry point, the package
``src/sslx_<name>/`` holding one working component of the chosen kind
(registered through its hook: the plugin works as generated), tests built
on the conformance kit (:mod:`sslx.testing` and its pytest fixtures), an
experiment that trains it with first-party components, and a README. The
component is a starting point to edit; its tests say what it does.

The files come from ``templates/``: each kind's component is a real module
of a placeholder plugin named ``example`` (``src/sslx_example/<kind>.py``,
with its tests in ``tests/test_<kind>.py``), which imports and passes its
tests as it is; :func:`rename` turns the placeholder into the new name. The
two text files around them, ``pyproject.toml.tmpl`` and ``README.md.tmpl``,
are :class:`string.Template` s of what differs by kind.
"""

from __future__ import annotations

import copy
import json
import keyword
import re
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

from packaging.version import Version

import sslx
from sslx.config import COMPONENT_SECTIONS
from sslx.errors import UserError
from sslx.plugins import GROUP, REGISTRARS, PluginHost

TEMPLATES = Path(__file__).parent / "templates"
PLACEHOLDER = "example"  # the templates' plugin name
NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")  # also a distribution name once "_" becomes "-"

FIRST_PARTY = {
    "seed": 0,
    "dataset": {"name": "mnist", "train_size": 1024, "test_size": 512},
    "augmentation": {"name": "simclr", "crop_scale": [0.5, 1.0], "blur_prob": 0.0},
    "sampler": {"name": "crops", "views": 2},
    "encoder": {"name": "small_cnn", "width": 8, "blocks": 3},
    "objective": {"name": "simclr", "temperature": 0.2},
    "evaluators": [{"name": "knn", "k": 20}],
    "trainer": {
        "batch_size": 64,
        "max_steps": 12,
        "warmup_steps": 2,
        "log_every": 2,
        "checkpoint_every": 12,
        "num_workers": 0,
        "progress": False,
    },
}
"""The generated experiment's other parts: first-party plugins, sized to run in seconds on a CPU."""

FIRST_PARTY_DISTRIBUTIONS = {
    "dataset": "sslx-datasets",
    "augmentation": "sslx-augmentations",
    "sampler": "sslx-crops",
    "encoder": "sslx-encoders",
    "objective": "sslx-simclr",
    "evaluator": "sslx-knn",
}
"""The distribution of each of them, which the generated experiment needs installed."""

EXPERIMENT_PARAMS: dict[str, dict[str, Any]] = {
    "dataset": {"train_size": 1000, "test_size": 500},
    "sampler": {"views": 2},
    "encoder": {"width": 8},
}
"""The new component's parameters in the generated experiment, by kind (none: its defaults)."""

REQUIRES: dict[str, tuple[str, ...]] = {
    "dataset": ("numpy>=1.24", "scikit-image>=0.22"),
    "sampler": ("numpy>=1.24",),
    "augmentation": ("numpy>=1.24",),
}
"""What each kind's component needs besides sslx and torch."""


def compatible_range(version: str) -> str:
    """The sslx versions a plugin made with sslx ``version`` declares it works
    with: the same minor version while sslx is 0.x (``0.1.3`` gives
    ``>=0.1,<0.2``), the same major version from 1.0 on."""
    v = Version(version)
    upper = f"{v.major}.{v.minor + 1}" if v.major == 0 else f"{v.major + 1}"
    return f">={v.major}.{v.minor},<{upper}"


def check_name(name: str) -> None:
    """Refuse a ``name`` that cannot be at once a registry name, an entry
    point, a package (``sslx_<name>``) and a distribution (``sslx-<name>``)."""
    if NAME.fullmatch(name) and not keyword.iskeyword(name):
        return
    raise UserError(
        f"cannot make a plugin named {name!r}: a plugin's name is lowercase letters and digits, starting with a "
        f"letter, with single underscores between words, and not a Python keyword. It names the component in "
        f"experiments, the package sslx_<name> and the distribution sslx-<name>; for example: "
        f"sslx new-plugin {_suggest(name)}"
    )


def _suggest(name: str) -> str:
    """A valid name close to ``name``: "MyLoss" and "my-loss" give "my_loss"."""
    words = re.sub(r"[^a-z0-9]+", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()).strip("_")
    for candidate in (words, f"my_{words}"):
        if NAME.fullmatch(candidate) and not keyword.iskeyword(candidate):
            return candidate
    return "my_method"


def _taken(name: str, kind: str, dist: str, host: PluginHost | None) -> str | None:
    """Why ``name`` is not free, and what to do: an installed distribution or
    plugin has it, or a component of ``kind`` that ``host`` registered; None
    when it is free."""
    try:
        return (
            f"the distribution {dist} {metadata.version(dist)} is installed. Choose another name, such as "
            f"'my_{name}', or uninstall {dist} first if it is an older copy of this plugin."
        )
    except metadata.PackageNotFoundError:
        pass
    owners = [ep.dist.name if ep.dist else ep.value for ep in metadata.entry_points(group=GROUP) if ep.name == name]
    found = host.registry.find(kind, name) if host is not None else None
    if owners:
        taken = f"the installed distribution {owners[0]} has a plugin named {name!r}"
    elif found is not None:
        taken = f"the {kind} {name!r} is registered by {found.provenance}"
    else:
        return None
    return f"{taken}, and two with one name make it unusable. Choose another name, such as 'my_{name}'."


def rename(text: str, name: str) -> str:
    """A template's ``text`` for the plugin ``name``: the kind module
    ``sslx_example.<kind>`` and the package ``sslx_example`` become
    ``sslx_<name>``, the distribution ``sslx-example`` ``sslx-<name with
    ->``, ``Example`` (in class names) the name in CamelCase, and any other
    ``example`` the name."""
    camel = "".join(word.capitalize() for word in name.split("_"))
    replacements = {
        f"sslx-{PLACEHOLDER}": "sslx-" + name.replace("_", "-"),
        PLACEHOLDER.capitalize(): camel,
        PLACEHOLDER: name,
    }
    pattern = re.compile(rf"sslx_{PLACEHOLDER}\.[a-z]+\b|" + "|".join(map(re.escape, replacements)))
    return pattern.sub(lambda m: f"sslx_{name}" if m[0].startswith("sslx_") else replacements[m[0]], text)


def new_plugin(name: str, kind: str = "objective", parent: Path = Path("."), host: PluginHost | None = None) -> Path:
    """Write ``parent/sslx-<name>/``, a plugin distribution whose package
    ``sslx_<name>`` holds one working ``kind`` component registered as
    ``name``, and return its folder.

    Refuses (``UserError``) a malformed name, an existing folder, and a name
    that an installed distribution or plugin has or (given ``host``) a
    registered component of ``kind``: two plugins with one name make it
    unusable."""
    check_name(name)
    dist = "sslx-" + name.replace("_", "-")
    root = Path(parent) / dist
    if root.exists():
        raise UserError(f"{root} already exists: choose another name, or another parent folder with --dir.")
    taken = _taken(name, kind, dist, host)
    if taken:
        raise UserError(f"cannot make a plugin named {name!r}: {taken}")
    experiment = {
        "description": f"The {kind} '{name}' ({dist}) with first-party parts, sized to run in seconds on a CPU: raise "
        f"the dataset's sizes and trainer.max_steps for a real measurement.",
        **_with_component(FIRST_PARTY, kind, name, EXPERIMENT_PARAMS.get(kind, {})),
    }
    requires = [f"sslx{compatible_range(sslx.__version__)}", "torch>=2.1", *REQUIRES.get(kind, ())]
    fill = {
        "name": name,
        "kind": kind,
        "distribution": dist,
        "package": f"sslx_{name}",
        "hook": REGISTRARS[kind],
        "cls": rename(f"{PLACEHOLDER.capitalize()}{kind.capitalize()}", name),
        "dependencies": "".join(f'    "{r}",\n' for r in requires),
        "others": ", ".join(f"{k} {n} ({FIRST_PARTY_DISTRIBUTIONS[k]})" for k, n in _parts(experiment) if n != name),
    }
    copied = {
        f"src/sslx_{name}/__init__.py": f"src/sslx_{PLACEHOLDER}/{kind}.py",
        f"tests/test_{name}.py": f"tests/test_{kind}.py",
        "tests/test_installed.py": "tests/test_installed.py",
    }
    files = {
        "pyproject.toml": Template((TEMPLATES / "pyproject.toml.tmpl").read_text()).substitute(fill),
        "README.md": Template((TEMPLATES / "README.md.tmpl").read_text()).substitute(fill),
        **{path: rename((TEMPLATES / template).read_text(), name) for path, template in copied.items()},
        f"experiments/{name}.json": _experiment_json(experiment),
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def _with_component(config: dict[str, Any], kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the component ``name`` as its ``kind`` (an evaluator
    goes first in the list, before the others)."""
    config = copy.deepcopy(config)
    part = {"name": name, **params}
    if kind == "evaluator":
        config["evaluators"].insert(0, part)
    else:
        config[kind] = part
    return config


def _parts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every component of an experiment."""
    return [(kind, config[kind]["name"]) for kind in COMPONENT_SECTIONS] + [
        ("evaluator", e["name"]) for e in config["evaluators"]
    ]


def _experiment_json(config: dict[str, Any]) -> str:
    """An experiment file laid out as the shipped ones are: one line per section."""
    return "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in config.items()) + "\n}\n"
