"""Corrupt and hostile inputs generated from the shared corpus, seeded and reproducible.

Every case is a small recipe: ``build(folder)`` writes its input files into an empty folder
(and, for "outside the folder" cases, into that folder's parent) and returns what to convert.
Nothing is stored: every input is derived at test time from ``shared/testdata`` plus a seed.

Expectations
------------
``reject``          the conversion must fail with exit 3 or 4 and leave nothing.
``reject_or_sane``  either that, or succeed with outputs that load with a finite,
                    invertible affine (a flipped byte in a description is harmless).
``reject_or_same``  either reject, or succeed with exactly the original voxels (a cut
                    that only removed trailing padding is harmless; other data is not).
``sane``            a positive control: it must convert (e.g. a valid file beside
                    symlink loops).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import shutil
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED = int(os.environ.get("HOSTILE_SEED", "20261126"))
#: uncompressed size of the gzip bombs: far past any declared size, ~1 MiB on disk.
BOMB_BYTES = int(os.environ.get("HOSTILE_BOMB_BYTES", str(1 << 30)))
GZIP_MAGIC = b"\x1f\x8b"


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by the suite seed and a case's identity, independent of order."""
    digest = hashlib.sha256(":".join(map(str, (SEED, *parts))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


# -- inputs ------------------------------------------------------------------------------
@dataclass
class Input:
    """What one case converts."""

    src: Path
    from_fmt: str | None = None
    #: for ``reject_or_same``: the pristine unit whose voxels a success must reproduce.
    unit: Unit | None = None
    #: for ``sane``: how many images the conversion must give.
    images: int | None = None


@dataclass(frozen=True)
class Unit:
    """One corpus image: its main file and the companions it needs, names kept."""

    fmt: str
    main: Path
    files: tuple[Path, ...]

    @property
    def key(self) -> str:
        return f"{self.fmt}:{self.main.parent.name}/{self.main.name}"

    def copy_to(self, folder: Path) -> Path:
        for f in self.files:
            shutil.copyfile(f, folder / f.name)
        return folder / self.main.name


@dataclass
class Case:
    """One hostile input and what the converter must do with it."""

    id: str
    fmt: str
    kind: str
    expect: str
    build: Callable[[Path], Input] = field(repr=False)


def units(testdata: Path, formats: set[str]) -> list[Unit]:
    """Corpus images of installed formats; a DICOM series contributes its first file."""
    from anyconv.testing import manifest_cases

    out: list[Unit] = []
    for case in manifest_cases(testdata):
        fmt = case["format"]
        if fmt not in formats:
            continue
        path = testdata / case["path"]
        if path.is_dir() and fmt == "dicom":
            first = testdata / sorted(case["files"])[0]
            out.append(Unit(fmt, first, (first,)))
        elif path.is_dir():
            for main in sorted(path.iterdir()):
                if main.suffix not in (".nrrd", ".nhdr"):
                    continue
                stem = main.name.split(".")[0]
                comp = [p for p in path.iterdir() if p.name.startswith(stem + ".")]
                comp = [p for p in comp if p.suffix not in (".nrrd", ".nhdr", ".nii", ".gz")]
                if main.suffix == ".nhdr":
                    comp += [p for p in path.iterdir() if p.name == stem + ".raw"]
                out.append(Unit(fmt, main, tuple(dict.fromkeys([main, *comp]))))
        else:
            files = tuple(testdata / f for f in case["files"])
            out.append(Unit(fmt, path, files))
    return out


# -- byte helpers ------------------------------------------------------------------------
def gz(data: bytes) -> bytes:
    """Deterministic gzip (no time stamp), fast."""
    from isal import igzip

    return igzip.compress(data, compresslevel=1, mtime=0)


def logical(raw: bytes) -> tuple[bytes, bool]:
    """Content of a file, gunzipped if it is gzip, and whether it was."""
    if raw.startswith(GZIP_MAGIC):
        return gzip.decompress(raw), True
    return raw, False


def header_len(fmt: str, name: str, data: bytes) -> int:
    """Bytes of ``data`` that are header (where flips are interesting)."""
    n = len(data)
    if fmt in ("nifti1", "analyze"):
        return min(n, 348)
    if fmt == "nifti2":
        return min(n, 540)
    if fmt == "mgh":
        return min(n, 284)
    if fmt == "nrrd":
        if name.endswith(".nhdr"):
            return n
        end = data.find(b"\n\n")
        return n if end < 0 else end + 2
    if fmt == "metaimage":
        m = re.search(rb"ElementDataFile[^\n]*\n", data)
        return n if m is None else m.end()
    if fmt == "dicom":
        pix = data.rfind(b"\xe0\x7f\x10\x00")
        return n if pix < 0 else pix + 12
    return min(n, 4096)


def flip_bytes(data: bytes, region: int, rng: random.Random) -> bytes:
    """1-4 random edits in the first ``region`` bytes: bit flips, bytes, boundary ints."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        off = rng.randrange(max(1, region))
        roll = rng.random()
        if roll < 0.5:
            buf[off] ^= 1 << rng.randrange(8)
        elif roll < 0.75:
            buf[off] = rng.randrange(256)
        else:
            value = rng.choice(
                [
                    b"\xff\xff\xff\xff",
                    b"\x7f\xff\xff\xff",
                    b"\xff\xff\xff\x7f",
                    b"\x00" * 4,
                    b"\x00\x00\x80\x7f",
                    b"\x00\x00\xc0\x7f",
                    b"\x80\x00\x00\x00",
                ]
            )
            buf[off : off + 4] = value[: max(0, min(4, len(buf) - off))]
    return bytes(buf)


def patch(data: bytes, edits: Iterable[tuple[str, int, Any]], endian: str = "<") -> bytes:
    """Overwrite struct fields: ``(format, offset, value)`` with ``value`` a scalar or tuple."""
    buf = bytearray(data)
    for fmt, off, value in edits:
        values = value if isinstance(value, tuple) else (value,)
        struct.pack_into(endian + fmt, buf, off, *values)
    return bytes(buf)


def write(path: Path, data: bytes, gzipped: bool) -> None:
    path.write_bytes(gz(data) if gzipped else data)


_BOMB_CACHE: dict[tuple[bytes, int], bytes] = {}


def bomb(prefix: bytes, total: int = BOMB_BYTES) -> bytes:
    """One gzip member: ``prefix`` then zeros up to ``total`` bytes, built in ~1 s.

    Full flushes make every 1 MiB block of zeros compress to the same bytes, so the stream
    is ``prefix`` + N copies of one block, with a correct CRC and size trailer.
    """
    key = (prefix, total)
    if key in _BOMB_CACHE:
        return _BOMB_CACHE[key]
    block = 1 << 20
    zeros = bytes(block)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    one = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    two = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    assert one == two, "full-flushed blocks differ"
    count = max(0, (total - len(prefix)) // block)
    body = head + one + two * (count - 1) if count else head
    body += comp.flush()
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    size = len(prefix) + count * block
    out = (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        + body
        + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
    )
    _BOMB_CACHE[key] = out
    return out


# -- generic cases from every corpus image -----------------------------------------------
#: per corpus image; a DICOM series gives one file, and there are many series, so fewer.
TRUNCATIONS = {"dicom": 4}
FLIPS = {"dicom": 4}


def generic_cases(unit: Unit) -> list[Case]:
    """Truncations at many offsets and random header flips of one corpus image."""
    raw = unit.main.read_bytes()
    data, gzipped = logical(raw)
    hlen = header_len(unit.fmt, unit.main.name, data)
    base = f"{unit.key}"
    cases: list[Case] = []
    rng = rng_for(base, "truncate")
    size = len(raw) if not gzipped else len(data)
    offsets = {1, 2, 4, 16, hlen // 2, hlen - 1, hlen + 1, size - 1}
    offsets |= {rng.randrange(1, size) for _ in range(6)}
    offsets = sorted(o for o in offsets if 0 < o < size)
    picks = sorted(rng.sample(offsets, min(TRUNCATIONS.get(unit.fmt, 8), len(offsets))))
    for off in picks:
        # gzip input: cut the content and re-gzip (a valid stream that is too short); the
        # plain gzip cut (a broken stream) follows below.
        def build(folder: Path, off: int = off) -> Input:
            src = unit.copy_to(folder)
            write(src, data[:off], gzipped)
            return Input(src, unit=unit)

        cases.append(Case(f"{base}:truncate@{off}", unit.fmt, "truncate", "reject_or_same", build))
    if gzipped:
        for off in sorted(rng.sample(range(1, len(raw)), min(4, len(raw) - 1))):

            def build_raw(folder: Path, off: int = off) -> Input:
                src = unit.copy_to(folder)
                src.write_bytes(raw[:off])
                return Input(src, unit=unit)

            cases.append(
                Case(f"{base}:gzcut@{off}", unit.fmt, "truncate", "reject_or_same", build_raw)
            )
    for i in range(FLIPS.get(unit.fmt, 8)):

        def build_flip(folder: Path, i: int = i) -> Input:
            src = unit.copy_to(folder)
            write(src, flip_bytes(data, hlen, rng_for(base, "flip", i)), gzipped)
            return Input(src)

        cases.append(Case(f"{base}:flip{i}", unit.fmt, "flip", "reject_or_sane", build_flip))
    # detached data files: too short for the header's sizes
    for comp in unit.files[1:]:
        craw = comp.read_bytes()
        cdata, cgz = logical(craw)
        for frac in (0.0, 0.5, 0.999):
            off = int(len(cdata) * frac)

            def build_comp(
                folder: Path,
                comp: Path = comp,
                off: int = off,
                cdata: bytes = cdata,
                cgz: bool = cgz,
            ) -> Input:
                src = unit.copy_to(folder)
                write(folder / comp.name, cdata[:off], cgz)
                return Input(src, unit=unit)

            cases.append(
                Case(
                    f"{base}:{comp.name}@{off}", unit.fmt, "truncate", "reject_or_same", build_comp
                )
            )

        # and too long: trailing garbage after the declared data
        def build_long(
            folder: Path, comp: Path = comp, cdata: bytes = cdata, cgz: bool = cgz
        ) -> Input:
            src = unit.copy_to(folder)
            write(folder / comp.name, cdata + b"\x01" * 4096, cgz)
            return Input(src)

        cases.append(
            Case(f"{base}:{comp.name}+4096", unit.fmt, "size", "reject_or_sane", build_long)
        )
    return cases


def edited(unit: Unit, name: str, kind: str, expect: str, fn: Callable[[bytes], bytes]) -> Case:
    """A case whose main file's (gunzipped) content is ``fn(content)``, re-gzipped if it was."""

    def build(folder: Path) -> Input:
        src = unit.copy_to(folder)
        data, gzipped = logical(unit.main.read_bytes())
        write(src, fn(data), gzipped)
        return Input(src, unit=unit)

    return Case(f"{unit.key}:{name}", unit.fmt, kind, expect, build)


# -- NIfTI / Analyze -----------------------------------------------------------------------
NAN = float("nan")
INF = float("inf")


def _endian(data: bytes, size: int) -> str:
    return "<" if struct.unpack_from("<i", data, 0)[0] == size else ">"


def nifti1_cases(unit: Unit) -> list[Case]:
    """NIfTI-1 / Analyze header fields at their extremes (dims are int16 there)."""
    R, S = "reject", "reject_or_sane"  # noqa: N806
    analyze = unit.fmt == "analyze"

    def dims(data: bytes, e: str) -> tuple[int, ...]:
        return struct.unpack_from(e + "8h", data, 40)

    def ed(edits: Callable[[bytes, str], list[tuple[str, int, Any]]]) -> Callable[[bytes], bytes]:
        def fn(data: bytes) -> bytes:
            e = _endian(data, 348)
            return patch(data, edits(data, e), e)

        return fn

    specs: list[tuple[str, str, Callable[[bytes, str], list[tuple[str, int, Any]]]]] = [
        ("dim0=0", R, lambda d, e: [("h", 40, 0)]),
        ("dim0=-1", R, lambda d, e: [("h", 40, -1)]),
        ("dim0=9", R, lambda d, e: [("h", 40, 9)]),
        ("dim0=100", R, lambda d, e: [("h", 40, 100)]),
        ("dim1=0", R, lambda d, e: [("h", 42, 0)]),
        ("dim1=-1", R, lambda d, e: [("h", 42, -1)]),
        ("dim1=-32768", R, lambda d, e: [("h", 42, -32768)]),
        ("dim1=32767", R, lambda d, e: [("h", 42, 32767)]),
        ("dim123=32767", R, lambda d, e: [("3h", 42, (32767,) * 3)]),
        ("dim3=-2", R, lambda d, e: [("h", 46, -2)]),
        ("dim0=8", S, lambda d, e: [("8h", 40, (8, *dims(d, e)[1:5], 1, 1, 1))]),
        ("dim4=32767", R, lambda d, e: [("h", 40, max(4, dims(d, e)[0])), ("h", 48, 32767)]),
        ("datatype=0", R, lambda d, e: [("h", 70, 0)]),
        ("datatype=999", R, lambda d, e: [("h", 70, 999)]),
        ("datatype=-1", R, lambda d, e: [("h", 70, -1)]),
        ("datatype=1", S, lambda d, e: [("2h", 70, (1, 1))]),
        ("datatype=1792", S, lambda d, e: [("2h", 70, (1792, 256))]),
        ("datatype=2304", S, lambda d, e: [("2h", 70, (2304, 32))]),
        ("bitpix=0", S, lambda d, e: [("h", 72, 0)]),
        ("bitpix=7", S, lambda d, e: [("h", 72, 7)]),
        ("pixdim1=nan", S, lambda d, e: [("f", 80, NAN)]),
        ("pixdim1=inf", S, lambda d, e: [("f", 80, INF)]),
        ("pixdim1=-inf", S, lambda d, e: [("f", 80, -INF)]),
        ("pixdim123=0", S, lambda d, e: [("3f", 80, (0.0, 0.0, 0.0))]),
        ("pixdim123=1e38", S, lambda d, e: [("3f", 80, (1e38, 1e38, 1e38))]),
        ("pixdim4=nan", S, lambda d, e: [("f", 92, NAN)]),
        ("vox_offset=2^31", R, lambda d, e: [("f", 108, 2.0**31)]),
        ("vox_offset=1e30", R, lambda d, e: [("f", 108, 1e30)]),
        ("vox_offset=inf", R, lambda d, e: [("f", 108, INF)]),
        ("vox_offset=nan", S, lambda d, e: [("f", 108, NAN)]),
        ("vox_offset=eof", R, lambda d, e: [("f", 108, float(len(d) + 4096))]),
        ("vox_offset=-352", S, lambda d, e: [("f", 108, -352.0)]),
        ("scl_slope=nan", S, lambda d, e: [("f", 112, NAN)]),
        ("scl_slope=inf", S, lambda d, e: [("f", 112, INF)]),
        ("scl_slope=1e38", S, lambda d, e: [("2f", 112, (1e38, -1e38))]),
        ("scl_inter=-inf", S, lambda d, e: [("2f", 112, (1.0, -INF))]),
        ("sizeof_hdr=1000", S, lambda d, e: [("i", 0, 1000)]),
    ]
    if not analyze:
        specs += [
            ("srow=nan", S, lambda d, e: [("h", 254, 1), ("4f", 280, (NAN, 0.0, 0.0, 0.0))]),
            ("srow=inf", S, lambda d, e: [("h", 254, 1), ("4f", 296, (0.0, INF, 0.0, INF))]),
            ("srow=0", S, lambda d, e: [("2h", 252, (0, 1)), ("12f", 280, (0.0,) * 12)]),
            ("srow=1e38", S, lambda d, e: [("2h", 252, (0, 1)), ("12f", 280, (1e38,) * 12)]),
            ("quatern=nan", S, lambda d, e: [("2h", 252, (1, 0)), ("3f", 256, (NAN,) * 3)]),
            ("quatern=2", S, lambda d, e: [("2h", 252, (1, 0)), ("3f", 256, (2.0, 2.0, 2.0))]),
            ("qoffset=inf", S, lambda d, e: [("2h", 252, (1, 0)), ("3f", 268, (INF,) * 3)]),
            ("qfac=nan", S, lambda d, e: [("2h", 252, (1, 0)), ("f", 76, NAN)]),
            ("xform_codes=999", S, lambda d, e: [("2h", 252, (999, -5))]),
            ("intent=vector", S, lambda d, e: [("h", 68, 1007)]),
        ]
    return [edited(unit, name, "extreme", exp, ed(fn)) for name, exp, fn in specs]


def nifti2_cases(unit: Unit) -> list[Case]:
    """NIfTI-2 header fields at their extremes (int64 dims: 2^31, 2^62, overflowing products)."""
    R, S = "reject", "reject_or_sane"  # noqa: N806

    def ed(edits: list[tuple[str, int, Any]]) -> Callable[[bytes], bytes]:
        def fn(data: bytes) -> bytes:
            e = _endian(data, 540)
            return patch(data, edits, e)

        return fn

    specs: list[tuple[str, str, list[tuple[str, int, Any]]]] = [
        ("dim0=0", R, [("q", 16, 0)]),
        ("dim0=-1", R, [("q", 16, -1)]),
        ("dim0=9", R, [("q", 16, 9)]),
        ("dim1=0", R, [("q", 24, 0)]),
        ("dim1=-1", R, [("q", 24, -1)]),
        ("dim1=2^31", R, [("q", 24, 2**31)]),
        ("dim1=2^62", R, [("q", 24, 2**62)]),
        ("dim1=2^63-1", R, [("q", 24, 2**63 - 1)]),
        ("dim123=2^31", R, [("3q", 24, (2**31,) * 3)]),
        ("dim123=2^21", R, [("3q", 24, (2**21,) * 3)]),
        ("datatype=0", R, [("h", 12, 0)]),
        ("datatype=999", R, [("h", 12, 999)]),
        ("vox_offset=2^62", R, [("q", 168, 2**62)]),
        ("vox_offset=-1", S, [("q", 168, -1)]),
        ("pixdim1=nan", S, [("d", 112, NAN)]),
        ("pixdim123=inf", S, [("3d", 112, (INF,) * 3)]),
        ("srow=nan", S, [("i", 348, 1), ("4d", 400, (NAN, 0.0, 0.0, 0.0))]),
        ("srow=0", S, [("2i", 344, (0, 1)), ("12d", 400, (0.0,) * 12)]),
        ("srow=1e308", S, [("2i", 344, (0, 1)), ("12d", 400, (1e308,) * 12)]),
        ("quatern=nan", S, [("2i", 344, (1, 0)), ("3d", 352, (NAN,) * 3)]),
        ("scl_slope=inf", S, [("d", 176, INF)]),
    ]
    return [edited(unit, name, "extreme", exp, ed(edits)) for name, exp, edits in specs]


def mgh_cases(unit: Unit) -> list[Case]:
    """MGH header (big-endian int32 dims, type, RAS block) at its extremes."""
    R, S = "reject", "reject_or_sane"  # noqa: N806
    specs: list[tuple[str, str, list[tuple[str, int, Any]]]] = [
        ("width=0", R, [("i", 4, 0)]),
        ("width=-1", R, [("i", 4, -1)]),
        ("width=2^31-1", R, [("i", 4, 2**31 - 1)]),
        ("dims=65536", R, [("3i", 4, (65536,) * 3)]),
        ("depth=-5", R, [("i", 12, -5)]),
        ("nframes=0", R, [("i", 16, 0)]),
        ("nframes=-1", R, [("i", 16, -1)]),
        ("nframes=2^31-1", R, [("i", 16, 2**31 - 1)]),
        ("type=99", R, [("i", 20, 99)]),
        ("type=-1", R, [("i", 20, -1)]),
        ("version=2", S, [("i", 0, 2)]),
        ("delta=nan", S, [("h", 28, 1), ("3f", 30, (NAN,) * 3)]),
        ("delta=inf", S, [("h", 28, 1), ("3f", 30, (INF, 1.0, 1.0))]),
        ("delta=0", S, [("h", 28, 1), ("3f", 30, (0.0,) * 3)]),
        ("mdc=0", S, [("h", 28, 1), ("9f", 42, (0.0,) * 9)]),
        ("mdc=nan", S, [("h", 28, 1), ("9f", 42, (NAN,) * 9)]),
        ("c_ras=inf", S, [("h", 28, 1), ("3f", 78, (INF, -INF, NAN))]),
        ("goodras=7", S, [("h", 28, 7)]),
    ]
    return [
        edited(unit, name, "extreme", exp, lambda d, e=edits: patch(d, e, ">"))
        for name, exp, edits in specs
    ]


# -- text headers: NRRD and MetaImage ------------------------------------------------------
def _split_text_header(data: bytes, detached: bool, sep: str, fmt: str) -> tuple[list[str], bytes]:
    if fmt == "nrrd":
        end = len(data) if detached else data.find(b"\n\n")
        head, rest = (data, b"") if end < 0 or detached else (data[:end], data[end:])
    else:
        m = re.search(rb"ElementDataFile[^\n]*\n", data)
        end = m.end() if m else len(data)
        head, rest = data[: end - 1], data[end - 1 :]
    return head.decode("latin-1").split("\n"), rest


def set_field(
    data: bytes, fmt: str, detached: bool, key: str, value: str | None, *, before_last: bool
) -> bytes:
    """Replace (or add, or with ``None`` remove) a ``key`` line of a NRRD/MetaImage header."""
    sep = ": " if fmt == "nrrd" else " = "
    lines, rest = _split_text_header(data, detached, sep, fmt)
    pat = re.compile(rf"^{re.escape(key)}\s*(:|=)", re.IGNORECASE)
    hits = [i for i, line in enumerate(lines) if pat.match(line)]
    new = None if value is None else f"{key}{sep}{value}"
    if hits:
        if new is None:
            del lines[hits[0]]
        else:
            lines[hits[0]] = new
    elif new is not None:
        # MetaImage: ElementDataFile must stay last; NRRD: any field may follow the magic line.
        lines.insert(len(lines) - 1 if before_last else 1, new)
    return "\n".join(lines).encode("latin-1") + rest


def text_cases(unit: Unit, fields: list[tuple[str, str, str | None, str]]) -> list[Case]:
    """NRRD or MetaImage header with one field replaced, added or removed."""
    detached = unit.main.name.endswith((".nhdr", ".mhd"))
    out = []
    for key, label, value, expect in fields:

        def fn(d: bytes, key: str = key, value: str | None = value) -> bytes:
            if value == "SWAP":  # an encoding the data is not in
                value = "raw" if re.search(rb"\nencoding:\s*(gz|gzip)\b", d) else "gzip"
            return set_field(d, unit.fmt, detached, key, value, before_last=unit.fmt != "nrrd")

        out.append(edited(unit, f"{label}", "extreme", expect, fn))
    return out


def nrrd_fields(detached: bool) -> list[tuple[str, str, str | None, str]]:
    """NRRD fields with absurd values."""
    R, S = "reject", "reject_or_sane"  # noqa: N806
    f: list[tuple[str, str, str | None, str]] = [
        ("sizes", "sizes=0", "0 30 30", R),
        ("sizes", "sizes=-1", "-1 30 30", R),
        ("sizes", "sizes=2^31", "2147483648 30 30", R),
        ("sizes", "sizes=2^32^3", "4294967296 4294967296 4294967296", R),
        ("sizes", "sizes=1e20", "100000000000000000000 1 1", R),
        ("sizes", "sizes=short", "30 30", R),
        ("sizes", "sizes=abc", "30 30 abc", R),
        ("sizes", "sizes=float", "1e3 30 30", R),
        ("sizes", "sizes=none", None, R),
        ("dimension", "dimension=0", "0", R),
        ("dimension", "dimension=-3", "-3", R),
        ("dimension", "dimension=17", "17", R),
        ("dimension", "dimension=1e9", "1000000000", R),
        ("type", "type=foo", "foo", R),
        ("type", "type=block", "block", R),
        ("type", "type=empty", "", R),
        ("encoding", "encoding=bogus", "bogus", R),
        ("encoding", "encoding=swap", "SWAP", R),
        ("encoding", "encoding=bzip2", "bzip2", R),
        ("encoding", "encoding=hex", "hex", R),
        ("encoding", "encoding=none", None, R),
        ("endian", "endian=middle", "middle", R),
        ("space directions", "dirs=nan", "(nan,0,0) (0,1,0) (0,0,1)", S),
        ("space directions", "dirs=inf", "(inf,0,0) (0,inf,0) (0,0,1)", S),
        ("space directions", "dirs=0", "(0,0,0) (0,0,0) (0,0,0)", S),
        ("space directions", "dirs=1e308", "(1e308,1e308,1e308) (1e308,0,0) (0,0,1e308)", S),
        ("space directions", "dirs=2d", "(1,0) (0,1) (0,0,1)", R),
        ("space directions", "dirs=none3", "none none none", S),
        ("space directions", "dirs=garbage", "((((((((", R),
        ("space origin", "origin=nan", "(nan,nan,nan)", S),
        ("space origin", "origin=inf", "(inf,0,0)", S),
        ("space origin", "origin=2d", "(1,2)", R),
        ("spacings", "spacings=nan", "nan nan nan", S),
        ("spacings", "spacings=0", "0 0 -inf", S),
        ("space", "space=bogus", "bogus-space", R),
        ("kinds", "kinds=short", "domain", R),
        ("byte skip", "byteskip=huge", "99999999999", R),
        ("byte skip", "byteskip=-2", "-2", R),
        ("line skip", "lineskip=huge", "99999999", R),
        ("line skip", "lineskip=-1", "-1", R),
    ]
    if detached:
        f += [
            ("data file", "datafile=missing", "nonexistent.raw", R),
            ("data file", "datafile=dir", ".", R),
            ("data file", "datafile=/dev/zero", "/dev/zero", R),
            ("data file", "datafile=/dev/urandom", "/dev/urandom", R),
            ("data file", "datafile=/proc/self/mem", "/proc/self/mem", R),
            ("data file", "datafile=LIST-empty", "LIST", R),
            ("data file", "datafile=pattern-huge", "x%09d.raw 0 2000000000 1", R),
            ("data file", "datafile=pattern-endless", "x%d.raw 0 10 0", R),
            ("data file", "datafile=pattern-bad", "x%s%n.raw 0 2 1", R),
        ]
    return f


def meta_fields(detached: bool) -> list[tuple[str, str, str | None, str]]:
    """MetaImage fields with absurd values."""
    R, S = "reject", "reject_or_sane"  # noqa: N806
    f: list[tuple[str, str, str | None, str]] = [
        ("DimSize", "DimSize=0", "0 10 10", R),
        ("DimSize", "DimSize=-1", "-1 10 10", R),
        ("DimSize", "DimSize=2^31", "2147483648 10 10", R),
        ("DimSize", "DimSize=2^32^3", "4294967296 4294967296 4294967296", R),
        ("DimSize", "DimSize=short", "10", R),
        ("DimSize", "DimSize=abc", "10 abc 10", R),
        ("DimSize", "DimSize=none", None, R),
        ("NDims", "NDims=0", "0", R),
        ("NDims", "NDims=-1", "-1", R),
        ("NDims", "NDims=100", "100", R),
        ("NDims", "NDims=2^31", "2147483648", R),
        ("ElementType", "ElementType=MET_FOO", "MET_FOO", R),
        ("ElementType", "ElementType=none", None, R),
        ("ElementNumberOfChannels", "channels=0", "0", R),
        ("ElementNumberOfChannels", "channels=2^31", "2147483647", R),
        ("ElementNumberOfChannels", "channels=-3", "-3", R),
        ("ElementSpacing", "spacing=nan", "nan nan nan", S),
        ("ElementSpacing", "spacing=inf", "inf 1 -inf", S),
        ("ElementSpacing", "spacing=0", "0 0 0", S),
        ("ElementSpacing", "spacing=1e308", "1e308 1e308 1e308", S),
        ("Offset", "offset=nan", "nan nan nan", S),
        ("Offset", "offset=inf", "inf 0 0", S),
        ("TransformMatrix", "matrix=nan", "nan 0 0 0 nan 0 0 0 nan", S),
        ("TransformMatrix", "matrix=0", "0 0 0 0 0 0 0 0 0", S),
        ("TransformMatrix", "matrix=short", "1 0", R),
        # ITK ignores HeaderSize for LOCAL compressed data; refusing is fine too.
        ("HeaderSize", "HeaderSize=huge", "99999999999", S),
        ("HeaderSize", "HeaderSize=-2", "-2", R),
        ("CompressedData", "compressed=flip", "False", R),
        ("CompressedDataSize", "compressedsize=huge", "99999999999", R),
        ("CompressedDataSize", "compressedsize=1", "1", R),
        ("CompressedDataSize", "compressedsize=-1", "-1", R),
        ("BinaryData", "binary=False", "False", R),
        ("BinaryDataByteOrderMSB", "msb=maybe", "Maybe", S),
    ]
    if detached:
        f += [
            ("ElementDataFile", "datafile=missing", "nonexistent.raw", R),
            ("ElementDataFile", "datafile=dir", ".", R),
            ("ElementDataFile", "datafile=/dev/zero", "/dev/zero", R),
            ("ElementDataFile", "datafile=/dev/urandom", "/dev/urandom", R),
            ("ElementDataFile", "datafile=/proc/self/mem", "/proc/self/mem", R),
            ("ElementDataFile", "datafile=LIST-empty", "LIST", R),
            ("ElementDataFile", "datafile=pattern-huge", "x%09d.raw 0 2000000000 1", R),
            ("ElementDataFile", "datafile=pattern-endless", "x%d.raw 0 10 0", R),
        ]
    return f


def outside_cases(unit: Unit, key: str) -> list[Case]:
    """Detached headers naming a valid data file outside their folder: must be refused."""
    data_file = unit.files[1] if len(unit.files) > 1 else None
    if data_file is None:
        return []
    sep = ": " if unit.fmt == "nrrd" else " = "
    out = []
    for label in ("dotdot", "absolute", "dotdot-deep", "symlink-out"):

        def build(folder: Path, label: str = label) -> Input:
            src = unit.copy_to(folder)
            (folder / data_file.name).unlink()
            outside = folder.parent / data_file.name
            shutil.copyfile(data_file, outside)
            if label == "dotdot":
                name = f"../{data_file.name}"
            elif label == "absolute":
                name = str(outside.resolve())
            elif label == "dotdot-deep":
                (folder / "sub").mkdir()
                name = f"sub/../../{data_file.name}"
            else:
                (folder / "link.raw").symlink_to(outside)
                name = "link.raw"
            text = src.read_bytes()
            text = set_field(text, unit.fmt, True, key, name, before_last=unit.fmt != "nrrd")
            assert sep.strip() in text.decode("latin-1")
            src.write_bytes(text)
            return Input(src)

        # a symlink inside the folder is the folder's business: refusing or following are fine
        expect = "reject_or_sane" if label == "symlink-out" else "reject"
        out.append(Case(f"{unit.key}:outside-{label}", unit.fmt, "outside", expect, build))
    return out


# -- MINC ----------------------------------------------------------------------------------
def netcdf_dim_offsets(data: bytes) -> list[int]:
    """Offsets of the dimension lengths in a NetCDF classic (MINC1) header."""
    if data[:3] != b"CDF" or len(data) < 16:
        return []
    pos = 8
    tag, n = struct.unpack_from(">ii", data, pos)
    pos += 8
    if tag != 10:
        return []
    offs = []
    for _ in range(n):
        (nlen,) = struct.unpack_from(">i", data, pos)
        pos += 4 + (nlen + 3) // 4 * 4
        offs.append(pos)
        pos += 4
    return offs


def minc1_cases(unit: Unit) -> list[Case]:
    """MINC1 (NetCDF) dimension lengths at their extremes."""
    data = unit.main.read_bytes()
    offs = netcdf_dim_offsets(data)
    out = []
    for i, off in enumerate(offs):
        for value, expect in (
            (0, "reject_or_sane"),
            (2**31 - 1, "reject"),
            (-1, "reject"),
            (100000, "reject"),
        ):
            out.append(
                edited(
                    unit,
                    f"dim{i}={value}",
                    "extreme",
                    expect,
                    lambda d, off=off, v=value: patch(d, [("i", off, v)], ">"),
                )
            )
    return out


def minc2_cases(unit: Unit) -> list[Case]:
    """MINC2 (HDF5) attributes at their extremes, edited with h5py."""
    import numpy as np

    S = "reject_or_sane"  # noqa: N806
    edits: list[tuple[str, Callable[[Any], None]]] = []
    for axis in ("xspace", "yspace", "zspace"):
        for attr, value in (
            ("step", np.nan),
            ("step", np.inf),
            ("step", 0.0),
            ("start", -np.inf),
            ("direction_cosines", np.array([np.nan, np.nan, np.nan])),
            ("direction_cosines", np.zeros(3)),
            ("length", np.int32(2**31 - 1)),
        ):
            label = f"{axis}.{attr}={np.asarray(value).ravel()[0]}"

            def fn(f: Any, axis: str = axis, attr: str = attr, value: Any = value) -> None:
                dim = f["minc-2.0/dimensions"].get(axis)
                if dim is not None:
                    dim.attrs[attr] = value

            edits.append((label, fn))

    def valid_range(f: Any) -> None:
        f["minc-2.0/image/0/image"].attrs["valid_range"] = np.array([np.nan, np.inf])

    def image_max(f: Any) -> None:
        img = f["minc-2.0/image/0"]
        if "image-max" in img:
            img["image-max"][...] = np.inf

    def dimorder(f: Any) -> None:
        f["minc-2.0/image/0/image"].attrs["dimorder"] = b"foo,bar,baz"

    edits += [
        ("valid_range=nan", valid_range),
        ("image-max=inf", image_max),
        ("dimorder=garbage", dimorder),
    ]
    out = []
    for label, fn in edits:

        def build(folder: Path, fn: Callable[[Any], None] = fn) -> Input:
            import h5py

            src = unit.copy_to(folder)
            with h5py.File(src, "r+") as f:
                fn(f)
            return Input(src)

        out.append(Case(f"{unit.key}:{label}", unit.fmt, "extreme", S, build))
    return out


# -- DICOM ---------------------------------------------------------------------------------
def dicom_cases(unit: Unit) -> list[Case]:
    """DICOM attributes at their extremes (pydicom) and absurd element lengths (raw bytes)."""
    R, S = "reject", "reject_or_sane"  # noqa: N806
    edits: list[tuple[str, str, Callable[[Any], None]]] = []

    def setter(keyword: str, value: Any) -> Callable[[Any], None]:
        def fn(ds: Any) -> None:
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)

        return fn

    frames_ok = unit.main.name in ("MR_small.dcm", "rtdose.dcm")  # one single-, one multi-frame
    for kw, value, exp in (
        ("Rows", 0, R),
        ("Columns", 0, R),
        ("Rows", 65535, R),
        ("BitsAllocated", 0, R),
        ("BitsAllocated", 7, R),
        ("BitsAllocated", 64, R),
        ("BitsStored", 0, S),
        ("BitsStored", 40, S),
        ("SamplesPerPixel", 0, S),
        ("SamplesPerPixel", 5, R),
        ("NumberOfFrames", "0", S),
        ("NumberOfFrames", "-1", S),
        ("NumberOfFrames", "2147483647", R),
        ("PixelSpacing", ["nan", "nan"], S),
        ("PixelSpacing", ["inf", "1"], S),
        ("PixelSpacing", ["0", "0"], S),
        ("PixelSpacing", ["-1", "1e308"], S),
        ("ImageOrientationPatient", ["nan"] * 6, S),
        ("ImageOrientationPatient", ["0"] * 6, S),
        ("ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"], S),
        ("ImagePositionPatient", ["inf", "-inf", "nan"], S),
        ("SliceThickness", "nan", S),
        ("RescaleSlope", "inf", S),
        ("RescaleSlope", "nan", S),
        ("PixelRepresentation", 5, S),
        ("PhotometricInterpretation", "BOGUS", S),
        ("PixelData", None, R),
    ):
        if kw == "NumberOfFrames" and value == "2147483647" and not frames_ok:
            continue
        label = f"{kw}={value if not isinstance(value, list) else '/'.join(value)}"
        edits.append((label, exp, setter(kw, value)))

    def half_pixels(ds: Any) -> None:
        if "PixelData" in ds:
            ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2 // 2 * 2]

    def bogus_ts(ds: Any) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"

    edits += [("pixels=half", R, half_pixels), ("ts=bogus", S, bogus_ts)]
    out = []
    for label, exp, fn in edits:

        def build(folder: Path, fn: Callable[[Any], None] = fn) -> Input:
            import pydicom

            src = unit.copy_to(folder)
            ds = pydicom.dcmread(src, force=True)
            fn(ds)
            ds.save_as(src, enforce_file_format=False)
            return Input(src)

        out.append(Case(f"{unit.key}:{label}", unit.fmt, "extreme", exp, build))
    # absurd lengths straight in the bytes: the 4- or 2-byte length of a few elements
    raw = unit.main.read_bytes()
    long_vrs = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"UC", b"UR", b"OV"}
    for tag, name in (
        (b"\x28\x00\x10\x00", "Rows"),
        (b"\x28\x00\x30\x00", "PixelSpacing"),
        (b"\x20\x00\x32\x00", "ImagePositionPatient"),
        (b"\x08\x00\x3e\x10", "SeriesDescription"),
        (b"\xe0\x7f\x10\x00", "PixelData"),
    ):
        at = raw.rfind(tag) if name == "PixelData" else raw.find(tag, 132)
        if at < 0:
            continue
        vr = raw[at + 4 : at + 6]
        explicit = vr.isalpha() and vr.isupper()
        if explicit and vr in long_vrs:
            where, width = at + 8, 4
        elif explicit:
            where, width = at + 6, 2
        else:
            where, width = at + 4, 4
        values = [0xFFFF, 0xFFFE] if width == 2 else [0x7FFFFFF0, 0xFFFFFFF0, 0xFFFFFFFF]
        for v in values:

            def fn(d: bytes, where: int = where, width: int = width, v: int = v) -> bytes:
                return d[:where] + v.to_bytes(width, "little") + d[where + width :]

            out.append(edited(unit, f"len({name})={v:#x}", "vr-length", S, fn))
    return out


