"""Tools for plugin authors, as ``sslx`` commands: ``sslx new-plugin`` makes
a plugin distribution from the templates (see :mod:`sslx_authoring.scaffold`)
and ``sslx hookdocs`` renders and checks the hook reference, docs/hooks.md
(see :mod:`sslx_authoring.hookdocs`).

This module is the plugin's entry point, loaded by every ``sslx`` command,
so it imports only click and sslx's light modules: each command imports its
machinery when it runs.
"""

from __future__ import annotations

from pathlib import Path

import click

import sslx
from sslx.errors import UserError
from sslx.registry import KIND_NAMES

INSTALL = "pip install --no-build-isolation -e '.[test]'"
"""How a plugin is installed for development, wherever sslx says it."""


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(KIND_NAMES),
    default="objective",
    show_default=True,
    help="The kind of the component to start from.",
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    help="The folder to create sslx-NAME/ in (default: the current folder).",
)
def new_plugin_command(name: str, kind: str, parent: Path) -> None:
    """Create sslx-NAME/ (with - for _), a plugin distribution ready to
    install: one working KIND component registered as NAME (edit it into
    yours), its tests on the conformance kit, an experiment that trains it, a
    README."""
    from sslx.plugins import load_plugins
    from sslx_authoring import scaffold

    scaffold.check_name(name)  # before loading the plugins, which new_plugin checks the name against
    root = scaffold.new_plugin(name, kind, parent, load_plugins())
    click.echo(
        f"Created {root}/: the {kind} {name!r} in src/sslx_{name}/__init__.py. Next:\n\n"
        f"  cd {root}\n"
        f"  {INSTALL}\n"
        f"  python -m pytest\n"
        f"  sslx run experiments/{name}.json"
    )


@click.command("hookdocs")
@click.option("--write", is_flag=True, help="Write the page to docs/hooks.md of sslx's source checkout.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit with status 1, saying why, when docs/hooks.md of sslx's source "
    "checkout is not the page the hook specs make.",
)
@click.pass_context
def hookdocs_command(ctx: click.Context, write: bool, check: bool) -> None:
    """Render the hook reference, docs/hooks.md, from sslx's hook specs
    (core/sslx/hookspecs.py) and print it; or write it, or check it."""
    from sslx_authoring.hookdocs import docs_page, page_problems, render_hooks_markdown

    if write and check:
        raise UserError("give --write or --check, not both: --check tells whether --write would change the page.")
    if not (write or check):
        click.echo(render_hooks_markdown(), nl=False)
        return
    page = docs_page()
    if write:
        page.write_text(render_hooks_markdown())
        click.echo(f"wrote {page}", err=True)
        return
    problems = page_problems(page.read_text() if page.exists() else "")
    if problems:
        click.secho(
            f"{page} is out of date with the hook specs; run `sslx hookdocs --write` and review the "
            f"change:\n" + "\n".join(f"- {p}" for p in problems),
            err=True,
            fg="red",
        )
        ctx.exit(1)
    click.echo(f"{page} is up to date with the hook specs.", err=True)


@sslx.hookimpl
def sslx_register_commands(cli: click.Group) -> None:
    cli.add_command(new_plugin_command)
    cli.add_command(hookdocs_command)
