"""pytest fixtures of the conformance kit (``pytest_plugins = ["anyconv.testing.fixtures"]``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .data import TESTDATA_ENV, find_testdata


@pytest.fixture(scope="session")
def testdata(request: pytest.FixtureRequest) -> Path:
    """The shared corpus; missing is a failure in CI (``$CI`` set), a skip elsewhere."""
    path = find_testdata(Path(str(request.config.rootpath)))
    if path is None:
        msg = f"shared test corpus not found (../shared/testdata or ${TESTDATA_ENV})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def anyconv_executable() -> str:
    """The installed ``anyconv`` script beside this interpreter, else on PATH."""
    exe = Path(sys.executable).parent / "anyconv"
    found = str(exe) if exe.exists() else shutil.which("anyconv")
    if not found:
        pytest.fail("the anyconv executable is not installed")
    return found


@pytest.fixture
def run_cli() -> Callable[..., tuple[int, str, str]]:
    """Run the installed executable: ``run_cli(*args) -> (exit code, stdout, stderr)``."""

    def run(
        *args: object, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(
            [anyconv_executable(), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=full_env,
            timeout=300,
            check=False,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run
