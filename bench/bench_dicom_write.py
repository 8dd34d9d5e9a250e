"""DICOM series writing: anyconv against SimpleITK's series writer, side by side.

Usage: uv run python bench/bench_dicom_write.py [--runs N] [--size 256x256x200]

One oblique int16 volume (256x256x200 by default) is saved as an uncompressed NIfTI; each
tool reads it and writes a classic DICOM series, one file per slice:

* ``anyconv in.nii out/ --to dicom`` (the CLI, its start-up included);
* SimpleITK as its own example "Dicom Series From Array" does it: ``ReadImage``, then one
  ``ImageFileWriter`` call per slice with the series tags set and
  ``KeepOriginalImageUIDOn`` (https://simpleitk.readthedocs.io, DicomSeriesFromArray).

Wall time (hyperfine median, 1 warm-up) and peak RSS (``/usr/bin/time -v``, one extra run)
are printed side by side; both outputs are checked to hold the same number of files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PY = sys.executable
ANYCONV = str(Path(sys.executable).parent / "anyconv")

SITK_SERIES_WRITER = r"""
import sys, time
import SimpleITK as sitk
src, out = sys.argv[1], sys.argv[2]
image = sitk.ReadImage(src)
writer = sitk.ImageFileWriter()
writer.KeepOriginalImageUIDOn()
date, clock = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
uid = "1.2.826.0.1.3680043.2.1125." + date + ".1" + clock
direction = image.GetDirection()
series_tags = [
    ("0008|0031", clock), ("0008|0021", date), ("0008|0008", "DERIVED\\SECONDARY"),
    ("0020|000d", uid + ".1"), ("0020|000e", uid + ".2"),
    ("0020|0037", "\\".join(map(str, (direction[0], direction[3], direction[6],
                                      direction[1], direction[4], direction[7])))),
    ("0008|103e", "bench"), ("0008|0060", "MR"),
]
for i in range(image.GetDepth()):
    slice_ = image[:, :, i]
    for tag, value in series_tags:
        slice_.SetMetaData(tag, value)
    slice_.SetMetaData("0008|0012", date)
    slice_.SetMetaData("0008|0013", clock)
    origin = image.TransformIndexToPhysicalPoint((0, 0, i))
    slice_.SetMetaData("0020|0032", "\\".join(map(str, origin)))
    slice_.SetMetaData("0020|0013", str(i + 1))
    writer.SetFileName(f"{out}/slice_{i:04d}.dcm")
    writer.Execute(slice_)
"""


def make_input(folder: Path, shape: tuple[int, int, int]) -> Path:
    """An oblique, anisotropic int16 volume with a smooth head-like pattern and noise."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    r = np.sqrt(x**2 / 0.8 + y**2 + z**2 / 0.9)
    vol = np.where(r < 0.9, 800 + 300 * np.cos(6 * r), 0).astype(np.float32)
    vol += rng.normal(0, 20, size=vol.shape).astype(np.float32)
    data = np.clip(vol, 0, 4000).astype(np.int16)
    a = np.deg2rad(12.0)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 0.9, 1.2])
    affine[:3, 3] = [-115.0, -120.0, -90.0]
    path = folder / "in.nii"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def peak_rss_mb(cmd: list[str]) -> float:
    """Maximum resident set size of one run, from GNU time."""
    run = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{run.stderr[-2000:]}")
    for line in run.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1]) / 1024
    return float("nan")


def main() -> None:
    """Time both writers on the same input and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="256x256x200")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.size.lower().split("x"))
    assert len(shape) == 3
    with tempfile.TemporaryDirectory(prefix="bench-dicom-write-") as tmp:
        folder = Path(tmp)
        src = make_input(folder, shape)  # type: ignore[arg-type]
        (folder / "sitk.py").write_text(SITK_SERIES_WRITER)
        out_a, out_s = folder / "out_anyconv", folder / "out_sitk"
        commands = {
            "anyconv": f"{ANYCONV} {src} {out_a}/ --to dicom --force",
            "SimpleITK": f"{PY} {folder / 'sitk.py'} {src} {out_s}",
        }
        out_s.mkdir()
        report = folder / "hyperfine.json"
        subprocess.run(
            [
                "hyperfine",
                "--warmup",
                "1",
                "--runs",
                str(args.runs),
                "--export-json",
                str(report),
                "--style",
                "none",
                *commands.values(),
            ],
            check=True,
            capture_output=True,
        )
        results = json.loads(report.read_text())["results"]
        rows = []
        for (name, cmd), result in zip(commands.items(), results, strict=True):
            if name == "anyconv":
                shutil.rmtree(out_a, ignore_errors=True)
            rss = peak_rss_mb(cmd.split())
            rows.append((name, result["median"], result["user"] + result["system"], rss))
        n_a = len(list(out_a.glob("*.dcm")))
        n_s = len(list(out_s.glob("*.dcm")))
        assert n_a == n_s == shape[2], (n_a, n_s)
        size_a = sum(p.stat().st_size for p in out_a.glob("*.dcm")) / 2**20
        size_s = sum(p.stat().st_size for p in out_s.glob("*.dcm")) / 2**20
        print(f"# DICOM series write, {args.size} int16 from NIfTI, {args.runs} runs")
        print()
        print("| tool | wall median (s) | CPU (s) | peak RSS (MB) | output (MiB) |")
        print("|---|---:|---:|---:|---:|")
        sizes = {"anyconv": size_a, "SimpleITK": size_s}
        for name, median, cpu, rss in rows:
            print(f"| {name} | {median:.2f} | {cpu:.2f} | {rss:.0f} | {sizes[name]:.1f} |")


if __name__ == "__main__":
    main()
