"""docs/hooks.md and the hook specs: every spec says when it is called, the
page is what ``sslx.hookdocs`` renders, and (checked apart from the renderer)
its signatures are the specs' and it documents every hook, no more."""

from __future__ import annotations

import ast
import inspect
import re
import types
from collections.abc import Callable
from typing import Any

import pytest
from helpers import REPO

from sslx.hookdocs import render_hooks_markdown
from sslx.plugins import PluginHost

HOOKS_MD = REPO / "docs" / "hooks.md"
# A documented signature is a Python block holding one `def sslx_...(...)` line.
SIGNATURE = re.compile(r"^```python\n(def (sslx_\w+)\(.*)\n```$", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def hook_specs() -> dict[str, Callable[..., Any]]:
    """The hook specs as the plugin host knows them."""
    return {name: caller.spec.function for name, caller in vars(PluginHost().pm.hook).items() if caller.spec}


def _annotation(text: str | None) -> str | None:
    """An annotation in one spelling (spacing, quotes), to compare."""
    return None if text is None else ast.unparse(ast.parse(text, mode="eval"))


def spec_shape(spec: Callable[..., Any]) -> tuple[list[tuple[str, str | None]], str | None]:
    """A spec's parameters (name, annotation) in order, and its return annotation."""
    sig = inspect.signature(spec)

    def written(annotation: Any) -> str | None:
        return None if annotation is inspect.Parameter.empty else _annotation(annotation)

    return [(p.name, written(p.annotation)) for p in sig.parameters.values()], written(sig.return_annotation)


def documented_shape(line: str) -> tuple[list[tuple[str, str | None]], str | None]:
    """The same for a documented ``def ...`` line, parsed as Python."""
    node = ast.parse(line + ": ...").body[0]
    assert isinstance(node, ast.FunctionDef)
    args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    params = [(a.arg, _annotation(ast.unparse(a.annotation)) if a.annotation else None) for a in args]
    return params, _annotation(ast.unparse(node.returns)) if node.returns else None


def signature_problems(markdown: str) -> list[str]:
    """What a hooks page gets wrong about the specs, one line per hook: a
    signature that differs, a hook documented twice, or not a spec, or a spec
    not documented."""
    specs = hook_specs()
    problems, seen = [], set()
    for match in SIGNATURE.finditer(markdown):
        line, name = match[1], match[2]
        if name in seen:
            problems.append(f"{name}: documented twice")
        elif name not in specs:
            problems.append(f"{name}: documented, but there is no such hook spec")
        else:
            try:
                wrong = documented_shape(line) != spec_shape(specs[name])
            except SyntaxError:
                wrong = True
            if wrong:
                problems.append(f"{name}: documented as `{line}`, but the spec is `{name}{inspect.signature(specs[name])}`")
        seen.add(name)
    return problems + [f"{name}: not documented" for name in specs if name not in seen]


def test_every_hook_spec_says_when_it_is_called():
    silent = [
        name for name, spec in hook_specs().items()
        if not any(p.startswith("Fires ") for p in (inspect.getdoc(spec) or "").split("\n\n"))
    ]
    assert not silent, f"these hook specs' docstrings need a paragraph starting 'Fires ...' that says when: {silent}"


def test_hooks_md_is_up_to_date():
    text = HOOKS_MD.read_text() if HOOKS_MD.exists() else ""
    assert text == render_hooks_markdown(), "docs/hooks.md is out of date: run `.venv/bin/python -m sslx.hookdocs --write`"


def test_hooks_md_documents_every_hook_with_its_signature():
    assert signature_problems(HOOKS_MD.read_text()) == []


def _without_block(text: str, hook: str) -> str:
    return re.sub(rf"^```python\ndef {hook}\(.*\n```\n", "", text, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        (lambda t: t.replace("(run: RunContext, step: int,", "(run: RunContext, step: float,"), "sslx_step_finished: documented as"),
        (lambda t: t.replace("(run: RunContext, step: int,", "(step: int, run: RunContext,"), "sslx_step_finished: documented as"),
        (lambda t: t.replace(", lr: float) -> None", ") -> None"), "sslx_step_finished: documented as"),
        (lambda t: t.replace("def sslx_run_started(run: RunContext) -> None", "def sslx_run_started(run: RunContext) ->"),
         "sslx_run_started: documented as"),
        (lambda t: _without_block(t, "sslx_run_finished"), "sslx_run_finished: not documented"),
        (lambda t: t + "\n```python\ndef sslx_run_paused(run: RunContext) -> None\n```\n", "sslx_run_paused: documented, but"),
        (lambda t: t + "\n```python\ndef sslx_run_started(run: RunContext) -> None\n```\n", "sslx_run_started: documented twice"),
    ],
    ids=["annotation", "order", "missing-argument", "not-python", "missing-hook", "unknown-hook", "twice"],
)
def test_signature_check_reports_the_hook_a_page_gets_wrong(mistake, expected):
    text = HOOKS_MD.read_text()
    wrong = mistake(text)
    assert wrong != text, "the mistake no longer applies to docs/hooks.md: update this test"
    problems = signature_problems(wrong)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_examples_are_valid_hook_implementations():
    """Each example registers with the host's hook specs: hook names exist and
    take a subset of the spec's arguments."""
    examples = [code for code in PYTHON_BLOCK.findall(HOOKS_MD.read_text()) if "@sslx.hookimpl" in code]
    assert examples
    for i, code in enumerate(examples):
        module = types.ModuleType(f"hooks_md_example_{i}")
        exec(compile(code, "docs/hooks.md", "exec"), module.__dict__)
        pm = PluginHost().pm
        pm.register(module)
        pm.check_pending()  # raises for an implementation of no hook
