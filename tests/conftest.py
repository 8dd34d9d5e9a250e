import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def anyconv_exe() -> str:
    exe = Path(sys.executable).parent / "anyconv"
    found = str(exe) if exe.exists() else shutil.which("anyconv")
    assert found, "the anyconv executable is not installed"
    return found


@pytest.fixture
def run_cli():
    """Run the installed executable: (exit code, stdout, stderr)."""

    def run(*args, cwd=None, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(
            [anyconv_exe(), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=full_env,
            timeout=120,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run
