"""DICOM to NIfTI: anyconv next to dcm2niix, wall time (hyperfine) and peak RSS.

Usage: uv run python bench/bench_dicom.py [--slices 500] [--volumes 200] [--runs 3]

Series: a CT-sized classic series (``--slices`` files of 512x512 int16, synthetic, oblique)
and an fMRI Siemens mosaic series (the corpus mosaic ``siemens_trio_mosaic_ax_asc35`` copied
to ``--volumes`` volumes with new instance numbers and UIDs). Each tool converts the same
folder to .nii and to .nii.gz (dcm2niix -z n / -z y, which uses pigz when present). Prints
both times, the ratio anyconv/dcm2niix, and peak RSS from /usr/bin/time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TESTDATA = Path(os.environ.get("ANYCONV_TESTDATA", Path(__file__).parents[2] / "shared/testdata"))


def make_ct(folder: Path, nslices: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:1:512j, -1:1:512j]
    body = ((xx**2 + yy**2) < 0.8).astype(np.int16) * 1040
    uid = generate_uid()
    for s in range(nslices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.Manufacturer = "CT", "SYNTH"
        ds.SeriesInstanceUID, ds.StudyInstanceUID = uid, "1.2.3"
        ds.SeriesNumber, ds.InstanceNumber = 2, s + 1
        ds.SeriesDescription = "ct"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9961947, -0.0871557]
        ds.ImagePositionPatient = [-250.0, -250.0 + 0.0545 * s, -300 + 0.6226 * s]
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.SliceThickness = 0.625
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        noise = rng.integers(0, 40, size=(512, 512), dtype=np.int16)
        ds.PixelData = (body + noise).astype(np.int16).tobytes()
        ds.save_as(folder / f"CT{s:05d}.dcm", enforce_file_format=True)


def make_mosaic(folder: Path, nvols: int) -> None:
    folder.mkdir(parents=True)
    src = sorted((TESTDATA / "dicom/siemens_trio_mosaic_ax_asc35").iterdir())[0]
    ds = pydicom.dcmread(src)
    ds.SeriesInstanceUID = generate_uid()
    for v in range(nvols):
        ds.InstanceNumber = v + 1
        ds.AcquisitionNumber = v + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"MR{v:05d}.dcm")


def hyperfine(commands: dict[str, str], runs: int, prepare: str) -> dict[str, float]:
    out = Path(tempfile.mkdtemp()) / "hf.json"
    args = ["hyperfine", "--runs", str(runs), "--prepare", prepare, "--export-json", str(out)]
    for name, cmd in commands.items():
        args += ["-n", name, cmd]
    subprocess.run(args, check=True, capture_output=True)
    data = json.loads(out.read_text())
    return {r["command"]: r["mean"] for r in data["results"]}


def peak_rss_mb(cmd: str) -> float:
    res = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "sh", "-c", cmd + " >/dev/null 2>&1"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(res.stderr.strip().splitlines()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--volumes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("hyperfine", "dcm2niix"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 1
    anyconv = shutil.which("anyconv") or f"{sys.executable} -m anyconv.cli"
    work = Path(tempfile.mkdtemp(prefix="bench_dicom_"))
    series = {
        f"CT 512x512x{args.slices}": work / "ct",
        f"mosaic 64x64x35x{args.volumes}": work / "mr",
    }
    make_ct(series[next(iter(series))], args.slices)
    make_mosaic(list(series.values())[1], args.volumes)
    out = work / "out"
    print(
        f"{'series':<22} {'output':<8} {'dcm2niix s':>11} {'anyconv s':>10} {'ratio':>6} "
        f"{'RSS d2n MB':>11} {'RSS any MB':>11} {'volume MB':>10}"
    )
    for label, folder in series.items():
        vol_mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        for suffix, z in ((".nii", "n"), (".nii.gz", "y")):
            d2n = f"dcm2niix -z {z} -b n -o {out} -f x {folder}"
            ours = f"{anyconv} {folder} {out}/x{suffix} --no-sidecar"
            prepare = f"rm -rf {out} && mkdir -p {out}"
            times = hyperfine({"dcm2niix": d2n, "anyconv": ours}, args.runs, prepare)
            subprocess.run(prepare, shell=True, check=True)
            rss_d = peak_rss_mb(d2n)
            subprocess.run(prepare, shell=True, check=True)
            rss_a = peak_rss_mb(ours)
            print(
                f"{label:<22} {suffix:<8} {times['dcm2niix']:>11.3f} {times['anyconv']:>10.3f} "
                f"{times['anyconv'] / times['dcm2niix']:>6.2f} {rss_d:>11.0f} {rss_a:>11.0f} "
                f"{vol_mb:>10.0f}"
            )
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
