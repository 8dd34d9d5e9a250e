"""Write MINC2 with h5py, laid out as libminc lays it out, so minc-tools and nibabel read it.

Voxel axes i, j, k become the spatial dimensions named after the world axis each is closest
to (``xspace`` for a mostly left-right axis); a cosine always points along its world axis'
positive direction and a voxel axis running the other way gets a negative ``step``. Starts
are measured along the cosines, so any affine (oblique, flipped, even sheared) is kept.
"""

from __future__ import annotations

import getpass
import math
import os
import socket
import sys
import time
from itertools import count
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from anyconv import geometry
from anyconv.errors import WriteError
from anyconv.model import Image
from anyconv.specs import WriteOptions

from ._minc import SPATIAL_NAMES, VECTOR_NAME, info_from_meta
from .plugin import DEFAULT_COMPRESS_LEVEL, MINC2_DTYPES, __version__

#: Written as ``minc_version``: the MINC2 layout version, and who wrote it.
MINC_VERSION = f"2.0 (anyconv-minc {__version__})"
_COMMENTS = {
    "xspace": "X increases from patient left to right",
    "yspace": "Y increases from patient posterior to anterior",
    "zspace": "Z increases from patient inferior to superior",
}
_VECTOR_INTENTS = ("rgb", "rgba", "vector")
_CHUNK_BYTES = 1 << 20
_IDENT = count(1)


def write_minc2(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``image`` as one MINC2 file at ``path`` (gzip level ``options.compress_level``)."""
    path = Path(path)
    arr, slope, inter = _stored(image)
    if arr.dtype.name not in MINC2_DTYPES:
        raise WriteError(f"{path}: MINC2 cannot store {arr.dtype}")
    streamed = not isinstance(arr, np.ndarray)
    arr, has_vector = (arr, False) if streamed else _canonical_axes(arr, image)
    nd = arr.ndim
    has_time = nd >= 4 and not (has_vector and nd == 4)
    spatial = _spatial_dims(image.affine)
    # File order is slowest first: time, k, j, i, then the vector components fastest.
    perm = ([3] if has_time else []) + [2, 1, 0] + ([nd - 1] if has_vector else [])
    names = (["time"] if has_time else []) + [spatial[a]["name"] for a in (2, 1, 0)]
    names += [VECTOR_NAME] if has_vector else []
    file_view = arr if streamed else arr.transpose(perm)
    level = DEFAULT_COMPRESS_LEVEL if options.compress_level is None else options.compress_level
    if not 0 <= int(level) <= 9:
        raise WriteError(f"{path}: gzip level must be 0-9, not {level}")
    extras = image.extras.get("minc2") or image.extras.get("minc1") or {}
    try:
        # a chunk cache of several chunks: streamed slabs fill each chunk before it is written
        with h5py.File(path, "w", libver="earliest", rdcc_nbytes=32 << 20) as fh:
            root = fh.create_group("minc-2.0")
            _root_attrs(root, extras, options)
            dims = root.create_group("dimensions")
            for axis, info in spatial.items():
                _spatial_dim(dims, info, arr.shape[axis])
            if has_time:
                _time_dim(root, image, arr.shape[3], extras)
            if has_vector:
                _vector_dim(dims, arr.shape[-1])
            group = root.create_group("image").create_group("0")
            _image(group, file_view, names, (slope, inter), int(level))
            _info(root.require_group("info"), info_from_meta(image.meta, extras))
    except (OSError, ValueError, TypeError) as exc:
        raise WriteError(f"{path}: cannot write MINC2: {exc}") from exc


# -- data and ranges ----------------------------------------------------------------------------


def _stored(image: Image) -> tuple[np.ndarray, float, float]:
    """Values to store, with their slope and intercept.

    Integers keep a positive slope; floats are stored as real values (MINC does not scale
    floating-point voxels).
    """
    data = image.data
    if _streams(image):
        return data, image.slope, image.inter  # written block by block (see _image)
    arr = np.asarray(data)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    slope, inter = image.slope, image.inter
    if image.is_scaled and (arr.dtype.kind == "f" or slope <= 0 or not math.isfinite(slope)):
        target = arr.dtype if arr.dtype.kind == "f" else None
        if target is None:
            target = np.dtype(np.float32) if arr.dtype.itemsize <= 2 else np.dtype(np.float64)
        arr = image.values(target)
        slope, inter = 1.0, 0.0
    return arr, slope, inter


def _streams(image: Image) -> bool:
    """Lazy data written as they are read: 3D/4D scalars stored as they are (no cast)."""
    data = image.data
    if not getattr(data, "streams", False) or data.ndim not in (3, 4):
        return False
    dtype = np.dtype(data.dtype)
    if not dtype.isnative or dtype == np.bool_ or dtype.kind not in "iuf":
        return False
    if data.ndim == 4 and (image.meta.intent or "").lower() in _VECTOR_INTENTS:
        return False
    slope = image.slope
    return not (image.is_scaled and (dtype.kind == "f" or slope <= 0 or not math.isfinite(slope)))


def _canonical_axes(arr: np.ndarray, image: Image) -> tuple[np.ndarray, bool]:
    """At least three spatial axes; say whether the last axis is a vector of components."""
    while arr.ndim < 3:
        arr = arr[..., np.newaxis]
    intent = (image.meta.intent or "").lower()
    has_vector = arr.ndim == 5 or (arr.ndim == 4 and intent in _VECTOR_INTENTS)
    if arr.ndim > 5:
        raise WriteError("MINC2 output holds at most 5 axes (x, y, z, time, vector)")
    return arr, has_vector


def _ranges(
    arr: np.ndarray, slope: float, inter: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``valid_range`` (stored) and image-min/max (real) that map one onto the other.

    Integers: the stored data's own range, so image-min/max are the true real extremes
    (what mincstats checks) and real = stored * slope + inter exactly. Floats: MINC stores
    real values, so both ranges are the data's range.
    """
    lo, hi = _extremes(arr)
    return _ranges_from(lo, hi, arr.dtype, slope, inter)


def _extremes(arr: np.ndarray) -> tuple[float | None, float | None]:
    """Smallest and largest (finite) value, ``None`` when there is none."""
    if arr.size == 0:
        return None, None
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)] if not np.all(np.isfinite(arr)) else arr
        if finite.size == 0:
            return None, None
        return float(finite.min()), float(finite.max())
    return float(arr.min()), float(arr.max())


