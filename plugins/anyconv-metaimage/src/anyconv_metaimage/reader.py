"""Read MetaImage (.mha/.mhd) natively: header checked first, voxels loaded lazily.

Geometry is ITK's: ``TransformMatrix`` row ``i`` is the LPS direction of voxel axis ``i``,
``Offset`` the LPS position of voxel 0 and ``ElementSpacing`` the step along each axis. The
affine we expose is that LPS mapping turned to RAS+ with ``anyconv.geometry``.
``AnatomicalOrientation`` is ignored for geometry, as ITK ignores it; see README.md.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import deflate as _deflate
from anyconv import geometry
from anyconv.errors import ReadError
from anyconv.model import Image, Meta, empty_array
from anyconv.specs import ReadOptions

from ._header import MAX_DEFLATE_RATIO, STANDARD_FIELDS, Header, parse_header

_MODALITIES = {"MET_MOD_CT": "CT", "MET_MOD_MR": "MR", "MET_MOD_NM": "NM", "MET_MOD_US": "US"}
#: fields copied into extras["metaimage"] so a MetaImage round trip keeps them.
_KEPT = ("Comment", "Name", "ID", "ParentID", "Color", "Modality", "AcquisitionDate",
         "CenterOfRotation", "DistanceUnits", "SequenceID", "ObjectSubType")  # fmt: skip


def _allow_outside(options: ReadOptions) -> bool:
    flag = str(options.extra.get("allow_outside", "0")).strip().lower()
    return options.allow_outside or flag in ("1", "true", "yes", "on")


def read_metaimage(path: Path, options: ReadOptions) -> Image:
    """Read one MetaImage; voxel data stays on disk until asked for."""
    path = Path(path)
    try:
        hdr = parse_header(path, _allow_outside(options))
    except OSError as exc:
        raise ReadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    proxy = MetaImageData(hdr)
    proxy.check_sizes()
    affine, extra_axes = _geometry(hdr)
    image = Image(proxy, affine)
    image.meta = _meta(hdr, extra_axes)
    if hdr.channels > 1:
        image.meta.intent = "rgb" if hdr.channels == 3 and hdr.dtype == "u1" else "vector"
        if hdr.channels == 4 and hdr.dtype == "u1":
            image.meta.intent = "rgba"
    image.extras["metaimage"] = _extras(hdr, extra_axes)
    _check_orientation(hdr, affine, image)
    return image


def _geometry(hdr: Header) -> tuple[np.ndarray, dict[str, Any]]:
    """RAS+ affine of the first three axes; spacing/offset/matrix of the others kept aside."""
    n = hdr.ndims
    spacing = hdr.numbers("ElementSpacing", n)
    if spacing is None:
        spacing = hdr.numbers("ElementSize", n, 1.0)
    assert spacing is not None
    origin = None
    # MetaIO's precedence when several synonyms are given (checked against ITK).
    for key in ("Origin", "Offset", "Position"):
        origin = hdr.numbers(key, n)
        if origin is not None:
            break
    origin = origin or [0.0] * n
    matrix = None
    for key in ("TransformMatrix", "Rotation", "Orientation"):
        matrix = hdr.numbers(key, n * n)
        if matrix is not None:
            break
    tm = np.eye(n) if matrix is None else np.asarray(matrix).reshape(n, n)
    direction = tm.T  # column i = direction of voxel axis i (ITK MetaImageIO)
    k = min(n, 3)
    if abs(np.linalg.det(direction[:k, :k])) < 1e-12:
        raise ReadError(f"{hdr.path}: TransformMatrix is singular")
    if any(s == 0 for s in spacing[:k]):
        raise ReadError(f"{hdr.path}: ElementSpacing has a zero: {spacing}")
    lps = geometry.from_spacing_direction_origin(spacing[:k], direction[:k, :k], origin[:k])
    extra = {
        "spacing": [float(s) for s in spacing],
        "offset": [float(o) for o in origin],
        "transform_matrix": [float(v) for v in tm.ravel()],
    }
    return geometry.lps_to_ras(lps), extra


def _meta(hdr: Header, extra: dict[str, Any]) -> Meta:
    meta = Meta()
    if hdr.ndims == 4 and extra["spacing"][3] > 0:
        # ITK's convention (and Image.from_sitk's): the 4th spacing is the time step in s.
        meta.repetition_time = float(extra["spacing"][3])
    modality = hdr.fields.get("Modality")
    if modality in _MODALITIES:
        meta.modality = _MODALITIES[modality]
    if hdr.fields.get("Comment"):
        meta.description = hdr.fields["Comment"]
    units = hdr.fields.get("DistanceUnits")
    if units in ("mm", "cm", "um", "m", "nm"):
        meta.spatial_unit = units
    return meta


def _extras(hdr: Header, extra: dict[str, Any]) -> dict[str, Any]:
    """What only MetaImage has: user keys, descriptive fields, the N-D geometry as written."""
    user = {k: v for k, v in hdr.fields.items() if k not in STANDARD_FIELDS}
    return {
        "fields": {k: hdr.fields[k] for k in _KEPT if k in hdr.fields},
        "user": user,
        "anatomical_orientation": hdr.fields.get("AnatomicalOrientation"),
        "element_type": hdr.fields.get("ElementType"),
        "compressed": hdr.compressed,
        "ndims": hdr.ndims,
        "channels": hdr.channels,
        **extra,
    }


def itk_orientation(affine: np.ndarray) -> str:
    """ITK's AnatomicalOrientation letters for a RAS+ affine: where each axis comes *from*."""
    opposite = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S", "?": "?"}
    return "".join(opposite[c] for c in geometry.axcodes(affine))


