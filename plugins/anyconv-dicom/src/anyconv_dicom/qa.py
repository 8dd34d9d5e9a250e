"""Compare our DICOM conversions with the corpus references (dcm2niix, vendor, pydicom).

``python -m anyconv_dicom.qa ../shared/testdata`` prints one row per reference output:
matched or not, the largest voxel difference, the largest affine difference (mm) after
mapping our voxel axes onto the reference's (dcm2niix may store a volume flipped, the world
coordinates must agree), b-value/vector differences and the key JSON fields that differ.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import geometry
from anyconv.model import Image
from anyconv.specs import ReadOptions

from .reader import read_dicom

#: Voxels match when they differ by at most this fraction of the reference's range:
#: stored integers are identical, but dcm2niix computes Philips slopes in float32.
VOXEL_RTOL = 2e-5
AFFINE_TOL = 1e-3
BVAL_TOL = 1e-4
BVEC_TOL = 1e-4
TIME_TOL = 1e-3
#: JSON keys compared with the dcm2niix sidecar (numbers within TIME_TOL).
KEY_FIELDS = (
    "EchoTime",
    "RepetitionTime",
    "FlipAngle",
    "SliceTiming",
    "PhaseEncodingDirection",
    "InversionTime",
    "SeriesNumber",
    "Manufacturer",
    "ManufacturersModelName",
    "MagneticFieldStrength",
    "SliceThickness",
    "EffectiveEchoSpacing",
    "TotalReadoutTime",
)
#: Keys whose mismatch makes a row fail (the issue's acceptance list).
REQUIRED_FIELDS = (
    "EchoTime",
    "RepetitionTime",
    "FlipAngle",
    "SliceTiming",
    "PhaseEncodingDirection",
)


@dataclass
class Row:
    """One reference output and how our best candidate compares."""

    case: str
    reference: str
    matched: bool = False
    voxel_diff: float | None = None
    affine_diff: float | None = None
    bval_diff: float | None = None
    bvec_diff: float | None = None
    fields: list[str] = field(default_factory=list)
    other_fields: list[str] = field(default_factory=list)
    same_orientation: bool | None = None
    note: str = ""

    def line(self) -> str:
        """The table row."""

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.3g}"

        return (
            f"| {self.case} | {self.reference} | {'yes' if self.matched else 'NO'} | "
            f"{num(self.voxel_diff)} | {num(self.affine_diff)} | {num(self.bval_diff)} | "
            f"{num(self.bvec_diff)} | {', '.join(self.fields) or '-'} | "
            f"{', '.join(self.other_fields) or '-'} | "
            f"{_yes_no(self.same_orientation)} | "
            f"{self.note} |"
        )


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


HEADER = (
    "| case | reference | matched | max voxel diff | max affine diff (mm) | bval diff | "
    "bvec diff | key JSON fields differing | other JSON fields differing or missing | "
    "same axes as ref | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


# -- reference readers ----------------------------------------------------------------------
def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real values and affine of a reference NIfTI (nibabel, the independent reader)."""
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.get_fdata(dtype=np.float64)), img.affine


def read_nhdr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A detached NRRD header written by dcm2niix (RAS space, raw or gzip data)."""
    fields: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines()[1:]:
        if ":" in line and not line.startswith("#") and ":=" not in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    sizes = [int(s) for s in fields["sizes"].split()]
    dtype = {"int16": "<i2", "short": "<i2", "uint16": "<u2", "float": "<f4", "uint8": "u1"}[
        fields["type"]
    ]
    vecs = [
        [float(v) for v in m.split(",")]
        for m in re.findall(r"\(([^)]*)\)", fields["space directions"])
    ]
    origin = [float(v) for v in fields["space origin"].strip("()").split(",")]
    raw = (path.parent / fields["data file"]).read_bytes()
    if fields.get("encoding") == "gzip":
        raw = gzip.decompress(raw)
    data = np.frombuffer(raw, dtype=dtype).reshape(sizes, order="F").astype(np.float64)
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(vecs).T
    affine[:3, 3] = origin
    if fields.get("space", "").startswith("left-posterior"):
        affine = geometry.lps_to_ras(affine)
    return data, affine


# -- comparison -----------------------------------------------------------------------------
def to_reference_axes(
    data: np.ndarray, affine: np.ndarray, ref_affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Our array and affine with voxel axes permuted/flipped to the reference's order.

    Returns the mapping too: for each of our axes, (reference axis, +1 or -1).
    """
    import nibabel.orientations as no

    ours = no.io_orientation(affine)
    theirs = no.io_orientation(ref_affine)
    xform = no.ornt_transform(ours, theirs)
    spatial = data.shape[:3]
    new = no.apply_orientation(data, xform)
    new_aff = affine @ no.inv_ornt_aff(xform, spatial)
    mapping = [(int(a), int(s)) for a, s in xform]
    return new, new_aff, mapping


