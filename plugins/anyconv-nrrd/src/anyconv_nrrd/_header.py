"""Strict NRRD header parsing (format versions 1 to 5) and data-file resolution.

pynrrd's ``read_header`` is lenient (a line without a separator raises a bare ``ValueError``,
``data file: LIST`` is not understood, fields and key/value pairs share one dict). We parse
the header ourselves so that fields and key/values stay apart and in order, every malformed
line is a one-line ``ReadError``, and data files are resolved safely. Numbers are read
as pynrrd reads them (``float`` of each token, ``nan`` allowed); the writer formats them
with pynrrd's formatters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from anyconv.errors import ReadError

#: Largest header we accept; real headers are a few KiB (LIST headers a few hundred).
MAX_HEADER_BYTES = 16 * 1024 * 1024
NRRD_DIM_MAX = 16

# Canonical field names and their spellings (the spec allows both for some).
_FIELD_ALIASES = {
    "dimension": "dimension",
    "type": "type",
    "sizes": "sizes",
    "endian": "endian",
    "encoding": "encoding",
    "content": "content",
    "block size": "block size",
    "blocksize": "block size",
    "min": "min",
    "max": "max",
    "old min": "old min",
    "oldmin": "old min",
    "old max": "old max",
    "oldmax": "old max",
    "data file": "data file",
    "datafile": "data file",
    "line skip": "line skip",
    "lineskip": "line skip",
    "byte skip": "byte skip",
    "byteskip": "byte skip",
    "number": "number",
    "sample units": "sample units",
    "sampleunits": "sample units",
    "space": "space",
    "space dimension": "space dimension",
    "space units": "space units",
    "space origin": "space origin",
    "space directions": "space directions",
    "measurement frame": "measurement frame",
    "spacings": "spacings",
    "thicknesses": "thicknesses",
    "axis mins": "axis mins",
    "axismins": "axis mins",
    "axis maxs": "axis maxs",
    "axismaxs": "axis maxs",
    "centers": "centerings",
    "centerings": "centerings",
    "labels": "labels",
    "units": "units",
    "kinds": "kinds",
}

#: Fields holding one entry per axis.
PER_AXIS_FIELDS = (
    "sizes",
    "space directions",
    "spacings",
    "thicknesses",
    "axis mins",
    "axis maxs",
    "centerings",
    "labels",
    "units",
    "kinds",
)

TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2",
    "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2",
    "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "longlong": "i8", "long long": "i8", "long long int": "i8", "signed long long": "i8",
    "signed long long int": "i8", "int64": "i8", "int64_t": "i8",
    "ulonglong": "u8", "unsigned long long": "u8", "unsigned long long int": "u8",
    "uint64": "u8", "uint64_t": "u8",
    "float": "f4", "double": "f8",
}  # fmt: skip

ENCODINGS = {
    "raw": "raw",
    "txt": "ascii",
    "text": "ascii",
    "ascii": "ascii",
    "hex": "hex",
    "gz": "gzip",
    "gzip": "gzip",
    "bz2": "bzip2",
    "bzip2": "bzip2",
}


@dataclass
class Header:
    """A parsed NRRD header: fields (canonical names, raw text) and key/values, in order."""

    path: Path
    version: int
    fields: dict[str, str] = field(default_factory=dict)
    keyvalues: list[tuple[str, str]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    #: Byte offset of attached data (after the blank line), or ``None`` when detached.
    data_offset: int | None = None
    #: File names following ``data file: LIST``.
    list_files: list[str] = field(default_factory=list)

    # -- typed access ------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        """Number of axes."""
        return int(self.fields["dimension"])

    def get(self, name: str) -> str | None:
        """A field's raw text, or ``None``."""
        return self.fields.get(name)


def fail(path: Path, message: str) -> ReadError:
    """A one-line read error naming the file."""
    return ReadError(f"{path}: invalid NRRD header: {message}")


