"""Siemens CSA header (private tags 0029,xx10 / 0029,xx20): a small, defensive parser.

Two layouts exist: CSA2 starts with ``SV10`` and four more bytes, CSA1 starts directly with
the tag count. Each tag: 64-byte name, int32 VM, 4-byte VR, int32 SyngoDT, int32 item count,
int32 check (77 or 205); each item: four int32 (the second is the length) and the value padded
to 4 bytes. Values are strings; numbers are parsed by the caller.
"""

from __future__ import annotations

import re
import struct
from typing import Any

_MAX_TAGS = 1000
_MAX_ITEMS = 10000


def parse_csa(raw: bytes | None) -> dict[str, list[str]]:
    """Tag name -> list of item strings; empty on anything that does not parse.

    A broken CSA header must not stop a conversion, so errors give what was read so far.
    """
    out: dict[str, list[str]] = {}
    if not raw or len(raw) < 16:
        return out
    pos = 8 if raw[:4] == b"SV10" else 0
    try:
        (ntags,) = struct.unpack_from("<I", raw, pos)
        if not 0 < ntags <= _MAX_TAGS:
            return out
        pos += 8
        csa1 = raw[:4] != b"SV10"
        first_nitems: int | None = None
        for _ in range(ntags):
            name = raw[pos : pos + 64].split(b"\x00", 1)[0].decode("latin-1")
            _vm, _vr, _dt, nitems, _check = struct.unpack_from("<i4sii i", raw, pos + 64)
            pos += 84
            if not 0 <= nitems <= _MAX_ITEMS:
                return out
            if first_nitems is None:
                first_nitems = nitems
            items: list[str] = []
            for _ in range(nitems):
                lens = struct.unpack_from("<4i", raw, pos)
                # CSA1 keeps the length in the first word, offset by the first tag's count.
                length = lens[0] - (first_nitems or 0) if csa1 else lens[1]
                pos += 16
                if length < 0 or pos + length > len(raw):
                    return out
                value = raw[pos : pos + length].split(b"\x00", 1)[0].decode("latin-1").strip()
                if value:
                    items.append(value)
                pos += (length + 3) // 4 * 4
            out[name] = items
    except struct.error:
        return out
    return out


def csa_float(csa: dict[str, list[str]], name: str) -> float | None:
    """First item of a tag as a float, if it is one."""
    vals = csa_floats(csa, name)
    return vals[0] if vals else None


def csa_floats(csa: dict[str, list[str]], name: str) -> list[float]:
    """Every item of a tag that parses as a float."""
    out = []
    for item in csa.get(name, []):
        try:
            out.append(float(item))
        except ValueError:
            continue
    return out


_ASCCONV = re.compile(rb"### ASCCONV BEGIN[^\n]*###(.*?)### ASCCONV END ###", re.S)


def parse_ascconv(series_csa: dict[str, list[str]], raw: bytes | None = None) -> dict[str, Any]:
    """The ``ASCCONV`` protocol block (``key = value`` lines) of the series CSA header."""
    text = None
    for key in ("MrPhoenixProtocol", "MrProtocol"):
        if series_csa.get(key):
            text = series_csa[key][0].encode("latin-1")
            break
    if text is None and raw is not None:
        text = raw
    if not text:
        return {}
    match = _ASCCONV.search(text)
    if not match:
        return {}
    out: dict[str, Any] = {}
    for line in match.group(1).decode("latin-1").splitlines():
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.split("#", 1)[0].strip().strip('"')
        key = key.strip()
        try:
            out[key] = int(value, 16) if value.lower().startswith("0x") else float(value)
            if isinstance(out[key], float) and out[key].is_integer() and "." not in value:
                out[key] = int(out[key])
        except ValueError:
            out[key] = value
    return out
