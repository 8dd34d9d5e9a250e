"""Benchmark anyconv against the peer tools that apply, in one run, and write a markdown table.

Usage: uv run python bench/run.py [--quick] [--runs N] [--out FILE] [--keep] [--only TEXT]

Generates its own data in a temporary folder: a CT-like DICOM series (512x512xN int16, oblique;
N=500, or 60 with --quick), an fMRI-like classic DICOM series (64x64x36 x T volumes, one file
per slice; T=200, or 10 with --quick) and a 256^3 int16 volume written by anyconv in every
format it can write. Each case is one hyperfine run of anyconv next to every peer that is
installed and succeeds on the input (dcm2niix, SimpleITK, nibabel, minc-tools); peers run as
their CLI or a ``python -c`` snippet, so every tool pays its own start-up. Columns: wall median
(hyperfine), CPU seconds (user+sys means from hyperfine's JSON), peak RSS (``/usr/bin/time``
on one extra run, which also checks the peer applies), and the ratio to the best peer's median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_dicom import TESTDATA, make_ct, make_mosaic

PY = sys.executable
ANYCONV = str(Path(sys.executable).parent / "anyconv")

SITK_RW = "import SimpleITK as s, sys; s.WriteImage(s.ReadImage(sys.argv[1]), sys.argv[2])"
SITK_SERIES = (
    "import SimpleITK as s, sys; r = s.ImageSeriesReader(); "
    "r.SetFileNames(s.ImageSeriesReader.GetGDCMSeriesFileNames(sys.argv[1])); "
    "s.WriteImage(r.Execute(), sys.argv[2])"
)
NIB_RW = "import nibabel as n, sys; n.save(n.load(sys.argv[1]), sys.argv[2])"
#: Output suffixes SimpleITK, nibabel and minc-tools write without compression by default.
UNCOMPRESSED_BY_PEERS = (".nrrd", ".mha", ".mnc", ".nhdr", ".mhd")
# dicom2nifti as its users call it (its default reorients to LAS; gzip when compression=True)
DICOM2NIFTI = (
    "import dicom2nifti, sys; "
    "dicom2nifti.convert_directory(sys.argv[1], sys.argv[2], compression=sys.argv[3] == 'gz')"
)


@dataclass
class Row:
    """One tool's figures in one case."""

    tool: str
    median: float
    cpu: float
    rss_mb: float


@dataclass
class Case:
    """Commands converting the same input to the same kind of output; ``anyconv`` is first."""

    name: str
    commands: dict[str, str]
    writes: bool = True
    rows: list[Row] = field(default_factory=list)
    out_mb: float = 0.0


def make_fmri(folder: Path, nvols: int) -> None:
    """Classic (one slice per file) EPI series, 64x64x36 x ``nvols``, as scanners export it."""
    import pydicom  # noqa: F401  (bench_dicom imports it too; keeps the dependency explicit)
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    brain = ((xx**2 + yy**2) < 0.7).astype(np.int16) * 600
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    n = 0
    for v in range(nvols):
        for s in range(36):
            n += 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.Manufacturer = "MR", "SYNTH"
            ds.SeriesInstanceUID, ds.StudyInstanceUID = series, study
            ds.FrameOfReferenceUID = frame
            ds.SeriesNumber, ds.InstanceNumber = 5, n
            ds.AcquisitionNumber, ds.TemporalPositionIdentifier = v + 1, v + 1
            ds.SeriesDescription = ds.ProtocolName = "bold"
            ds.ScanningSequence, ds.SequenceVariant = "EP", "SK"
            ds.RepetitionTime, ds.EchoTime = 2000.0, 30.0
            sec = 36000 + 2 * v
            ds.AcquisitionTime = f"{sec // 3600:02d}{sec // 60 % 60:02d}{sec % 60:02d}"
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9848078, -0.1736482]
            ds.ImagePositionPatient = [-120.0, -110.0 + 0.6945927 * s, -20 + 3.9392310 * s]
            ds.PixelSpacing = [3.75, 3.75]
            ds.SliceThickness, ds.SpacingBetweenSlices = 4.0, 4.0
            ds.Rows = ds.Columns = 64
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            noise = rng.integers(0, 30, size=(64, 64), dtype=np.int16)
            ds.PixelData = (brain + noise).astype(np.int16).tobytes()
            ds.save_as(folder / f"MR{n:06d}.dcm", enforce_file_format=True)