def parse_header(path: Path) -> Header:
    """Read and parse the header of ``path`` (attached or detached)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = b""
            # read only until the blank line that ends an attached header
            while len(head) < min(size, MAX_HEADER_BYTES):
                block = fh.read(min(65536, MAX_HEADER_BYTES - len(head)))
                if not block:
                    break
                head += block
                if b"\n\n" in head or b"\n\r\n" in head:
                    break
    except OSError as exc:
        raise ReadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_header_bytes(
        path, head, complete=len(head) >= size or b"\n\n" in head or b"\n\r\n" in head
    )


def parse_header_bytes(path: Path, head: bytes, *, complete: bool = True) -> Header:
    """Parse header bytes; ``complete`` says whether ``head`` is the whole file."""
    if not head.startswith(b"NRRD"):
        raise fail(path, "no NRRD magic")
    pos = 0
    lines: list[tuple[str, int]] = []  # (line, offset after it)
    ended = False
    while pos < len(head):
        nl = head.find(b"\n", pos)
        if nl < 0:
            if not complete:
                raise fail(path, f"header longer than {MAX_HEADER_BYTES} bytes")
            raw, pos = head[pos:], len(head)
        else:
            raw, pos = head[pos:nl], nl + 1
        text = raw.rstrip(b"\r")
        if lines and text.strip() == b"":
            ended = True
            lines.append(("", pos))
            break
        try:
            lines.append((text.decode("utf-8"), pos))
        except UnicodeDecodeError:
            lines.append((text.decode("latin-1"), pos))
    magic = lines[0][0].strip()
    m = re.fullmatch(r"NRRD000([1-5])", magic)
    if not m:
        raise fail(path, f"unsupported magic line {magic[:20]!r}")
    hdr = Header(path=path, version=int(m.group(1)))
    body = lines[1:-1] if ended else lines[1:]
    in_list = False
    for line, _ in body:
        if in_list:
            if line.strip():
                hdr.list_files.append(line.strip())
            continue
        if line.startswith("#"):
            hdr.comments.append(line[1:].strip())
            continue
        kv = line.find(":=")
        fd = line.find(": ")
        if kv >= 0 and (fd < 0 or kv < fd):
            key = _unescape(line[:kv])
            if not key:
                raise fail(path, f"empty key in line {line[:60]!r}")
            hdr.keyvalues.append((key, _unescape(line[kv + 2 :])))
            continue
        if fd < 0:
            # a field with an empty value ("content:") is allowed only as "name:"
            if line.endswith(":"):
                fd = len(line) - 1
            else:
                raise fail(path, f"line is neither a field nor a key/value: {line[:60]!r}")
        name = line[:fd].strip()
        value = line[fd + 2 :].strip() if fd + 2 <= len(line) else ""
        canon = _FIELD_ALIASES.get(name.lower(), name)
        if canon in hdr.fields:
            raise fail(path, f"field {canon!r} given twice")
        hdr.fields[canon] = value
        if canon == "data file" and value.split()[:1] and value.split()[0] == "LIST":
            in_list = True
    if ended:
        hdr.data_offset = lines[-1][1]
    _check_required(hdr)
    return hdr


def _unescape(text: str) -> str:
    r"""Key/value escapes of the spec: ``\n`` is a newline, ``\\`` a backslash."""
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def escape(text: str) -> str:
    """Inverse of the key/value unescaping."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _check_required(hdr: Header) -> None:
    path = hdr.path
    for name in ("dimension", "type", "encoding", "sizes"):
        if name not in hdr.fields:
            raise fail(path, f"missing required field {name!r}")
    try:
        dim = int(hdr.fields["dimension"])
    except ValueError:
        raise fail(path, f"dimension {hdr.fields['dimension']!r} is not an integer") from None
    if not 1 <= dim <= NRRD_DIM_MAX:
        raise fail(path, f"dimension {dim} out of range 1..{NRRD_DIM_MAX}")
    sizes = ints(hdr, "sizes")
    if any(s < 1 for s in sizes):
        raise fail(path, f"sizes must be positive, got {sizes}")
    for name in PER_AXIS_FIELDS:
        if name in hdr.fields:
            n = len(axis_items(hdr, name))
            if n != dim:
                raise fail(path, f"{name!r} has {n} entries for dimension {dim}")


def ints(hdr: Header, name: str) -> list[int]:
    """A field of whitespace-separated integers."""
    try:
        return [int(t) for t in hdr.fields[name].split()]
    except ValueError:
        raise fail(hdr.path, f"{name} {hdr.fields[name][:60]!r} are not integers") from None


def floats(hdr: Header, name: str) -> list[float]:
    """A field of whitespace-separated numbers (``nan`` allowed)."""
    try:
        return [float(t) for t in hdr.fields[name].split()]
    except ValueError:
        raise fail(hdr.path, f"{name} {hdr.fields[name][:60]!r} are not numbers") from None


_VECTOR_TOKEN = re.compile(r"\s*(?:\(([^()]*)\)|(none))")
_QUOTED = re.compile(r'\s*"((?:[^"\\]|\\.)*)"')


def vectors(hdr: Header, name: str) -> list[np.ndarray | None]:
    """``(x,y,z) none ...`` as float vectors, ``None`` for ``none``."""
    text = hdr.fields[name]
    out: list[np.ndarray | None] = []
    pos = 0
    while text[pos:].strip():
        m = _VECTOR_TOKEN.match(text, pos)
        if not m:
            raise fail(hdr.path, f"{name}: cannot parse {text[pos : pos + 40].strip()!r}")
        pos = m.end()
        if m.group(2):
            out.append(None)
            continue
        try:
            vec = np.array([float(t) for t in m.group(1).split(",")], dtype=np.float64)
        except ValueError:
            raise fail(hdr.path, f"{name}: bad vector ({m.group(1)[:40]})") from None
        out.append(vec)
    return out


