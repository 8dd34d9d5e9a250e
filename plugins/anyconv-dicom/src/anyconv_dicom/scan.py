"""Header scan: every DICOM file in a folder to 2D slice records, without reading pixels.

A classic file gives one record, a Siemens mosaic one record per tile, an enhanced or other
multi-frame file one record per frame. Records carry what grouping, sorting, geometry,
scaling and the sidecar need; the dataset itself is read with large elements deferred.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom  # noqa: TID253 - only reader.py imports this module
from anyconv.io import files_under
from pydicom.datadict import tag_for_keyword  # noqa: TID253 - only reader.py imports this module
from pydicom.dataelem import RawDataElement  # noqa: TID253 - only reader.py imports this module
from pydicom.dataset import Dataset  # noqa: TID253 - only reader.py imports this module
from pydicom.errors import InvalidDicomError  # noqa: TID253 - only reader.py imports this module
from pydicom.multival import MultiValue  # noqa: TID253 - only reader.py imports this module
from pydicom.tag import BaseTag  # noqa: TID253 - only reader.py imports this module

from .csa import csa_float, csa_floats, parse_csa
from .fastread import FIRST as FAST_FIRST
from .fastread import PIXEL_AT, read_header_fast

log = logging.getLogger("anyconv")

#: Elements larger than this are read from the file only when asked for.
DEFER_SIZE = 16384
_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_NON_IMAGE_SOPS = {
    _DICOMDIR_SOP,
    "1.2.840.10008.5.1.4.1.1.66",  # raw data
    "1.2.840.10008.5.1.4.1.1.88.11",  # SR
    "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.104.1",  # encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT plan
}


@dataclass(slots=True)
class Slice:
    """One 2D image (a file, a frame or a mosaic tile) with what stacking needs.

    Slots: a 7,200-file series keeps 7,200 of these (or 36 per mosaic file).
    """

    path: Path
    ds: Dataset
    rows: int
    cols: int
    iop: np.ndarray | None
    ipp: np.ndarray | None
    spacing: tuple[float, float]  # (between rows, between columns) = PixelSpacing
    frame: int | None = None
    tile: int | None = None
    mosaic: tuple[int, int, int] | None = None  # (tiles per row, tile rows, tile cols)
    normal: np.ndarray | None = None  # slice normal to sort along (CSA for mosaics)
    slope: float = 1.0
    inter: float = 0.0
    key: tuple = ()
    order: tuple = ()
    echo_time: float | None = None  # ms
    echo_number: int | None = None
    acq_time: float | None = None  # s since midnight
    bval: float | None = None
    bvec: np.ndarray | None = None  # LPS patient frame
    slice_time: float | None = None  # s, mosaic tiles (CSA MosaicRefAcqTimes)
    thickness: float | None = None
    between: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file under the given files and folders, sorted, hidden names skipped."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from files_under(p)
        elif p.is_file():
            yield p


def looks_like_dicom(head: bytes) -> bool:
    """Preamble + ``DICM``, or a dataset starting with a group 0002/0008 tag (no preamble)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    elem_le = int.from_bytes(head[2:4], "little")
    group_be = int.from_bytes(head[0:2], "big")
    return (group_le in (0x0002, 0x0008) and elem_le < 0x0100) or (
        group_be == 0x0008 and int.from_bytes(head[2:4], "big") < 0x0100
    )


def _skip(skipped: list[str] | None, path: Path, why: str, *args: object) -> None:
    message = f"{path}: " + (why % args if args else why)
    if skipped is None:
        log.warning("skipping %s", message)
    else:
        skipped.append(message)


