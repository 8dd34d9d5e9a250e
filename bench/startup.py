"""Start-up cost of the CLI next to a bare interpreter, in one hyperfine run.

Usage: uv run python bench/startup.py [--runs N]
Target (issue 3): `anyconv --help` and `anyconv formats` under 200 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    exe = Path(sys.executable).parent / "anyconv"
    if shutil.which("hyperfine") is None:
        print("hyperfine is not installed (apt-get install hyperfine)", file=sys.stderr)
        return 1
    commands = {
        "python -c pass": f"{sys.executable} -c pass",
        "anyconv --help": f"{exe} --help",
        "anyconv formats": f"{exe} formats",
        "anyconv --version": f"{exe} --version",
    }
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        cmd = ["hyperfine", "--warmup", "3", "--runs", str(args.runs), "-N", "--export-json"]
        cmd += [str(report)]
        for name, line in commands.items():
            cmd += ["-n", name, line]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(report.read_text())["results"]
    print(f"{'command':<20} {'mean ms':>8} {'stddev':>7} {'min ms':>7}  target")
    for r in results:
        target = "" if r["command"].startswith("python") else ("ok" if r["mean"] < 0.2 else "SLOW")
        print(
            f"{r['command']:<20} {r['mean'] * 1e3:8.1f} {r['stddev'] * 1e3:7.1f} "
            f"{r['min'] * 1e3:7.1f}  {target}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
