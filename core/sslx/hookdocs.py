"""docs/hooks.md, rendered from :mod:`sslx.hookspecs`.

The hook specs are the plugin contract, so their reference page is made from
them (signatures, docstrings, the protocol types they pass) rather than
written beside them, where it would drift. ``python -m sslx.hookdocs`` prints
the page, ``--write`` rewrites docs/hooks.md of the source checkout, and
``tests/test_hookdocs.py`` fails while the committed page differs.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslx import hookspecs

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
SPEC_MARK = f"{hookspecs.hookspec.project_name}_spec"  # the attribute pluggy's HookspecMarker sets
WHEN = "Fires "  # the docstring paragraph that says when a hook is called starts so

FIELD = re.compile(r"^:(\w+) (\w+): (.*(?:\n[ \t]+\S.*)*)", re.MULTILINE)  # :param name: text
LITERAL_BLOCK = re.compile(r"::\n\n((?:[ \t]+.*\n|\n)+)")  # text:: then an indented block
INLINE_CODE = re.compile(r"``(.+?)``|:\w+:`~?(.+?)`")  # ``code`` and :role:`target`


@dataclass(frozen=True)
class Group:
    """A kind of hook: its name, what the hooks of the kind have in common,
    and one implementation to copy."""

    name: str
    about: str
    example: str


# A hook's kind is what its first argument is (the annotation as written): what the host hands it.
GROUPS = {
    "Register": Group(
        "Registrar",
        "Registrar hooks add components. Each is called once, when plugins are loaded, with a\n"
        "[`register`](#register) callable; [plugins.md](plugins.md#component-contracts) says what\n"
        "each kind of component must provide.",
        '''\
import sslx


class MyEncoder(sslx.Encoder):
    """One paragraph: what the encoder is."""

    name = "myencoder"
    ...  # Params, __init__, forward, out_dim, stages: see plugins.md


@sslx.hookimpl
def sslx_register_encoders(register):
    register(MyEncoder)
''',
    ),
    "click.Group": Group(
        "CLI",
        "CLI hooks add commands to the `sslx` command line, which is a\n"
        "[click](https://click.palletsprojects.com/) group.",
        '''\
import click

import sslx


@click.command()
def hello():
    """Say hello (`sslx hello`)."""
    click.echo("hello from my plugin")


@sslx.hookimpl
def sslx_register_commands(cli):
    cli.add_command(hello)
''',
    ),
    "RunContext": Group(
        "Lifecycle",
        "Lifecycle hooks observe a training run through a [`RunContext`](#runcontext). Under\n"
        "DDP (`sslx run --nproc N`) they are called in every process, with that process's\n"
        "data; `sslx.distributed.is_main_process()` tells you which process you are in.",
        '''\
import sslx


@sslx.hookimpl
def sslx_step_finished(run, step, output):  # any subset of the hook's arguments
    if step % 100 == 0 and output.embeddings is not None:
        norm = output.embeddings.float().norm(dim=1).mean().item()
        run.log_scalar("myplugin.embedding_norm", norm, step)
''',
    ),
}


def hook_specs() -> list[Callable[..., Any]]:
    """Every function of :mod:`sslx.hookspecs` marked ``@hookspec``, in source
    order (a module's namespace keeps the order of definition)."""
    return [f for f in vars(hookspecs).values() if inspect.isfunction(f) and hasattr(f, SPEC_MARK)]


def protocols() -> list[type]:
    """The protocol types hooks are passed (``Register``, ``RunContext``), in
    source order."""
    return [
        c for c in vars(hookspecs).values()
        if inspect.isclass(c) and c.__module__ == hookspecs.__name__ and issubclass(c, typing.Protocol)
    ]


class _AsWritten(str):
    """An annotation as the source writes it. Under ``from __future__ import
    annotations`` every annotation is a string, which :mod:`inspect` quotes."""

    def __repr__(self) -> str:
        return str(self)


def _as_written(annotation: Any) -> Any:
    return _AsWritten(annotation) if isinstance(annotation, str) else annotation


def signature(fn: Callable[..., Any]) -> str:
    """``def name(arg: Type, ...) -> Type``, from :func:`inspect.signature`
    with the annotations as written in the source."""
    sig = inspect.signature(fn)
    sig = sig.replace(
        parameters=[p.replace(annotation=_as_written(p.annotation)) for p in sig.parameters.values()],
        return_annotation=_as_written(sig.return_annotation),
    )
    return f"def {fn.__name__}{sig}"


def group_of(spec: Callable[..., Any]) -> Group:
    """The kind of a hook, told by its first argument's annotation."""
    first = next(iter(inspect.signature(spec).parameters.values()), None)
    annotation = first.annotation if first else None
    if annotation not in GROUPS:
        raise ValueError(
            f"hook {spec.__name__}: its first argument's annotation {annotation!r} is none of "
            f"{', '.join(GROUPS)}; describe the new kind of hook in sslx.hookdocs.GROUPS."
        )
    return GROUPS[annotation]


def markdown(doc: str) -> str:
    """The reST of the specs' docstrings as Markdown: ``code`` and
    :role:`target` become `code`, field lists (``:param name: text``) a list,
    ``text::`` and its indented block a paragraph and a fenced block."""
    doc = LITERAL_BLOCK.sub(lambda m: ":\n\n```\n" + textwrap.dedent(m[1]).strip("\n") + "\n```\n\n", doc + "\n")
    doc = FIELD.sub(lambda m: _item(m[2], m[3]), doc)
    return INLINE_CODE.sub(lambda m: f"`{m[1] or m[2]}`", doc).strip("\n")


def _item(head: str, text: str) -> str:
    """A Markdown list item, ``- `head`: text``, its further lines indented under it."""
    return f"- `{head}`: " + re.sub(r"\n[ \t]*", "\n  ", text)


def split_when(spec: Callable[..., Any]) -> tuple[str, str]:
    """A hook's docstring as (when it is called, the rest): the paragraph
    starting "Fires" is shown apart, next to the hook's kind."""
    paragraphs = (inspect.getdoc(spec) or "").split("\n\n")
    when = [p for p in paragraphs if p.startswith(WHEN)]
    if len(when) != 1:
        raise ValueError(
            f"hook {spec.__name__}: its docstring needs one paragraph starting {WHEN!r} that says when it is called"
        )
    return when[0].removeprefix(WHEN), "\n\n".join(p for p in paragraphs if p is not when[0])


def render_hook(spec: Callable[..., Any]) -> str:
    """One hook: its signature, kind, when it is called, and its docstring."""
    when, rest = split_when(spec)
    return (
        f"### `{spec.__name__}`\n\n```python\n{signature(spec)}\n```\n\n"
        f"**{group_of(spec).name} hook**, called {markdown(when)}\n\n{markdown(rest)}"
    )


def render_group(group: Group, specs: list[Callable[..., Any]]) -> str:
    """A kind of hook: what its hooks have in common, an example, then each hook."""
    hooks = "\n\n".join(render_hook(s) for s in specs)
    return f"## {group.name} hooks\n\n{group.about}\n\nFor example:\n\n```python\n{group.example}```\n\n{hooks}"


def render_protocol(cls: type) -> str:
    """A protocol type: its docstring, then each attribute (described by the
    docstring's ``:ivar name:`` fields) and method."""
    ivars = {m[2]: m[3] for m in FIELD.finditer(inspect.getdoc(cls)) if m[1] == "ivar"}
    about = FIELD.sub(lambda m: "" if m[1] == "ivar" else m[0], inspect.getdoc(cls))
    members = [_item(f"{name}: {kind}", markdown(ivars.get(name, ""))) for name, kind in cls.__annotations__.items()]
    members += [
        _item(signature(fn), markdown(inspect.getdoc(fn) or ""))
        for fn in vars(cls).values()
        if inspect.isfunction(fn) and fn.__qualname__.startswith(f"{cls.__qualname__}.")
    ]
    return f"### `{cls.__name__}`\n\n{markdown(about)}\n\n" + "\n".join(members)


def render_hooks_markdown() -> str:
    """docs/hooks.md: an introduction (the hookspecs module docstring), the
    hooks grouped by kind (groups in order of first appearance, hooks in
    source order within a group), then the protocol types they pass."""
    by_group: dict[Group, list[Callable[..., Any]]] = {}
    for spec in hook_specs():
        by_group.setdefault(group_of(spec), []).append(spec)
    parts = [
        "# Plugin hooks",
        "<!-- Generated from core/sslx/hookspecs.py by `python -m sslx.hookdocs --write`: edit the docstrings there. -->",
        markdown(inspect.getdoc(hookspecs) or ""),
        "[plugins.md](plugins.md) walks through a complete plugin.",
        *(render_group(group, specs) for group, specs in by_group.items()),
        "## Types passed to hooks",
        *(render_protocol(cls) for cls in protocols()),
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m sslx.hookdocs [--write]``."""
    parser = argparse.ArgumentParser(prog="python -m sslx.hookdocs", description="Render docs/hooks.md from the specs.")
    parser.add_argument("--write", action="store_true", help=f"write {DOCS_PATH} instead of printing the page")
    args = parser.parse_args(argv)
    text = render_hooks_markdown()
    if not args.write:
        sys.stdout.write(text)
    elif not DOCS_PATH.parent.is_dir():
        parser.error(f"--write needs a source checkout, with {DOCS_PATH.parent}")
    else:
        DOCS_PATH.write_text(text)


if __name__ == "__main__":
    main()