def _check_orientation(hdr: Header, affine: np.ndarray, image: Image) -> None:
    stated = (hdr.fields.get("AnatomicalOrientation") or "").upper()[:3]
    if len(stated) < 3 or "?" in stated or hdr.ndims < 3:
        return
    actual = itk_orientation(affine)
    if stated != actual:
        image.notes.append(
            f"AnatomicalOrientation {stated} disagrees with TransformMatrix ({actual}); "
            "ignored, as ITK does"
        )


class MetaImageData:
    """Lazy voxels of a MetaImage in anyconv order: i, j, k[, t...][, component]."""

    def __init__(self, hdr: Header) -> None:
        self._hdr = hdr
        comp = (hdr.channels,) if hdr.channels > 1 else ()
        self.shape: tuple[int, ...] = tuple(hdr.dims) + comp
        self.dtype = np.dtype(hdr.dtype)
        self.ndim = len(self.shape)

    # -- checks before any allocation -------------------------------------------------
    def _file_elements(self) -> int:
        hdr = self._hdr
        return math.prod(hdr.dims[: hdr.file_ndims]) * hdr.channels

    def _span(self, f: Path) -> tuple[int, int]:
        """Byte offset and available bytes of the data in file ``f``."""
        hdr = self._hdr
        size = f.stat().st_size
        if hdr.local_offset is not None:
            return hdr.local_offset, size - hdr.local_offset
        if hdr.header_size == -1:
            need = self._file_elements() * hdr.itemsize
            if hdr.compressed:
                raise ReadError(f"{hdr.path}: HeaderSize = -1 with compressed data")
            return max(size - need, 0), min(size, need)
        return hdr.header_size, size - hdr.header_size

    def check_sizes(self) -> None:
        """Refuse data files whose length disagrees with DimSize, before reading them."""
        hdr = self._hdr
        need = self._file_elements() * hdr.itemsize
        for f in hdr.data_files:
            _, have = self._span(f)
            name = f.name
            if not hdr.binary:
                if have <= 0:
                    raise ReadError(f"{hdr.path}: no ASCII data in {name}")
                continue
            if hdr.compressed:
                one = hdr.compressed_size is not None and len(hdr.data_files) == 1
                if one and have < hdr.compressed_size:
                    raise ReadError(
                        f"{hdr.path}: truncated: CompressedDataSize is "
                        f"{hdr.compressed_size} bytes, {name} has {max(have, 0)}"
                    )
                if need > max(have, 0) * MAX_DEFLATE_RATIO + 1024:
                    raise ReadError(
                        f"{hdr.path}: {max(have, 0)} compressed bytes cannot hold the "
                        f"{need} bytes DimSize asks for"
                    )
            elif have != need:
                what = "truncated" if have < need else "too long"
                raise ReadError(
                    f"{hdr.path}: {what}: DimSize needs {need} bytes of data, {name} has "
                    f"{max(have, 0)}"
                )

    # -- loading --------------------------------------------------------------------------
    def _read_file(self, f: Path) -> np.ndarray:
        hdr = self._hdr
        count = self._file_elements()
        offset, have = self._span(f)
        order = ">" if hdr.msb else "<"
        disk = np.dtype(order + hdr.dtype)
        with f.open("rb") as fh:
            fh.seek(offset)
            if not hdr.binary:
                return _ascii(fh.read(), count, self.dtype, hdr.path)
            if not hdr.compressed:
                arr = empty_array((count,), disk)
                got = fh.readinto(memoryview(arr).cast("B"))
                if got != arr.nbytes:
                    raise ReadError(f"{hdr.path}: {f.name} ended early")
            else:
                size = (
                    have
                    if hdr.compressed_size is None or len(hdr.data_files) > 1
                    else (hdr.compressed_size)
                )
                raw = _inflate(fh.read(size), count * disk.itemsize, hdr.path, f.name)
                arr = np.frombuffer(raw, dtype=disk).copy()
        if not disk.isnative:
            arr = arr.byteswap().view(disk.newbyteorder("="))
        return arr

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        hdr = self._hdr
        parts = [self._read_file(f) for f in hdr.data_files]
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        # File order: component fastest, then i, j, k...: Fortran order of (c, i, j, k...).
        if hdr.channels > 1:
            arr = np.moveaxis(flat.reshape((hdr.channels, *hdr.dims), order="F"), 0, -1)
        else:
            arr = flat.reshape(hdr.dims, order="F")
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]


def _inflate(data: bytes, expected: int, path: Path, name: str) -> bytes:
    """Zlib (or gzip) data of exactly ``expected`` bytes; never inflates more than that."""
    d = _deflate.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, as MetaIO
    try:
        out = d.decompress(data, expected)
        # ISA-L may hold input back without an unconsumed_tail: always ask for one more byte.
        extra = b"" if d.eof else d.decompress(d.unconsumed_tail, 1)
    except _deflate.ERRORS as exc:
        raise ReadError(f"{path}: corrupt compressed data in {name}: {exc}") from exc
    if len(out) < expected:
        raise ReadError(
            f"{path}: truncated: {name} inflates to {len(out)} bytes, DimSize needs {expected}"
        )
    if extra:
        raise ReadError(f"{path}: {name} inflates to more than the {expected} bytes of DimSize")
    if not d.eof:
        raise ReadError(f"{path}: truncated: the compressed stream in {name} is incomplete")
    return out


def _ascii(text: bytes, count: int, dtype: np.dtype, path: Path) -> np.ndarray:
    words = text.split()
    if len(words) < count:
        raise ReadError(f"{path}: ASCII data has {len(words)} values, DimSize needs {count}")
    try:
        values = np.array(words[:count], dtype=np.float64)
    except ValueError as exc:
        raise ReadError(f"{path}: ASCII data is not numeric") from exc
    return values.astype(dtype)
