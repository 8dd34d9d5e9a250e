"""The MRtrix image header: ``mrtrix image``, ``key: value`` lines, ``END``.

Format (MRtrix3 docs, "MRtrix image formats"): ``dim`` sizes, ``vox`` voxel sizes, ``layout``
(per axis: sign = stored forwards or backwards, number = rank in the storage order, 0 being
the fastest), ``datatype`` (``Int16LE``, ``Float32BE``, ``Bit`` ...), ``transform`` (three rows
of 4 numbers: unit axis directions and the position of voxel 0 in scanner RAS mm),
``scaling`` (``offset,scale``), ``file`` (``. OFFSET`` for data in this file). Any other key is
free text; a key given on several lines keeps every line.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

MAGIC = b"mrtrix image"
#: Most header bytes read before giving up on finding ``END`` (dw_scheme of a few thousand
#: volumes and a long command history stay far below).
MAX_HEADER = 16 * 1024 * 1024

_TYPES = {
    "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "int64": "i8", "uint64": "u8", "float32": "f4", "float64": "f8",
    "cfloat32": "c8", "cfloat64": "c16",
}  # fmt: skip
_NAMES = {np.dtype(v).str[1:]: k for k, v in _TYPES.items()}
_CANON = {
    "int8": "Int8", "uint8": "UInt8", "int16": "Int16", "uint16": "UInt16", "int32": "Int32",
    "uint32": "UInt32", "int64": "Int64", "uint64": "UInt64", "float32": "Float32",
    "float64": "Float64", "cfloat32": "CFloat32", "cfloat64": "CFloat64",
}  # fmt: skip
#: Keys with a meaning of their own; everything else is kept as free key/values.
STRUCTURAL = ("dim", "vox", "layout", "datatype", "transform", "scaling", "file")


class HeaderError(ValueError):
    """The header is not a valid MRtrix image header."""


@dataclass
class MifHeader:
    """A parsed header; ``keyval`` holds every other key in file order."""

    dim: tuple[int, ...]
    vox: tuple[float, ...]
    strides_rank: tuple[int, ...]
    strides_sign: tuple[int, ...]
    dtype: np.dtype
    bits: bool
    transform: np.ndarray | None
    offset: float = 0.0
    scale: float = 1.0
    files: list[tuple[str, int]] = field(default_factory=list)
    keyval: dict[str, list[str]] = field(default_factory=dict)
    header_bytes: int = 0

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.dim)

    @property
    def nbytes(self) -> int:
        """Bytes of voxel data the header promises."""
        n = math.prod(self.dim)
        return (n + 7) // 8 if self.bits else n * self.dtype.itemsize

    def affine(self) -> np.ndarray:
        """Voxel index to RAS+ mm for the first three axes, as MRtrix maps them."""
        vox = [v if math.isfinite(v) and v > 0 else 1.0 for v in [*self.vox[:3], 1, 1, 1][:3]]
        dims = [*self.dim[:3], 1, 1, 1][:3]
        aff = np.eye(4)
        if self.transform is None:
            # MRtrix's default: identity axes, the volume centred on the scanner origin.
            aff[:3, :3] = np.diag(vox)
            aff[:3, 3] = [-(d - 1) * v / 2.0 for d, v in zip(dims, vox, strict=True)]
            return aff
        aff[:3, :3] = self.transform[:3, :3] * np.asarray(vox)[None, :]
        aff[:3, 3] = self.transform[:3, 3]
        return aff


def read_header_bytes(fh: IO[bytes], name: str) -> bytes:
    """Bytes up to and including the ``END`` line, without reading past ``MAX_HEADER``."""
    buf = bytearray()
    while True:
        chunk = fh.read(65536)
        if not chunk:
            break
        start = max(0, len(buf) - 5)
        buf += chunk
        m = re.search(rb"\nEND\r?\n", bytes(buf[start:]))
        if m:
            return bytes(buf[: start + m.end()])
        if len(buf) > MAX_HEADER:
            raise HeaderError(f"{name}: no END line in the first {MAX_HEADER} bytes")
    if buf.endswith((b"\nEND", b"\nEND\r")):
        return bytes(buf)
    raise HeaderError(f"{name}: header has no END line (truncated?)")


def open_maybe_gzip(path: Path) -> IO[bytes]:
    """The file, gunzipped on the fly when it starts with the gzip magic."""
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else path.open("rb")


def parse_header(raw: bytes, name: str) -> MifHeader:
    """Parse header text; raise ``HeaderError`` naming what is wrong."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[0].strip() != MAGIC.decode():
        raise HeaderError(f"{name}: does not start with 'mrtrix image'")
    entries: dict[str, list[str]] = {}
    for line in lines[1:]:
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        if line == "END":
            break
        key, sep, value = line.partition(":")
        if not sep:
            raise HeaderError(f"{name}: malformed header line {line[:60]!r}")
        entries.setdefault(key.strip(), []).append(value.strip())
    for key in ("dim", "vox", "layout", "datatype", "file"):
        if key not in entries:
            raise HeaderError(f"{name}: header has no '{key}'")
    try:
        dim = tuple(int(x) for x in entries["dim"][0].split(","))
    except ValueError as exc:
        raise HeaderError(f"{name}: bad dim {entries['dim'][0]!r}") from exc
    if not dim or any(d < 1 for d in dim):
        raise HeaderError(f"{name}: bad dim {entries['dim'][0]!r}")
    try:
        vox = [float(x) for x in entries["vox"][0].split(",")]
    except ValueError as exc:
        raise HeaderError(f"{name}: bad vox {entries['vox'][0]!r}") from exc
    vox = (vox + [math.nan] * len(dim))[: len(dim)]
    rank, sign = _parse_layout(entries["layout"][0], len(dim), name)
    dtype, bits = _parse_datatype(entries["datatype"][0], name)
    transform = None
    if "transform" in entries:
        rows = entries["transform"]
        try:
            values = [[float(x) for x in r.split(",")] for r in rows]
        except ValueError as exc:
            raise HeaderError(f"{name}: bad transform") from exc
        if len(values) < 3 or any(len(r) != 4 for r in values[:3]):
            raise HeaderError(f"{name}: transform needs 3 rows of 4 numbers")
        transform = np.array(values[:3], dtype=np.float64)
        if not np.all(np.isfinite(transform)):
            transform = None  # MRtrix resets an invalid transform to its default
    offset, scale = 0.0, 1.0
    if "scaling" in entries:
        try:
            offset, scale = (float(x) for x in entries["scaling"][0].split(","))
        except ValueError as exc:
            raise HeaderError(f"{name}: bad scaling {entries['scaling'][0]!r}") from exc
    files = []
    for item in entries["file"]:
        fname, _, off = item.rpartition(" ")
        if not fname:
            fname, off = item, "0"
        try:
            files.append((fname.strip(), int(off)))
        except ValueError as exc:
            raise HeaderError(f"{name}: bad file entry {item!r}") from exc
    keyval = {k: v for k, v in entries.items() if k not in STRUCTURAL}
    return MifHeader(
        dim, tuple(vox), rank, sign, dtype, bits, transform, offset, scale, files, keyval, len(raw)
    )


