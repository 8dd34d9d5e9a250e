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
