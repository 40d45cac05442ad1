"""docs/hooks.md, rendered from :mod:`sslx.hookspecs`, and checked against it.

The hook specs are the plugin contract, so their reference page is made from
them (signatures, docstrings, the types they pass and return) rather than
written beside them, where it would drift. ``sslx hookdocs`` prints the page,
``--write`` rewrites docs/hooks.md of sslx's source checkout, and ``--check``
fails while that page differs from the rendering or, read back on its own
(:func:`signature_problems`), misses a hook or gets a signature wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import re
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sslx
from sslx import hookspecs
from sslx.errors import UserError

SPEC_MARK = f"{hookspecs.hookspec.project_name}_spec"  # the attribute pluggy's HookspecMarker sets
WHEN = "Fires "  # the docstring paragraph that says when a hook is called starts so
HEADER = "<!-- Generated from core/sslx/hookspecs.py by `sslx hookdocs --write`: edit the docstrings there. -->"

FIELD = re.compile(r"^:(\w+)(?: (\w+))?: (.*(?:\n[ \t]+\S.*)*)", re.MULTILINE)  # :param name: text, :return: text
LITERAL_BLOCK = re.compile(r"::\n\n((?:[ \t]+.*\n|\n)+)")  # text:: then an indented block
INLINE_CODE = re.compile(r"``(.+?)``|:(\w+):`~?(.+?)`")  # ``code`` and :role:`target`
# A documented signature is a Python block holding one `def sslx_...(...)` line.
SIGNATURE = re.compile(r"^```python\n(def (sslx_\w+)\(.*)\n```$", re.MULTILINE)


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
        "[click](https://click.palletsprojects.com/) group, and options to its `run` and `eval` commands.",
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
    "RecordingRun": Group(
        "Recorder",
        "Recorder hooks record runs somewhere besides the file store under `runs/` (a database, an\n"
        "experiment tracker), with [Sacred](https://github.com/IDSIA/sacred) observers. They see the run\n"
        "about to be recorded as a [`RecordingRun`](#recordingrun), whose `options` hold the values of the\n"
        "options the plugin added to `sslx run` and `sslx eval` (with a [CLI hook](#cli-hooks)).",
        '''\
import click
from sacred.observers import RunObserver

import sslx
from sslx.hookspecs import RecorderReport


class LossPrinter(RunObserver):
    """Prints the training loss as the run logs it."""

    def log_metrics(self, metrics_by_name, info):
        for value in metrics_by_name.get("train.loss", {}).get("values", []):
            print("train.loss", value)

    def finish(self):
        return RecorderReport("loss_printer", {}, "the training loss was printed")


@sslx.hookimpl
def sslx_register_commands(cli):
    cli.commands["run"].params.append(click.Option(["--print-loss"], is_flag=True, help="Print the loss."))


@sslx.hookimpl
def sslx_run_observers(run):
    return [LossPrinter()] if run.options.get("print_loss") else None
''',
    ),
    "RunContext": Group(
        "Lifecycle",
        "Lifecycle hooks observe a training run through a [`RunContext`](#runcontext). Under\n"
        "DDP (`sslx run --nproc N`) they are called in every process, with that process's\n"
        "data; `sslx.distributed.is_main_process()` tells you which process you are in.",
        """\
import sslx


@sslx.hookimpl
def sslx_step_finished(run, step, output):  # any subset of the hook's arguments
    if step % 100 == 0 and output.embeddings is not None:
        norm = output.embeddings.float().norm(dim=1).mean().item()
        run.log_scalar("myplugin.embedding_norm", norm, step)
