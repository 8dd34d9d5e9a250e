"""Write MetaImage as ITK's MetaImageIO does: same fields, same order, LPS geometry.

Voxels are streamed slab by slab (raw or zlib), so a write needs no second copy of the volume.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import deflate as _deflate
from anyconv import geometry
from anyconv.errors import WriteError
from anyconv.model import Image
from anyconv.specs import WriteOptions

from .reader import itk_orientation

DEFAULT_COMPRESS_LEVEL = 1
_ELEMENT_TYPES = {
    "uint8": "MET_UCHAR", "int8": "MET_CHAR", "uint16": "MET_USHORT", "int16": "MET_SHORT",
    "uint32": "MET_UINT", "int32": "MET_INT", "uint64": "MET_ULONG_LONG",
    "int64": "MET_LONG_LONG", "float32": "MET_FLOAT", "float64": "MET_DOUBLE",
}  # fmt: skip
_MODALITY = {"CT": "MET_MOD_CT", "MR": "MET_MOD_MR", "NM": "MET_MOD_NM", "US": "MET_MOD_US"}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_RESERVED = frozenset(
    [
        "ObjectType",
        "NDims",
        "BinaryData",
        "BinaryDataByteOrderMSB",
        "ElementByteOrderMSB",
        "CompressedData",
        "CompressedDataSize",
        "TransformMatrix",
        "Rotation",
        "Orientation",
        "Offset",
        "Origin",
        "Position",
        "AnatomicalOrientation",
        "ElementSpacing",
        "ElementSize",
        "DimSize",
        "HeaderSize",
        "ElementNumberOfChannels",
        "ElementType",
        "ElementDataFile",
        "ElementMin",
        "ElementMax",
    ]
)


def _num(x: float) -> str:
    """Shortest text that reads back as the same double; integers without a dot."""
    x = float(x) + 0.0  # no "-0"
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _nums(values: Any) -> str:
    return " ".join(_num(v) for v in np.ravel(values))


def _compress(options: WriteOptions) -> tuple[bool, int]:
    flag = str(options.get("compress", "1")).strip().lower()
    level = options.compress_level
    on = flag not in ("0", "false", "no", "off") and level != 0
    return on, DEFAULT_COMPRESS_LEVEL if level is None else int(level)


def write_metaimage(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``.mha`` (data after the header) or ``.mhd`` + ``.zraw``/``.raw``."""
    path = Path(path)
    data = image.data  # lazy data that stream are written block by block (see _slabs)
    channels = 1
    if image.meta.intent in ("vector", "rgb", "rgba") and data.ndim >= 2:
        channels = int(data.shape[-1])
    if channels > 1 or not getattr(data, "streams", False):
        data = image.stored()
    spatial = list(data.shape[: data.ndim - 1] if channels > 1 else data.shape)
    while len(spatial) > 3 and spatial[-1] == 1:
        spatial.pop()
    lps = geometry.ras_to_lps(image.affine)
    if len(spatial) < 3 and not _planar(lps, len(spatial)):
        spatial += [1] * (3 - len(spatial))
    len(spatial)
    comp = [channels] if channels > 1 else []
    if isinstance(data, np.ndarray) and data.ndim:
        data = data.reshape([*spatial, *comp], order="F")  # same file bytes either way
    dtype = np.dtype(data.dtype)
    if dtype.name not in _ELEMENT_TYPES:
        raise WriteError(f"{path}: MetaImage has no element type for {dtype}")
    compress, level = _compress(options)
    fields = _fields(image, lps, spatial, channels, dtype)
    fields.insert(3, ("CompressedData", "True" if compress else "False"))
    local = path.name.lower().endswith(".mha")
    slabs = _slabs(data, channels > 1)
    if local:
        body = _compressed(slabs, level) if compress else None
        if body is not None:
            fields.insert(4, ("CompressedDataSize", str(sum(len(b) for b in body))))
        fields.append(("ElementDataFile", "LOCAL"))
        with path.open("wb") as fh:
            fh.write(_text(fields))
            for chunk in body if body is not None else slabs:
                fh.write(chunk)
        return
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    data_path = path.with_name(stem + (".zraw" if compress else ".raw"))
    size = 0
    with data_path.open("wb") as fh:
        if compress:
            z = _deflate.compressobj(level)
            for chunk in slabs:
                out = z.compress(chunk)
                size += len(out)
                fh.write(out)
            out = z.flush()
            size += len(out)
            fh.write(out)
        else:
            for chunk in slabs:
                fh.write(chunk)
    if compress:
        fields.insert(4, ("CompressedDataSize", str(size)))
    fields.append(("ElementDataFile", data_path.name))
    path.write_bytes(_text(fields))