def _parse_layout(text: str, ndim: int, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    tokens = [t.strip() for t in text.split(",")]
    if len(tokens) != ndim:
        raise HeaderError(f"{name}: layout {text!r} does not match {ndim} axes")
    rank, sign = [], []
    for t in tokens:
        m = re.fullmatch(r"([+-]?)(\d+)", t)
        if not m:
            raise HeaderError(f"{name}: bad layout {text!r}")
        sign.append(-1 if m.group(1) == "-" else 1)
        rank.append(int(m.group(2)))
    if sorted(rank) != sorted(set(rank)):
        raise HeaderError(f"{name}: layout {text!r} repeats an axis rank")
    return tuple(rank), tuple(sign)


def _parse_datatype(text: str, name: str) -> tuple[np.dtype, bool]:
    low = text.strip().lower()
    if low == "bit":
        return np.dtype(bool), True
    order = "<"
    if low.endswith(("le", "be")) and low[:-2] in _TYPES:
        order = "<" if low.endswith("le") else ">"
        low = low[:-2]
    if low not in _TYPES:
        raise HeaderError(f"{name}: unknown datatype {text!r}")
    return np.dtype(order + _TYPES[low]), False


def datatype_name(dtype: np.dtype) -> str:
    """MRtrix name of a numpy dtype, little-endian (``Int16LE``, ``UInt8``)."""
    dtype = np.dtype(dtype)
    base = _CANON[_NAMES[dtype.newbyteorder("<").str[1:]]]
    return base if dtype.itemsize == 1 else base + "LE"


def storage_order(rank: tuple[int, ...]) -> list[int]:
    """Axes from the fastest varying on disk to the slowest."""
    return sorted(range(len(rank)), key=lambda a: rank[a])


def format_number(value: float) -> str:
    """Shortest text that reads back as the same double."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
