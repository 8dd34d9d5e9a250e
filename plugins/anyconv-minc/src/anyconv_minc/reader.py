"""Read MINC2 (HDF5, with h5py) and MINC1 (NetCDF, with nibabel's netcdf reader).

Each reader only describes the file (``MincHeader``); geometry, scaling and metadata are
worked out once in ``_minc.build_image``. Voxel data stays on disk until asked for.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from anyconv.errors import ReadError
from anyconv.model import Image
from anyconv.specs import ReadOptions

from ._minc import MAX_DEFLATE_RATIO, Dim, MincHeader, as_text, build_image, check_shape

IMAGE_PATH = "minc-2.0/image/0/image"


def _opener(path: Path) -> tuple[Callable[[], Any], bool]:
    """How to open the file: by name, or from memory when it is gzipped (``.mnc.gz``).

    minc-tools and nibabel read gzipped MINC transparently; HDF5 and NetCDF need the whole
    uncompressed file, so a gzipped one is decompressed in memory each time it is opened.
    """
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if not gzipped:
        return (lambda: str(path)), False
    return _decompressor(path), True


class _BoundedFile(io.FileIO):
    """A file whose reads never ask for more than it holds.

    nibabel's NetCDF reader reads counts straight from the header; a corrupt count of 2^31
    made a buffered read allocate it. Capped at the file size, the read comes back short and
    the parse fails as invalid instead.
    """

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size >= 0:
            size = min(size, max(0, os.fstat(self.fileno()).st_size - self.tell()))
        return super().read(size)


def _decompressor(path: Path) -> Callable[[], Any]:
    def decompress() -> io.BytesIO:
        try:
            return io.BytesIO(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, zlib.error) as exc:
            raise ReadError(f"{path}: corrupt gzip stream: {_first_line(exc)}") from exc

    return decompress


def read_minc2(path: Path, options: ReadOptions) -> Image:
    """Read a MINC2 file: full-resolution image ``/minc-2.0/image/0``, lazily."""
    path = Path(path)
    source, _ = _opener(path)
    try:
        fh = h5py.File(source(), "r")
    except OSError as exc:
        raise ReadError(f"{path}: not a readable HDF5 file: {_first_line(exc)}") from exc
    with fh:
        root = fh.get("minc-2.0")
        if not isinstance(root, h5py.Group):
            raise ReadError(f"{path}: HDF5 without a /minc-2.0 group: not MINC2")
        image = fh.get(IMAGE_PATH)
        if not isinstance(image, h5py.Dataset):
            raise ReadError(f"{path}: no image dataset at /{IMAGE_PATH}")
        header = _minc2_header(path, root, image, source)
    return build_image(header)


def _minc2_header(
    path: Path, root: h5py.Group, image: h5py.Dataset, source: Callable[[], Any]
) -> MincHeader:
    shape = tuple(int(s) for s in image.shape)
    dtype, convert = _hdf5_dtype(path, image.dtype)
    check_shape(path, shape, dtype.itemsize)
    _check_storage(path, image, dtype)
    names = [n.strip() for n in as_text(image.attrs.get("dimorder", "")).split(",") if n.strip()]
    if len(names) != len(shape):
        raise ReadError(
            f"{path}: image dimorder {','.join(names)!r} does not match its {len(shape)} axes"
        )
    group = root.get("dimensions")
    dims = []
    for name, length in zip(names, shape, strict=True):
        obj = group.get(name) if isinstance(group, h5py.Group) else None
        attrs = _attrs(obj)
        offsets = widths = None
        if isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.shape[0] == length:
            offsets = np.asarray(obj[()], dtype=np.float64)
            # libminc puts widths beside the dimension; its MINC1 layer (mincconcat) in info.
            for where in ("dimensions", "info"):
                wobj = root.get(f"{where}/{name}-width")
                if isinstance(wobj, h5py.Dataset) and wobj.shape == (length,):
                    widths = np.asarray(wobj[()], dtype=np.float64)
                    break
        dims.append(Dim(name, length, attrs, offsets, widths))
    parent = image.parent
    imin, imin_dims = _scale_var(parent.get("image-min"))
    imax, imax_dims = _scale_var(parent.get("image-max"))
    info = {}
    info_group = root.get("info")
    if isinstance(info_group, h5py.Group):
        for name, obj in info_group.items():
            if not name.endswith("-width"):
                info[name] = _attrs(obj)

    def load() -> np.ndarray:
        with h5py.File(source(), "r") as fh:
            arr = fh[IMAGE_PATH][()]
        return convert(arr)

    return MincHeader(
        path=path,
        fmt="minc2",
        dims=dims,
        dtype=dtype,
        load=load,
        image_attrs=_attrs(image),
        imin=imin,
        imin_dims=imin_dims,
        imax=imax,
        imax_dims=imax_dims,
        root_attrs=_attrs(root),
        info=info,
    )


def _hdf5_dtype(path: Path, dtype: np.dtype) -> tuple[np.dtype, Any]:
    """Native stored dtype, and how to turn what h5py returns into it.

    Label volumes (HDF5 enums) read as their base integers; complex volumes are compounds
    of two floats.
    """
    dtype = np.dtype(dtype)
    if dtype.names:
        fields = [dtype.fields[n][0] for n in dtype.names]
        if len(fields) == 2 and all(f.kind == "f" and f == fields[0] for f in fields):
            target = np.dtype(np.complex64 if fields[0].itemsize == 4 else np.complex128)
            re, im = dtype.names

            def to_complex(arr: np.ndarray) -> np.ndarray:
                out = np.empty(arr.shape, dtype=target)
                out.real, out.imag = arr[re], arr[im]
                return out

            return target, to_complex
        raise ReadError(f"{path}: unsupported compound voxel type {dtype}")
    if dtype.kind not in "iuf":
        raise ReadError(f"{path}: unsupported voxel type {dtype}")
    native = np.dtype(dtype.str).newbyteorder("=")

    def to_native(arr: np.ndarray) -> np.ndarray:
        return arr if arr.dtype == native else arr.astype(native)

    return native, to_native


def _check_storage(path: Path, image: h5py.Dataset, dtype: np.dtype) -> None:
    """Refuse a dataset whose claimed size its stored bytes cannot hold."""
    need = int(np.prod(image.shape, dtype=np.int64)) * dtype.itemsize
    have = int(image.id.get_storage_size())
    if image.chunks is None and 0 < have < need:
        raise ReadError(f"{path}: image holds {have} bytes, its shape needs {need}")
    # Unwritten storage reads as fill values; a few of them are fine, gigabytes are a lie.
    if need > have * (1 if image.chunks is None else MAX_DEFLATE_RATIO) + 2**26:
        raise ReadError(f"{path}: image claims {need} bytes but stores only {have}: refused")


def _scale_var(obj: Any) -> tuple[np.ndarray | None, list[str]]:
    if not isinstance(obj, h5py.Dataset):
        return None, []
    values = np.asarray(obj[()], dtype=np.float64)
    names = [n.strip() for n in as_text(obj.attrs.get("dimorder", "")).split(",") if n.strip()]
    return values, names


def _attrs(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    out = {}
    for key in obj.attrs:
        try:
            out[key] = obj.attrs[key]
        except (OSError, TypeError, ValueError):  # an attribute type h5py cannot map
            continue
    return out


# -- MINC1 --------------------------------------------------------------------------------------

_NC_UNSIGNED = {"b": np.uint8, "h": np.uint16, "i": np.uint32}
_NC_SIGNED = {"b": np.int8, "h": np.int16, "i": np.int32, "f": np.float32, "d": np.float64}


def read_minc1(path: Path, options: ReadOptions) -> Image:
    """Read a MINC1 (NetCDF classic or 64-bit offset) file, lazily."""
    from anyconv.lazy import import_nibabel

    import_nibabel()
    from nibabel.externals.netcdf import netcdf_file

    path = Path(path)
    source, gzipped = _opener(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opened = source()
            fileobj = _BoundedFile(opened) if isinstance(opened, str) else opened
            nc = netcdf_file(fileobj, "r", mmap=not gzipped)
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        raise ReadError(f"{path}: not a readable NetCDF (MINC1) file: {_first_line(exc)}") from exc
    try:
        header = _minc1_header(path, nc, source, gzipped)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nc.close()
    return build_image(header)


def _minc1_header(path: Path, nc: Any, source: Callable[[], Any], gzipped: bool) -> MincHeader:
    variables = nc.variables
    image = variables.get("image")
    if image is None:
        raise ReadError(f"{path}: NetCDF without an 'image' variable: not MINC")
    names = list(image.dimensions)
    shape = tuple(int(s) for s in image.shape)
    attrs = dict(image._attributes)
    typecode = image.typecode()
    signtype = as_text(attrs.get("signtype", "")).strip()
    if typecode in _NC_UNSIGNED and (
        signtype == "unsigned" or (typecode == "b" and signtype != "signed__")
    ):
        dtype = np.dtype(_NC_UNSIGNED[typecode])
    elif typecode in _NC_SIGNED:
        dtype = np.dtype(_NC_SIGNED[typecode])
    else:
        raise ReadError(f"{path}: unsupported MINC1 voxel type {typecode!r}")
    check_shape(path, shape, dtype.itemsize)
    dims = []
    for name, length in zip(names, shape, strict=True):
        var = variables.get(name)
        dattrs = dict(var._attributes) if var is not None else {}
        offsets = widths = None
        if var is not None and tuple(var.shape) == (length,):
            offsets = np.array(var.data, dtype=np.float64)
            wvar = variables.get(f"{name}-width")
            if wvar is not None and tuple(wvar.shape) == (length,):
                widths = np.array(wvar.data, dtype=np.float64)
        dims.append(Dim(name, length, dattrs, offsets, widths))

    def scale_var(name: str) -> tuple[np.ndarray | None, list[str]]:
        var = variables.get(name)
        if var is None:
            return None, []
        return np.array(var.data, dtype=np.float64), list(var.dimensions)

    imin, imin_dims = scale_var("image-min")
    imax, imax_dims = scale_var("image-max")
    info = {}
    for name, var in variables.items():
        vattrs = dict(var._attributes)
        is_group = as_text(vattrs.get("vartype", "")).startswith("group") and not var.shape
        wanted = name in ("patient", "study", "acquisition") or is_group
        if wanted and name not in ("image", "rootvariable") and not name.endswith("-width"):
            info[name] = vattrs
    stored = dtype.newbyteorder(">")

    def load() -> np.ndarray:
        from anyconv.lazy import import_nibabel

        import_nibabel()
        from nibabel.externals.netcdf import netcdf_file

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = netcdf_file(source(), "r", mmap=not gzipped)
            try:
                arr = np.array(f.variables["image"].data).view(stored).astype(dtype)
            finally:
                f.close()
        return arr

    return MincHeader(
        path=path,
        fmt="minc1",
        dims=dims,
        dtype=dtype,
        load=load,
        image_attrs=attrs,
        imin=imin,
        imin_dims=imin_dims,
        imax=imax,
        imax_dims=imax_dims,
        root_attrs=dict(nc._attributes),
        info=info,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
