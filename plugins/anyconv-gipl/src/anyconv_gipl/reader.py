"""Read GIPL with numpy: the 256-byte big-endian header, then the voxels straight into place.

Importing SimpleITK alone cost 60-80 ms per conversion and its read copied the volume several
times (ITK buffer, ``GetArrayFromImage``, transpose). Here the voxels are read (or inflated)
once into a preallocated array and byte-swapped in place.

GIPL stores sizes, voxel sizes and an origin, no direction: ITK reads every file with the
identity direction in its LPS world, and so does this reader, so the RAS affine is the one
``Image.from_sitk`` gave for the same file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
from anyconv import geometry
from anyconv.errors import ReadError
from anyconv.io import read_into
from anyconv.model import Image, empty_array
from anyconv.specs import ReadOptions

from .header import COMPLEX, HEADER, MAGICS, TYPES, parse

#: bytes read at a time into the buffer they are byte-swapped from (fits the CPU cache).
_CHUNK = 256 << 10
#: deflate cannot expand more than ~1032:1: a .gz file of N bytes holds at most this x N.
_MAX_DEFLATE_RATIO = 1032


def read_gipl(path: Path, options: ReadOptions) -> Image:
    """Read one GIPL image (3-D, or 4-D with the time step as repetition time)."""
    path = Path(path)
    with path.open("rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if gz:
            return _read_gz(path, raw)
        head = raw.read(HEADER)
        if len(head) < HEADER:
            raise ReadError(f"{path}: truncated: {len(head)} of {HEADER} header bytes")
        hdr = parse_header(path, head)
        have = os.fstat(raw.fileno()).st_size
        if have < hdr["need"]:
            raise ReadError(
                f"{path}: truncated: header promises {hdr['need']} bytes, file has {have}"
            )
        _check_spacing(path, hdr)
        arr = empty_array(hdr["shape"], hdr["disk"].newbyteorder("="))
        filled = _fill(raw, arr, hdr["disk"])
        if filled < arr.nbytes:  # the size was checked: the file shrank under us
            raise ReadError(f"{path}: truncated: {filled} of {arr.nbytes} bytes of voxel data")
        return _image(arr, hdr)


def _read_gz(path: Path, raw: IO[bytes]) -> Image:
    """Inflate the header, then the voxels straight into the array (ISA-L, one pass)."""
    from anyconv.deflate import ERRORS
    from isal import igzip

    try:
        with igzip.open(raw, "rb") as fh:
            head = fh.read(HEADER)
            if len(head) < HEADER:
                raise ReadError(f"{path}: truncated: {len(head)} of {HEADER} header bytes")
            hdr = parse_header(path, head)
            size = os.fstat(raw.fileno()).st_size
            if hdr["need"] > size * _MAX_DEFLATE_RATIO + 1024:
                raise ReadError(
                    f"{path}: truncated: header promises {hdr['need']} bytes, more than a "
                    f"{size}-byte gzip file can hold"
                )
            _check_spacing(path, hdr)
            arr = empty_array(hdr["shape"], hdr["disk"].newbyteorder("="))
            try:
                filled = _fill(fh, arr, hdr["disk"])
            except EOFError as exc:  # a cut stream: say so, as for an uncompressed file
                raise ReadError(
                    f"{path}: truncated: the gzip stream ends before the {hdr['need']} bytes "
                    "the header promises"
                ) from exc
    except (*ERRORS, EOFError, OSError) as exc:
        raise ReadError(f"{path}: unreadable gzip stream: {exc}") from exc
    if filled < arr.nbytes:
        raise ReadError(
            f"{path}: truncated: header promises {hdr['need']} bytes, file has {HEADER + filled}"
        )
    return _image(arr, hdr)


def parse_header(path: Path, head: bytes) -> dict[str, Any]:
    """The fields ITK's GiplImageIO reads, checked so that nothing absurd gets allocated.

    Like ITK: the first three sizes above 0 make the dimensions, a fourth size above 1 a
    fourth axis; pixdim (float32) and origin (float64) of those axes are the geometry.
    """
    h = parse(head)
    magic = int(h["magic"])
    if magic not in MAGICS:
        raise ReadError(f"{path}: not a GIPL file: magic number {magic:#010x} at byte 252")
    code = int(h["image_type"])
    if code in COMPLEX:
        raise ReadError(f"{path}: unsupported GIPL image type {code} ({COMPLEX[code]})")
    if code not in TYPES:
        raise ReadError(f"{path}: unknown GIPL image type {code}")
    dims = [int(d) for d in h["dims"]]
    nd = 0
    while nd < 3 and dims[nd] > 0:
        nd += 1
    if any(d > 0 for d in dims[nd:3]):
        raise ReadError(f"{path}: invalid GIPL sizes {dims}: a size of 0 before a size above 0")
    if dims[3] > 1:
        if nd < 3:
            raise ReadError(f"{path}: invalid GIPL sizes {dims}: a 4th axis without 3 before it")
        nd = 4
    shape = tuple(dims[:nd])
    spacing = [float(v) for v in h["pixdim"][:nd]]
    disk = np.dtype(TYPES[code])
    return {
        "code": code,
        "dims": dims,
        "shape": shape,
        "disk": disk,
        "need": HEADER + math.prod(shape) * disk.itemsize,
        "spacing": spacing,
        "origin": [float(o) for o in h["origin"][:nd]],
    }


def _fill(fh: Any, arr: np.ndarray, disk: np.dtype) -> int:
    """Read ``disk``-typed voxels into ``arr`` (native, F order) until full or EOF.

    Big-endian voxels go through a small reused buffer that stays in the CPU cache and are
    swapped as they are copied into place: every byte of the volume is written once.
    Reading in place and swapping afterwards cost 24 ms instead of 16 ms for 256^3 int16.
    Returns the bytes read.
    """
    flat = arr.reshape(-1, order="F")  # a view: the array is F-contiguous
    if disk == arr.dtype:
        return read_into(fh, memoryview(flat).cast("B"))
    bounce = np.empty(_CHUNK // disk.itemsize, disk)
    view = memoryview(bounce).cast("B")
    done = 0
    while done < flat.size:
        count = min(bounce.size, flat.size - done)
        got = read_into(fh, view[: count * disk.itemsize])
        whole = got // disk.itemsize
        np.copyto(flat[done : done + whole], bounce[:whole])
        done += whole
        if got < count * disk.itemsize:
            return done * disk.itemsize + got % disk.itemsize
    return done * disk.itemsize


def _check_spacing(path: Path, hdr: dict[str, Any]) -> None:
    """ITK refuses a voxel size of 0 ("Refusing to change spacing"); so does this reader.

    Checked after the sizes, before the voxels are read: a header promising more than the
    file holds is reported as truncated first, as it always was.
    """
    if 0.0 in hdr["spacing"]:
        raise ReadError(f"{path}: invalid GIPL voxel sizes {hdr['spacing']}: a size of 0")


def _image(arr: np.ndarray, hdr: dict[str, Any]) -> Image:
    """The voxels with the identity-direction LPS geometry ITK gives them."""
    k = min(len(hdr["shape"]), 3)
    lps = np.eye(4)
    lps[:k, :k] = np.diag(hdr["spacing"][:k])
    lps[:k, 3] = hdr["origin"][:k]
    image = Image(arr, geometry.lps_to_ras(lps))
    if len(hdr["shape"]) == 4:
        image.meta.repetition_time = hdr["spacing"][3]
    image.extras["gipl"] = {"image_type": hdr["code"], "dims": hdr["dims"]}
    return image
