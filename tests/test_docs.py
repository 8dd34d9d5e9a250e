"""Docs stay in step with code: hooks documented, README's test command is what CI runs."""

import inspect
import re
from pathlib import Path

from anyconv import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def test_every_hook_and_argument_is_documented():
    text = (ROOT / "docs" / "hooks.md").read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("anyconv_")]
    assert hooks
    for name in hooks:
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)
        heading = f"## `{name}({', '.join(params)})`"
        assert heading in text, f"docs/hooks.md lacks {heading}"
        for p in params:
            assert f"`{p}`" in text


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in readme[:12] if line.startswith("    ")]
    assert len(commands) == 2, "README must open with two indented commands"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
    assert re.search(r"uv run anyconv \S+ \S+", commands[0])


def test_readme_sample_exists():
    readme = (ROOT / "README.md").read_text()
    sample = re.search(r"uv run anyconv (\S+)", readme).group(1)
    assert (ROOT / sample).is_file()


def test_mkdocs_build_strict_lists_every_command_and_plugin(tmp_path):
    import subprocess
    import sys

    from anyconv import get_registry
    from anyconv.cli import app
    from typer.main import get_command

    site = tmp_path / "site"
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)]
    proc = subprocess.run(mkdocs, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    cli = (site / "cli" / "index.html").read_text()
    for name in get_command(app).commands:
        assert f"anyconv {name}" in cli, name
    formats = (site / "formats" / "index.html").read_text()
    for plugin in get_registry().plugins():
        assert plugin.name in formats, plugin.name
    for fmt in get_registry().formats():
        assert f"<code>{fmt['format']}</code>" in formats, fmt["format"]


def test_getting_started_repeats_the_readme_commands():
    readme = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()[:12]]
    page = (ROOT / "docs" / "getting-started.md").read_text()
    for command in [line for line in readme if line.startswith("python3 -m pip")]:
        assert command in page