def read_header(path: Path, skipped: list[str] | None = None) -> Dataset | None:
    """The dataset without pixel data, or ``None`` when it is not DICOM.

    Why a file was skipped goes to ``skipped`` when given (a single-file input turns it into
    the error), else to a warning line.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(FAST_FIRST)  # one read: the whole header of most files
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        _skip(skipped, path, "cannot read: %s", exc.strerror or exc)
        return None
    if not looks_like_dicom(head[:132]):
        _skip(skipped, path, "not a DICOM file")
        return None
    fast = None
    if head[128:132] == b"DICM":
        fast = read_header_fast(path, size, head)
    try:
        if fast is not None:
            ds, pixel_tag = fast
            tag = _PIXEL_TAG_BYTES.get(pixel_tag, b"")
        else:
            with path.open("rb") as fh:
                ds = pydicom.dcmread(
                    fh,
                    stop_before_pixels=True,
                    defer_size=DEFER_SIZE,
                    force=head[128:132] != b"DICM",
                )
                # pydicom stops right before the pixel element: which one is it?
                tag = fh.read(4)
        ds.filename = str(path)
        object.__setattr__(ds, FILE_SIZE, size)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, struct_error()) as exc:
        _skip(skipped, path, "corrupt DICOM header: %s", _one_line(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage
        _skip(skipped, path, "corrupt DICOM header: %s", _one_line(exc))
        return None
    if tag in (b"\xe0\x7f\x08\x00", b"\x7f\xe0\x00\x08"):
        object.__setattr__(ds, "_anyconv_float", np.dtype(np.float32))
    elif tag in (b"\xe0\x7f\x09\x00", b"\x7f\xe0\x00\x09"):
        object.__setattr__(ds, "_anyconv_float", np.dtype(np.float64))
    bad = _implausible_lengths(ds, path)
    if bad:
        log.warning("skipping %s: corrupt DICOM header: %s", path, bad)
        return None
    if "Rows" not in ds or "Columns" not in ds:
        sop = str(ds.get("SOPClassUID", ""))
        if sop == _DICOMDIR_SOP or path.name.upper() == "DICOMDIR":
            log.debug("ignoring DICOMDIR %s", path)
        else:
            log.warning("skipping %s: DICOM without an image (SOP class %s)", path, sop or "?")
        return None
    return ds


#: Dataset attribute: the file's size in bytes when its header was read.
FILE_SIZE = "_anyconv_file_size"


def file_size(ds: Dataset, path: Path) -> int | None:
    """The file's size as the scan saw it (no second ``stat``), else ``None`` if unreadable."""
    size = ds.__dict__.get(FILE_SIZE)
    if size is not None:
        return size
    try:
        return path.stat().st_size
    except OSError:
        return None


_PIXEL_TAG_BYTES = {
    0x7FE00010: b"\xe0\x7f\x10\x00",
    0x7FE00008: b"\xe0\x7f\x08\x00",
    0x7FE00009: b"\xe0\x7f\x09\x00",
}


def _implausible_lengths(ds: Dataset, path: Path) -> str | None:
    """An element whose declared length exceeds the file (read lazily, it would allocate it)."""
    size = file_size(ds, path)
    if size is None:
        return None
    # The raw (unconverted) elements: asking pydicom for values would read them.
    raw = getattr(ds, "_dict", {})
    for elem in raw.values():
        length = getattr(elem, "length", 0) or 0
        if length != 0xFFFFFFFF and length > size:
            return f"element {elem.tag} declares {length} bytes in a {size}-byte file"
    return None


def struct_error() -> type[Exception]:
    """``struct.error`` (imported lazily to keep the except clause short)."""
    import struct

    return struct.error


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- small readers of header values ----------------------------------------------------------
#: VRs whose values are ASCII by definition: decoded without the character-set machinery.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
#: Text VRs decoded here only when their bytes are plain ASCII (the same in every charset).
_TEXT_VRS = frozenset({"LO", "SH", "PN", "ST", "LT"})
_SINGLE_VRS = frozenset({"ST", "LT", "UT"})
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_TAGS: dict[str, int | None] = {}
_MISSING = object()


def hval(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)``, fast for the plain elements every slice is asked for.

    pydicom converts a raw element through several layers on each first access, which was
    most of the header scan of a 7,200-file series. Plain ASCII strings, numbers and binary
    integers/floats are converted here from the raw bytes (and cached on the dataset); any
    other element (sequences, non-ASCII text, ambiguous VRs) goes through pydicom as before.
    Numbers come back as ``float``/``int`` or lists of them, strings as ``str`` or lists.
    """
    tag = _TAGS.get(keyword, _MISSING)
    if tag is _MISSING:
        tag = tag_for_keyword(keyword)
        _TAGS[keyword] = tag
    raw_dict = getattr(ds, "_dict", None)
    if tag is None or raw_dict is None:
        return ds.get(keyword, default)
    cache = ds.__dict__.get("_anyconv_values")
    if cache is None:
        cache = {}
        object.__setattr__(ds, "_anyconv_values", cache)
    if tag in cache:
        return cache[tag]
    elem = raw_dict.get(tag)
    if elem is None:
        return default
    out = _convert_raw(elem, tag) if type(elem).__name__ == "RawDataElement" else _MISSING
    if out is _MISSING:
        out = ds.get(keyword, default)
    cache[tag] = out
    return out


def _convert_raw(elem: Any, tag: int) -> Any:
    """A raw element's value from its bytes, or ``_MISSING`` to let pydicom do it."""
    vr = elem.VR
    if vr is None:
        vr = _dictionary_vr(tag)
    raw = elem.value
    if raw is None or not isinstance(raw, bytes):
        return _MISSING
    if vr in _BINARY_VRS:
        code = _BINARY_VRS[vr]
        size = struct_calcsize(code)
        if len(raw) % size:
            return _MISSING
        n = len(raw) // size
        if n == 0:
            return None
        values = struct_unpack(f"{'<' if elem.is_little_endian else '>'}{n}{code}", raw)
        return values[0] if n == 1 else list(values)
    if vr in _ASCII_VRS:
        text = raw.decode("latin-1").strip(" \x00")
    elif vr in _TEXT_VRS and raw.isascii() and b"\x1b" not in raw:
        text = raw.decode("ascii").rstrip(" \x00")
    else:
        return _MISSING
    if text == "":
        return ""
    parts = [text] if vr in _SINGLE_VRS else [p.strip(" \x00") for p in text.split("\\")]
    if vr == "DS":
        try:
            parts = [float(p) for p in parts]
        except ValueError:
            return _MISSING
    elif vr == "IS":
        try:
            parts = [int(p) if p.lstrip("+-").isdigit() else int(float(p)) for p in parts]
        except ValueError:
            return _MISSING
    return parts[0] if len(parts) == 1 else parts


