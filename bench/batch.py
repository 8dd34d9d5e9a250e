"""Batch throughput and memory: 1 and 2 workers and a local Dask cluster; RSS at 100 vs 1,000.

Usage: uv run python bench/batch.py [--series 1000]
Each series is a small synthetic NIfTI volume (64x64x24 int16) in its own folder.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

EXE = str(Path(sys.executable).parent / "anyconv")


def make(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    for i in range(n):
        folder = root / f"s{i:05d}"
        folder.mkdir(parents=True)
        data = rng.integers(0, 3000, (64, 64, 24)).astype(np.int16)
        nib.save(nib.Nifti1Image(data, affine), str(folder / "vol.nii"))


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the child and its workers."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([EXE, "batch", *args, "-q"], check=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=1000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"{'run':<28} {'series':>6} {'wall s':>7} {'series/s':>9}")
        for n in (100, opts.series):
            src = root / f"src{n}"
            make(src, n)
            for label, extra in (
                ("anyconv batch -j 1", ["-j", "1"]),
                ("anyconv batch -j 2", ["-j", "2"]),
                ("anyconv batch --dask -j 2", ["--dask", "-j", "2"]),
            ):
                out = root / "out"
                wall, _ = run([str(src), str(out), *extra])
                shutil.rmtree(out)
                print(f"{label:<28} {n:>6} {wall:7.2f} {n / wall:9.1f}")
        # Peak RSS of a single-worker run, in a fresh child per size (ru_maxrss is a maximum).
        for n in (100, opts.series):
            code = (
                "import resource, subprocess, sys;"
                f"subprocess.run([{EXE!r}, 'batch', {str(root / f'src{n}')!r}, "
                f"{str(root / f'rss{n}')!r}, '-j', '1', '-q'], check=True);"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            print(f"peak RSS, {n:>5} series, -j 1: {float(out.stdout.strip()):.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
