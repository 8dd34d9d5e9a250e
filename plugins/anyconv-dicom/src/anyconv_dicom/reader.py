"""DICOM reader: files or folders to one ``Image`` per output volume.

The header scan reads no pixel data; grouping, sorting and geometry follow dcm2niix so the
results match its NIfTI output voxel for voxel. Voxels are decoded lazily, file by file.
"""

from __future__ import annotations

from . import _lean_import  # isort: skip  # noqa: F401 - before pydicom (see there)
import contextlib
import gc
import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from anyconv import geometry
from anyconv.errors import LossyConversionError, ReadError, UsageError
from anyconv.model import Image, Meta
from anyconv.specs import ReadOptions
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from . import __version__
from .fastread import shared_tag
from .meta import build_meta
from .pixels import VolumeProxy, check_sizes, decode_workers, fork_pool
from .scan import Slice, full_header, hval, iter_files, read_header, slices_of
from .stack import Volume, build_volumes, correct_tilt, group_slices

log = logging.getLogger("anyconv")

TILT_POLICIES = ("correct", "keep", "error")
#: In-plane drift of the stack (last slice vs first) below both limits is rounding of the
#: printed positions, not tilt: it stays in the affine as dcm2niix leaves it.
TILT_TOL_MM = 0.06
TILT_TOL_VOXELS = 0.1


#: Folders with at least this many files have their headers read by worker processes.
PARALLEL_SCAN_FILES = 1000