def axis_items(hdr: Header, name: str) -> list[str]:
    """Per-axis entries of a field as raw tokens (vectors and quoted strings kept whole)."""
    text = hdr.fields[name]
    if name == "space directions":
        return [("none" if v is None else "v") for v in vectors(hdr, name)]
    if name in ("labels", "units"):
        items = []
        pos = 0
        while text[pos:].strip():
            m = _QUOTED.match(text, pos)
            if not m:
                raise fail(hdr.path, f"{name}: expected quoted strings, got {text[:40]!r}")
            items.append(m.group(1).replace('\\"', '"'))
            pos = m.end()
        return items
    return text.split()


def quoted(hdr: Header, name: str) -> list[str]:
    """A field of quoted strings (``labels``, ``units``, ``space units``)."""
    text = hdr.fields[name]
    items = []
    pos = 0
    while text[pos:].strip():
        m = _QUOTED.match(text, pos)
        if not m:
            raise fail(hdr.path, f"{name}: expected quoted strings, got {text[:40]!r}")
        items.append(m.group(1).replace('\\"', '"'))
        pos = m.end()
    return items


# -- data files ------------------------------------------------------------------------
@dataclass
class DataFiles:
    """Where the voxel data is: files, how many axes each holds, and the attached offset."""

    files: list[Path]
    subdim: int
    attached_offset: int | None = None


def data_files(hdr: Header, allow_outside: bool) -> DataFiles:
    """Resolve ``data file`` (single, ``<format> <min> <max> <step> [<subdim>]`` or ``LIST``).

    Relative names are relative to the header's folder. A file outside the header's folder
    tree (absolute, ``..`` or through a symlink) is refused unless ``allow_outside``.
    """
    dim = hdr.dimension
    spec = hdr.get("data file")
    if spec is None:
        if hdr.data_offset is None:
            raise fail(hdr.path, "no data: no 'data file' field and no blank line before data")
        return DataFiles([hdr.path], dim, hdr.data_offset)
    tokens = spec.split()
    if not tokens:
        raise fail(hdr.path, "empty 'data file' field")
    if tokens[0] == "LIST":
        subdim = _subdim(hdr, tokens[1:], dim)
        names = hdr.list_files
        if not names:
            raise fail(hdr.path, "'data file: LIST' names no file")
    elif len(tokens) >= 4 and "%" in tokens[0] and _all_int(tokens[1:4]):
        fmt = tokens[0]
        first, last, step = (int(t) for t in tokens[1:4])
        subdim = _subdim(hdr, tokens[4:], dim)
        if step == 0 or (last - first) * step < 0:
            raise fail(hdr.path, f"data file range {first} {last} {step} is empty or endless")
        count = (last - first) // step + 1
        if count > 100000:
            raise fail(hdr.path, f"data file pattern names {count} files")
        try:
            names = [fmt % n for n in range(first, last + (1 if step > 0 else -1), step)]
        except (TypeError, ValueError):
            raise fail(hdr.path, f"bad data file pattern {fmt!r}") from None
    else:
        names = [spec.strip()]
        subdim = dim
    base = hdr.path.parent.resolve()
    files = []
    for name in names:
        cand = Path(name)
        full = (cand if cand.is_absolute() else base / cand).resolve()
        if not allow_outside and not full.is_relative_to(base):
            raise ReadError(
                f"{hdr.path}: data file {name!r} is outside the header's folder",
                hint="pass -O allow_outside=1 to read it anyway",
            )
        if not full.is_file():
            raise ReadError(f"{hdr.path}: data file {name!r} not found")
        files.append(full)
    sizes = ints(hdr, "sizes")
    expected = int(np.prod(sizes[subdim:], dtype=np.int64)) if subdim < dim else 1
    if len(files) != expected:
        raise fail(
            hdr.path,
            f"{len(files)} data files, but sizes {sizes} with {subdim}-D files need {expected}",
        )
    return DataFiles(files, subdim)


def _subdim(hdr: Header, rest: list[str], dim: int) -> int:
    if not rest:
        return dim - 1 if dim > 1 else dim
    try:
        sub = int(rest[0])
    except ValueError:
        raise fail(hdr.path, f"bad data file sub-dimension {rest[0]!r}") from None
    if not 1 <= sub <= dim:
        raise fail(hdr.path, f"data file sub-dimension {sub} out of 1..{dim}")
    return sub


def _all_int(tokens: list[str]) -> bool:
    try:
        [int(t) for t in tokens]
    except ValueError:
        return False
    return True
