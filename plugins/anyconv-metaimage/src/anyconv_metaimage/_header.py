"""MetaIO header text: parse and check it, so bad input is one clear ``ReadError``.

A MetaImage header is ``Key = Value`` lines ending with ``ElementDataFile``; for ``LOCAL`` the
voxel data follows that line's newline, for ``LIST`` the data file names follow it. Everything
here is checked before any voxel byte is read or any array allocated.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from anyconv.errors import ReadError

#: MetaIO element types and their little-endian numpy codes (MET_LONG is 4 bytes in MetaIO).
ELEMENT_TYPES = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG": "i4",
    "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8",
    "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}

#: Fields MetaIO itself defines for an image; anything else is a user key.
STANDARD_FIELDS = frozenset(
    [
        "Comment",
        "ObjectType",
        "ObjectSubType",
        "NDims",
        "Name",
        "ID",
        "ParentID",
        "Color",
        "Position",
        "Origin",
        "Offset",
        "TransformMatrix",
        "Rotation",
        "Orientation",
        "CenterOfRotation",
        "DistanceUnits",
        "AnatomicalOrientation",
        "ElementSpacing",
        "ElementSize",
        "DimSize",
        "HeaderSize",
        "HeaderSizePerSlice",
        "Modality",
        "SequenceID",
        "ElementMin",
        "ElementMax",
        "ElementNumberOfChannels",
        "ElementType",
        "ElementDataFile",
        "BinaryData",
        "BinaryDataByteOrderMSB",
        "ElementByteOrderMSB",
        "CompressedData",
        "CompressedDataSize",
        "AcquisitionDate",
        "FormTypeName",
        "TransformType",
    ]
)

#: Header files are small; a "header" larger than this is not one.
MAX_HEADER_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024
#: deflate cannot expand more than ~1032:1; a header claiming more is lying.
MAX_DEFLATE_RATIO = 1100
_PATTERN = re.compile(r"%(?:0?\d+)?[dixX]")


@dataclass
class Header:
    """A parsed MetaIO header and where its voxel data lives."""

    path: Path
    fields: dict[str, str]
    ndims: int
    dims: tuple[int, ...]
    dtype: str
    channels: int
    msb: bool
    binary: bool
    compressed: bool
    compressed_size: int | None
    header_size: int
    data_files: list[Path] = field(default_factory=list)
    #: axes each data file holds (ndims for a single file).
    file_ndims: int = 0
    #: byte offset of LOCAL data in the header file.
    local_offset: int | None = None

    @property
    def itemsize(self) -> int:
        """Bytes per scalar element."""
        return int(self.dtype[-1])

    def numbers(self, key: str, count: int, default: float | None = None) -> list[float] | None:
        """``count`` numbers of a field, ``None`` when absent and no default."""
        text = self.fields.get(key)
        if text is None:
            return None if default is None else [default] * count
        try:
            values = [float(v) for v in text.split()]
        except ValueError as exc:
            raise ReadError(f"{self.path}: {key} is not numeric: {text!r}") from exc
        if len(values) < count:
            raise ReadError(f"{self.path}: {key} has {len(values)} values, needs {count}")
        if not all(math.isfinite(v) for v in values[:count]):
            raise ReadError(f"{self.path}: {key} holds a non-finite value: {text!r}")
        return values[:count]


def _bool(path: Path, key: str, text: str | None, default: bool) -> bool:
    if text is None:
        return default
    word = text.strip().lower()
    if word in ("true", "1", "yes"):
        return True
    if word in ("false", "0", "no"):
        return False
    raise ReadError(f"{path}: {key} must be True or False, not {text!r}")


def _int(path: Path, key: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError as exc:
        raise ReadError(f"{path}: {key} must be an integer, not {text!r}") from exc


def read_header_text(path: Path) -> tuple[list[tuple[str, str]], int, str]:
    """Fields in order, the byte offset just after ``ElementDataFile``'s line, and what follows.

    Only as much of the file is read as the header needs, so a large ``.mha`` is not loaded.
    """
    buf = b""
    fields: list[tuple[str, str]] = []
    with path.open("rb") as fh:
        pos = 0  # start of the next unparsed line in buf
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    if buf[pos:].strip():
                        nl = len(buf)  # last line without newline
                    else:
                        break
                else:
                    buf += chunk
                    if len(buf) > MAX_HEADER_BYTES:
                        raise ReadError(f"{path}: no ElementDataFile in the first 64 MiB")
                    continue
            line = buf[pos:nl]
            pos = nl + 1
            if b"\x00" in line:
                raise ReadError(f"{path}: binary bytes in the MetaImage header")
            text = line.decode("latin-1").strip()
            if not text:
                continue
            key, eq, value = text.partition("=")
            if not eq:
                raise ReadError(f"{path}: malformed header line {text[:60]!r} (no '=')")
            key, value = key.strip(), value.strip()
            if not key or " " in key:
                raise ReadError(f"{path}: malformed header key {key[:60]!r}")
            fields.append((key, value))
            if key == "ElementDataFile":
                rest = b""
                if not value.upper().startswith("LIST"):
                    return fields, min(pos, len(buf)), ""
                rest = buf[pos:] + fh.read(MAX_HEADER_BYTES)
                return fields, min(pos, len(buf)), rest.decode("latin-1")
    raise ReadError(f"{path}: not a MetaImage header (no ElementDataFile line)")


def _inside(folder: Path, name: str, allow_outside: bool, header: Path) -> Path:
    """The data file ``name`` of a header in ``folder``, refused when it leaves the folder."""
    candidate = Path(name)
    if candidate.is_absolute():
        if not allow_outside:
            raise ReadError(
                f"{header}: data file {name!r} is an absolute path outside the header's folder",
                hint="pass -O allow_outside=1 if you trust this header",
            )
        return candidate
    joined = Path(os.path.normpath(folder / candidate))
    base = Path(os.path.normpath(folder))
    if not allow_outside and joined != base and base not in joined.parents:
        raise ReadError(
            f"{header}: data file {name!r} lies outside the header's folder",
            hint="pass -O allow_outside=1 if you trust this header",
        )
    return joined


def parse_header(path: Path, allow_outside: bool = False) -> Header:
    """Parse and validate a MetaImage header; data files are resolved, not read."""
    pairs, offset, rest = read_header_text(path)
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    obj = fields.get("ObjectType")
    if obj is not None and obj.lower() != "image":
        raise ReadError(f"{path}: ObjectType {obj!r} is not an image")
    if "NDims" not in fields:
        raise ReadError(f"{path}: missing NDims")
    ndims = _int(path, "NDims", fields["NDims"])
    if not 1 <= ndims <= 16:
        raise ReadError(f"{path}: NDims {ndims} out of range")
    if "DimSize" not in fields:
        raise ReadError(f"{path}: missing DimSize")
    try:
        dims = tuple(int(v) for v in fields["DimSize"].split())
    except ValueError as exc:
        raise ReadError(f"{path}: DimSize is not integers: {fields['DimSize']!r}") from exc
    if len(dims) != ndims:
        raise ReadError(f"{path}: DimSize has {len(dims)} values but NDims is {ndims}")
    if any(d <= 0 for d in dims):
        raise ReadError(f"{path}: DimSize must be positive, got {dims}")
    etype = fields.get("ElementType")
    if etype is None:
        raise ReadError(f"{path}: missing ElementType")
    base = etype.upper().removesuffix("_ARRAY")
    if base not in ELEMENT_TYPES:
        raise ReadError(f"{path}: unsupported ElementType {etype!r}")
    channels = _int(path, "ElementNumberOfChannels", fields.get("ElementNumberOfChannels", "1"))
    if not 1 <= channels <= 4096:
        raise ReadError(f"{path}: ElementNumberOfChannels {channels} out of range")
    msb_text = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB"))
    hdr = Header(
        path=path,
        fields=fields,
        ndims=ndims,
        dims=dims,
        dtype=ELEMENT_TYPES[base],
        channels=channels,
        msb=_bool(path, "BinaryDataByteOrderMSB", msb_text, False),
        binary=_bool(path, "BinaryData", fields.get("BinaryData"), True),
        compressed=_bool(path, "CompressedData", fields.get("CompressedData"), False),
        compressed_size=None,
        header_size=_int(path, "HeaderSize", fields.get("HeaderSize", "0")),
    )
    if hdr.compressed and not hdr.binary:
        raise ReadError(f"{path}: CompressedData needs BinaryData = True")
    if "CompressedDataSize" in fields:
        hdr.compressed_size = _int(path, "CompressedDataSize", fields["CompressedDataSize"])
        if hdr.compressed_size < 0:
            raise ReadError(f"{path}: negative CompressedDataSize")
    if hdr.header_size < -1:
        raise ReadError(f"{path}: HeaderSize {hdr.header_size} is invalid")
    _resolve_data(hdr, fields["ElementDataFile"], offset, rest, allow_outside)
    return hdr


def _resolve_data(hdr: Header, value: str, offset: int, rest: str, allow_outside: bool) -> None:
    path = hdr.path
    folder = path.parent
    word = value.split()[0] if value.split() else ""
    if not word:
        raise ReadError(f"{path}: ElementDataFile is empty")
    if word.upper() == "LOCAL":
        hdr.local_offset = offset
        hdr.data_files = [path]
        hdr.file_ndims = hdr.ndims
        return
    if word.upper() == "LIST":
        hdr.file_ndims = _sub_ndims(hdr, value.split()[1:])
        names = [line.strip() for line in rest.splitlines() if line.strip()]
        _check_count(hdr, len(names))
        hdr.data_files = [_inside(folder, n, allow_outside, path) for n in names]
    elif "%" in value:
        parts = value.split()
        if len(parts) < 4:
            raise ReadError(f"{path}: ElementDataFile pattern needs 'name min max step'")
        pattern = parts[0]
        if len(_PATTERN.findall(pattern)) != 1 or pattern.replace("%%", "").count("%") != 1:
            raise ReadError(f"{path}: unsupported file name pattern {pattern!r}")
        start, stop, step = (_int(path, "ElementDataFile", p) for p in parts[1:4])
        if step == 0:
            raise ReadError(f"{path}: ElementDataFile pattern step is 0")
        hdr.file_ndims = _sub_ndims(hdr, parts[4:5])
        _check_count(hdr, len(range(start, stop + (1 if step > 0 else -1), step)))
        names = [pattern % i for i in range(start, stop + (1 if step > 0 else -1), step)]
        hdr.data_files = [_inside(folder, n, allow_outside, path) for n in names]
    else:
        hdr.file_ndims = hdr.ndims
        hdr.data_files = [_inside(folder, value, allow_outside, path)]
    _check_count(hdr, len(hdr.data_files))
    for f in hdr.data_files:
        if not f.is_file():
            raise ReadError(f"{path}: data file {f.name} not found")


def _check_count(hdr: Header, count: int) -> None:
    """As many data files as the axes past each file's own need, checked before any lookup."""
    need = math.prod(hdr.dims[hdr.file_ndims :])
    if count != need:
        raise ReadError(f"{hdr.path}: {count} data files listed, DimSize needs {need}")


def _sub_ndims(hdr: Header, words: list[str]) -> int:
    if not words:
        return hdr.ndims - 1
    text = words[0].upper().removesuffix("D")
    n = _int(hdr.path, "ElementDataFile", text)
    if not 1 <= n <= hdr.ndims:
        raise ReadError(f"{hdr.path}: ElementDataFile {n}D slices for an {hdr.ndims}-D image")
    return n