def _ranges_from(
    lo: float | None, hi: float | None, dtype: np.dtype, slope: float, inter: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    if lo is None or hi is None:
        return (0.0, 1.0), (0.0, 1.0)
    if dtype.kind == "f":
        return (lo, hi), (lo, hi)
    if lo == hi:
        info = np.iinfo(dtype)
        if hi < info.max:
            hi += 1
        else:
            lo -= 1
    return (lo, hi), (lo * slope + inter, hi * slope + inter)


# -- geometry -----------------------------------------------------------------------------------


def _spatial_dims(affine: np.ndarray) -> dict[int, dict[str, Any]]:
    """Name, cosine, step and start of voxel axes i, j, k.

    Each axis is named after the world axis it is closest to; its cosine is turned to point
    along that world axis' positive side, the step taking the sign. Starts solve
    origin = sum(start * cosine), exact for any invertible set of cosines.
    """
    affine = np.asarray(affine, dtype=np.float64)
    codes = geometry.axcodes(affine)
    letters = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}
    world = [letters.get(c) for c in codes]
    free = [w for w in range(3) if w not in world]
    world = [w if w is not None else free.pop(0) for w in world]
    out: dict[int, dict[str, Any]] = {}
    columns = np.zeros((3, 3))
    for axis in range(3):
        column = affine[:3, axis]
        step = float(np.linalg.norm(column))
        if step == 0.0 or not math.isfinite(step):
            cos, step = np.eye(3)[world[axis]], 1.0
        else:
            cos = column / step
            if cos[world[axis]] < 0:
                cos, step = -cos, -step
        columns[:, axis] = cos
        out[axis] = {"name": SPATIAL_NAMES[world[axis]], "cos": cos, "step": step}
    try:
        starts = np.linalg.solve(columns, affine[:3, 3])
    except np.linalg.LinAlgError as exc:
        raise WriteError("voxel axes are degenerate (not independent): no MINC geometry") from exc
    for axis in range(3):
        out[axis]["start"] = float(starts[axis])
    return out


# -- HDF5 layout --------------------------------------------------------------------------------