_VR_CACHE: dict[int, str | None] = {}


def _dictionary_vr(tag: int) -> str | None:
    """The data dictionary's VR (implicit VR files), ``None`` if unknown or ambiguous."""
    if tag not in _VR_CACHE:
        from pydicom.datadict import dictionary_VR

        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = None
        _VR_CACHE[tag] = vr if vr and " " not in vr else None
    return _VR_CACHE[tag]


def struct_calcsize(code: str) -> int:
    """Size of one binary value."""
    return {"H": 2, "h": 2, "I": 4, "i": 4, "f": 4, "d": 8}[code]


def struct_unpack(fmt: str, raw: bytes) -> tuple:
    """``struct.unpack`` (imported once)."""
    import struct

    return struct.unpack(fmt, raw)


def fnum(ds: Dataset, keyword: str, default: float | None = None) -> float | None:
    """A numeric element as float (first value), or ``default``."""
    try:
        value_ = hval(ds, keyword)
    except Exception:  # noqa: BLE001 - a malformed DS/IS value
        return default
    if value_ is None or value_ == "":
        return default
    if isinstance(value_, (list, tuple, MultiValue)):
        if not value_:
            return default
        value_ = value_[0]
    try:
        out = float(value_)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def fvec(ds: Dataset, keyword: str, n: int) -> np.ndarray | None:
    """A multi-valued numeric element of exactly ``n`` values, or ``None``."""
    try:
        got = hval(ds, keyword)
        if got is None:
            return None
        if not isinstance(got, (list, tuple, MultiValue)):
            got = [got]
        arr = np.asarray([float(v) for v in got], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def private(ds: Dataset, group: int, creator: str, elem: int) -> Any:
    """Value of a private element by creator name, or ``None``.

    Looks the creator up in the dataset's element dict directly: pydicom's
    ``private_block`` and ``in`` convert tags on every call, which dominated the scan.
    """
    raw = getattr(ds, "_dict", None)
    if raw is None:
        return None
    base = group << 16
    for block in range(0x10, 0x100):
        found = raw.get(base | block)
        if found is None:
            continue
        # creators are LO text: compared from their raw bytes, no pydicom conversion
        value = found.value
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if str(value).strip(" \x00") == creator:
            target = raw.get(base | (block << 8) | elem)
            if target is None:
                return None
            if (
                type(target) is RawDataElement
                and isinstance(target.value, bytes)  # not deferred (read later by pydicom)
                and _private_vr(target, creator) in _BYTES_VRS
            ):
                return target.value  # bytes either way: skip the conversion
            try:
                return ds[base | (block << 8) | elem].value
            except Exception:  # noqa: BLE001
                return None
    return None


_BYTES_VRS = ("OB", "OW")
_PRIVATE_VRS: dict[tuple[int, str], str | None] = {}


def _private_vr(raw: Any, creator: str) -> str | None:
    """A private element's VR: its own (explicit VR) or the private dictionary's."""
    if raw.VR is not None:
        return raw.VR
    key = (int(raw.tag) & 0xFFFF00FF, creator)
    if key not in _PRIVATE_VRS:
        from pydicom.datadict import private_dictionary_VR

        try:
            _PRIVATE_VRS[key] = private_dictionary_VR(raw.tag, creator)
        except KeyError:
            _PRIVATE_VRS[key] = None
    return _PRIVATE_VRS[key]


def tm_seconds(value: Any) -> float | None:
    """DICOM TM (``HHMMSS.frac``) to seconds after midnight."""
    if value is None:
        return None
    text = str(value).strip().replace(":", "")
    if len(text) < 2:
        return None
    try:
        hh = int(text[0:2])
        mm = int(text[2:4]) if len(text) >= 4 else 0
        ss = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def image_type(ds: Dataset) -> tuple[str, ...]:
    """ImageType values, upper case."""
    try:
        got = hval(ds, "ImageType")
    except Exception:  # noqa: BLE001
        return ()
    if got is None:
        return ()
    if isinstance(got, str):
        got = got.split("\\")
    return tuple(str(v).upper() for v in got)


def manufacturer(ds: Dataset) -> str:
    """Short vendor name as dcm2niix writes it (Siemens, GE, Philips, Canon...)."""
    text = str(hval(ds, "Manufacturer", "") or "").upper()
    for key, name in (
        ("SIEMENS", "Siemens"),
        ("GE ", "GE"),
        ("GE", "GE"),
        ("PHILIPS", "Philips"),
        ("TOSHIBA", "Canon"),
        ("CANON", "Canon"),
        ("HITACHI", "Hitachi"),
        ("UIH", "UIH"),
        ("BRUKER", "Bruker"),
    ):
        if text.startswith(key) or key.strip() in text.split():
            return name
    return str(hval(ds, "Manufacturer", "") or "").strip() or "Unknown"


def _seq_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    try:
        seq = ds.get(keyword)
    except Exception:  # noqa: BLE001
        return None
    if not seq:
        return None
    try:
        return seq[0]
    except (IndexError, TypeError):
        return None


def _fg(groups: list[Dataset | None], keyword: str) -> Dataset | None:
    """First functional-group macro item found, per-frame before shared."""
    for g in groups:
        item = _seq_item(g, keyword)
        if item is not None:
            return item
    return None


# -- slice records ---------------------------------------------------------------------------
def slices_of(path: Path, ds: Dataset) -> list[Slice]:
    """Slice records of one file: classic, mosaic tiles, or frames.

    The records keep a small copy of the header (what grouping, pixel reading and naming
    need), not the whole dataset: a 5,000-file folder must not hold 5,000 CSA headers.
    ``full_header`` reads the whole header again for the one slice that describes a volume.
    """
    try:
        nframes = int(hval(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        nframes = 1
    _check_frames(path, ds, nframes)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        out = _enhanced_slices(path, ds, nframes)
    else:
        base = _classic_slice(path, ds)
        if nframes > 1:
            out = _plain_multiframe(base, ds, nframes)
        else:
            out = _mosaic_tiles(base, ds) or [base]
    light = light_header(ds)
    for sl in out:
        sl.ds = light
    return out


_NATIVE_TS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def _check_frames(path: Path, ds: Dataset, nframes: int) -> None:
    """Refuse a frame count the file cannot hold, before one record per frame is made.

    Uncompressed frames need their full size; a compressed frame needs at least a few bytes.
    """
    if nframes < 1:
        raise ValueError(f"NumberOfFrames {nframes}")
    size = file_size(ds, path)
    if size is None:
        return
    rows, cols = int(hval(ds, "Rows", 0) or 0), int(hval(ds, "Columns", 0) or 0)
    if rows < 1 or cols < 1:
        raise ValueError(f"image of {rows} x {cols} pixels")
    meta = getattr(ds, "file_meta", None)
    ts = str(hval(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    bits = int(hval(ds, "BitsAllocated", 16) or 16)
    spp = int(hval(ds, "SamplesPerPixel", 1) or 1)
    per_frame = max(rows * cols * spp * bits // 8, 1) if ts in _NATIVE_TS or not ts else 2
    if nframes * per_frame > size + 1024:
        raise ValueError(f"{nframes} frame(s) of {rows} x {cols} cannot fit in a {size}-byte file")


def valid_orientation(iop: np.ndarray | None) -> np.ndarray | None:
    """Row/column cosines that can span a plane, else an error (a singular affine)."""
    if iop is None:
        return None
    row, col = iop[:3], iop[3:]
    nr, nc = float(np.linalg.norm(row)), float(np.linalg.norm(col))
    if not (0.9 < nr < 1.1 and 0.9 < nc < 1.1) or abs(float(row @ col)) > 0.1:
        raise ValueError(f"ImageOrientationPatient {iop.tolist()} is not two unit, orthogonal axes")
    return iop


#: Elements kept in the per-slice header copy.
_LIGHT_KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "ProtocolName",
    "Modality",
    "Manufacturer",
    "ImageType",
    "ScanningSequence",
    "EchoPlanarPulseSequence",
    "MRAcquisitionType",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
)


_LIGHT_TAGS = tuple(BaseTag(tag_for_keyword(kw)) for kw in _LIGHT_KEYWORDS)


def light_header(ds: Dataset) -> Dataset:
    """The few elements later stages read from every slice, plus the transfer syntax."""
    light = Dataset()
    src = getattr(ds, "_dict", {})
    dst = light._dict  # raw elements are copied as they are: converted only if read
    for tag in _LIGHT_TAGS:
        elem = src.get(tag)
        if elem is not None:
            dst[tag] = elem
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        light.file_meta = meta
    light.filename = getattr(ds, "filename", None)
    cache = ds.__dict__.get("_anyconv_values")
    if cache:  # values already converted by hval stay converted
        kept = {tag: cache[tag] for tag in _LIGHT_TAGS if tag in cache}
        object.__setattr__(light, "_anyconv_values", kept)
    for attr in ("_anyconv_float", FILE_SIZE, PIXEL_AT):
        value = ds.__dict__.get(attr)
        if value is not None:
            object.__setattr__(light, attr, value)
    return light


_FULL_CACHE: dict[str, Dataset] = {}


def full_header(sl: Slice) -> Dataset:
    """The whole header (no pixels) of a slice's file, read again when metadata is built."""
    try:
        st = sl.path.stat()
    except OSError:
        return sl.ds
    key = f"{sl.path}:{st.st_mtime_ns}:{st.st_size}"
    cached = _FULL_CACHE.get(key)
    if cached is not None:
        return cached
    try:
        ds = pydicom.dcmread(sl.path, stop_before_pixels=True, defer_size=DEFER_SIZE, force=True)
    except Exception:  # noqa: BLE001 - the file changed or vanished: use what we kept
        return sl.ds
    if len(_FULL_CACHE) > 8:
        _FULL_CACHE.clear()
    _FULL_CACHE[key] = ds
    return ds


def _common_key(ds: Dataset) -> tuple:
    sop = str(hval(ds, "SOPClassUID", "") or "")
    return (
        str(hval(ds, "SeriesInstanceUID", "") or ""),
        sop,
        int(hval(ds, "SamplesPerPixel", 1) or 1),
        int(hval(ds, "BitsAllocated", 16) or 16),
    )


def _classic_slice(path: Path, ds: Dataset) -> Slice:
    rows, cols = int(hval(ds, "Rows")), int(hval(ds, "Columns"))
    iop = valid_orientation(fvec(ds, "ImageOrientationPatient", 6))
    ipp = fvec(ds, "ImagePositionPatient", 3)
    ps = fvec(ds, "PixelSpacing", 2)
    if ps is None:
        ps = fvec(ds, "ImagerPixelSpacing", 2)
    spacing = (float(ps[0]), float(ps[1])) if ps is not None and np.all(ps > 0) else (1.0, 1.0)
    slope = fnum(ds, "RescaleSlope", 1.0) or 1.0
    inter = fnum(ds, "RescaleIntercept", 0.0) or 0.0
    if "DoseGridScaling" in ds:
        slope *= fnum(ds, "DoseGridScaling", 1.0) or 1.0
    vendor = manufacturer(ds)
    itype = image_type(ds)
    echo_num = fnum(ds, "EchoNumbers")
    te = fnum(ds, "EchoTime")
    sl = Slice(
        path=path,
        ds=ds,
        rows=rows,
        cols=cols,
        iop=iop,
        ipp=ipp,
        spacing=spacing,
        slope=slope,
        inter=inter,
        echo_time=te,
        echo_number=int(echo_num) if echo_num is not None else None,
        acq_time=tm_seconds(hval(ds, "AcquisitionTime")),
        thickness=fnum(ds, "SliceThickness"),
        between=fnum(ds, "SpacingBetweenSlices"),
    )
    if vendor == "Philips":
        _philips_scale(sl, ds)
    coil = private(ds, 0x0051, "SIEMENS MR HEADER", 0x0F) if vendor == "Siemens" else None
    # GE marks magnitude/phase/real/imaginary (0, 1, 2, 3) only in a private tag.
    ge_part = private(ds, 0x0043, "GEMS_PARM_01", 0x2F) if vendor == "GE" else None
    sl.key = (
        *_common_key(ds),
        _round_iop(iop),
        rows,
        cols,
        _round_spacing(spacing),
        sl.echo_number,
        round(te, 3) if te is not None else None,
        _type_key(itype),
        str(coil) if coil and "HEA;HEP" not in str(coil) and not _combined_coil(coil) else None,
        str(ge_part) if ge_part is not None else None,
    )
    temporal = fnum(ds, "TemporalPositionIdentifier")
    acq_number = fnum(ds, "AcquisitionNumber")
    if temporal is not None or acq_number is not None:
        sl.extra["vol_key"] = (temporal or 0.0, acq_number or 0.0)
    sl.extra["uid"] = str(hval(ds, "SOPInstanceUID", "") or "") or str(path)
    sl.extra["numbered"] = hval(ds, "InstanceNumber") not in (None, "")
    sl.order = (
        fnum(ds, "TemporalPositionIdentifier", 0) or 0,
        fnum(ds, "InstanceNumber", 0) or 0,
        sl.acq_time or 0.0,
        str(path),
    )
    _diffusion_classic(sl, ds, vendor)
    return sl


def _combined_coil(coil: Any) -> bool:
    """Siemens coil strings with ';' or '-' name several coils: a combined image."""
    text = str(coil)
    return ";" in text or "-" in text or text.upper().startswith(("T:", "C:"))


def _type_key(itype: tuple[str, ...]) -> tuple[str, ...]:
    """ImageType as a grouping key: the first values and any complex part marker."""
    return tuple(itype[:5])


def _round_iop(iop: np.ndarray | None) -> tuple | None:
    return None if iop is None else tuple(np.round(iop, 4).tolist())


def _round_spacing(spacing: tuple[float, float]) -> tuple[float, float]:
    return (round(spacing[0], 4), round(spacing[1], 4))


def _philips_scale(sl: Slice, ds: Dataset) -> None:
    """Philips precise values, as dcm2niix ``-p y``: FP = SV / SS + RI / (RS * SS).

    Frames whose real-world value mapping has physical units (a B0 map in Hz) keep that
    mapping instead, as dcm2niix does.
    """
    rwvm = _seq_item(ds, "RealWorldValueMappingSequence")
    if rwvm is not None:
        units = _seq_item(rwvm, "MeasurementUnitsCodeSequence")
        code = str(units.get("CodeValue", "")).strip() if units is not None else ""
        rws, rwi = fnum(rwvm, "RealWorldValueSlope"), fnum(rwvm, "RealWorldValueIntercept")
        if code not in ("", "1") and rws:
            sl.slope, sl.inter = rws, rwi or 0.0
            sl.extra["units"] = code
            return
    ss = _philips_private_ss(ds)
    if ss is None or not math.isfinite(ss) or ss == 0 or sl.slope == 0:
        return
    sl.extra["philips_display"] = (sl.slope, sl.inter)
    sl.inter = sl.inter / (sl.slope * ss)
    sl.slope = 1.0 / ss


def _diffusion_classic(sl: Slice, ds: Dataset, vendor: str) -> None:
    bval = fnum(ds, "DiffusionBValue")
    bvec = fvec(ds, "DiffusionGradientOrientation", 3)
    if bvec is not None and bval is not None:
        pass
    elif vendor == "Siemens":
        csa = csa_image(ds)
        b = csa_float(csa, "B_value")
        if b is not None:
            bval = b if bval is None else bval
            vec = csa_floats(csa, "DiffusionGradientDirection")
            bvec = np.asarray(vec[:3]) if len(vec) >= 3 else np.zeros(3)
    elif vendor == "GE":
        raw = private(ds, 0x0043, "GEMS_PARM_01", 0x39)
        if raw is not None:
            try:
                bval = float(raw[0]) % 1e9 if not isinstance(raw, (str, bytes)) else None
            except (TypeError, ValueError, IndexError):
                bval = None
            comps = [private(ds, 0x0019, "GEMS_ACQU_01", e) for e in (0xBB, 0xBC, 0xBD)]
            try:
                bvec = np.asarray([float(c) for c in comps])
                sl.extra["ge_bvec"] = True
            except (TypeError, ValueError):
                bvec = None
    elif vendor == "Philips":
        b = private(ds, 0x2001, "Philips Imaging DD 001", 0x03)
        if b is not None:
            try:
                bval = float(b)
                comps = [
                    private(ds, 0x2005, "Philips MR Imaging DD 001", e) for e in (0xB0, 0xB1, 0xB2)
                ]
                # (2005,10B0/B1/B2) = RL, AP, FH components: patient LPS x, y, z.
                bvec = np.asarray([float(c) for c in comps])
            except (TypeError, ValueError):
                bvec = None
    if bval is not None:
        sl.bval = float(bval)
        sl.bvec = bvec if bvec is not None and bvec.shape == (3,) else np.zeros(3)


def find_private(ds: Dataset, group: int, creator_prefix: str, low: int, depth: int = 3) -> Any:
    """A private element (by creator prefix and low element byte) anywhere in nested items.

    Siemens XA keeps phase-encoding polarity and bandwidth in private sequences of the
    functional groups, so a flat lookup misses them.
    """
    creators: dict[int, str] = {}
    for elem in ds:
        tag = elem.tag
        if tag.group == group and 0x10 <= tag.element <= 0xFF:
            creators[tag.element] = str(elem.value)
    for elem in ds:
        tag = elem.tag
        if (
            tag.group == group
            and tag.element >= 0x1000
            and (tag.element & 0xFF) == low
            and creators.get(tag.element >> 8, "").startswith(creator_prefix)
        ):
            return elem.value
    if depth > 0:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    found = find_private(item, group, creator_prefix, low, depth - 1)
                    if found is not None:
                        return found
                    break
    return None


def csa_image(ds: Dataset) -> dict[str, list[str]]:
    """The parsed Siemens CSA image header of a dataset (cached on it)."""
    cached = getattr(ds, "_anyconv_csa", None)
    if cached is not None:
        return cached
    raw = private(ds, 0x0029, "SIEMENS CSA HEADER", 0x10)
    csa = parse_csa(raw if isinstance(raw, bytes) else None)
    object.__setattr__(ds, "_anyconv_csa", csa)
    return csa


def csa_series(ds: Dataset) -> dict[str, list[str]]:
    """The parsed Siemens CSA series header of a dataset."""
    raw = private(ds, 0x0029, "SIEMENS CSA HEADER", 0x20)
    return parse_csa(raw if isinstance(raw, bytes) else None)


def _mosaic_tiles(base: Slice, ds: Dataset) -> list[Slice] | None:
    """A Siemens mosaic as one record per tile, positions corrected as nibabel/dcm2niix do."""
    itype = image_type(ds)
    if "MOSAIC" not in itype or manufacturer(ds) != "Siemens":
        return None
    n = private(ds, 0x0019, "SIEMENS MR HEADER", 0x0A)
    csa = csa_image(ds)
    try:
        n = int(n) if n is not None else int(csa_float(csa, "NumberOfImagesInMosaic") or 0)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or base.iop is None or base.ipp is None:
        return None
    per_row = math.ceil(math.sqrt(n))
    trows, tcols = base.rows // per_row, base.cols // per_row
    if trows < 1 or tcols < 1:
        return None
    rowcos, colcos = base.iop[:3], base.iop[3:]
    normal = np.asarray(csa_floats(csa, "SliceNormalVector")[:3])
    if normal.shape != (3,) or not np.any(normal):
        normal = np.cross(rowcos, colcos)
    normal = normal / np.linalg.norm(normal)
    dy, dx = base.spacing
    p0 = (
        base.ipp + rowcos * dx * (base.cols - tcols) / 2.0 + colcos * dy * (base.rows - trows) / 2.0
    )
    dz = base.between or base.thickness or 1.0
    times = csa_floats(csa, "MosaicRefAcqTimes")
    # all tile positions in one operation; each tile gets its own row (a copy, not a view)
    positions = p0 + np.outer(np.arange(n), normal * dz)
    key = (*base.key[:4], base.key[4], trows, tcols, *base.key[7:], "mosaic", n)
    mosaic = (per_row, trows, tcols)
    out = []
    for t in range(n):
        sl = _copy_slice(base)
        sl.extra = dict(base.extra)
        sl.rows, sl.cols = trows, tcols
        sl.tile = t
        sl.mosaic = mosaic
        sl.normal = normal
        sl.ipp = positions[t].copy()
        sl.slice_time = times[t] / 1000.0 if len(times) == n else None
        sl.key = key
        out.append(sl)
    return out


def _copy_slice(base: Slice) -> Slice:
    """A shallow copy (fields shared until replaced).

    Faster than the dataclass constructor for the thousands of tiles and frames of a series.
    """
    new = object.__new__(Slice)
    for name in _SLICE_FIELDS:
        setattr(new, name, getattr(base, name))
    return new


_SLICE_FIELDS = Slice.__slots__


def _plain_multiframe(base: Slice, ds: Dataset, nframes: int) -> list[Slice]:
    """Multi-frame without functional groups (RT dose, NM, old US): frames along the normal."""
    offsets = None
    try:
        gfov = ds.get("GridFrameOffsetVector")
        if gfov is not None and len(gfov) == nframes:
            offsets = [float(v) for v in gfov]
    except (TypeError, ValueError):
        offsets = None
    if offsets is None:
        step = base.between or base.thickness or 1.0
        offsets = [i * step for i in range(nframes)]
        if base.iop is not None and base.ipp is not None:
            base.extra["note"] = "multi-frame without per-frame positions: spacing from header"
    iop = base.iop if base.iop is not None else np.array([1.0, 0, 0, 0, 1.0, 0])
    ipp = base.ipp if base.ipp is not None else np.zeros(3)
    normal = np.cross(iop[:3], iop[3:])
    out = []
    for f in range(nframes):
        sl = _copy_slice(base)
        sl.extra = dict(base.extra)
        sl.frame = f
        sl.iop = iop
        sl.ipp = ipp + normal * offsets[f]
        sl.order = (*base.order, f)
        out.append(sl)
    return out


def _enhanced_slices(path: Path, ds: Dataset, nframes: int) -> list[Slice]:
    """Enhanced multi-frame: one record per frame from per-frame and shared groups."""
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    try:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    except Exception:  # noqa: BLE001
        per_frame = []
    rows, cols = int(ds.Rows), int(ds.Columns)
    vendor = manufacturer(ds)
    file_instance = fnum(ds, "InstanceNumber", 0) or 0
    uid = str(ds.get("SOPInstanceUID", "")) or str(path)
    out = []
    for f in range(nframes):
        pf = per_frame[f] if f < len(per_frame) else None
        groups = [pf, shared]
        pos = _fg(groups, "PlanePositionSequence")
        ori = _fg(groups, "PlaneOrientationSequence")
        meas = _fg(groups, "PixelMeasuresSequence")
        pvt = _fg(groups, "PixelValueTransformationSequence")
        content = _fg(groups, "FrameContentSequence")
        echo = _fg(groups, "MREchoSequence")
        ftype = _fg(groups, "MRImageFrameTypeSequence") or _fg(groups, "CTImageFrameTypeSequence")
        diff = _fg(groups, "MRDiffusionSequence")
        timing = _fg(groups, "MRTimingAndRelatedParametersSequence")
        iop = fvec(ori, "ImageOrientationPatient", 6) if ori is not None else None
        ipp = fvec(pos, "ImagePositionPatient", 3) if pos is not None else None
        if iop is None:
            iop = fvec(ds, "ImageOrientationPatient", 6)
        iop = valid_orientation(iop)
        if ipp is None:
            ipp = fvec(ds, "ImagePositionPatient", 3)
        ps = fvec(meas, "PixelSpacing", 2) if meas is not None else None
        if ps is None:
            ps = fvec(ds, "PixelSpacing", 2)
        spacing = (float(ps[0]), float(ps[1])) if ps is not None and np.all(ps > 0) else (1.0, 1.0)
        slope = (fnum(pvt, "RescaleSlope", None) if pvt is not None else None) or fnum(
            ds, "RescaleSlope", 1.0
        )
        inter = fnum(pvt, "RescaleIntercept", None) if pvt is not None else None
        if inter is None:
            inter = fnum(ds, "RescaleIntercept", 0.0)
        te = fnum(echo, "EffectiveEchoTime") if echo is not None else None
        if te is None:
            te = fnum(ds, "EchoTime")
        frame_type = image_type_of(ftype, "FrameType") if ftype is not None else image_type(ds)
        complex_part = str(ftype.get("ComplexImageComponent", "")) if ftype is not None else ""
        acq = None
        temporal = 0.0
        stack = ""
        in_stack = 0.0
        dim_index: tuple = ()
        if content is not None:
            acq = _datetime_seconds(content.get("FrameAcquisitionDateTime"))
            temporal = fnum(content, "TemporalPositionIndex", 0.0) or 0.0
            stack = str(content.get("StackID", ""))
            in_stack = fnum(content, "InStackPositionNumber", 0.0) or 0.0
            try:
                dim_index = tuple(int(v) for v in (content.get("DimensionIndexValues") or []))
            except (TypeError, ValueError):
                dim_index = ()
        thickness = fnum(meas, "SliceThickness") if meas is not None else None
        between = fnum(meas, "SpacingBetweenSlices") if meas is not None else None
        sl = Slice(
            path=path,
            ds=ds,
            rows=rows,
            cols=cols,
            iop=iop,
            ipp=ipp,
            spacing=spacing,
            frame=f,
            slope=float(slope if slope else 1.0),
            inter=float(inter or 0.0),
            echo_time=te,
            acq_time=acq,
            thickness=thickness if thickness is not None else fnum(ds, "SliceThickness"),
            between=between if between is not None else fnum(ds, "SpacingBetweenSlices"),
        )
        if vendor == "Philips":
            _philips_scale(sl, pf if pf is not None else ds)
        if diff is not None:
            b = fnum(diff, "DiffusionBValue")
            if b is not None:
                sl.bval = b
                dgs = _seq_item(diff, "DiffusionGradientDirectionSequence")
                vec = fvec(dgs, "DiffusionGradientOrientation", 3) if dgs is not None else None
                sl.bvec = vec if vec is not None else np.zeros(3)
        tr = fnum(timing, "RepetitionTime") if timing is not None else None
        if tr is not None:
            sl.extra["tr"] = tr
        if timing is not None and fnum(timing, "FlipAngle") is not None:
            sl.extra["flip"] = fnum(timing, "FlipAngle")
        sl.extra["frame_type"] = frame_type
        sl.extra["uid"] = uid
        if temporal:
            sl.extra["vol_key"] = (temporal, file_instance)
        sl.extra["numbered"] = False  # frames are told apart by their index
        sl.key = (
            *_common_key(ds),
            _round_iop(iop),
            rows,
            cols,
            _round_spacing(spacing),
            round(te, 3) if te is not None else None,
            _frame_type_key(frame_type, vendor),
            complex_part,
        )
        sl.order = (temporal, file_instance, f)
        sl.extra["stack"] = (stack, in_stack, dim_index)
        out.append(sl)
    return out


def _philips_private_ss(ds: Dataset, depth: int = 0) -> float | None:
    """Philips private scale slope (2005,xx0E), also inside private per-frame sequences."""
    for elem in ds:
        tag = elem.tag
        if tag.group == 0x2005 and tag.element >= 0x1000 and (tag.element & 0xFF) == 0x0E:
            try:
                value = elem.value
                value = value[0] if isinstance(value, (list, tuple, MultiValue)) else value
                return float(value)
            except (TypeError, ValueError, IndexError):
                return None
        if elem.VR == "SQ" and depth < 1 and tag.group == 0x2005:
            for item in elem.value or []:
                found = _philips_private_ss(item, depth + 1)
                if found is not None:
                    return found
    return None


def image_type_of(item: Dataset, keyword: str) -> tuple[str, ...]:
    """A CS multi-value as an upper-case tuple."""
    value = item.get(keyword)
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split("\\")
    return tuple(str(v).upper() for v in value)


def _frame_type_key(ftype: tuple[str, ...], vendor: str) -> tuple[str, ...]:
    """FrameType values that separate volumes (magnitude, phase, B0 map...)."""
    return tuple(ftype[:4])


def _datetime_seconds(value: Any) -> float | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) < 10:
        return None
    return tm_seconds(text[8:].split("+")[0].split("-")[0])