def phantom(n: int) -> np.ndarray:
    """Smooth int16 head-like volume with noise: compresses like a real scan, not like zeros."""
    rng = np.random.default_rng(0)
    ax = np.linspace(-1, 1, n, dtype=np.float32)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij", sparse=True)
    r = np.sqrt(x**2 / 0.8 + y**2 + z**2 / 0.9)
    vol = np.where(r < 0.9, 800 + 300 * np.cos(6 * r), 0).astype(np.float32)
    vol += rng.normal(0, 20, size=vol.shape).astype(np.float32)
    return np.clip(vol, 0, 4000).astype(np.int16)


def write_volumes(folder: Path, n: int) -> dict[str, Path]:
    """The phantom in every format anyconv writes (first suffix of each writer, .nii, .nii.gz).

    The affine is oblique and anisotropic; a format that cannot hold obliquity gets it with
    ``lossy=True`` (same voxels, nearest axis-aligned grid). Each format has its own folder;
    one that wrote a series of files (DICOM) is read back as that folder."""
    import anyconv
    from anyconv.errors import AnyconvError, LossyConversionError
    from anyconv.model import Image

    a, b = np.deg2rad(10.0), np.deg2rad(5.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([1.1, 1.0, 0.9])
    affine[:3, 3] = -affine[:3, :3] @ np.full(3, (n - 1) / 2)
    img = Image(phantom(n), affine)
    made: dict[str, Path] = {}
    for spec in anyconv.get_registry().writers():
        nifti = tuple(e for e in (".nii", ".nii.gz") if e in spec.extensions)
        for ext in spec.extensions[:1] + nifti:
            if ext in made:
                continue
            path = folder / ext.strip(".").replace(".", "_") / f"vol{ext}"
            try:
                try:
                    anyconv.write(img, path, fmt=spec.format, force=True)
                except LossyConversionError:
                    anyconv.write(img, path, fmt=spec.format, force=True, lossy=True)
            except AnyconvError as exc:  # a writer that refuses this volume is reported
                print(f"  skip {ext}: {exc}", file=sys.stderr)
                continue
            files = list(path.parent.iterdir())
            made[ext] = path.parent if len(files) > 2 else path
    return made


def peak_rss(cmd: str, out: Path, writes: bool = True) -> float | None:
    """Peak RSS in MB of one run of ``cmd`` (output folder cleared first), or None if it fails
    (or, when it ``writes``, leaves the output folder empty)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "sh", "-c", cmd + " >/dev/null 2>&1"],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0 or (writes and not any(out.iterdir())):
        return None
    return int(res.stderr.strip().splitlines()[-1]) / 1024


def run_case(case: Case, out: Path, runs: int, tmp: Path) -> None:
    """Check each command on one run (and take its peak RSS), then time the ones that work."""
    rss: dict[str, float] = {}
    for tool, cmd in case.commands.items():
        got = peak_rss(cmd, out, case.writes)
        if got is None:
            if tool == "anyconv":
                print(f"  anyconv FAILED: {cmd}", file=sys.stderr)
            continue
        rss[tool] = got
        if tool == "anyconv":
            case.out_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    if not rss:
        return
    report = tmp / "hf.json"
    args = ["hyperfine", "--runs", str(runs), "--export-json", str(report), "--style", "none"]
    args += ["--prepare", f"rm -rf {shlex.quote(str(out))} && mkdir -p {shlex.quote(str(out))}"]
    for tool in rss:
        args += ["-n", tool, case.commands[tool] + " >/dev/null 2>&1"]
    res = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:  # hyperfine's cache warnings are noise here; its errors are not
        raise SystemExit(f"hyperfine failed on {case.name}:\n{res.stderr}")
    for r in json.loads(report.read_text())["results"]:
        tool = r["command"]
        case.rows.append(Row(tool, r["median"], r["user"] + r["system"], rss[tool]))


def dicom_cases(
    folder: Path, label: str, out: Path, sitk_series: bool, gz: bool = True
) -> list[Case]:
    """Series -> .nii and -> .nii.gz: anyconv, dcm2niix (pigz, and its own one-thread gzip),
    dicom2nifti when installed, SimpleITK's series reader for single 3D series."""
    q = shlex.quote(str(folder))
    o = shlex.quote(str(out))
    cases = []
    pairs = ((".nii", ("n",)), (".nii.gz", ("y", "i"))) if gz else ((".nii", ("n",)),)
    for ext, zs in pairs:
        cmds = {"anyconv": f"{ANYCONV} {q} {o}/x{ext} --no-sidecar -q"}
        for z in zs:
            name = "dcm2niix" + {"y": " (pigz)", "i": " (1-thread gzip)"}.get(z, "")
            cmds[name] = f"dcm2niix -z {z} -b n -o {o} -f x {q}"
        if sitk_series:
            cmds["SimpleITK series"] = f"{PY} -c {shlex.quote(SITK_SERIES)} {q} {o}/x{ext}"
        if _have("dicom2nifti"):
            kind = "gz" if ext.endswith(".gz") else "nii"
            cmds["dicom2nifti"] = f"{PY} -c {shlex.quote(DICOM2NIFTI)} {q} {o} {kind}"
        cases.append(Case(f"{label} -> {ext}", cmds))
    return cases


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def make_compressed(src: Path, dest: Path, kind: str) -> bool:
    """The CT series re-encoded losslessly: ``jpeg`` (JPEG Lossless SV1, dcmtk's dcmcjpeg)
    or ``j2k`` (JPEG 2000 Lossless, pydicom + pylibjpeg-openjpeg). False if no encoder."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    dest.mkdir(parents=True)
    files = sorted(src.iterdir())
    if kind == "jpeg":
        if shutil.which("dcmcjpeg") is None:
            return False
        for f in files:  # default: lossless, first-order prediction (process 14 SV1)
            subprocess.run(["dcmcjpeg", str(f), str(dest / f.name)], check=True)
        return True
    for f in files:
        ds = pydicom.dcmread(f)
        ds.compress(JPEG2000Lossless)
        ds.save_as(dest / f.name)
    return True


def make_enhanced(src: Path, dest: Path) -> bool:
    """The CT series as one enhanced multi-frame instance, written by anyconv's DICOM writer."""
    cmd = [ANYCONV, str(src), f"{dest}/", "--to", "dicom", "-O", "layout=enhanced", "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"  no enhanced series: {res.stderr.strip()}", file=sys.stderr)
        return False
    return True


def volume_cases(vols: dict[str, Path], n: int, out: Path, both_ways: bool) -> list[Case]:
    """Every written format -> .nii (and with ``both_ways`` .nii -> every format)."""
    o = shlex.quote(str(out))
    cases = []
    pairs = [(ext, ".nii") for ext in vols if ext != ".nii"]
    if both_ways:
        pairs += [(".nii", ext) for ext in vols if ext != ".nii"]
    for src_ext, dst_ext in pairs:
        src = shlex.quote(str(vols[src_ext]))
        dst = f"{o}/x{dst_ext}"
        if vols[src_ext].is_dir():  # a DICOM series written by anyconv
            cmds = {
                "anyconv": f"{ANYCONV} {src} {dst} --no-sidecar -q",
                "dcm2niix": f"dcm2niix -z n -b n -o {o} -f x {src}",
                "SimpleITK series": f"{PY} -c {shlex.quote(SITK_SERIES)} {src} {dst}",
            }
            cases.append(Case(f"{n}^3 {src_ext} series -> {dst_ext}", cmds))
            continue
        # --lossy: peers drop obliquity silently where a format cannot hold it. Outputs the
        # peers write uncompressed (.nrrd, .mha, .mnc: anyconv compresses them by default)
        # are written uncompressed by anyconv too, so every tool does the same work.
        plain = " --compress-level 0" if dst_ext in UNCOMPRESSED_BY_PEERS else ""
        cmds = {
            "anyconv": f"{ANYCONV} {src} {dst} --no-sidecar -q --lossy{plain}",
            "nibabel": f"{PY} -c {shlex.quote(NIB_RW)} {src} {dst}",
            "SimpleITK": f"{PY} -c {shlex.quote(SITK_RW)} {src} {dst}",
        }
        if src_ext == ".mnc" and shutil.which("mnc2nii"):
            cmds["minc-tools mnc2nii"] = f"mnc2nii -quiet {src} {dst}"
        if dst_ext == ".mnc" and shutil.which("nii2mnc"):
            cmds["minc-tools nii2mnc"] = f"nii2mnc -quiet {src} {dst}"
        cases.append(Case(f"{n}^3 {src_ext} -> {dst_ext}", cmds))
    return cases


def table(cases: list[Case]) -> list[str]:
    """Markdown table; ratio = this tool's median / the best peer's median (none for start-up,
    whose other row is the interpreter's floor, not a peer)."""
    lines = [
        "| case | tool | wall median s | CPU s | peak RSS MB | out MB | ratio to best peer |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        peers = [r.median for r in case.rows if r.tool != "anyconv"]
        best = min(peers) if peers else None
        for r in case.rows:
            ratio = f"{r.median / best:.2f}" if best and case.writes else "-"
            out_mb = f"{case.out_mb:.0f}" if r.tool == "anyconv" else ""
            lines.append(
                f"| {case.name} | {r.tool} | {r.median:.3f} | {r.cpu:.2f} | {r.rss_mb:.0f} "
                f"| {out_mb} | {ratio} |"
            )
    return lines


def startup_case() -> Case:
    """`anyconv --help` next to a bare interpreter (target: under 200 ms)."""
    cmds = {"anyconv": f"{ANYCONV} --help", "python -c pass (floor)": f"{PY} -c pass"}
    return Case("startup: --help", cmds, writes=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small series, one direction")
    parser.add_argument("--runs", type=int, help="hyperfine runs per command (3, or 2 quick)")
    parser.add_argument("--out", type=Path, help="markdown file (bench/results-<date>.md)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic volume")
    parser.add_argument("--slices", type=int, help="CT slices (500, or 60 quick)")
    parser.add_argument("--volumes", type=int, help="fMRI volumes (200, or 10 quick)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="time only the cases whose name contains TEXT (repeatable), e.g. 'CT 512x512x500 "
        "-> .nii' or '^3 .nrrd'; data nobody asked for is not generated",
    )
    args = parser.parse_args()
    for tool in ("hyperfine", "/usr/bin/time"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 1
    runs = args.runs or (2 if args.quick else 3)
    nslices = args.slices or (60 if args.quick else 500)
    nvols = args.volumes or (10 if args.quick else 200)
    stamp = dt.datetime.now(dt.UTC)
    report = args.out or Path(__file__).parent / f"results-{stamp:%Y-%m-%dT%H%MZ}.md"
    work = Path(tempfile.mkdtemp(prefix="anyconv_bench_"))
    out = work / "out"
    # Timed Python processes use bytecode as an installed package does: with
    # PYTHONDONTWRITEBYTECODE=1 and no .pyc (as in some CI shells) every run recompiled
    # nibabel, ~0.6 s. The cache goes to the work folder, so nothing is written elsewhere; the
    # untimed trial run of each command fills it.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        print(f"generating data in {work} ...", file=sys.stderr)
        only = [t.lower() for t in args.only or []]

        def wanted(*names: str) -> bool:
            return not only or any(t in n.lower() for t in only for n in names)

        def wanted_series(label: str) -> bool:
            return wanted(f"{label} -> .nii", f"{label} -> .nii.gz")

        ct = f"DICOM CT 512x512x{nslices}"
        derived = [f"{ct} JPEG Lossless", f"{ct} JPEG 2000", f"{ct} enhanced"]
        fmri = f"DICOM fMRI 64x64x36x{nvols}"
        mosaic = f"DICOM fMRI mosaic x{nvols}"
        cases = [startup_case()]
        if any(wanted_series(label) for label in [ct, *derived]):
            make_ct(work / "ct", nslices)
        if wanted_series(ct):
            cases += dicom_cases(work / "ct", ct, out, sitk_series=True)
        if wanted_series(fmri):
            make_fmri(work / "fmri", nvols)
            cases += dicom_cases(work / "fmri", fmri, out, False)
        if wanted_series(mosaic) and (TESTDATA / "dicom/siemens_trio_mosaic_ax_asc35").is_dir():
            make_mosaic(work / "mosaic", nvols)
            cases += dicom_cases(work / "mosaic", mosaic, out, False)
        if wanted_series(derived[0]) and make_compressed(work / "ct", work / "ct_jpeg", "jpeg"):
            cases += dicom_cases(work / "ct_jpeg", derived[0], out, True, gz=False)
        if wanted_series(derived[1]) and make_compressed(work / "ct", work / "ct_j2k", "j2k"):
            cases += dicom_cases(work / "ct_j2k", derived[1], out, True, gz=False)
        if wanted_series(derived[2]) and make_enhanced(work / "ct", work / "ct_enh"):
            cases += dicom_cases(work / "ct_enh", derived[2], out, False, gz=False)
        if not only or any("^3" in t for t in only):
            vols = write_volumes(work / "vol", args.size)
            cases += volume_cases(vols, args.size, out, both_ways=not args.quick)
        cases = [c for c in cases if wanted(c.name)]
        for case in cases:
            print(f"timing {case.name} ...", file=sys.stderr)
            run_case(case, out, runs, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    lines = table(cases)
    head = [
        f"# anyconv benchmark, {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`bench/run.py{' --quick' if args.quick else ''}`, hyperfine {runs} runs per command, "
        f"{_machine()}. Ratio < 1 means anyconv is faster than the best peer.",
        "",
    ]
    report.write_text("\n".join(head + lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {report}", file=sys.stderr)
    return 0


def _machine() -> str:
    """CPU count and load, so runs on a busy machine can be told apart."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPUs, load {load:.1f} at start of report"


if __name__ == "__main__":
    raise SystemExit(main())