def _str_attr(obj: Any, name: str, value: str) -> None:
    """A fixed-length, NUL-terminated string attribute, as libminc writes them."""
    data = value.encode("utf-8", "replace")
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(data) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    obj.attrs.create(name, np.array(data, dtype=f"S{len(data) + 1}"), dtype=h5py.Datatype(tid))


def _set_attr(obj: Any, name: str, value: Any) -> None:
    """Store a python value as the MINC attribute type that fits it."""
    if value is None:
        return
    if isinstance(value, str):
        _str_attr(obj, name, value)
    elif isinstance(value, (bool, np.bool_, int, np.integer)) and -(2**31) <= int(value) < 2**31:
        obj.attrs.create(name, np.int32(value))
    elif isinstance(value, (int, float, np.integer, np.floating)):
        obj.attrs.create(name, np.float64(value))
    elif isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "iufb" and arr.size:
            obj.attrs.create(name, arr.astype(np.float64))
        elif arr.size:
            _str_attr(obj, name, "\n".join(str(v) for v in np.ravel(arr)))
    else:
        _str_attr(obj, name, str(value))


def _standard(obj: Any, vartype: str) -> None:
    _str_attr(obj, "varid", "MINC standard variable")
    _str_attr(obj, "vartype", vartype)
    _str_attr(obj, "version", "MINC Version    1.0")


def _root_attrs(root: h5py.Group, extras: dict[str, Any], options: WriteOptions) -> None:
    now = time.localtime()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "nobody"
    ident = (
        f"{user}:{socket.gethostname() or 'unknown'}:{time.strftime('%Y.%m.%d.%H.%M.%S', now)}"
        f":{os.getpid()}:{next(_IDENT)}"
    )
    command = options.get("history") or " ".join(
        [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "anyconv", *sys.argv[1:]]
    )
    history = str(extras.get("history") or "")
    if history and not history.endswith("\n"):
        history += "\n"
    history += f"{time.strftime('%a %b %d %H:%M:%S %Y', now)}>>> {command}\n"
    _str_attr(root, "ident", ident)
    _str_attr(root, "minc_version", MINC_VERSION)
    _str_attr(root, "history", history)


def _dim_dataset(group: h5py.Group, name: str, length: int, offsets: Any = None) -> h5py.Dataset:
    if offsets is None:
        ds = group.create_dataset(name, shape=(), dtype=np.int32)
    else:
        ds = group.create_dataset(name, data=np.asarray(offsets, dtype=np.float64))
    _standard(ds, "dimension____")
    ds.attrs.create("length", np.uint32(length))
    return ds


def _spatial_dim(group: h5py.Group, info: dict[str, Any], length: int) -> None:
    ds = _dim_dataset(group, info["name"], length)
    _str_attr(ds, "comments", _COMMENTS[info["name"]])
    _str_attr(ds, "spacing", "regular__")
    _str_attr(ds, "alignment", "centre")
    ds.attrs.create("step", np.float64(info["step"]))
    ds.attrs.create("start", np.float64(info["start"]))
    ds.attrs.create("direction_cosines", np.asarray(info["cos"], dtype=np.float64))
    _str_attr(ds, "units", "mm")


def _time_dim(root: h5py.Group, image: Image, length: int, extras: dict[str, Any]) -> None:
    """Regular time from the repetition time; irregular frames from BIDS frame timing.

    Irregular frames are laid out as mincconcat writes them: offsets in the time dataset
    (with its own ``dimorder``), widths in ``info/time-width``. libminc's MINC1 layer, which
    minc-tools use, reads that layout and would take ``dimensions/time-width`` for a dimension.
    """
    group = root["dimensions"]
    source = (extras.get("dims") or {}).get("time") or {}
    starts = image.meta.bids.get("FrameTimesStart")
    durations = image.meta.bids.get("FrameDuration")
    irregular = isinstance(starts, list) and len(starts) == length
    if irregular:
        offsets = np.asarray(starts, dtype=np.float64)
        ds = _dim_dataset(group, "time", length, offsets)
        _str_attr(ds, "spacing", "irregular")
        _str_attr(ds, "alignment", "start_")
        _str_attr(ds, "dimorder", "time")
        if isinstance(durations, list) and len(durations) == length:
            info = root.require_group("info")
            width = info.create_dataset("time-width", data=np.asarray(durations, dtype=np.float64))
            _standard(width, "dim-width____")
            _str_attr(width, "dimorder", "time")
            _str_attr(width, "spacing", "irregular")
            _str_attr(width, "filtertype", "square____")
        step = float(np.diff(offsets).mean()) if length > 1 else 1.0
        start = float(offsets[0])
    else:
        ds = _dim_dataset(group, "time", length)
        _str_attr(ds, "spacing", "regular__")
        _str_attr(ds, "alignment", "start_")
        step = image.meta.repetition_time or source.get("step") or 1.0
        start = source.get("start", 0.0)
    ds.attrs.create("step", np.float64(step))
    ds.attrs.create("start", np.float64(start if isinstance(start, (int, float)) else 0.0))
    _str_attr(ds, "units", "s")


