"""Write NRRD: ``.nrrd`` with the data attached (gzip by default) or ``.nhdr`` + ``.raw``.

A new header is written as Slicer (through ITK) writes one: ``space: left-posterior-superior``,
``space directions`` and ``space origin`` in LPS, ``kinds: domain`` for i, j, k, component
axes (vector, RGB, tensor, complex) first, further axes as ``list`` with ``none`` direction.
An image read from NRRD whose shape and affine are unchanged is written back with its own
fields, axis order and key/value pairs, only type, encoding, endian and data file renewed.
"""

from __future__ import annotations

import bz2
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import geometry
from anyconv.errors import WriteError
from anyconv.model import Image
from anyconv.specs import WriteOptions
from nrrd.formatters import format_number, format_optional_vector
from zlib_ng import zlib_ng as zlib

from ._header import TYPES, escape

#: zlib-ng level when none is asked for: as fast as ITK's gzip and as small (level 1 of
#: zlib-ng is twice as fast but about 15 % larger on MRI-like data).
DEFAULT_COMPRESS_LEVEL = 2
_CHUNK_BYTES = 16 * 1024 * 1024
_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2",
              "ascii": "ascii", "text": "ascii", "txt": "ascii"}  # fmt: skip
_TYPE_NAMES = {
    "int8": "signed char", "uint8": "unsigned char", "int16": "short",
    "uint16": "unsigned short", "int32": "int", "uint32": "unsigned int",
    "int64": "long long int", "uint64": "unsigned long long int", "float32": "float",
    "float64": "double",
}  # fmt: skip
_COMPONENT_KIND = {("rgb", 3): "RGB-color", ("rgba", 4): "RGBA-color",
                   ("symmetric matrix", 6): "3D-symmetric-matrix",
                   ("symmetric matrix", 7): "3D-masked-symmetric-matrix",
                   ("general matrix", 9): "3D-matrix", ("quaternion", 4): "quaternion"}  # fmt: skip
_COMPONENT_INTENTS = {"vector", "rgb", "rgba", "symmetric matrix", "general matrix", "quaternion"}
_RENEWED = {"type", "encoding", "endian", "data file", "line skip", "byte skip", "dimension",
            "sizes"}  # fmt: skip
_LPS = np.diag([-1.0, -1.0, 1.0])


