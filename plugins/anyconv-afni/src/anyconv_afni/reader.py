"""Read AFNI BRIK/HEAD with nibabel's brikhead: RAS affine, per-brick scaling, TR, slice times.

AFNI's world is DICOM order (RAI: x grows to the left, y to posterior, z to superior), so
the plugin flips x and y, as nibabel does. The affine comes from ``IJK_TO_DICOM_REAL`` (the
real, possibly oblique, grid) and, in older files without it, from ``ORIENT_SPECIFIC``,
``ORIGIN`` and ``DELTA`` the way AFNI builds its cardinal grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from anyconv import geometry
from anyconv.errors import ReadError
from anyconv.lazy import import_nibabel
from anyconv.model import Image, Meta, UnscaledProxy
from anyconv.specs import ReadOptions

nib = import_nibabel()

#: TAXIS_NUMS[2] unit codes: to seconds (Hz time axes are not times: left alone).
_TIME_UNITS = {77001: 1e-3, 77002: 1.0}
#: ORIENT_SPECIFIC code -> (DICOM world axis, sign) the voxel axis runs along.
_ORIENT = {0: (0, 1), 1: (0, -1), 2: (1, -1), 3: (1, 1), 4: (2, 1), 5: (2, -1)}
_VIEWS = {0: "orig", 1: "acpc", 2: "tlrc"}


def read_afni(path: Path, options: ReadOptions) -> Image:
    """Read one AFNI dataset from its ``.HEAD`` (data in ``.BRIK`` or ``.BRIK.gz``)."""
    path = Path(path)
    try:
        header, brik = _load_header(path)
    except FileNotFoundError as exc:
        raise ReadError(f"{path}: missing companion file {Path(exc.filename).name}") from exc
    except (
        nib.brikhead.AFNIHeaderError,
        nib.brikhead.AFNIImageError,
        nib.filebasedimages.ImageFileError,
    ) as exc:
        raise ReadError(f"{path}: not a valid AFNI dataset: {exc}") from exc
    except KeyError as exc:
        raise ReadError(f"{path}: HEAD lacks the attribute {exc} (truncated?)") from exc
    except (ValueError, IndexError, TypeError, OSError) as exc:
        raise ReadError(f"{path}: unreadable HEAD: {exc}") from exc
    info = header.info
    shape = _shape(info, path)
    dtype = header.get_data_dtype()
    _check_size(path, brik, shape, dtype)
    affine = _affine(info, path)
    scaling = header.get_data_scaling()
    proxy = UnscaledProxy(nib.brikhead.AFNIArrayProxy(str(brik), header.copy()))
    slope = 1.0
    notes = []
    if scaling is not None and np.unique(scaling).size == 1:
        slope = float(scaling[0])
    elif scaling is not None:
        proxy = BrickScaled(proxy, np.asarray(scaling, dtype=np.float64))
        notes.append("sub-bricks have different scale factors: values stored as float32")
    image = Image(proxy, affine, slope=slope, notes=notes)
    if shape[3] == 1:
        image = image.replace(data=_Squeezed(image.data))
    image.meta = _meta(info, shape)
    image.extras["afni"] = _extras(header, info)
    return image


def _load_header(path: Path) -> tuple[Any, Path]:
    """The parsed HEAD (nibabel's) and the BRIK it names (``.BRIK`` or ``.BRIK.gz``).

    ``AFNIImage.from_filename`` is not used: it needs ``IJK_TO_DICOM_REAL``, which older
    files lack.
    """
    file_map = nib.brikhead.AFNIImage.filespec_to_file_map(str(path))
    with file_map["header"].get_prepare_fileobj("rt") as fh:
        header = nib.brikhead.AFNIHeader.from_fileobj(fh)
    return header, Path(file_map["image"].filename)


def _shape(info: dict[str, Any], path: Path) -> tuple[int, int, int, int]:
    try:
        rank = list(np.atleast_1d(info["DATASET_RANK"]))
        dims = [int(d) for d in np.atleast_1d(info["DATASET_DIMENSIONS"])[:3]]
    except KeyError as exc:
        raise ReadError(f"{path}: HEAD lacks {exc}") from exc
    nvol = int(rank[1]) if len(rank) > 1 else 1
    if len(dims) != 3 or min(dims) < 1 or nvol < 1:
        raise ReadError(f"{path}: bad dimensions {dims} x {nvol}")
    return (*dims, nvol)  # type: ignore[return-value]


def _check_size(path: Path, brik: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a HEAD whose bricks cannot be in the BRIK, before anything is read."""
    if not brik.exists():
        raise ReadError(f"{path}: missing companion file {brik.name}")
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = brik.stat().st_size
    # gzip hides the size until read, but deflate packs at most ~1032:1.
    if brik.name.lower().endswith(".gz"):
        have *= 1032
    if have < need:
        raise ReadError(f"{path}: truncated: HEAD promises {need} bytes of data, BRIK has {have}")


def _affine(info: dict[str, Any], path: Path) -> np.ndarray:
    """Voxel index to RAS+ mm."""
    real = info.get("IJK_TO_DICOM_REAL")
    if real is not None and len(np.atleast_1d(real)) == 12:
        lps = np.eye(4)
        lps[:3, :] = np.asarray(real, dtype=np.float64).reshape(3, 4)
        return geometry.lps_to_ras(lps)
    try:
        codes = [int(c) for c in np.atleast_1d(info["ORIENT_SPECIFIC"])[:3]]
        origin = np.asarray(info["ORIGIN"], dtype=np.float64)[:3]
        delta = np.asarray(info["DELTA"], dtype=np.float64)[:3]
    except KeyError as exc:
        raise ReadError(f"{path}: HEAD lacks {exc}: no geometry") from exc
    if sorted(_ORIENT[c][0] for c in codes if c in _ORIENT) != [0, 1, 2]:
        raise ReadError(f"{path}: bad ORIENT_SPECIFIC {codes}")
    lps = np.eye(4)
    lps[:3, :3] = 0.0
    for axis, code in enumerate(codes):
        world, _ = _ORIENT[code]
        # AFNI: coordinate along the axis = ORIGIN + i * DELTA (DELTA carries the sign).
        lps[world, axis] = delta[axis]
        lps[world, 3] = origin[axis]
    return geometry.lps_to_ras(lps)


def _meta(info: dict[str, Any], shape: tuple[int, ...]) -> Meta:
    meta = Meta()
    nums = list(np.atleast_1d(info.get("TAXIS_NUMS", [])))
    floats = list(np.atleast_1d(info.get("TAXIS_FLOATS", [])))
    if len(nums) >= 3 and len(floats) >= 2 and int(nums[2]) in _TIME_UNITS:
        to_s = _TIME_UNITS[int(nums[2])]
        if floats[1] > 0:
            meta.repetition_time = float(floats[1]) * to_s
        offsets = np.atleast_1d(info.get("TAXIS_OFFSETS", []))
        nslice = int(nums[1])
        if nslice == shape[2] and len(offsets) >= nslice > 1:
            meta.slice_timing = [float(t) * to_s for t in offsets[:nslice]]
            meta.slice_axis = 2
    return meta


def _extras(header: Any, info: dict[str, Any]) -> dict[str, Any]:
    view = np.atleast_1d(info.get("SCENE_DATA", [0]))[0]
    return {
        "view": _VIEWS.get(int(view), str(view)),
        "space": header.get_space(),
        "labels": header.get_volume_labels(),
        "typestring": info.get("TYPESTRING"),
        "scaling": None
        if header.get_data_scaling() is None
        else [float(s) for s in header.get_data_scaling()],
    }


class BrickScaled:
    """Real values of bricks with one scale factor each, as float32, read lazily."""

    def __init__(self, data: Any, factors: np.ndarray) -> None:
        self._data = data
        self._factors = factors

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the dataset."""
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        """float32: the factors make real values."""
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self._data).astype(np.float64)
        arr *= self._factors.reshape((1,) * (arr.ndim - 1) + (-1,))
        out = arr.astype(np.float32)
        return out if dtype is None else out.astype(dtype)


class _Squeezed:
    """A one-brick dataset as a 3-D volume."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self.shape = tuple(data.shape[:3])
        self.dtype = np.dtype(data.dtype)
        self.ndim = 3

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self._data).reshape(self.shape)
        return arr if dtype is None else arr.astype(dtype)
