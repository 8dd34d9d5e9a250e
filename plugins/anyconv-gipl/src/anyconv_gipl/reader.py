"""Read GIPL with SimpleITK's GiplImageIO, after checking the header against the file size.

GIPL stores sizes, voxel sizes and an origin, no direction: ITK reads every file with the
identity direction in its LPS world, which ``Image.from_sitk`` turns into RAS.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from anyconv.errors import ReadError
from anyconv.model import Image
from anyconv.specs import ReadOptions

HEADER = 256
#: GIPL image_type code -> bytes per voxel (ITK's GiplImageIO table; binary is one bit).
_TYPE_BYTES = {
    1: 0.125, 7: 1, 8: 1, 15: 2, 16: 2, 31: 4, 32: 4, 64: 4, 65: 8,
    144: 4, 160: 8, 192: 8, 193: 16,
}  # fmt: skip


def read_gipl(path: Path, options: ReadOptions) -> Image:
    """Read one GIPL image (3-D, or 4-D with the time step as repetition time)."""
    path = Path(path)
    gz = _is_gzip(path)
    head = _head(path, gz)
    dims = [int(d) for d in np.frombuffer(head[:8], ">u2")]
    code = int(np.frombuffer(head[8:10], ">u2")[0])
    if code not in _TYPE_BYTES:
        raise ReadError(f"{path}: unknown GIPL image type {code}")
    n = math.prod(max(d, 1) for d in dims)
    need = HEADER + math.ceil(n * _TYPE_BYTES[code])
    have = _data_length(path) if gz else path.stat().st_size
    if have < need:
        raise ReadError(f"{path}: truncated: header promises {need} bytes, file has {have}")
    try:
        img = sitk.ReadImage(str(path), imageIO="GiplImageIO")
    except RuntimeError as exc:
        text = str(exc).strip().splitlines()
        raise ReadError(f"{path}: ITK cannot read it: {text[-1] if text else exc}") from exc
    image = Image.from_sitk(img)
    if image.ndim == 4 and dims[3] <= 1:
        image = image.replace(data=image.stored()[..., 0])
    image.extras["gipl"] = {"image_type": code, "dims": dims}
    return image


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _head(path: Path, gz: bool) -> bytes:
    try:
        with gzip.open(path, "rb") if gz else path.open("rb") as fh:
            head = fh.read(HEADER)
    except (OSError, EOFError, zlib.error) as exc:
        raise ReadError(f"{path}: unreadable gzip stream: {exc}") from exc
    if len(head) < HEADER:
        raise ReadError(f"{path}: truncated: {len(head)} of {HEADER} header bytes")
    return head


def _data_length(path: Path) -> int:
    """Uncompressed length of a gzipped file, streamed (nothing large is kept)."""
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return total  # a cut stream: what it held is what counts
    return total
