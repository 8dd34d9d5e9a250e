"""What MINC1 and MINC2 share: dimensions, the voxel-to-world rule, slice scaling, metadata.

Both readers describe a file as a ``MincHeader`` (dimensions in file order, slowest first; the
image's stored type; image-min/max; info groups); ``build_image`` turns that into the canonical
``Image``. Voxel axes are the spatial dimensions fastest first (so ``xspace`` is ``i`` in a
usual ``zspace,yspace,xspace`` file, as mnc2nii and ITK do), then time, then any other
dimension, then ``vector_dimension`` as the trailing component axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from anyconv.errors import ReadError
from anyconv.model import Image, LazyArray, Meta, scaled_dtype

#: World axis of each spatial (and spatial-frequency) dimension name.
WORLD_INDEX = {
    "xspace": 0,
    "yspace": 1,
    "zspace": 2,
    "xfrequency": 0,
    "yfrequency": 1,
    "zfrequency": 2,
}
SPATIAL_NAMES = ("xspace", "yspace", "zspace")
TIME_NAMES = ("time", "tfrequency")
VECTOR_NAME = "vector_dimension"

#: Seconds per MINC time unit spelling.
TIME_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
              "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3, "us": 1e-6,
              "usec": 1e-6}  # fmt: skip

#: MINC study:modality values and the DICOM-style codes of ``Meta.modality``.
MODALITIES = {
    "PET__": "PT", "SPECT": "NM", "GAMMA": "NM", "MRI__": "MR", "MRS__": "MR",
    "MRA__": "MR", "CT___": "CT", "DSA__": "XA", "DR___": "DX", "label": "SEG",
}  # fmt: skip
MODALITIES_BACK = {"PT": "PET__", "NM": "SPECT", "MR": "MRI__", "CT": "CT___", "XA": "DSA__",
                   "DX": "DR___", "SEG": "label"}  # fmt: skip
SEXES = {"male__": "M", "female": "F", "other_": "O"}
SEXES_BACK = {v: k for k, v in SEXES.items()}

#: patient attributes and their ``Meta.patient`` keys (others keep their MINC name).
PATIENT_KEYS = {"full_name": "name", "identification": "id", "birthdate": "birth_date"}
#: study attributes and their ``Meta.study`` keys (others keep their MINC name).
STUDY_KEYS = {"study_id": "id"}
#: study attributes that are ``Meta`` fields rather than identity.
STUDY_FIELDS = {"modality": "modality", "manufacturer": "manufacturer",
                "device_model": "model_name"}  # fmt: skip
#: acquisition attributes that are ``Meta`` fields (MINC times are in seconds, as ours).
ACQUISITION_FIELDS = {
    "repetition_time": "repetition_time", "echo_time": "echo_time",
    "inversion_time": "inversion_time", "flip_angle": "flip_angle",
    "protocol": "protocol_name", "series_description": "series_description",
}  # fmt: skip

#: Largest voxel count accepted from a header (a corrupt length must not allocate terabytes).
MAX_VOXELS = 2**40
#: Deflate cannot expand data more than about 1032:1; beyond this a header lies.
MAX_DEFLATE_RATIO = 1100


@dataclass
class Dim:
    """One MINC dimension as stored: its attributes, and per-sample offsets/widths if any."""

    name: str
    length: int
    attrs: dict[str, Any] = field(default_factory=dict)
    offsets: np.ndarray | None = None
    widths: np.ndarray | None = None

    def number(self, key: str, default: float) -> float:
        """A scalar numeric attribute, ``default`` when absent or not finite."""
        value = self.attrs.get(key)
        try:
            out = float(np.asarray(value, dtype=np.float64).ravel()[0])
        except (TypeError, ValueError, IndexError):
            return default
        return out if np.isfinite(out) else default

    def text(self, key: str, default: str = "") -> str:
        """A string attribute, without padding."""
        return as_text(self.attrs.get(key, default))

    @property
    def irregular(self) -> bool:
        """Whether samples have their own offsets (``spacing = irregular``)."""
        return self.text("spacing").startswith("irregular") and self.offsets is not None


@dataclass
class MincHeader:
    """A MINC file as both readers see it, before it becomes an ``Image``."""

    path: Path
    fmt: str
    dims: list[Dim]
    dtype: np.dtype
    load: Callable[[], np.ndarray]
    image_attrs: dict[str, Any] = field(default_factory=dict)
    imin: np.ndarray | None = None
    imin_dims: list[str] = field(default_factory=list)
    imax: np.ndarray | None = None
    imax_dims: list[str] = field(default_factory=list)
    root_attrs: dict[str, Any] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)


def as_text(value: Any) -> str:
    """Text of a string attribute (bytes, numpy bytes, or arrays of chars), unpadded."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SU":
            value = b"".join(np.atleast_1d(value).astype("S").tolist())
        else:
            return str(value.tolist())
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", "replace")
    return str(value).rstrip("\x00")