# -- gzip bombs ----------------------------------------------------------------------------
def bomb_cases(formats: set[str]) -> list[Case]:
    """Small gzip files that inflate to ~1 GiB: declared sizes far smaller, or absurdly larger."""
    import numpy as np

    out: list[Case] = []

    def nifti_header(shape: tuple[int, ...]) -> bytes:
        import nibabel as nib

        img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
        hdr = img.header
        hdr.set_data_shape((1,) * len(shape))
        raw = bytearray(hdr.binaryblock + b"\x00" * 4)
        struct.pack_into("<8h", raw, 40, len(shape), *shape, *([1] * (7 - len(shape))))
        struct.pack_into("<f", raw, 108, 352.0)
        return bytes(raw)

    def mgh_header(shape: tuple[int, int, int]) -> bytes:
        hdr = bytearray(284)
        struct.pack_into(">7i", hdr, 0, 1, *shape, 1, 4, 0)  # type 4 = short
        struct.pack_into(">h3f9f3f", hdr, 28, 1, 1, 1, 1, -1, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0, 0)
        return bytes(hdr)

    def nrrd_header(shape: tuple[int, int, int]) -> bytes:
        sizes = " ".join(map(str, shape))
        return (
            "NRRD0004\ntype: short\ndimension: 3\nsizes: " + sizes + "\nendian: little\n"
            "encoding: gzip\nspace: left-posterior-superior\n"
            "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\n\n"
        ).encode()

    def mha_header(shape: tuple[int, int, int], size: int) -> bytes:
        dims = " ".join(map(str, shape))
        return (
            "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"CompressedData = True\nCompressedDataSize = {size}\n"
            "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nElementSpacing = 1 1 1\n"
            f"DimSize = {dims}\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
        ).encode()

    small, medium, huge = (10, 10, 10), (256, 256, 128), (32767, 32767, 32767)
    for label, shape in (("small", small), ("medium", medium), ("huge", huge)):
        expect = "reject" if label == "huge" else "reject_or_sane"
        if "nifti1" in formats:

            def b_nii(folder: Path, shape: tuple[int, ...] = shape) -> Input:
                src = folder / "bomb.nii.gz"
                src.write_bytes(bomb(nifti_header(shape)))
                return Input(src)

            out.append(Case(f"bomb:nifti1:{label}", "nifti1", "bomb", expect, b_nii))
        if "mgh" in formats:

            def b_mgz(folder: Path, shape: tuple[int, int, int] = shape) -> Input:
                src = folder / "bomb.mgz"
                src.write_bytes(bomb(mgh_header(shape)))
                return Input(src)

            out.append(Case(f"bomb:mgh:{label}", "mgh", "bomb", expect, b_mgz))
        if "nrrd" in formats:

            def b_nrrd(folder: Path, shape: tuple[int, int, int] = shape) -> Input:
                src = folder / "bomb.nrrd"
                src.write_bytes(nrrd_header(shape) + bomb(b""))
                return Input(src)

            out.append(Case(f"bomb:nrrd:{label}", "nrrd", "bomb", expect, b_nrrd))

            def b_nhdr(folder: Path, shape: tuple[int, int, int] = shape) -> Input:
                src = folder / "bomb.nhdr"
                src.write_bytes(nrrd_header(shape)[:-1] + b"data file: bomb.raw.gz\n")
                (folder / "bomb.raw.gz").write_bytes(bomb(b""))
                return Input(src)

            out.append(Case(f"bomb:nrrd-detached:{label}", "nrrd", "bomb", expect, b_nhdr))
        if "metaimage" in formats:

            def b_mha(folder: Path, shape: tuple[int, int, int] = shape) -> Input:
                src = folder / "bomb.mha"
                stream = zlib_bomb()
                src.write_bytes(mha_header(shape, len(stream)) + stream)
                return Input(src)

            out.append(Case(f"bomb:metaimage:{label}", "metaimage", "bomb", expect, b_mha))
    return out


