"""MINC2 read/write speed on a 256^3 volume: anyconv-minc next to nibabel (and minc-tools).

Usage: uv run python bench/bench_minc.py [--size 256] [--repeat 3]

Reads are timed to real (scaled) values in memory: ``Image.values()`` for anyconv,
``np.asarray(img.dataobj)`` for nibabel (its MINC2 reader, float64). Three files are read:
ours with one scale (int16 + slope), ours uncompressed, and a slice-wise scaled file made by
minc-tools' rawtominc. nibabel cannot write MINC, so writes list anyconv alone (and
rawtominc -2 when installed). Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyconv_minc.plugin as plugin
import nibabel as nib
import numpy as np
from anyconv.model import Image
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import synthetic_affine


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def phantom(n: int) -> np.ndarray:
    """A smooth int16 head-like phantom with noise: compresses like real MRI, not like zeros."""
    rng = np.random.default_rng(0)
    ax = np.linspace(-1, 1, n, dtype=np.float32)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij", sparse=True)
    r = np.sqrt(x**2 / 0.8 + y**2 + z**2 / 0.9)
    vol = np.where(r < 0.9, 800 + 300 * np.cos(6 * r), 0).astype(np.float32)
    vol += rng.normal(0, 20, size=vol.shape).astype(np.float32)
    return np.clip(vol, 0, 32767).astype(np.int16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.size, args.repeat
    reg = Registry(plugins=[plugin], entry_points=False)
    data = phantom(n)
    img = Image(data, synthetic_affine(zooms=(1.0, 1.0, 1.0)), slope=0.25, inter=-2.0)
    mib = data.nbytes / 2**20
    rows: list[tuple[str, str, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gz, raw = folder / "gz.mnc", folder / "raw.mnc"

        def write(path: Path, level: int | None) -> None:
            reg.write(img, path, force=True, options=WriteOptions(compress_level=level))

        rows.append(("write", "anyconv gzip 4 (default)", best(lambda: write(gz, None), repeat)))
        rows.append(("write", "anyconv uncompressed", best(lambda: write(raw, 0), repeat)))
        slices = folder / "slices.mnc"
        rawtominc = shutil.which("rawtominc")
        if rawtominc:
            src = folder / "in.raw"
            (
                data.astype(np.float32) * np.linspace(0.5, 3, n, dtype=np.float32)[:, None, None]
            ).T.tofile(src)
            cmd = [rawtominc, "-2", "-clobber", "-float", "-oshort", "-scan_range"]
            cmd += ["-input", str(src), str(slices), str(n), str(n), str(n)]
            rows.append(
                (
                    "write",
                    "rawtominc -2 (slice-scaled)",
                    best(lambda: subprocess.run(cmd, check=True), repeat),
                )
            )
        for label, path in (("gzip 4", gz), ("uncompressed", raw), ("rawtominc slices", slices)):
            if not path.exists():
                continue
            ours = best(lambda p=path: reg.read(p)[0].values(), repeat)
            theirs = best(lambda p=path: np.asarray(nib.load(str(p)).dataobj), repeat)
            rows.append((f"read {label}", "anyconv-minc", ours))
            rows.append((f"read {label}", "nibabel Minc2Image", theirs))
        sizes = {p.name: p.stat().st_size / 2**20 for p in (gz, raw, slices) if p.exists()}
        # Same values from both readers, so the race is fair.
        a = reg.read(slices if slices.exists() else gz)[0].values()
        b = np.asarray(nib.load(str(slices if slices.exists() else gz)).dataobj)
        agree = np.allclose(a, np.transpose(b), rtol=1e-6, atol=1e-6 * float(np.abs(b).max()))
    print(f"MINC2 {n}^3 int16 ({mib:.0f} MiB in memory), best of {repeat}")
    print(f"{'operation':<24} {'tool':<30} {'seconds':>8} {'MiB/s':>8}")
    for op, who, sec in rows:
        speed = mib / sec if sec else float("nan")
        print(f"{op:<24} {who:<30} {sec:>8.3f} {speed:>8.0f}")
    print("file sizes (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    print(f"anyconv and nibabel values agree: {agree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