def write_nrrd(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``path`` (``.nrrd``) or ``path`` + its ``.raw`` companion (``.nhdr``)."""
    path = Path(path)
    detached = path.name.lower().endswith(".nhdr")
    asked = str(options.get("encoding") or ("raw" if detached else "gzip")).lower()
    encoding = _ENCODINGS.get(asked)
    if encoding is None:
        raise WriteError(f"{path}: unknown NRRD encoding {asked!r} (raw, gzip, bzip2, ascii)")
    level = options.compress_level if options.compress_level is not None else None
    ext = image.extras.get("nrrd") or {}
    data = image.data
    # a new scalar layout keeps the voxel order: lazy data that stream are written as read
    scalar = data.dtype.kind != "c" and not (
        image.meta.intent in _COMPONENT_INTENTS and data.ndim > 3
    )
    if ext or not scalar or encoding == "ascii" or not getattr(data, "streams", False):
        data = image.stored()
    if _source_matches(ext, image, data):
        file_arr, fields, keyvalues = _as_source(image, data, ext)
    else:
        if ext:
            image.notes.append("NRRD fields of the source dropped: shape or geometry changed")
        file_arr, fields, keyvalues = _fresh(image, data)
    dtype = file_arr.dtype
    fields["type"] = _type_name(dtype, ext.get("fields", {}).get("type"), fields.get("type"))
    fields["dimension"] = str(file_arr.ndim)
    fields["sizes"] = " ".join(str(s) for s in file_arr.shape)
    fields["encoding"] = encoding
    if dtype.itemsize > 1 and encoding != "ascii":
        fields["endian"] = "little"
    else:
        fields.pop("endian", None)
    header_fields = _ordered(fields)
    data_name = None
    if detached:
        stem = path.name[: -len(".nhdr")]
        data_name = stem + {"raw": ".raw", "gzip": ".raw.gz", "bzip2": ".raw.bz2"}.get(
            encoding, ".txt"
        )
        header_fields.append(("data file", data_name))
    text = _header_text(header_fields, keyvalues)
    if detached:
        path.write_bytes(text.encode("utf-8"))
        with (path.parent / data_name).open("wb") as fh:
            _write_data(fh, file_arr, encoding, level)
    else:
        with path.open("wb") as fh:
            fh.write(text.encode("utf-8") + b"\n")
            _write_data(fh, file_arr, encoding, level)


# -- layout --------------------------------------------------------------------------------
def _source_matches(ext: dict[str, Any], image: Image, data: np.ndarray) -> bool:
    """Whether the source NRRD header still describes this image."""
    if not ext or "order" not in ext or "affine" not in ext:
        return False
    if list(ext.get("shape", [])) != list(data.shape):
        return False
    if bool(ext.get("complex")) != (data.dtype.kind == "c"):
        return False
    src = np.asarray(ext["affine"], dtype=np.float64)
    scale = max(1.0, float(np.abs(src).max()))
    return bool(np.allclose(src, image.affine, rtol=0, atol=1e-6 * scale))


def _as_source(
    image: Image, data: np.ndarray, ext: dict[str, Any]
) -> tuple[np.ndarray, dict[str, str], list[tuple[str, str]]]:
    """The data in the source's own axis order, with its fields and key/values."""
    order = [int(a) for a in ext["order"]]
    arr = data
    if ext.get("complex"):
        arr = _complex_to_pairs(arr)
    sizes = [int(s) for s in ext["fields"]["sizes"].split()]
    arr = arr.reshape([sizes[a] for a in order])  # drops singleton axes added on read
    file_arr = arr.transpose(np.argsort(order))
    fields = {k: v for k, v in ext["fields"].items() if k not in _RENEWED}
    keyvalues = [(str(k), str(v)) for k, v in ext.get("keyvalues", [])]
    return file_arr, fields, keyvalues


def _complex_to_pairs(arr: np.ndarray) -> np.ndarray:
    real = np.dtype(f"f{arr.dtype.itemsize // 2}")
    return np.ascontiguousarray(arr)[..., None].view(real)


def _fresh(
    image: Image, data: np.ndarray
) -> tuple[np.ndarray, dict[str, str], list[tuple[str, str]]]:
    """A new LPS header, laid out as Slicer/ITK write: components first, then i, j, k, rest."""
    ndim = data.ndim
    nsp = min(ndim, 3)
    arr = data
    comp_axis = None
    comp_kind = None
    meta = image.meta
    if arr.dtype.kind == "c":
        arr = _complex_to_pairs(arr)
        comp_axis, comp_kind = arr.ndim - 1, "complex"
    elif meta.intent in _COMPONENT_INTENTS and ndim > 3:
        comp_axis = ndim - 1
        comp_kind = _COMPONENT_KIND.get((meta.intent, data.shape[-1]), "vector")
    rest = [a for a in range(nsp, arr.ndim) if a != comp_axis]
    if comp_axis is not None and any(arr.shape[a] == 1 for a in rest):
        # NIfTI keeps an empty t axis before vector components (x, y, z, 1, c): drop it
        keep = [a for a in range(arr.ndim) if a not in rest or arr.shape[a] != 1]
        arr = arr.reshape([arr.shape[a] for a in keep])
        comp_axis = keep.index(comp_axis)
        rest = [a for a in range(nsp, arr.ndim) if a != comp_axis]
        image.notes.append("length-1 axes before the NRRD component axis dropped")
    order = ([comp_axis] if comp_axis is not None else []) + list(range(nsp)) + rest
    file_arr = arr if order == list(range(arr.ndim)) else arr.transpose(order)
    lps = geometry.ras_to_lps(image.affine)
    directions = []
    kinds = []
    for a in order:
        if a < nsp:
            directions.append(format_optional_vector(lps[:3, a]))
            kinds.append("domain")
        else:
            directions.append("none")
            kinds.append(comp_kind if a == comp_axis else "list")
    fields: dict[str, str] = {
        "space": "left-posterior-superior",
        "space directions": " ".join(directions),
        "kinds": " ".join(kinds),
        "space origin": format_optional_vector(lps[:3, 3]),
    }
    if comp_axis is None and ndim == 4 and meta.repetition_time:
        # time between volumes as the list axis' spacing, in seconds (ITK reads this too)
        fields["spacings"] = " ".join(
            format_number(float(meta.repetition_time)) if a == 3 else "nan" for a in order
        )
        fields["units"] = " ".join('"s"' if a == 3 else '""' for a in order)
    unit = meta.spatial_unit
    if unit and unit != "mm":
        fields["space units"] = " ".join(f'"{unit}"' for _ in range(3))
    keyvalues: list[tuple[str, str]] = []
    if meta.description:
        fields["content"] = meta.description.replace("\n", " ")
    if (
        ndim == 4
        and comp_axis is None
        and meta.bvals
        and meta.bvecs
        and len(meta.bvals) == data.shape[3] == len(meta.bvecs)
    ):
        keyvalues += _dwmri(meta.bvals, meta.bvecs)
        fields["measurement frame"] = "(1,0,0) (0,1,0) (0,0,1)"
    return file_arr, fields, keyvalues


def _dwmri(bvals: list[float], bvecs: list[list[float]]) -> list[tuple[str, str]]:
    """Slicer's DWI keys: gradients in LPS (identity frame), length sqrt(b / b max)."""
    bmax = max(float(b) for b in bvals) or 1.0
    out = [("modality", "DWMRI"), ("DWMRI_b-value", format_number(bmax))]
    for i, (b, vec) in enumerate(zip(bvals, bvecs, strict=True)):
        g = _LPS @ np.asarray(vec, dtype=np.float64)
        norm = np.linalg.norm(g)
        g = g / norm * np.sqrt(max(float(b), 0.0) / bmax) if norm > 0 else g * 0
        out.append((f"DWMRI_gradient_{i:04d}", " ".join(format_number(float(x)) for x in g)))
    return out


def _type_name(dtype: np.dtype, source_type: str | None, current: str | None) -> str:
    """The source's spelling when the dtype is unchanged, else teem's own name."""
    name = _TYPE_NAMES.get(np.dtype(dtype).newbyteorder("=").name)
    if name is None:
        raise WriteError(f"NRRD has no type for {dtype}")
    if source_type is not None:
        code = TYPES.get(" ".join(source_type.split()).lower())
        if code is not None and np.dtype(code) == np.dtype(dtype).newbyteorder("="):
            return source_type
    return name


_FIRST = ("type", "dimension", "space", "space dimension", "sizes", "space directions", "kinds",
          "spacings", "units", "endian", "encoding", "space units", "space origin",
          "measurement frame")  # fmt: skip


def _ordered(fields: dict[str, str]) -> list[tuple[str, str]]:
    """Fields in the order ITK writes them; others after, in their own order."""
    head = [(k, fields[k]) for k in _FIRST if k in fields]
    return head + [(k, v) for k, v in fields.items() if k not in _FIRST]


def _header_text(fields: list[tuple[str, str]], keyvalues: list[tuple[str, str]]) -> str:
    lines = [
        "NRRD0004",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
    ]
    lines += [f"{k}: {v}".rstrip() if v else f"{k}:" for k, v in fields]
    lines += [f"{escape(k)}:={escape(v)}" for k, v in keyvalues]
    return "\n".join(lines) + "\n"


# -- data ----------------------------------------------------------------------------------
def _slabs(arr: Any) -> Iterator[bytes]:
    """The array's bytes in NRRD order (first axis fastest, little endian), in chunks.

    Lazy data that stream come block by block; each chunk is valid until the next one is
    asked for (the caller writes or compresses it first).
    """
    if not isinstance(arr, np.ndarray):
        for block in arr.fortran_blocks(_CHUNK_BYTES):
            yield from _slabs(np.asarray(block))
        return
    target = arr.dtype.newbyteorder("<")
    if arr.ndim == 0 or arr.size == 0:
        yield np.ascontiguousarray(arr, dtype=target).tobytes()
        return
    flat_t = arr.T  # C order of the reversed axes = Fortran order of arr
    if flat_t.flags.c_contiguous and flat_t.dtype == target:
        mv = memoryview(flat_t.reshape(-1)).cast("B")
        for start in range(0, len(mv), _CHUNK_BYTES):
            yield mv[start : start + _CHUNK_BYTES]
        return
    per = max(1, _CHUNK_BYTES // max(1, int(np.prod(flat_t.shape[1:])) * target.itemsize))
    for start in range(0, flat_t.shape[0], per):
        yield np.ascontiguousarray(flat_t[start : start + per], dtype=target).tobytes()


def _write_data(fh: Any, arr: np.ndarray, encoding: str, level: int | None) -> None:
    if encoding == "ascii":
        _write_ascii(fh, arr)
        return
    if encoding == "raw":
        for chunk in _slabs(arr):
            fh.write(chunk)
        return
    if encoding == "gzip":
        comp: Any = zlib.compressobj(
            DEFAULT_COMPRESS_LEVEL if level is None else level, zlib.DEFLATED, zlib.MAX_WBITS | 16
        )
    else:
        comp = bz2.BZ2Compressor(9 if level is None else max(1, min(level, 9)))
    for chunk in _slabs(arr):
        fh.write(comp.compress(chunk))
    fh.write(comp.flush())


def _write_ascii(fh: Any, arr: np.ndarray) -> None:
    flat = np.asarray(arr).ravel(order="F")
    fmt = "%d"
    if flat.dtype.kind == "f":
        fmt = "%.9g" if flat.dtype.itemsize == 4 else "%.17g"
    row = arr.shape[0] if arr.ndim else 1
    for start in range(0, flat.size, row):
        fh.write((" ".join(fmt % v for v in flat[start : start + row]) + "\n").encode("ascii"))
