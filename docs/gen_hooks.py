"""mkdocs hook: fill generated sections from the code itself, so docs cannot drift.

``<!-- anyconv:cli -->`` becomes the ``--help`` of every command; ``<!-- anyconv:formats -->``
the table of installed formats from the registry; ``<!-- anyconv:plugins -->`` the plugins.
"""

from __future__ import annotations

from typing import Any


def _cli_reference() -> str:
    from anyconv.cli import app
    from typer.main import get_command
    from typer.testing import CliRunner

    runner = CliRunner()
    group = get_command(app)
    parts = ["## anyconv", "", "```text", runner.invoke(app, ["--help"]).output.rstrip(), "```"]
    for name in group.commands:
        text = runner.invoke(app, [name, "--help"]).output.rstrip()
        parts += ["", f"## anyconv {name}", "", "```text", text, "```"]
    return "\n".join(parts)


def _formats_table() -> str:
    from anyconv import get_registry

    rows = [
        "| format | plugin | read | write | extensions | description |",
        "|---|---|---|---|---|---|",
    ]
    for e in get_registry().formats():
        exts = " ".join(f"`{x}`" for x in e["extensions"]) + (
            " (folder)" if e.get("directory") else ""
        )
        rows.append(
            f"| `{e['format']}` | {e['plugin']} | {'yes' if e['read'] else 'no'} | "
            f"{'yes' if e['write'] else 'no'} | {exts} | {e['description']} |"
        )
    return "\n".join(rows)


def _plugins_table() -> str:
    from anyconv import get_registry

    reg = get_registry()
    rows = ["| plugin | version | status | transforms |", "|---|---|---|---|"]
    transforms: dict[str, list[str]] = {}
    for t in reg.transforms():
        transforms.setdefault(t.plugin, []).append(t.name)
    for p in reg.plugins():
        names = ", ".join(transforms.get(p.name, []))
        rows.append(f"| {p.name} | {p.version or '-'} | {p.status} | {names} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the generated-section markers."""
    if "<!-- anyconv:cli -->" in markdown:
        markdown = markdown.replace("<!-- anyconv:cli -->", _cli_reference())
    if "<!-- anyconv:formats -->" in markdown:
        markdown = markdown.replace("<!-- anyconv:formats -->", _formats_table())
    if "<!-- anyconv:plugins -->" in markdown:
        markdown = markdown.replace("<!-- anyconv:plugins -->", _plugins_table())
    return markdown