def scan(paths: Iterable[Path], skipped: list[str] | None = None) -> list[Slice]:
    """Slice records of every readable DICOM image file, in file order.

    Others are skipped with a warning, or listed in ``skipped`` when it is given. Thousands
    of files are read by forked workers (one per core, as for decoding): per-file header
    work, not the disk, is what a 7,200-file series waited on.
    """
    files = list(iter_files(paths))
    workers = min(decode_workers(), max(1, len(files) // (PARALLEL_SCAN_FILES // 2)))
    if len(files) >= PARALLEL_SCAN_FILES:
        pool = fork_pool(workers)
        if pool is not None:
            size = -(-len(files) // (workers * 4))  # a few chunks per worker, in order
            chunks = [files[i : i + size] for i in range(0, len(files), size)]
            out: list[Slice] = []
            with pool:
                for packed, messages in pool.map(_scan_chunk, chunks):
                    out.extend(_unpack_slices(packed))
                    for message in messages:
                        if skipped is None:
                            log.warning("skipping %s", message)
                        else:
                            skipped.append(message)
            return out
    return _scan_files(files, skipped)


def _scan_chunk(files: list[Path]) -> tuple[list, list[str]]:
    """In a worker: slice records (packed), and the problems for the parent to report."""
    messages: list[str] = []
    return _pack_slices(_scan_files(files, messages)), messages


def _pack_slices(slices: list[Slice]) -> list:
    """Slice records with their headers' raw elements as plain tuples, for the trip home.

    Pickling pydicom's ``BaseTag`` and ``RawDataElement`` objects one by one cost more than
    reading the headers (52 of 74 us per slice); plain tuples pickle in a fraction of that.
    """
    packed = []
    for sl in slices:
        ds = sl.ds
        raw, other = [], {}
        for tag, elem in ds._dict.items():
            if type(elem) is RawDataElement:
                raw.append((int(tag), *elem[1:]))
            else:
                other[tag] = elem
        attrs = {k: v for k, v in ds.__dict__.items() if k != "_dict"}
        sl.ds = None
        packed.append((sl, raw, other, attrs))
    return packed


def _unpack_slices(packed: list) -> list[Slice]:
    """The records ``_pack_slices`` sent, with their headers rebuilt as pickle would."""
    out = []
    for sl, raw, other, attrs in packed:
        ds = Dataset.__new__(Dataset)
        ds.__dict__.update(attrs)
        elements = {}
        for t, *rest in raw:
            tag = shared_tag(t)
            elements[tag] = RawDataElement(tag, *rest)
        elements.update(other)
        ds.__dict__["_dict"] = elements
        sl.ds = ds
        out.append(sl)
    return out


def _scan_files(files: list[Path], skipped: list[str] | None = None) -> list[Slice]:
    out: list[Slice] = []
    for path in files:
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
    with _gc_paused():
        slices = scan(paths, skipped)
        vols: list[Volume] = []
        for group in group_slices(slices):
            vols.extend(build_volumes(group))
    vols.sort(key=_volume_sort_key)
    return vols


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while slice records pile up.

    The scan makes a few hundred thousand long-lived objects (headers, elements, records);
    each collection walks all of them again, which was 20% of scanning 7,200 files. The
    scan makes no garbage cycles worth collecting meanwhile; collection resumes after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    rotated = None
    if rotate3d and acq == "3D":
        affine, rotated = _rotate_3d(proxy, affine, meta)
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
    header = full_header(vol.first)
    img.sources = slice_sources(vol, study_uid=str(header.get("StudyInstanceUID", "") or ""))
    if rotated is not None:
        _rotate_sources(img.sources, *rotated)
    img.extras["dicom"] = {
        "header": header_json(header),
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


def _rotate_3d(
    proxy: VolumeProxy, affine: np.ndarray, meta: Meta
) -> tuple[np.ndarray, tuple[list[int], list[bool], tuple[int, ...]] | None]:
    """Store a 3D acquisition with axes permuted/flipped to the closest RAS order.

    dcm2niix does this for 3D acquisitions (their slices are an arbitrary choice of the
    reconstruction); world coordinates are unchanged. Axis-indexed metadata follows.
    """
    codes = geometry.axcodes(affine)
    if "?" in codes:
        return affine, None
    perm = [0, 0, 0]
    flips = [False, False, False]
    for old, code in enumerate(codes):
        new, flip = _TO_RAS[code]
        perm[new] = old
        flips[old] = flip
    if perm == [0, 1, 2] and not any(flips):
        return affine, None
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
    return affine @ to_old, (perm, flips, tuple(dims))


def slice_sources(vol: Volume, study_uid: str = "") -> list[dict]:
    """Which file (and frame) each stored slice came from: the slice-to-instance map.

    Slices are ``grid[t][k]``: voxel axis 2, index k, volume t (before any 3D rotation).
    """
    out = []
    per_file: dict[int, tuple[str, dict]] = {}  # the tiles/frames of one file share these
    for t, row in enumerate(vol.grid):
        for k, sl in enumerate(row):
            ds = sl.ds
            known = per_file.get(id(ds))
            if known is None:
                known = per_file[id(ds)] = (str(sl.path), _instance_fields(ds, study_uid))
            entry: dict = {"path": known[0], "axis": 2, "index": k, "volume": t, **known[1]}
            if sl.frame is not None:
                entry["frame"] = int(sl.frame) + 1
            if sl.tile is not None:
                entry["tile"] = int(sl.tile)
            out.append(entry)
    return out


def _instance_fields(ds: Dataset, study_uid: str) -> dict:
    """The identifiers of one instance, for each of its slices' source entries."""
    fields: dict = {}
    for key, name in (
        ("uid", "SOPInstanceUID"),
        ("class_uid", "SOPClassUID"),
        ("series_uid", "SeriesInstanceUID"),
    ):
        value = hval(ds, name)
        if value:
            fields[key] = str(value)
    if study_uid:
        fields["study_uid"] = study_uid
    with contextlib.suppress(TypeError, ValueError):
        fields["number"] = int(hval(ds, "InstanceNumber"))
    return fields


def _rotate_sources(
    sources: list[dict], perm: list[int], flips: list[bool], dims: tuple[int, ...]
) -> None:
    """Follow a 3D rotation: slices stored along old axis 2 now lie along another axis."""
    new_axis = perm.index(2)
    for entry in sources:
        k = entry["index"]
        entry["axis"] = new_axis
        entry["index"] = dims[2] - 1 - k if flips[2] else k


#: Not carried in ``extras["dicom"]["header"]``: pixels, per-frame groups (rebuilt by any
#: writer) and file meta; binary values over 1 KiB (vendor blobs) are left out too.
_NOT_CARRIED = {0x52009230, 0x7FE00008, 0x7FE00009, 0x7FE00010, 0xFFFCFFFC}
_BULK_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def header_json(ds: Dataset) -> dict:
    """The first instance's attributes in the DICOM JSON model (PS3.18 F.2).

    Format-neutral on purpose: a DICOM writer carries them over, the anonymizer scrubs them,
    and neither needs this plugin to read them.
    """
    out: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in list(ds.keys()):
            if tag in _NOT_CARRIED or tag.group == 0x0002:
                continue
            try:
                elem = ds[tag]
                value = elem.value
                if elem.VR in _BULK_VRS and isinstance(value, bytes) and len(value) > 1024:
                    continue
                out[f"{int(tag):08X}"] = elem.to_json_dict(None, 1 << 20)
            except Exception:  # noqa: BLE001 - a value JSON cannot express is not carried
                log.debug("%s: %s not carried", ds.get("filename"), tag)
    return out


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