def plain(value: Any) -> Any:
    """A JSON-friendly python value of an attribute: text, number, or list of numbers."""
    if isinstance(value, (bytes, np.bytes_, str)):
        return as_text(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SU":
            return as_text(value)
        if value.size == 1:
            return value.ravel()[0].item()
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_shape(path: Path, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse a header claiming an absurd number of voxels before anything is allocated."""
    n = int(np.prod([int(s) for s in shape], dtype=object)) if shape else 1
    if any(int(s) <= 0 for s in shape):
        raise ReadError(f"{path}: image has an empty dimension {tuple(shape)}")
    if n > MAX_VOXELS:
        raise ReadError(f"{path}: header claims {n} voxels ({n * itemsize} bytes): refused")


# -- geometry ---------------------------------------------------------------------------------


def cosines(dim: Dim) -> np.ndarray:
    """Direction cosines of a spatial dimension, as stored.

    Not normalised: minc-tools (voxeltoworld, mnc2nii, volume_io) and nibabel use them as
    they are, so a file with non-unit cosines keeps the world coordinates those tools give.
    """
    default = np.eye(3)[WORLD_INDEX[dim.name]]
    raw = dim.attrs.get("direction_cosines")
    if raw is None:
        return default
    try:
        vec = np.asarray(raw, dtype=np.float64).ravel()[:3]
    except (TypeError, ValueError):
        return default
    norm = float(np.linalg.norm(vec)) if vec.size == 3 else 0.0
    if not np.isfinite(norm) or norm == 0.0:
        return default
    return vec


def axis_order(dims: list[Dim]) -> tuple[list[int], int]:
    """Canonical axis order as file-dimension indices, and how many spatial axes it has.

    Spatial dimensions fastest first, then time, then others (fastest first), then the
    vector dimension last.
    """
    spatial, time, other, vector = [], [], [], []
    for index, dim in enumerate(dims):
        if dim.name in WORLD_INDEX:
            spatial.append(index)
        elif dim.name in TIME_NAMES:
            time.append(index)
        elif dim.name == VECTOR_NAME:
            vector.append(index)
        else:
            other.append(index)
    return spatial[::-1] + time + other[::-1] + vector, len(spatial)


def affine_of(path: Path, dims: list[Dim], spatial: list[int]) -> np.ndarray:
    """Voxel (canonical axes) to RAS+ mm: world = sum over axes of cos * (start + step * i).

    MINC world space is RAS already; a dimension's start is measured along its own cosine,
    and a negative step runs the axis backwards. Spatial dimensions missing from the file
    (a 2D image) keep their default cosine, unit step and zero start.
    """
    names = [dims[i].name for i in spatial]
    worlds = [WORLD_INDEX[n] for n in names]
    if len(set(worlds)) != len(worlds):
        raise ReadError(f"{path}: two spatial dimensions along one world axis: {names}")
    axes = [dims[i] for i in spatial]
    missing = [n for n in SPATIAL_NAMES if WORLD_INDEX[n] not in worlds]
    axes += [Dim(n, 1) for n in missing]
    affine = np.eye(4)
    for column, dim in enumerate(axes):
        cos = cosines(dim)
        step = dim.number("step", 1.0)
        start = dim.number("start", 0.0)
        affine[:3, column] = cos * step
        affine[:3, 3] += cos * start
    return affine


# -- scaling ----------------------------------------------------------------------------------


def valid_range(header: MincHeader) -> tuple[float, float]:
    """The stored range image-min/max map from: ``valid_range``, else the type's range."""
    dtype = header.dtype
    info = np.iinfo(dtype)
    attrs = header.image_attrs
    vr = attrs.get("valid_range")
    pair: list[float] | None = None
    if vr is not None:
        values = np.asarray(vr, dtype=np.float64).ravel()
        if values.size >= 2 and np.all(np.isfinite(values[:2])):
            pair = [float(values[0]), float(values[1])]
    elif "valid_min" in attrs and "valid_max" in attrs:
        try:
            pair = [float(np.ravel(attrs["valid_min"])[0]), float(np.ravel(attrs["valid_max"])[0])]
        except (TypeError, ValueError, IndexError):
            pair = None
    if pair is None:
        return float(info.min), float(info.max)
    low, high = sorted(pair)
    return max(low, float(info.min)), min(high, float(info.max))


def broadcast_scale(
    path: Path, values: np.ndarray | None, names: list[str], dims: list[Dim], default: float
) -> np.ndarray:
    """image-min or image-max shaped to broadcast against the image (file order).

    The scale variable varies over some of the image's dimensions, named in its own
    ``dimorder``; missing names default to the image's slowest dimensions.
    """
    image_names = [d.name for d in dims]
    if values is None:
        return np.full([1] * len(dims), default, dtype=np.float64)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        return arr.reshape([1] * len(dims))
    if len(names) != arr.ndim:
        names = image_names[: arr.ndim]
    if any(n not in image_names for n in names) or len(set(names)) != len(names):
        raise ReadError(f"{path}: image-min/max vary over {names}, not image dimensions")
    order = sorted(range(arr.ndim), key=lambda a: image_names.index(names[a]))
    arr = arr.transpose(order)
    shape = [1] * len(dims)
    for axis, name in enumerate(sorted(names, key=image_names.index)):
        index = image_names.index(name)
        if arr.shape[axis] not in (1, dims[index].length):
            raise ReadError(
                f"{path}: image-min/max has {arr.shape[axis]} values along {name}, "
                f"the image {dims[index].length}"
            )
        shape[index] = arr.shape[axis]
    return arr.reshape(shape)


def apply_slice_scaling(
    stored: np.ndarray,
    vrange: tuple[float, float],
    imin: np.ndarray,
    imax: np.ndarray,
    dtype: np.dtype,
) -> np.ndarray:
    """Real values of stored integers whose image-min/max vary (file order), slab by slab.

    As libminc and nibabel: stored values are clipped to the valid range, then mapped
    linearly from it onto [image-min, image-max] of their slice. Work is in float64 one slab
    of the slowest axis at a time, so memory stays near the output size.
    """
    vmin, vmax = vrange
    span = vmax - vmin
    out = np.empty(stored.shape, dtype=dtype)
    for s in range(stored.shape[0]):
        lo = imin[s] if imin.shape[0] > 1 else imin[0]
        hi = imax[s] if imax.shape[0] > 1 else imax[0]
        slab = np.clip(stored[s].astype(np.float64), vmin, vmax)
        if span == 0:
            out[s] = np.broadcast_to(lo, slab.shape)
            continue
        slope = (hi - lo) / span
        out[s] = (slab - vmin) * slope + lo
    return out


class MincData(LazyArray):
    """Lazy voxel data in canonical order; reads (and slice-scales) only when asked."""

    def __init__(
        self,
        header: MincHeader,
        perm: list[int],
        shape: tuple[int, ...],
        scale: tuple[tuple[float, float], np.ndarray, np.ndarray] | None,
        dtype: np.dtype,
    ) -> None:
        self._header = header
        self._perm = perm
        self._shape = shape
        self._scale = scale
        self._dtype = np.dtype(dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self._header.load())
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if self._scale is not None:
            vrange, imin, imax = self._scale
            arr = apply_slice_scaling(arr, vrange, imin, imax, self._dtype)
        out = arr.transpose(self._perm).reshape(self._shape)
        return out if dtype is None else out.astype(dtype)


# -- the canonical image ------------------------------------------------------------------------


def build_image(header: MincHeader) -> Image:
    """The canonical ``Image`` of a MINC file: geometry, lazy data, scaling, metadata."""
    path, dims = header.path, header.dims
    if not dims:
        raise ReadError(f"{path}: the image has no dimensions")
    file_shape = tuple(d.length for d in dims)
    check_shape(path, file_shape, header.dtype.itemsize)
    perm, nspatial = axis_order(dims)
    if nspatial > 3:
        raise ReadError(f"{path}: more than three spatial dimensions")
    affine = affine_of(path, dims, perm[:nspatial])
    shape = [file_shape[p] for p in perm]
    shape[nspatial:nspatial] = [1] * (3 - nspatial)
    slope, inter = 1.0, 0.0
    scale = None
    dtype = header.dtype
    if header.dtype.kind in "iu" and header.imin is not None and header.imax is not None:
        vrange = valid_range(header)
        imin = broadcast_scale(path, header.imin, header.imin_dims, dims, 0.0)
        imax = broadcast_scale(path, header.imax, header.imax_dims, dims, 1.0)
        uniform = np.ptp(imin) == 0 and np.ptp(imax) == 0
        span = vrange[1] - vrange[0]
        if uniform and span != 0:
            lo, hi = float(imin.ravel()[0]), float(imax.ravel()[0])
            slope = (hi - lo) / span
            inter = lo - vrange[0] * slope
            if slope == 0.0:
                uniform = False
        if not uniform or span == 0:
            slope, inter = 1.0, 0.0
            dtype = scaled_dtype(header.dtype, 2.0, 1.0)
            scale = (vrange, imin, imax)
    data = MincData(header, perm, tuple(shape), scale, dtype)
    image = Image(data, affine, slope=slope, inter=inter, source=str(path), format=header.fmt)
    image.meta = meta_from_info(header.info)
    _time_meta(header, image.meta)
    image.extras[header.fmt] = _extras(header, perm, scale is not None)
    if scale is not None:
        image.notes.append("image-min/max vary by slice: values scaled to " + str(dtype))
    return image


def _time_seconds(dim: Dim) -> float | None:
    unit = dim.text("units", "s").strip().lower() or "s"
    return TIME_UNITS.get(unit)


def _time_meta(header: MincHeader, meta: Meta) -> None:
    """Repetition time from a regular time axis; frame starts/durations from an irregular one."""
    for dim in header.dims:
        if dim.name != "time":
            continue
        factor = _time_seconds(dim)
        if factor is None:
            return
        if dim.irregular:
            offsets = np.asarray(dim.offsets, dtype=np.float64) * factor
            widths = None if dim.widths is None else np.asarray(dim.widths) * factor
            starts = offsets
            if widths is not None and dim.text("alignment", "centre").startswith("centre"):
                starts = offsets - widths / 2.0
            meta.bids["FrameTimesStart"] = [float(v) for v in starts]
            if widths is not None:
                meta.bids["FrameDuration"] = [float(v) for v in widths]
        elif meta.repetition_time is None and dim.length > 1:
            step = dim.number("step", 0.0) * factor
            if step > 0:
                meta.repetition_time = step
        return


def _extras(header: MincHeader, perm: list[int], slice_scaled: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: as_text(value)
        for key, value in header.root_attrs.items()
        if key in ("history", "ident", "minc_version")
    }
    out["dimorder"] = ",".join(d.name for d in header.dims)
    out["dims"] = {
        d.name: {k: plain(v) for k, v in d.attrs.items() if k not in ("varid", "version")}
        for d in header.dims
    }
    for d in header.dims:
        if d.offsets is not None:
            out["dims"][d.name]["offsets"] = np.asarray(d.offsets, dtype=np.float64).tolist()
        if d.widths is not None:
            out["dims"][d.name]["widths"] = np.asarray(d.widths, dtype=np.float64).tolist()
    out["stored_dtype"] = header.dtype.name
    if "valid_range" in header.image_attrs:
        out["valid_range"] = plain(header.image_attrs["valid_range"])
    out["slice_scaled"] = slice_scaled
    out["info"] = {
        group: {k: plain(v) for k, v in attrs.items() if k not in ("varid", "vartype", "version")}
        for group, attrs in header.info.items()
        if group not in ("patient", "study")
    }
    return out


# -- metadata ---------------------------------------------------------------------------------


def meta_from_info(info: dict[str, dict[str, Any]]) -> Meta:
    """Canonical metadata from the patient, study and acquisition groups."""
    meta = Meta()
    skip = ("varid", "vartype", "version", "parent", "children")
    for key, value in info.get("patient", {}).items():
        if key in skip:
            continue
        value = plain(value)
        if key == "sex" and isinstance(value, str):
            value = SEXES.get(value, value.strip("_ ") or None)
        if value is not None and value != "":
            meta.patient[PATIENT_KEYS.get(key, key)] = value
    for key, value in info.get("study", {}).items():
        if key in skip:
            continue
        value = plain(value)
        if key in STUDY_FIELDS:
            if key == "modality" and isinstance(value, str):
                value = MODALITIES.get(value, value.strip("_ ") or None)
            setattr(meta, STUDY_FIELDS[key], None if value == "" else value)
        elif value is not None and value != "":
            meta.study[STUDY_KEYS.get(key, key)] = value
    for key, field_name in ACQUISITION_FIELDS.items():
        value = plain(info.get("acquisition", {}).get(key))
        if value is None or value == "":
            continue
        if field_name.endswith(("_time", "_angle")):
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
        else:
            value = str(value)
        setattr(meta, field_name, value)
    return meta


def info_from_meta(meta: Meta, extras: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Info groups to write, from the canonical metadata and the source's extras.

    Patient and study come from ``meta`` only, so an anonymised image stays anonymous;
    acquisition and other groups come from the source's extras, ``meta`` fields winning.
    """
    info: dict[str, dict[str, Any]] = {}
    back_patient = {v: k for k, v in PATIENT_KEYS.items()}
    patient = {}
    for key, value in meta.patient.items():
        if key == "sex" and isinstance(value, str):
            value = SEXES_BACK.get(value.upper()[:1], value)
        patient[back_patient.get(key, key)] = value
    back_study = {v: k for k, v in STUDY_KEYS.items()}
    study = {back_study.get(k, k): v for k, v in meta.study.items()}
    if meta.modality:
        study["modality"] = MODALITIES_BACK.get(meta.modality, meta.modality)
    if meta.manufacturer:
        study["manufacturer"] = meta.manufacturer
    if meta.model_name:
        study["device_model"] = meta.model_name
    for group, attrs in (extras.get("info") or {}).items():
        if group not in ("patient", "study") and isinstance(attrs, dict):
            info[group] = dict(attrs)
    acquisition = info.setdefault("acquisition", {})
    for key, field_name in ACQUISITION_FIELDS.items():
        value = getattr(meta, field_name)
        if value is not None:
            acquisition[key] = value
    if patient:
        info["patient"] = patient
    if study:
        info["study"] = study
    return {group: attrs for group, attrs in info.items() if attrs}
