"""A lean Part 10 header reader for the common case, feeding pydicom's own data structures.

``pydicom.dcmread`` costs about 0.6 ms per file before a single value is converted; a series
of 7,200 slices spent 4 s there. Here the element headers of little-endian files (explicit or
implicit VR, native or encapsulated pixel data) are walked with ``struct`` over one read of
the file's start, and the values are handed over as pydicom ``RawDataElement`` objects in a
real ``Dataset``: conversion, character sets and sequences stay pydicom's. Anything unusual
(no preamble, deflate, big endian, a header longer than what was read, malformed lengths)
returns ``None`` and the caller uses ``pydicom.dcmread``, so results never depend on this path.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataelem import RawDataElement  # noqa: TID253 - only reader.py imports this module
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: TID253 - only reader.py imports this module
from pydicom.tag import BaseTag  # noqa: TID253 - only reader.py imports this module

#: Bytes read at first; a header that does not end (pixel data reached) within them, or
#: within ``MORE``, goes to pydicom.
FIRST = 160 * 1024  # Siemens headers (CSA, Phoenix protocol) run to 60-150 KiB
MORE = 1024 * 1024
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_IMPLICIT = "1.2.840.10008.1.2"
_NOT_HANDLED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflate
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_U16x2 = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


#: Dataset attribute: file offset of the pixel data element's tag, when the walk reached it.
PIXEL_AT = "_anyconv_pixel_at"


#: One ``str`` per VR and one ``BaseTag`` per tag, shared by every file: a 7,200-file series
#: held 130,000 copies of each (10 MB), and making them was a tenth of the walk.
_VR_NAMES: dict[bytes, str] = {}
_TAGS: dict[int, BaseTag] = {}


def _vr_name(vr_bytes: bytes) -> str:
    name = _VR_NAMES[vr_bytes] = vr_bytes.decode("ascii")
    return name


def shared_tag(tag: int) -> BaseTag:
    """The one ``BaseTag`` object for ``tag``."""
    found = _TAGS.get(tag)
    if found is None:
        if len(_TAGS) > 50_000:  # private tags of hostile files cannot grow it without bound
            _TAGS.clear()
        found = _TAGS[tag] = BaseTag(tag)
    return found


class _UnsupportedError(Exception):
    """A file for pydicom to read."""


def read_header_fast(
    path: Path, size: int, head: bytes | None = None
) -> tuple[Dataset, int | None] | None:
    """The dataset before the pixel data, and the pixel element's tag; ``None``: use pydicom.

    ``size`` is the file size; ``head``, if the caller has read it, the file's first bytes
    (``FIRST`` of them, or the whole file).
    """
    try:
        if head is None or (len(head) < FIRST and len(head) < size):
            with path.open("rb") as fh:
                head = fh.read(FIRST)
        try:
            return _parse(head, size)
        except _NeedMoreError:
            if size <= len(head):
                return None
            with path.open("rb") as fh:
                fh.seek(len(head))
                data = head + fh.read(MORE)
            return _parse(data, size)
    except (_UnsupportedError, _NeedMoreError, struct.error, UnicodeDecodeError, OSError):
        return None


class _NeedMoreError(Exception):
    """The header runs past the bytes read."""


def _parse(data: bytes, size: int) -> tuple[Dataset, int | None]:
    if len(data) < 144 or data[128:132] != b"DICM":
        raise _UnsupportedError
    meta_raw, pos = _meta(data)
    ts_elem = meta_raw.get(0x00020010)
    if ts_elem is None:
        raise _UnsupportedError
    ts = ts_elem.value.decode("ascii").strip(" \x00")
    if ts in _NOT_HANDLED:
        raise _UnsupportedError
    implicit = ts == _IMPLICIT
    raw, pixel_tag, end = _elements(data, pos, implicit, size, top=True)
    ds = Dataset(raw)
    ds.file_meta = _shared_meta(meta_raw)
    if pixel_tag is not None:
        # where the pixel element starts: its data are then read without searching
        object.__setattr__(ds, PIXEL_AT, end)
    return ds, pixel_tag


_META_CACHE: dict[tuple, FileMetaDataset] = {}


def _shared_meta(meta_raw: dict) -> FileMetaDataset:
    """Transfer syntax and SOP class only, one object per pair.

    Building a ``FileMetaDataset`` per file cost more than walking the file's header, and
    nothing downstream reads the other meta elements (metadata re-reads one whole header).
    """
    kept = {t: e for t, e in meta_raw.items() if t in (0x00020002, 0x00020010)}
    key = tuple(kept[t].value for t in sorted(kept))
    meta = _META_CACHE.get(key)
    if meta is None:
        if len(_META_CACHE) > 64:
            _META_CACHE.clear()
        meta = FileMetaDataset(kept)
        _META_CACHE[key] = meta
    return meta


def _meta(data: bytes) -> tuple[dict, int]:
    """Group 0002, always explicit VR little endian."""
    pos = 132
    out = {}
    n = len(data)
    while pos + 8 <= n:
        group, elem = _U16x2.unpack_from(data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length = _U32.unpack_from(data, pos + 8)[0]
            start = pos + 12
        else:
            length = _U16.unpack_from(data, pos + 6)[0]
            start = pos + 8
        if length == _UNDEFINED or start + length > n:
            raise _UnsupportedError
        tag = (group << 16) | elem
        out[tag] = RawDataElement(
            BaseTag(tag), vr.decode("ascii"), length, data[start : start + length],
            start, False, True,
        )  # fmt: skip
        pos = start + length
    if 0x00020010 not in out:
        raise _UnsupportedError
    return out, pos


def _elements(
    data: bytes, pos: int, implicit: bool, size: int, *, top: bool, stop: int | None = None
) -> tuple[dict, int | None, int]:
    """Elements from ``pos``: to the pixel data (top level) or an item delimiter/``stop``."""
    out: dict = {}
    n = len(data)
    limit = n if stop is None else stop
    while True:
        if pos >= limit:
            if top and n < size:
                raise _NeedMoreError  # the header goes on past what was read
            if top:
                return out, None, pos  # no pixel data at all
            if stop is not None:
                return out, None, pos
            raise _NeedMoreError
        if pos + 8 > n:
            raise _NeedMoreError
        group, elem = _U16x2.unpack_from(data, pos)
        tag = (group << 16) | elem
        if top and tag in _PIXEL_TAGS:
            return out, tag, pos
        if tag == _ITEM_END:
            if top:
                raise _UnsupportedError
            return out, None, pos + 8
        if group == 0xFFFE:
            raise _UnsupportedError
        if implicit:
            vr = None
            length = _U32.unpack_from(data, pos + 4)[0]
            start = pos + 8
        else:
            vr_bytes = data[pos + 4 : pos + 6]
            if not (65 <= vr_bytes[0] <= 90 and 65 <= vr_bytes[1] <= 90):
                raise _UnsupportedError
            vr = _VR_NAMES.get(vr_bytes) or _vr_name(vr_bytes)
            if vr_bytes in _LONG_VRS:
                if pos + 12 > n:
                    raise _NeedMoreError
                length = _U32.unpack_from(data, pos + 8)[0]
                start = pos + 12
            else:
                length = _U16.unpack_from(data, pos + 6)[0]
                start = pos + 8
        if length == _UNDEFINED:
            if vr not in (None, "SQ"):
                raise _UnsupportedError  # UN/OB of undefined length: leave it to pydicom
            end = _sequence_end(data, start, implicit)
            value = data[start:end]
            out[tag] = RawDataElement(
                BaseTag(tag), "SQ", len(value), value, start, implicit, True
            )  # fmt: skip
            pos = end + 8  # past the sequence delimitation item
            continue
        if start + length > n:
            if start + length > size:
                raise _UnsupportedError  # declared longer than the file
            raise _NeedMoreError
        out[tag] = RawDataElement(
            _TAGS.get(tag) or shared_tag(tag), vr, length, data[start : start + length], start,
            implicit, True,
        )  # fmt: skip
        pos = start + length


def _sequence_end(data: bytes, pos: int, implicit: bool) -> int:
    """Offset of the sequence delimitation item closing an undefined-length sequence."""
    n = len(data)
    while True:
        if pos + 8 > n:
            raise _NeedMoreError
        group, elem = _U16x2.unpack_from(data, pos)
        tag = (group << 16) | elem
        length = _U32.unpack_from(data, pos + 4)[0]
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _UnsupportedError
        start = pos + 8
        if length == _UNDEFINED:
            _raw, _pixel, pos = _elements(data, start, implicit, n, top=False)
        else:
            if start + length > n:
                raise _NeedMoreError
            pos = start + length