def _vector_dim(group: h5py.Group, length: int) -> None:
    _dim_dataset(group, VECTOR_NAME, length)


def _write_streamed(ds: h5py.Dataset, data: Any) -> tuple[float | None, float | None]:
    """Write (i, j, k[, t]) data block by block into the (t,) k, j, i dataset; the extremes."""
    nz = data.shape[2]
    lo = hi = None
    pos = 0  # slice index over k, then t: the order blocks come in
    for block in data.fortran_blocks(16 << 20):
        slabs = np.asarray(block).T  # (n, j, i): C-contiguous, file order
        got = _extremes(slabs)
        if got[0] is not None:
            lo = got[0] if lo is None else min(lo, got[0])
            hi = got[1] if hi is None else max(hi, got[1])
        done = 0
        while done < slabs.shape[0]:
            t, k = divmod(pos, nz)
            take = min(slabs.shape[0] - done, nz - k)
            if ds.ndim == 4:
                ds[t, k : k + take] = slabs[done : done + take]
            else:
                ds[k : k + take] = slabs[done : done + take]
            done += take
            pos += take
    return lo, hi


def _chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """About 1 MiB chunks, halving the slowest axes first (whole slices when they fit)."""
    chunk = [max(int(s), 1) for s in shape]
    for axis in range(len(chunk)):
        while chunk[axis] > 1 and math.prod(chunk) * itemsize > _CHUNK_BYTES:
            chunk[axis] = (chunk[axis] + 1) // 2
    return tuple(chunk)


def _image(
    group: h5py.Group,
    data: Any,
    names: list[str],
    scaling: tuple[float, float],
    level: int,
) -> None:
    """The image dataset; ``data`` is the file-ordered array, or lazy data that stream."""
    dtype = np.dtype(data.dtype)
    streamed = not isinstance(data, np.ndarray)
    shape = tuple(reversed(data.shape[:3])) if streamed else data.shape
    if streamed and data.ndim == 4:
        shape = (data.shape[3], *shape)
    kwargs: dict[str, Any] = {}
    if level > 0:
        kwargs = {
            "chunks": _chunks(shape, dtype.itemsize),
            "compression": "gzip",
            "compression_opts": level,
        }
    ds = group.create_dataset("image", shape=shape, dtype=dtype, fillvalue=0, **kwargs)
    if streamed:
        lo, hi = _write_streamed(ds, data)
        vrange, irange = _ranges_from(lo, hi, dtype, *scaling)
    else:
        block = kwargs["chunks"][0] if kwargs else max(1, shape[0] // 8)
        for start in range(0, shape[0], block):
            ds[start : start + block] = np.ascontiguousarray(data[start : start + block])
        vrange, irange = _ranges(data, *scaling)
    _standard(ds, "group________")
    _str_attr(ds, "dimorder", ",".join(names))
    _str_attr(ds, "complete", "true_")
    ds.attrs.create("valid_range", np.asarray(vrange, dtype=np.float64))
    for name, value in (("image-min", irange[0]), ("image-max", irange[1])):
        scale = group.create_dataset(name, data=np.float64(value))
        _standard(scale, "var_attribute")


def _info(group: h5py.Group, info: dict[str, dict[str, Any]]) -> None:
    for name, attrs in info.items():
        ds = group.create_dataset(name, shape=(), dtype=np.int32)
        _standard(ds, "group________")
        for key, value in attrs.items():
            if key in ("varid", "vartype", "version"):
                continue
            _set_attr(ds, key, value)