def compare_volume(
    img: Image, ref_data: np.ndarray, ref_affine: np.ndarray
) -> tuple[float | None, float, list[tuple[int, int]]]:
    """(max voxel diff or None if shapes differ, max affine diff in mm, axis mapping)."""
    data, aff, mapping = to_reference_axes(img.values(np.float64), img.affine, ref_affine)
    affine_diff = float(np.abs(aff - ref_affine).max())
    if data.shape != ref_data.shape:
        squeezed = ref_data.reshape((*ref_data.shape[:3], -1))
        ours = data.reshape((*data.shape[:3], -1))
        if squeezed.shape != ours.shape:
            return None, affine_diff, mapping
        data, ref_data = ours, squeezed
    return float(np.abs(data - ref_data).max()) if data.size else 0.0, affine_diff, mapping


def fsl_bvecs(bvecs_ras: list[list[float]], ref_affine: np.ndarray) -> np.ndarray:
    """RAS unit vectors to FSL's voxel frame of the reference (x negated if det > 0)."""
    cos = geometry.direction_cosines(ref_affine)
    out = np.asarray(bvecs_ras, dtype=np.float64) @ cos  # = cos.T @ v for each row
    if np.linalg.det(ref_affine[:3, :3]) > 0:
        out[:, 0] *= -1
    return out


def _pe_in_ref(ped: str | None, mapping: list[tuple[int, int]]) -> str | None:
    if not ped:
        return ped
    axis = "ijk".index(ped[0])
    sign = -1 if ped.endswith("-") else 1
    new_axis, flip = mapping[axis] if axis < len(mapping) else (axis, 1)
    return "ijk"[new_axis] + ("-" if sign * flip < 0 else "")


def json_diffs(img: Image, ref_json: dict[str, Any], mapping: list[tuple[int, int]]) -> list[str]:
    """Key fields present in the reference that we lack or state differently."""
    ours = dict(img.meta.bids)
    if "PhaseEncodingDirection" in ours:
        ours["PhaseEncodingDirection"] = _pe_in_ref(ours["PhaseEncodingDirection"], mapping)
    if "SliceTiming" in ours and mapping and mapping[2][1] < 0:
        ours["SliceTiming"] = list(reversed(ours["SliceTiming"]))
    out = []
    for key in KEY_FIELDS:
        if key not in ref_json:
            continue
        a, b = ours.get(key), ref_json[key]
        if not _same(a, b, key):
            out.append(key)
    return out


#: Keys dcm2niix writes that are about its own run, not the data.
_NOT_COMPARED = {"ConversionSoftware", "ConversionSoftwareVersion", "BidsGuess"}


def other_json_diffs(img: Image, ref_json: dict[str, Any]) -> list[str]:
    """Every other reference key we lack (``-key``) or state differently (for the note)."""
    out = []
    for key, value in ref_json.items():
        if key in KEY_FIELDS or key in _NOT_COMPARED:
            continue
        if key not in img.meta.bids:
            out.append(f"-{key}")
        elif not _same(img.meta.bids[key], value, key):
            out.append(key)
    return out


def _same(a: Any, b: Any, key: str) -> bool:
    if a is None:
        return False
    if isinstance(b, list):
        return (
            isinstance(a, list)
            and len(a) == len(b)
            and all(_same(x, y, key) for x, y in zip(a, b, strict=True))
        )
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        try:
            a = float(a)
        except (TypeError, ValueError):
            return False
        tol = TIME_TOL if key in ("SliceTiming",) else max(1e-6, 1e-4 * abs(b))
        if key in ("EffectiveEchoSpacing", "TotalReadoutTime"):
            tol = 1e-4 * abs(b) + 1e-7
        return abs(a - float(b)) <= tol
    return str(a).strip().lower() == str(b).strip().lower()


