"""Write FreeSurfer MGH/MGZ with nibabel's header layout, streaming big-endian voxels.

The affine becomes ``delta`` (column lengths), ``Mdc`` (unit columns) and ``c_ras`` (the world
position of voxel ``dims / 2``), as FreeSurfer's save_mgh.m does. TR, TE, TI (ms) and the flip
angle (radians) go in the footer; tags read from an MGH source are written back after it.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import deflate as _deflate
from anyconv import geometry
from anyconv.errors import LossyConversionError, WriteError
from anyconv.lazy import import_nibabel
from anyconv.model import Image
from anyconv.specs import WriteOptions

from .reader import vox2ras

_mghformat = import_nibabel().freesurfer.mghformat
DATA_OFFSET, MGHHeader = _mghformat.DATA_OFFSET, _mghformat.MGHHeader
footer_dtype, header_dtype = _mghformat.footer_dtype, _mghformat.header_dtype

DEFAULT_COMPRESS_LEVEL = 1  # nibabel's and FreeSurfer's speed/size trade-off for .mgz
_CODES = {"uint8": 0, "int32": 1, "float32": 3, "int16": 4}


def write_mgh(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``.mgh`` or gzipped ``.mgz``/``.mgh.gz``."""
    path = Path(path)
    data = image.data  # lazy data stay lazy: _slabs streams them when the reader can
    shape = list(data.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape.pop()
    if len(shape) > 4:
        raise LossyConversionError(f"{path.name}: MGH holds at most 4 axes, not {len(shape)}")
    dtype = np.dtype(data.dtype)
    if dtype.name not in _CODES:
        raise LossyConversionError(f"{path.name}: MGH cannot store {dtype}")
    dims = shape + [1] * (4 - len(shape))  # same Fortran-order bytes as the data's shape
    header = _header(image, dims, dtype)
    level = (
        options.compress_level if options.compress_level is not None else (DEFAULT_COMPRESS_LEVEL)
    )
    gz = path.name.lower().endswith((".mgz", ".gz"))
    block = header.binaryblock
    tags = (image.extras.get("mgh") or {}).get("tags") or b""
    if isinstance(tags, str):
        tags = tags.encode("latin-1")
    head = block[: header_dtype.itemsize].ljust(DATA_OFFSET, b"\x00")
    footer = block[header_dtype.itemsize : header_dtype.itemsize + footer_dtype.itemsize]
    with path.open("wb") as fh:
        pieces = itertools.chain([head], _slabs(data), [footer, bytes(tags)])
        if not gz:
            for piece in pieces:
                fh.write(piece)
            return
        z = _deflate.compressobj(level, zlib.MAX_WBITS | 16)  # one gzip member, as gzip.open
        for piece in pieces:
            fh.write(z.compress(piece))
        fh.write(z.flush())


def _geometry(image: Image, dims: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """delta, Mdc (columns) and c_ras; an MGH source's own fields when they still fit."""
    affine = np.asarray(image.affine, dtype=np.float64)
    ext = image.extras.get("mgh") or {}
    if ext.get("goodRASFlag", 0) > 0 and list(ext.get("dims", [])[:3]) == list(dims[:3]):
        delta, mdc, c_ras = (
            np.asarray(ext[k], dtype=np.float64) for k in ("delta", "Mdc", "c_ras")
        )
        if np.allclose(vox2ras(mdc, delta, c_ras, dims[:3]), affine, rtol=0, atol=1e-9):
            return delta, mdc, c_ras  # unchanged: write the stored fields bit for bit
    delta = geometry.zooms(affine)
    if np.any(delta == 0):
        raise WriteError("the affine has a zero-length voxel axis; MGH cannot hold it")
    mdc = affine[:3, :3] / delta[None, :]
    c_ras = affine[:3, :3] @ (np.asarray(dims[:3], dtype=np.float64) / 2.0) + affine[:3, 3]
    return delta, mdc, c_ras


def _header(image: Image, dims: list[int], dtype: np.dtype) -> MGHHeader:
    delta, mdc, c_ras = _geometry(image, dims)
    ext = image.extras.get("mgh") or {}
    hdr = MGHHeader()
    hdr["dims"] = dims
    hdr["type"] = _CODES[dtype.name]
    hdr["goodRASFlag"] = 1
    hdr["delta"] = delta
    hdr["Mdc"] = mdc.T
    hdr["Pxyz_c"] = c_ras
    hdr["dof"] = int(ext.get("dof", 0))
    meta = image.meta
    hdr["tr"] = (meta.repetition_time or 0.0) * 1000.0
    hdr["te"] = (meta.echo_time or 0.0) * 1000.0
    hdr["ti"] = (meta.inversion_time or 0.0) * 1000.0
    hdr["flip_angle"] = math.radians(meta.flip_angle or 0.0)
    hdr["fov"] = float(ext.get("fov", 0.0)) if ext else float(max(delta * np.asarray(dims[:3])))
    return hdr


def _slabs(data: Any, chunk: int = 1 << 20) -> Iterator[memoryview]:
    """Big-endian bytes in file order (i fastest), through one reused buffer of a few MiB.

    Each yielded view is valid until the next one is asked for (the caller writes it first).
    Lazy data that offer ``fortran_blocks`` are converted block by block as they are read.
    """
    blocks = getattr(data, "fortran_blocks", None)
    if blocks is None:
        yield from _array_slabs(np.asarray(data), chunk)
        return
    for block in blocks(16 << 20):
        yield from _array_slabs(np.asarray(block), chunk)


def _array_slabs(arr: np.ndarray, chunk: int) -> Iterator[memoryview]:
    t = arr.T  # C order of the reversed axes = MGH's Fortran order
    big = t.dtype.newbyteorder(">")
    if t.flags.c_contiguous:
        flat = t.reshape(-1)
        buf = np.empty(min(chunk, flat.size), dtype=big)
        for start in range(0, flat.size, chunk):
            part = flat[start : start + chunk]
            out = buf[: part.size]
            np.copyto(out, part)
            yield memoryview(out).cast("B")
        return
    for index in np.ndindex(*t.shape[:-2]):
        yield memoryview(np.ascontiguousarray(t[index], dtype=big)).cast("B")