""",
    ),
}


# ----------------------------------------------------------------------------
# rendering


def hook_specs() -> list[Callable[..., Any]]:
    """Every function of :mod:`sslx.hookspecs` marked ``@hookspec``, in source
    order (a module's namespace keeps the order of definition)."""
    return [f for f in vars(hookspecs).values() if inspect.isfunction(f) and hasattr(f, SPEC_MARK)]


def hook_types() -> list[type]:
    """The types hooks are passed or return (the protocols ``Register``,
    ``RunContext``, ... and dataclasses such as ``RecorderReport``), in
    source order."""
    return [
        c
        for c in vars(hookspecs).values()
        if inspect.isclass(c)
        and c.__module__ == hookspecs.__name__
        and (issubclass(c, typing.Protocol) or dataclasses.is_dataclass(c))
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
            f"{', '.join(GROUPS)}; describe the new kind of hook in sslx_authoring.hookdocs.GROUPS."
        )
    return GROUPS[annotation]


def markdown(doc: str) -> str:
    """The reST of the specs' docstrings as Markdown: ``code`` and
    :role:`target` become `code` (a link when the target is a type on the
    page), field lists (``:param name: text``, ``:return: text``) a list,
    ``text::`` and its indented block a paragraph and a fenced block."""
    doc = LITERAL_BLOCK.sub(lambda m: ":\n\n```\n" + textwrap.dedent(m[1]).strip("\n") + "\n```\n\n", doc + "\n")
    doc = FIELD.sub(lambda m: _item(m[2], m[3]) if m[2] else _item(m[1], m[3], code=False), doc)
    return INLINE_CODE.sub(_inline, doc).strip("\n")


def _inline(match: re.Match[str]) -> str:
    """One ``code`` or :role:`target` as Markdown."""
    if match[1]:
        return f"`{match[1]}`"
    target = match[3]
    if match[2] == "class" and target in {t.__name__ for t in hook_types()}:
        return f"[`{target}`](#{target.lower()})"
    return f"`{target}`"


def _item(head: str, text: str, code: bool = True) -> str:
    """A Markdown list item, ``- `head`: text`` (``- head: text`` without
    ``code``), its further lines indented under it."""
    return f"- {f'`{head}`' if code else head}: " + re.sub(r"\n[ \t]*", "\n  ", text)


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


def render_type(cls: type) -> str:
    """A type of the contract: its docstring, then each attribute (described
    by the docstring's ``:ivar name:`` fields) and method."""
    doc = inspect.getdoc(cls) or ""
    ivars = {m[2]: m[3] for m in FIELD.finditer(doc) if m[1] == "ivar"}
    about = FIELD.sub(lambda m: "" if m[1] == "ivar" else m[0], doc)
    members = [
        _item(f"{name}: {kind}{_default(cls, name)}", markdown(ivars.get(name, "")))
        for name, kind in cls.__annotations__.items()
    ]
    members += [_item(signature(fn), markdown(inspect.getdoc(fn) or "")) for fn in _methods(cls)]
    return f"### `{cls.__name__}`\n\n{markdown(about)}\n\n" + "\n".join(members)


def _default(cls: type, name: str) -> str:
    """`` = value`` for a dataclass field with a default, else nothing."""
    field = {f.name: f for f in dataclasses.fields(cls)}.get(name) if dataclasses.is_dataclass(cls) else None
    return "" if field is None or field.default is dataclasses.MISSING else f" = {field.default!r}"


def _methods(cls: type) -> list[Callable[..., Any]]:
    """The methods a type's source defines: its public ones and ``__call__``
    (not those that Protocol or dataclass add)."""
    return [
        fn
        for name, fn in vars(cls).items()
        if inspect.isfunction(fn) and (not name.startswith("_") or name == "__call__")
    ]


def render_hooks_markdown() -> str:
    """docs/hooks.md: an introduction (the hookspecs module docstring), the
    hooks grouped by kind (groups in order of first appearance, hooks in
    source order within a group), then the types they pass and return."""
    by_group: dict[Group, list[Callable[..., Any]]] = {}
    for spec in hook_specs():
        by_group.setdefault(group_of(spec), []).append(spec)
    parts = [
        "# Plugin hooks",
        HEADER,
        markdown(inspect.getdoc(hookspecs) or ""),
        "[plugins.md](plugins.md) walks through a complete plugin.",
        *(render_group(group, specs) for group, specs in by_group.items()),
        "## Types passed to and returned by hooks",
        *(render_type(cls) for cls in hook_types()),
    ]
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------
# the page in the checkout, and checking it


def docs_page() -> Path:
    """docs/hooks.md of the source checkout sslx is installed from (editable),
    beside core/sslx/."""
    page = Path(sslx.__file__).resolve().parents[2] / "docs" / "hooks.md"
    if not page.parent.is_dir():
        raise UserError(
            f"sslx is not installed from a source checkout (it is at {Path(sslx.__file__).parent}), so there is no "
            f"docs/hooks.md to write or check. Install sslx editable from its clone (pip install "
            f"--no-build-isolation -e .), or run `sslx hookdocs` alone to print the page."
        )
    return page


def _annotation(text: str | None) -> str | None:
    """An annotation in one spelling (spacing, quotes), to compare."""
    return None if text is None else ast.unparse(ast.parse(text, mode="eval"))


def _spec_shape(spec: Callable[..., Any]) -> tuple[list[tuple[str, str | None]], str | None]:
    """A spec's parameters (name, annotation) in order, and its return annotation."""
    sig = inspect.signature(spec)

    def written(annotation: Any) -> str | None:
        return None if annotation is inspect.Parameter.empty else _annotation(annotation)

    return [(p.name, written(p.annotation)) for p in sig.parameters.values()], written(sig.return_annotation)


def _documented_shape(line: str) -> tuple[list[tuple[str, str | None]], str | None]:
    """The same for a documented ``def ...`` line, parsed as Python."""
    node = ast.parse(line + ": ...").body[0]
    assert isinstance(node, ast.FunctionDef)
    args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    params = [(a.arg, _annotation(ast.unparse(a.annotation)) if a.annotation else None) for a in args]
    return params, _annotation(ast.unparse(node.returns)) if node.returns else None


def signature_problems(page: str) -> list[str]:
    """What a hooks ``page`` gets wrong about the hook specs as the plugin
    host knows them, one line per hook: a signature that differs, a hook
    documented twice, or not a spec, or a spec not documented. Reads the
    page on its own, apart from the renderer."""
    from sslx.plugins import PluginHost

    specs = {name: caller.spec.function for name, caller in vars(PluginHost().pm.hook).items() if caller.spec}
    problems, seen = [], set()
    for match in SIGNATURE.finditer(page):
        line, name = match[1], match[2]
        if name in seen:
            problems.append(f"{name}: documented twice")
        elif name not in specs:
            problems.append(f"{name}: documented, but there is no such hook spec")
        else:
            try:
                wrong = _documented_shape(line) != _spec_shape(specs[name])
            except SyntaxError:
                wrong = True
            if wrong:
                spec = f"{name}{inspect.signature(specs[name])}"
                problems.append(f"{name}: documented as `{line}`, but the spec is `{spec}`")
        seen.add(name)
    return problems + [f"{name}: not documented" for name in specs if name not in seen]


def page_problems(page: str) -> list[str]:
    """Why ``page`` is not the hooks page of these specs: each hook it gets
    wrong (:func:`signature_problems`), then, if it is not exactly what
    :func:`render_hooks_markdown` makes, the first lines that differ."""
    problems = signature_problems(page)
    rendered = render_hooks_markdown()
    if page != rendered:
        diff = difflib.unified_diff(page.splitlines(), rendered.splitlines(), "the page", "the specs", lineterm="", n=0)
        problems.append("the page differs from the rendering of the specs:\n" + "\n".join(list(diff)[:12]))
    return problems