def _load_fsl(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    return np.loadtxt(path, ndmin=2)


def check_reference(case: str, images: list[Image], ref: Path) -> Row:
    """Find the image that matches one reference volume and compare it."""
    row = Row(case, ref.name)
    if ref.suffix == ".nhdr":
        ref_data, ref_aff = read_nhdr(ref)
        ref_json: dict[str, Any] = {}
    else:
        ref_data, ref_aff = read_nifti(ref)
        stem = ref.name.removesuffix(".gz").removesuffix(".nii")
        json_path = ref.with_name(stem + ".json")
        ref_json = json.loads(json_path.read_text()) if json_path.exists() else {}
    best: tuple[float, Image, float | None, float, list[tuple[int, int]]] | None = None
    for img in images:
        try:
            vox, aff, mapping = compare_volume(img, ref_data, ref_aff)
        except Exception as exc:  # noqa: BLE001 - report, do not stop the table
            row.note = f"{type(exc).__name__}: {exc}"
            continue
        score = (vox if vox is not None else 1e30) + aff
        if best is None or score < best[0]:
            best = (score, img, vox, aff, mapping)
    if best is None:
        row.note = row.note or "no output to compare"
        return row
    _, img, vox, aff, mapping = best
    row.voxel_diff, row.affine_diff = vox, aff
    row.same_orientation = all(a == i and s == 1 for i, (a, s) in enumerate(mapping))
    span = float(np.abs(ref_data).max()) if ref_data.size else 0.0
    vox_ok = vox is not None and vox <= VOXEL_RTOL * max(span, 1.0)
    if vox is None:
        row.note = "shape differs"
    elif vox > 0 and ref.suffix != ".nhdr" and not img.notes and _same_stored(img, ref, ref_aff):
        row.note = "stored integers identical; " + _slope_note(img, ref)
    if ref_json:
        row.fields = json_diffs(img, ref_json, mapping)
        row.other_fields = other_json_diffs(img, ref_json)
    stem = ref.name.removesuffix(".gz").removesuffix(".nii")
    bval = _load_fsl(ref.with_name(stem + ".bval"))
    bvec = _load_fsl(ref.with_name(stem + ".bvec"))
    diff_ok = True
    if bval is not None:
        if img.meta.bvals is None:
            row.note = (row.note + "; no bvals").lstrip("; ")
            diff_ok = False
        else:
            ours = np.asarray(img.meta.bvals)
            theirs = bval.ravel()
            row.bval_diff = (
                float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else 1e9
            )
            vecs = fsl_bvecs(img.meta.bvecs or [], ref_aff)
            ref_v = bvec.T if bvec is not None else np.zeros_like(vecs)
            norms = np.linalg.norm(ref_v, axis=1, keepdims=True)
            ref_v = np.divide(ref_v, norms, out=np.zeros_like(ref_v), where=norms > 0)
            row.bvec_diff = float(np.abs(vecs - ref_v).max()) if vecs.shape == ref_v.shape else 1e9
            diff_ok = row.bval_diff <= BVAL_TOL and row.bvec_diff <= BVEC_TOL
    fields_ok = not any(f in REQUIRED_FIELDS for f in row.fields)
    row.matched = bool(vox_ok and aff <= AFFINE_TOL and diff_ok and fields_ok)
    return row


def _slope_note(img: Image, ref: Path) -> str:
    """Say whether the scaling differs only by float32 rounding."""
    import nibabel as nib

    proxy = nib.load(str(ref)).dataobj
    slope, inter = float(proxy.slope), float(proxy.inter)
    if abs(slope - img.slope) <= 1e-6 * abs(img.slope) + 1e-12 and abs(inter - img.inter) <= (
        1e-6 * max(abs(img.inter), abs(img.slope))
    ):
        return "the reference rounds the slope/intercept to float32"
    return (
        f"scaling differs: reference {slope:.6g}/{inter:.6g}, ours {img.slope:.6g}/{img.inter:.6g}"
    )


def _same_stored(img: Image, ref: Path, ref_affine: np.ndarray) -> bool:
    """Whether our stored values equal the reference's unscaled ones, axes mapped."""
    import nibabel as nib

    theirs = np.asanyarray(nib.load(str(ref)).dataobj.get_unscaled())
    ours, _, _ = to_reference_axes(img.stored(), img.affine, ref_affine)
    return ours.shape == theirs.shape and bool(np.array_equal(ours, theirs))


def check_single(case: str, images: list[Image], path: Path, ref: Path | None) -> Row:
    """A single-file case: voxels as pydicom's pixel_array (rescaled), geometry from IOP/IPP."""
    import pydicom

    row = Row(case, ref.name if ref else f"pydicom:{path.name}")
    if len(images) != 1:
        row.note = f"{len(images)} images"
        return row
    img = images[0]
    src = ref if ref is not None else path
    ds = pydicom.dcmread(src)
    try:
        arr = ds.pixel_array.astype(np.float64)
    except Exception:  # noqa: BLE001 - no pydicom codec: let dcmtk decompress it
        ds = _dcmtk_decompressed(src)
        if ds is None:
            row.note = "pydicom cannot decode it and dcmdjpeg is missing"
            return row
        arr = ds.pixel_array.astype(np.float64)
        row.note = "reference decoded by dcmtk dcmdjpeg"
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if nframes == 1:
        arr = arr[None]
    slope = float(ds.get("RescaleSlope", 1) or 1) * float(ds.get("DoseGridScaling", 1) or 1)
    arr = arr * slope + float(ds.get("RescaleIntercept", 0) or 0)
    # Expected voxel (i, j, k) = pixel (row R-1-j, column i) of frame k, and its world
    # position straight from the standard's formula (LPS, then RAS).
    expected = np.swapaxes(arr[:, ::-1], 1, 2)  # frames, cols, rows[, spp]
    expected = np.moveaxis(expected, 0, 2)
    iop = [float(v) for v in ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
    ipp = [float(v) for v in ds.get("ImagePositionPatient", [0, 0, 0])]
    ps = [float(v) for v in ds.get("PixelSpacing", [1, 1])]
    rowcos, colcos = np.asarray(iop[:3]), np.asarray(iop[3:])
    normal = np.cross(rowcos, colcos)
    offsets = ds.get("GridFrameOffsetVector")
    step = float(offsets[1]) - float(offsets[0]) if offsets and len(offsets) > 1 else 1.0
    lps = np.eye(4)
    lps[:3, 0] = rowcos * ps[1]
    lps[:3, 1] = -colcos * ps[0]
    lps[:3, 2] = normal * step
    lps[:3, 3] = np.asarray(ipp) + colcos * ps[0] * (int(ds.Rows) - 1)
    expected_affine = geometry.lps_to_ras(lps)
    # Our image may store the axes in another order (3D acquisitions): map it back first.
    ours, ours_affine, _ = to_reference_axes(img.values(np.float64), img.affine, expected_affine)
    if ours.shape == expected.shape:
        row.voxel_diff = float(np.abs(ours - expected).max())
    else:
        row.note = f"shape {ours.shape} vs {expected.shape}"
    corners = geometry.corner_indices(expected.shape)
    row.affine_diff = float(
        np.abs(
            geometry.voxel_to_world(ours_affine, corners)
            - geometry.voxel_to_world(expected_affine, corners)
        ).max()
    )
    row.matched = bool(
        row.voxel_diff is not None and row.voxel_diff == 0 and row.affine_diff <= 1e-5
    )
    return row


def _dcmtk_decompressed(path: Path) -> Any:
    """The file decompressed by dcmtk's ``dcmdjpeg`` (independent of our codecs)."""
    import shutil
    import subprocess
    import tempfile

    import pydicom

    tool = shutil.which("dcmdjpeg")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plain.dcm"
        subprocess.run([tool, str(path), str(out)], check=True, capture_output=True)
        return pydicom.dcmread(out)


def run(testdata: Path) -> list[Row]:
    """Rows for every DICOM case of the corpus manifest."""
    manifest = json.loads((testdata / "manifest.json").read_text())
    rows: list[Row] = []
    for case in manifest["cases"]:
        if case["format"] != "dicom":
            continue
        path = testdata / case["path"]
        name = case["path"].removeprefix("dicom/")
        try:
            images = read_dicom(path, ReadOptions())
        except Exception as exc:  # noqa: BLE001 - a failing case is a row, not a crash
            rows.append(Row(name, case.get("reference") or "-", note=f"read failed: {exc}"))
            continue
        ref = case.get("reference")
        if path.is_file():
            rows.append(check_single(name, images, path, testdata / ref if ref else None))
            continue
        if ref and ref.startswith("dicom-ref/"):
            ref_dir = (testdata / ref).parent
            refs = sorted(p for p in ref_dir.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        elif ref:
            refs = [testdata / ref]
        else:
            refs = []
        for r in refs:
            rows.append(check_reference(name, images, r))
        if len(images) != len(refs) and refs:
            rows.append(
                Row(name, "(count)", note=f"{len(images)} outputs for {len(refs)} references")
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the QA table; exit 1 if a reference is not matched."""
    parser = argparse.ArgumentParser(prog="python -m anyconv_dicom.qa", description=__doc__)
    parser.add_argument("testdata", type=Path, help="the shared test corpus folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    rows = run(args.testdata)
    print(HEADER)
    for r in rows:
        print(r.line())
    bad = [r for r in rows if not r.matched]
    print(f"\n{len(rows) - len(bad)} matched, {len(bad)} not matched")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
