"""DICOM reader: files or folders to one ``Image`` per output volume.

The header scan reads no pixel data; grouping, sorting and geometry follow dcm2niix so the
results match its NIfTI output voxel for voxel. Voxels are decoded lazily, file by file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from anyconv import geometry
from anyconv.errors import LossyConversionError, ReadError, UsageError
from anyconv.model import Image, Meta
from anyconv.specs import ReadOptions

from . import __version__
from .meta import build_meta
from .pixels import VolumeProxy, check_sizes
from .scan import Slice, iter_files, read_header, slices_of
from .stack import Volume, build_volumes, correct_tilt, group_slices

log = logging.getLogger("anyconv")

TILT_POLICIES = ("correct", "keep", "error")
#: In-plane drift of the stack (last slice vs first) below both limits is rounding of the
#: printed positions, not tilt: it stays in the affine as dcm2niix leaves it.
TILT_TOL_MM = 0.06
TILT_TOL_VOXELS = 0.1


def scan(paths: Iterable[Path], skipped: list[str] | None = None) -> list[Slice]:
    """Slice records of every readable DICOM image file.

    Others are skipped with a warning, or listed in ``skipped`` when it is given.
    """
    out: list[Slice] = []
    for path in iter_files(paths):
        ds = read_header(path, skipped)
        if ds is None:
            continue
        try:
            out.extend(slices_of(path, ds))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            message = f"{path}: unusable DICOM header: {exc}"
            if skipped is None:
                log.warning("skipping %s", message)
            else:
                skipped.append(message)
    return out


def volumes(paths: Iterable[Path], skipped: list[str] | None = None) -> list[Volume]:
    """Every output volume, in series-number order, before any pixel is decoded."""
    slices = scan(paths, skipped)
    vols: list[Volume] = []
    for group in group_slices(slices):
        vols.extend(build_volumes(group))
    vols.sort(key=_volume_sort_key)
    return vols


def _volume_sort_key(vol: Volume) -> tuple:
    ds = vol.first.ds
    try:
        number = int(ds.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    echo = vol.first.echo_number or 0
    first_order = min(sl.order for row in vol.grid for sl in row)
    return (number, str(ds.get("SeriesInstanceUID", "")), echo, first_order)


def read_dicom(path: Path, options: ReadOptions) -> list[Image]:
    """Read a DICOM file or folder (recursively) as one image per series split.

    Options: ``tilt=correct|keep|error`` (default ``correct``) for gantry tilt.
    """
    path = Path(path)
    tilt = str(options.extra.get("tilt", "correct")).lower()
    rotate3d = str(options.extra.get("rotate3d", "yes")).lower() not in ("no", "n", "0", "false")
    if tilt not in TILT_POLICIES:
        raise UsageError(f"tilt={tilt!r}: expected one of {', '.join(TILT_POLICIES)}")
    # A batch hands a folder's own files; a single file's problem is the error, not a warning.
    inputs = [Path(f) for f in options.files] or [path]
    skipped: list[str] | None = [] if path.is_file() else None
    vols = volumes(inputs, skipped)
    if not vols and skipped:
        raise ReadError(skipped[0])
    for message in skipped or []:
        log.warning("skipping %s", message)
    if not vols:
        raise ReadError(f"{path}: no DICOM image found")
    echoes: dict[str, set] = {}
    for v in vols:
        uid = str(v.first.ds.get("SeriesInstanceUID", ""))
        echoes.setdefault(uid, set()).add(v.first.echo_number)
    images = [
        to_image(
            v,
            tilt=tilt,
            rotate3d=rotate3d,
            multi_echo=len(echoes[str(v.first.ds.get("SeriesInstanceUID", ""))]) > 1,
        )
        for v in vols
    ]
    _disambiguate(images)
    return images


def to_image(
    vol: Volume, *, tilt: str = "correct", multi_echo: bool = False, rotate3d: bool = True
) -> Image:
    """One volume as a lazily loaded ``Image`` with metadata."""
    check_sizes(vol)
    slopes = {(sl.slope, sl.inter) for row in vol.grid for sl in row}
    uniform = len(slopes) == 1
    notes = list(vol.notes)
    if vol.first.extra.get("note"):
        notes.append(str(vol.first.extra["note"]))
    losses: list[str] = []
    affine = vol.affine
    shifts = None
    pad = (0, 0, 0, 0)
    tol_mm = max(TILT_TOL_MM, TILT_TOL_VOXELS * min(vol.first.spacing))
    if vol.tilt_mm > tol_mm and vol.nz > 1:
        what = f"slices offset {vol.tilt_deg:.3f} deg from their normal (gantry tilt or shear)"
        if tilt == "error":
            raise LossyConversionError(
                f"{vol.first.path}: {what}", hint="use --option tilt=correct or tilt=keep"
            )
        if tilt == "correct":
            fix = correct_tilt(vol)
            shifts, affine, pad = fix["shifts"], fix["affine"], fix["pad"]
            notes.append(f"{what}: resampled onto a grid orthogonal to the slices")
            losses.append("gantry tilt corrected by linear resampling")
        else:
            notes.append(f"{what}: kept as a sheared affine")
    resample = None
    if vol.uneven and vol.nz > 2:
        what = "uneven slice spacing"
        if tilt == "error":
            raise LossyConversionError(
                f"{vol.first.path}: {what}", hint="use --option tilt=correct or tilt=keep"
            )
        if tilt == "correct":
            resample, affine = regular_grid(vol, affine)
            notes.append(f"{what}: resampled linearly onto {len(resample)} evenly spaced slices")
            losses.append("uneven slice spacing corrected by linear resampling along slices")
        else:
            notes.append(f"{what}: kept, slices placed at the mean spacing")
    proxy = VolumeProxy(
        vol,
        apply_scaling=not uniform,
        tilt_shifts=shifts,
        tilt_pad=pad,
        k_resample=resample,
    )
    slope, inter = (1.0, 0.0)
    if uniform:
        slope, inter = next(iter(slopes))
    else:
        notes.append("rescale slope/intercept vary across slices: applied, stored as float32")
    meta = build_meta(vol, affine, proxy.shape, multi_echo=multi_echo)
    acq = str(vol.first.ds.get("MRAcquisitionType", "") or "").upper()
    if rotate3d and acq == "3D":
        affine = _rotate_3d(proxy, affine, meta)
    meta.bids["ConversionSoftware"] = "anyconv"
    meta.bids["ConversionSoftwareVersion"] = __version__
    img = Image(
        proxy,
        affine,
        slope=slope if slope != 0 else 1.0,
        inter=inter,
        meta=meta,
        notes=notes,
        losses=losses,
        source=str(vol.first.path),
        format="dicom",
    )
    img.extras["dicom"] = {
        "SeriesInstanceUID": str(vol.first.ds.get("SeriesInstanceUID", "")),
        "files": len({sl.path for row in vol.grid for sl in row}),
        "frame_type": list(vol.first.extra.get("frame_type") or ()),
        "tilt_deg": vol.tilt_deg,
        "tilt_mm": vol.tilt_mm,
        "uneven_spacing": vol.uneven,
    }
    return img


_TO_RAS = {"L": (0, True), "R": (0, False), "P": (1, True), "A": (1, False)}
_TO_RAS |= {"I": (2, True), "S": (2, False)}


def _rotate_3d(proxy: VolumeProxy, affine: np.ndarray, meta: Meta) -> np.ndarray:
    """Store a 3D acquisition with axes permuted/flipped to the closest RAS order.

    dcm2niix does this for 3D acquisitions (their slices are an arbitrary choice of the
    reconstruction); world coordinates are unchanged. Axis-indexed metadata follows.
    """
    codes = geometry.axcodes(affine)
    if "?" in codes:
        return affine
    perm = [0, 0, 0]
    flips = [False, False, False]
    for old, code in enumerate(codes):
        new, flip = _TO_RAS[code]
        perm[new] = old
        flips[old] = flip
    if perm == [0, 1, 2] and not any(flips):
        return affine
    dims = proxy.shape[:3]
    to_old = np.zeros((4, 4))
    to_old[3, 3] = 1.0
    for new, old in enumerate(perm):
        to_old[old, new] = -1.0 if flips[old] else 1.0
        to_old[old, 3] = dims[old] - 1 if flips[old] else 0.0
    proxy.reorient((perm[0], perm[1], perm[2]), (flips[0], flips[1], flips[2]))
    new_of = {old: new for new, old in enumerate(perm)}
    if meta.phase_axis is not None:
        old = meta.phase_axis
        meta.phase_axis = new_of[old]
        meta.frequency_axis = new_of[1 - old] if old in (0, 1) else meta.frequency_axis
        ped = meta.phase_encoding_direction
        if ped:
            negative = ped.endswith("-") != flips[old]
            meta.phase_encoding_direction = "ijk"[new_of[old]] + ("-" if negative else "")
            meta.bids["PhaseEncodingDirection"] = meta.phase_encoding_direction
        elif "PhaseEncodingAxis" in meta.bids:
            meta.bids["PhaseEncodingAxis"] = "ijk"[new_of[old]]
    if meta.slice_axis is not None:
        old = meta.slice_axis
        meta.slice_axis = new_of[old]
        if flips[old] and meta.slice_timing:
            meta.slice_timing = list(reversed(meta.slice_timing))
            meta.bids["SliceTiming"] = meta.slice_timing
    return affine @ to_old


def regular_grid(
    vol: Volume, affine: np.ndarray
) -> tuple[list[tuple[int, int, float]], np.ndarray]:
    """Interpolation weights onto slices evenly spaced at the smallest gap, and the affine.

    Each new slice k lies between stored slices k0 and k1 with weight w on k1. The in-plane
    axes and first slice stay; the slice axis keeps its direction with the new step.
    """
    pos = np.asarray(vol.positions, dtype=np.float64)
    gaps = np.diff(pos)
    span = float(pos[-1] - pos[0])
    step = float(gaps[gaps > 0].min())
    n = round(span / step) + 1
    new = pos[0] + np.arange(n) * (span / (n - 1))
    weights = []
    for p in new:
        k0 = int(np.clip(np.searchsorted(pos, p, side="right") - 1, 0, len(pos) - 2))
        w = float(np.clip((p - pos[k0]) / (pos[k0 + 1] - pos[k0]), 0.0, 1.0))
        weights.append((k0, k0 + 1, w))
    out = np.array(affine, dtype=np.float64)
    out[:3, 2] = affine[:3, 2] * (vol.nz - 1) / (n - 1)
    return weights, out


def _disambiguate(images: list[Image]) -> None:
    """Outputs of one series that would share a name get a suffix, as dcm2niix names them.

    A split with a known reason gets that reason (``_ph``, ``_fieldmaphz``...); if exactly
    one image of the group has none it keeps the plain name, the others get ``_i01``...
    """
    groups: dict[tuple, list[Image]] = {}
    for img in images:
        key = (img.meta.series_number, img.meta.series_description, img.meta.bids.get("EchoNumber"))
        groups.setdefault(key, []).append(img)
    for members in groups.values():
        if len(members) < 2:
            continue
        reasons = [_split_suffix(img) for img in members]
        plain = [img for img, r in zip(members, reasons, strict=True) if r is None]
        counter = 0
        for img, reason in zip(members, reasons, strict=True):
            if reason is None and len(plain) == 1:
                continue
            if reason is None:
                counter += 1
                reason = f"i{counter:02d}"
            img.meta.series_description = f"{img.meta.series_description or ''}_{reason}"


def _split_suffix(img: Image) -> str | None:
    """A readable reason for a split (phase, field map, orientation...), else ``None``."""
    kinds = img.extras.get("dicom", {}).get("frame_type") or img.meta.bids.get("ImageType", [])
    itype = [str(t).upper() for t in kinds]
    for marker, name in (
        ("FIELD_MAP", "fieldmaphz"),
        ("PHASE", "ph"),
        ("P", "ph"),
        ("REAL", "real"),
        ("IMAGINARY", "imaginary"),
    ):
        if marker in itype:
            return name
    return None


def series_table(paths: Iterable[Path]) -> list[dict[str, object]]:
    """What ``info`` lists for a folder: one row per output volume, no pixel decoded."""
    rows = []
    for vol in volumes(paths):
        ds = vol.first.ds
        shape = (vol.first.cols, vol.first.rows, vol.nz) + ((vol.nt,) if vol.nt > 1 else ())
        rows.append(
            {
                "series_number": ds.get("SeriesNumber"),
                "description": str(ds.get("SeriesDescription", "")),
                "modality": str(ds.get("Modality", "")),
                "shape": shape,
                "files": len({sl.path for row in vol.grid for sl in row}),
                "echo": vol.first.echo_number,
            }
        )
    return rows
