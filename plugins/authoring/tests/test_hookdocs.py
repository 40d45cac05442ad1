"""docs/hooks.md and the hook specs: every spec says when it is called, the
committed page is what `sslx hookdocs` renders, and (checked apart from the
renderer) its signatures are the specs' and it documents every hook, no
more; its examples are valid hook implementations."""

from __future__ import annotations

import inspect
import re
import types

import pytest
from click.testing import CliRunner
from sslx_authoring.hookdocs import docs_page, hook_specs, page_problems, render_hooks_markdown, signature_problems

from sslx.cli import cli
from sslx.plugins import PluginHost

PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def page() -> str:
    """The committed docs/hooks.md."""
    return docs_page().read_text()


def test_every_hook_spec_says_when_it_is_called():
    silent = [
        spec.__name__
        for spec in hook_specs()
        if not any(p.startswith("Fires ") for p in (inspect.getdoc(spec) or "").split("\n\n"))
    ]
    assert not silent, f"these hook specs' docstrings need a paragraph starting 'Fires ...' that says when: {silent}"


def test_the_page_is_up_to_date_and_documents_every_hook(page):
    assert page_problems(page) == [], "run `sslx hookdocs --write`"
    result = CliRunner().invoke(cli, ["hookdocs", "--check"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(cli, ["hookdocs"]).stdout == render_hooks_markdown()


def test_a_stale_page_is_reported_with_the_hook_it_misses_and_the_fix(page):
    stale = re.sub(r"^### `sslx_run_observers`\n.*?(?=^### )", "", page, flags=re.MULTILINE | re.DOTALL)
    assert stale != page
    problems = page_problems(stale)
    assert problems[0] == "sslx_run_observers: not documented"
    assert problems[-1].startswith("the page differs from the rendering of the specs:\n")
    assert "+### `sslx_run_observers`" in problems[-1]


def test_write_and_check_together_are_refused():
    result = CliRunner().invoke(cli, ["hookdocs", "--write", "--check"])
    assert result.exit_code == 2 and "not both" in result.stderr


def _without_block(text: str, hook: str) -> str:
    return re.sub(rf"^```python\ndef {hook}\(.*\n```\n", "", text, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        (
            lambda t: t.replace("(run: RunContext, step: int,", "(run: RunContext, step: float,"),
            "sslx_step_finished: documented as",
        ),
        (
            lambda t: t.replace("(run: RunContext, step: int,", "(step: int, run: RunContext,"),
            "sslx_step_finished: documented as",
        ),
        (lambda t: t.replace(", lr: float) -> None", ") -> None"), "sslx_step_finished: documented as"),
        (
            lambda t: t.replace("sslx_run_started(run: RunContext) -> None", "sslx_run_started(run: RunContext) ->"),
            "sslx_run_started: documented as",
        ),
        (lambda t: t.replace("-> Sequence[Any] | None", "-> list[Any]"), "sslx_run_observers: documented as"),
        (lambda t: _without_block(t, "sslx_run_finished"), "sslx_run_finished: not documented"),
        (
            lambda t: t + "\n```python\ndef sslx_run_paused(run: RunContext) -> None\n```\n",
            "sslx_run_paused: documented, but",
        ),
        (
            lambda t: t + "\n```python\ndef sslx_run_started(run: RunContext) -> None\n```\n",
            "sslx_run_started: documented twice",
        ),
    ],
    ids=["annotation", "order", "missing-argument", "not-python", "return", "missing-hook", "unknown-hook", "twice"],
)
def test_the_signature_check_reports_the_hook_a_page_gets_wrong(page, mistake, expected):
    wrong = mistake(page)
    assert wrong != page, "the mistake no longer applies to docs/hooks.md: update this test"
    problems = signature_problems(wrong)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_examples_are_valid_hook_implementations(page):
    """Each example registers with the host's hook specs: hook names exist and
    take a subset of the spec's arguments."""
    examples = [code for code in PYTHON_BLOCK.findall(page) if "@sslx.hookimpl" in code]
    assert len(examples) == 4  # one per kind of hook
    for i, code in enumerate(examples):
        module = types.ModuleType(f"hooks_md_example_{i}")
        exec(compile(code, "docs/hooks.md", "exec"), module.__dict__)
        pm = PluginHost().pm
        pm.register(module)
        pm.check_pending()  # raises for an implementation of no hook