_ZLIB_BOMB: list[bytes] = []


def zlib_bomb(total: int = BOMB_BYTES) -> bytes:
    """A zlib (not gzip) stream of ``total`` zeros, as MetaImage stores compressed data."""
    if not _ZLIB_BOMB:
        block = 1 << 20
        zeros = bytes(block)
        comp = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
        head = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
        one = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
        count = total // block
        adler = 1
        for _ in range(count):
            adler = zlib.adler32(zeros, adler)
        body = head + one * (count - 1)
        tail = comp.flush()  # ends the stream; its adler is for two blocks, so replace it
        body += tail[:-4] + struct.pack(">I", adler & 0xFFFFFFFF)
        _ZLIB_BOMB.append(body)
    return _ZLIB_BOMB[0]


# -- file system oddities --------------------------------------------------------------------
def fs_cases(readers: list[Any], all_units: list[Unit]) -> list[Case]:
    """Empty files, magic-only files, folders named like files, symlink loops, devices, FIFOs."""
    from anyconv.detect import suffixes_of

    out: list[Case] = []
    seen: set[str] = set()
    for spec in readers:
        exts = list(spec.extensions) or [".x"]
        for ext in exts:
            if ext in seen:
                continue
            seen.add(ext)
            name = f"x{ext}"

            def empty(folder: Path, name: str = name) -> Input:
                (folder / name).write_bytes(b"")
                return Input(folder / name)

            def one_byte(folder: Path, name: str = name) -> Input:
                (folder / name).write_bytes(b"\x00")
                return Input(folder / name)

            def dir_empty(folder: Path, name: str = name) -> Input:
                (folder / name).mkdir()
                return Input(folder / name)

            def dir_garbage(folder: Path, name: str = name) -> Input:
                (folder / name).mkdir()
                (folder / name / name).write_bytes(b"garbage" * 100)
                return Input(folder / name)

            def self_link(folder: Path, name: str = name) -> Input:
                (folder / name).symlink_to(name)
                return Input(folder / name)

            def dangling(folder: Path, name: str = name) -> Input:
                (folder / name).symlink_to("nowhere/at/all" + name)
                return Input(folder / name)

            for label, fn in (
                ("empty", empty),
                ("1byte", one_byte),
                ("dir", dir_empty),
                ("dir+garbage", dir_garbage),
                ("selflink", self_link),
                ("dangling", dangling),
            ):
                out.append(
                    Case(f"fs:{spec.format}:{name}:{label}", spec.format, "fs", "reject", fn)
                )
        for m in spec.magic[:1]:

            def magic_only(folder: Path, m: Any = m, ext: str = exts[0]) -> Input:
                src = folder / f"magic{ext}"
                data = b"\x00" * m.offset + m.value
                src.write_bytes(gz(data) if ext.endswith(".gz") else data)
                return Input(src)

            out.append(
                Case(f"fs:{spec.format}:magic-only", spec.format, "fs", "reject", magic_only)
            )
        for dev in ("/dev/zero", "/dev/urandom", "/dev/null"):

            def device(
                folder: Path, dev: str = dev, fmt: str = spec.format, ext: str = exts[0]
            ) -> Input:
                src = folder / f"dev{ext}"
                src.symlink_to(dev)
                return Input(src, from_fmt=fmt)

            out.append(Case(f"fs:{spec.format}:{dev}", spec.format, "device", "reject", device))

    def fifo(folder: Path) -> Input:
        os.mkfifo(folder / "fifo.nii")
        return Input(folder / "fifo.nii")

    out.append(Case("fs:any:fifo.nii", "any", "device", "reject", fifo))

    # symlink loops inside input folders, with and without a valid image beside them
    def loops(folder: Path) -> None:
        (folder / "self").symlink_to(".")
        (folder / "up").symlink_to("..")
        (folder / "a.nii").symlink_to("b.nii")
        (folder / "b.nii").symlink_to("a.nii")
        (folder / "deep").mkdir()
        (folder / "deep" / "back").symlink_to("../deep")

    def only_loops(folder: Path) -> Input:
        src = folder / "series"
        src.mkdir()
        loops(src)
        return Input(src)

    out.append(Case("fs:any:loops-only", "any", "loop", "reject", only_loops))

    # a folder whose second image has a valid header and cut voxel data: refused, and the
    # first image must not be left behind in the output folder either
    nii = [u for u in all_units if u.fmt == "nifti1" and u.main.name.endswith(".nii.gz")]
    plain = [u for u in all_units if u.fmt == "nifti1" and u.main.name.endswith(".nii")]
    if nii and plain:

        def valid_then_cut(folder: Path, good: Unit = plain[0], bad: Unit = nii[0]) -> Input:
            src = folder / "series"
            src.mkdir()
            shutil.copyfile(good.main, src / "a.nii")
            raw = gz(logical(bad.main.read_bytes())[0])
            (src / "b.nii.gz").write_bytes(raw[: len(raw) // 2])
            return Input(src)

        out.append(
            Case("fs:nifti1:folder-valid-then-cut", "nifti1", "fs", "reject", valid_then_cut)
        )
    picked: dict[str, Unit] = {}
    for u in all_units:
        size = sum(f.stat().st_size for f in u.files)
        if size < 2_000_000 and (u.fmt not in picked or u.main.suffix == ".dcm"):
            picked[u.fmt] = u
    for fmt, u in sorted(picked.items()):

        def valid_and_loops(folder: Path, u: Unit = u) -> Input:
            src = folder / "series"
            src.mkdir()
            u.copy_to(src)
            loops(src)
            return Input(src, images=1)

        out.append(Case(f"fs:{fmt}:valid+loops", fmt, "loop", "sane", valid_and_loops))

        def corrupt_and_loops(folder: Path, u: Unit = u) -> Input:
            src = folder / "series"
            src.mkdir()
            main = u.copy_to(src)
            data, gzipped = logical(main.read_bytes())
            hlen = header_len(u.fmt, main.name, data)
            write(main, data[: max(1, hlen // 2)], gzipped)
            loops(src)
            return Input(src)

        out.append(Case(f"fs:{fmt}:truncated+loops", fmt, "loop", "reject", corrupt_and_loops))
    del suffixes_of
    return out


# -- everything ------------------------------------------------------------------------------
def all_cases(testdata: Path, readers: list[Any]) -> list[Case]:
    """Every case for the installed readers, in a stable order with unique ids."""
    formats = {r.format for r in readers}
    us = units(testdata, formats)
    cases: list[Case] = []
    for u in us:
        cases += generic_cases(u)
    extra = {
        "nifti1": nifti1_cases,
        "analyze": nifti1_cases,
        "nifti2": nifti2_cases,
        "mgh": mgh_cases,
        "minc1": minc1_cases,
        "minc2": minc2_cases,
    }
    # structural edits on a few images per format: the rest are the same code paths
    dicom_keep = ("MR_small.dcm", "rtdose.dcm", "T1.dcm", "1.dcm")
    keep = {
        "nifti1": ("anatomical.nii", "example4d.nii.gz", "ras.hdr"),
        "minc2": ("small.mnc", "minc2_4d.mnc"),
    }
    for u in us:
        if u.fmt in extra and u.main.name in keep.get(u.fmt, (u.main.name,)):
            cases += extra[u.fmt](u)
        elif u.fmt == "nrrd" and u.main.name in (
            "BallBinary30x30x30.nrrd",
            "BallBinary30x30x30.nhdr",
            "nrrd.nhdr",
        ):
            detached = u.main.suffix == ".nhdr"
            cases += text_cases(u, nrrd_fields(detached))
            if detached:
                cases += outside_cases(u, "data file")
        elif u.fmt == "metaimage":
            detached = u.main.suffix == ".mhd"
            cases += text_cases(u, meta_fields(detached))
            if detached:
                cases += outside_cases(u, "ElementDataFile")
        elif u.fmt == "dicom" and u.main.name in dicom_keep:
            cases += dicom_cases(u)
    cases += bomb_cases(formats)
    cases += fs_cases(readers, us)
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate case ids: {sorted(dupes)[:5]}"
    return cases