def _planar(lps: np.ndarray, n: int) -> bool:
    """Whether the affine of an ``n``-D (n < 3) image fits an ``n``-D MetaImage exactly."""
    rest = lps[:3, :3].copy()
    return (
        np.allclose(rest[n:, :n], 0)
        and np.allclose(rest[:n, n:3], 0)
        and np.allclose(lps[n:3, 3], 0)
        and np.allclose(rest[n:, n:], np.eye(3 - n))
    )


def _fields(
    image: Image, lps: np.ndarray, spatial: list[int], channels: int, dtype: np.dtype
) -> list[tuple[str, str]]:
    ext = image.extras.get("metaimage") or {}
    n = len(spatial)
    k = min(n, 3)
    spacing, direction, origin = geometry.spacing_direction_origin(lps)
    if np.any(spacing[:k] == 0):
        raise WriteError("the affine has a zero-length voxel axis; MetaImage cannot hold it")
    tm = np.eye(n)
    tm[:k, :k] = direction[:k, :k].T  # row i = direction of voxel axis i
    full_spacing = [1.0] * n
    full_spacing[:k] = [float(s) for s in spacing[:k]]
    full_origin = [0.0] * n
    full_origin[:k] = [float(o) for o in origin[:k]]
    src_n = int(ext.get("ndims", 0))
    if n > 3 and src_n == n:
        # Axes past the third as the MetaImage source had them.
        old_tm = np.asarray(ext.get("transform_matrix"), dtype=float).reshape(n, n)
        tm[3:, 3:] = old_tm[3:, 3:]
        full_spacing[3:] = ext["spacing"][3:]
        full_origin[3:] = ext["offset"][3:]
    if n >= 4 and image.meta.repetition_time:
        full_spacing[3] = float(image.meta.repetition_time)
    fields = [
        ("ObjectType", "Image"),
        ("NDims", str(n)),
        ("BinaryData", "True"),
        ("BinaryDataByteOrderMSB", "False"),
        ("TransformMatrix", _nums(tm)),
        ("Offset", _nums(full_origin)),
    ]
    kept = dict(ext.get("fields") or {})
    cor = kept.pop("CenterOfRotation", None)
    if cor is None or len(cor.split()) != n:
        cor = _nums([0.0] * n)
    fields.append(("CenterOfRotation", cor))
    orient = itk_orientation(np.asarray(image.affine)) if n >= 3 else "??"
    fields.append(("AnatomicalOrientation", orient + "?" * max(n - 3, 0)))
    fields.append(("ElementSpacing", _nums(full_spacing)))
    fields.append(("DimSize", " ".join(str(int(s)) for s in spatial)))
    if image.meta.modality in _MODALITY:
        kept["Modality"] = _MODALITY[image.meta.modality]
    if image.meta.description:
        kept["Comment"] = image.meta.description
    user = dict(ext.get("user") or {})
    for key, value in [*kept.items(), *user.items()]:
        text = str(value)
        if key in _RESERVED or not _KEY.match(key) or "\n" in text or "\r" in text:
            image.notes.append(f"MetaImage field {key!r} not written (not a valid MetaIO field)")
            continue
        fields.append((key, text))
    if channels > 1:
        fields.append(("ElementNumberOfChannels", str(channels)))
    fields.append(("ElementType", _ELEMENT_TYPES[dtype.name]))
    return fields


def _text(fields: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k} = {v}\n" for k, v in fields).encode("latin-1", "replace")


def _slabs(data: Any, components: bool) -> Iterator[bytes]:
    """Little-endian bytes in file order (component, i, j, k...), one slab at a time.

    Streaming lazy data (scalar only) come block by block as the reader reads them; each
    piece is valid until the next one is asked for (callers write or compress it first).
    """
    if not isinstance(data, np.ndarray):
        for block in data.fortran_blocks(16 << 20):
            yield from _slabs(np.asarray(block), False)
        return
    n = data.ndim - (1 if components else 0)
    axes = [*reversed(range(n)), *([n] if components else [])]
    t = data.transpose(axes)  # C order of this is file order
    little = t.dtype.newbyteorder("<")
    if t.ndim == 0 or t.size == 0:
        yield np.ascontiguousarray(t, dtype=little).tobytes()
        return
    if t.flags.c_contiguous and (t.dtype == little or t.dtype.itemsize == 1):
        yield memoryview(t).cast("B")
        return
    for slab in t:
        yield memoryview(np.ascontiguousarray(slab, dtype=little)).cast("B")


def _compressed(slabs: Iterator[bytes], level: int) -> list[bytes]:
    z = _deflate.compressobj(level)
    out = [z.compress(chunk) for chunk in slabs]
    out.append(z.flush())
    return [b for b in out if b]
