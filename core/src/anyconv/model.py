"""The canonical image every reader returns and every writer takes (numpy only).

Voxel order is i, j, k[, t, ...] as in nibabel; ``affine`` maps a 0-based voxel index to RAS+
millimetres. ``data`` holds *stored* values; ``slope``/``inter`` give the real values, so an
int16 file with a scale factor stays int16 plus scaling wherever the target can hold it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import geometry


@runtime_checkable
class ArrayLike(Protocol):
    """What ``Image.data`` must offer: a numpy array or a lazy proxy that loads on demand."""

    @property
    def shape(self) -> tuple[int, ...]: ...  # noqa: D102

    @property
    def dtype(self) -> np.dtype: ...  # noqa: D102

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray: ...


@dataclass
class Meta:
    """Fields promised across formats; times in seconds, angles in degrees.

    ``bvecs`` are unit gradient directions in RAS+ world space (one row per volume);
    writers that need FSL's voxel frame convert them. ``patient`` and ``study`` hold
    identity (for the anonymizer); ``bids`` holds further BIDS sidecar keys as they are.
    """

    modality: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    flip_angle: float | None = None
    slice_timing: list[float] | None = None
    slice_duration: float | None = None
    slice_axis: int | None = None
    frequency_axis: int | None = None
    phase_axis: int | None = None
    phase_encoding_direction: str | None = None
    bvals: list[float] | None = None
    bvecs: list[list[float]] | None = None
    spatial_unit: str | None = "mm"
    time_unit: str | None = "s"
    intent: str | None = None
    description: str | None = None
    patient: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    bids: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Fields that are set, JSON-friendly."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == {} or value == []:
                continue
            out[f.name] = value
        return _jsonable(out)


class Image:
    """Voxel data, a RAS+ affine, scaling, common metadata and per-format extras.

    Parameters
    ----------
    data
        Stored values: a numpy array or a lazy proxy (``shape``, ``dtype``, ``__array__``).
    affine
        4x4 voxel-index to RAS+ millimetres.
    slope, inter
        Real value = stored * slope + inter.
    meta
        Common metadata.
    extras
        Per-format headers, ``extras["nifti"]``, ``extras["nrrd"]``..., so a same-format round
        trip keeps what only that format has.
    losses
        What was dropped or changed on the way, in words.
    sources
        Where the voxels came from, for provenance: one dict per input slice or file, with
        ``path`` and where known ``uid`` (SOP Instance UID), ``class_uid``, ``number``
        (Instance Number), ``frame`` (1-based, multi-frame files), ``series_uid``,
        ``study_uid``, and the voxel slice it became: ``axis`` (0-2), ``index`` and
        ``volume``. Transforms that move voxels keep ``axis``/``index`` in step.
    """

    def __init__(
        self,
        data: ArrayLike | np.ndarray,
        affine: np.ndarray | None = None,
        *,
        slope: float = 1.0,
        inter: float = 0.0,
        meta: Meta | None = None,
        extras: dict[str, dict[str, Any]] | None = None,
        losses: list[str] | None = None,
        notes: list[str] | None = None,
        source: str | None = None,
        format: str | None = None,
        sources: list[dict[str, Any]] | None = None,
    ) -> None:
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        self.data = data
        self.affine = np.eye(4) if affine is None else np.array(affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        self.slope = float(slope)
        self.inter = float(inter)
        self.meta = meta if meta is not None else Meta()
        self.extras = extras if extras is not None else {}
        self.losses = losses if losses is not None else []
        self.notes = notes if notes is not None else []
        self.source = source
        self.format = format
        self.sources = sources if sources is not None else []

    # -- shape and geometry -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the voxel array (i, j, k[, t, ...])."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the stored values."""
        return np.dtype(self.data.dtype)

    @property
    def zooms(self) -> tuple[float, ...]:
        """Voxel size along i, j, k in mm."""
        return tuple(float(z) for z in geometry.zooms(self.affine))

    @property
    def axcodes(self) -> tuple[str, ...]:
        """Anatomical direction of each voxel axis (``("L", "A", "S")``)."""
        return geometry.axcodes(self.affine)

    @property
    def is_scaled(self) -> bool:
        """Whether stored values need a slope or intercept to become real values."""
        return self.slope != 1.0 or self.inter != 0.0

    # -- data -----------------------------------------------------------------------------
    def stored(self) -> np.ndarray:
        """Stored values as a numpy array (loads a lazy proxy)."""
        return np.asarray(self.data)

    def values(self, dtype: Any = None) -> np.ndarray:
        """Real values: stored values with scaling applied.

        Unscaled data keeps its dtype; scaled data becomes float32 unless the slope, intercept
        or stored type need float64 (as nibabel's ``get_fdata`` reasons).
        """
        arr = self.stored()
        if not self.is_scaled:
            return arr if dtype is None else arr.astype(dtype, copy=False)
        if dtype is None:
            dtype = scaled_dtype(arr.dtype, self.slope, self.inter)
        out = arr.astype(dtype)
        if self.slope != 1.0:
            out *= self.slope
        if self.inter != 0.0:
            out += self.inter
        return out

    def replace(self, **changes: Any) -> Image:
        """Copy with some attributes changed; meta, extras and lists are copied too."""
        new = copy.copy(self)
        new.meta = copy.deepcopy(self.meta)
        new.extras = copy.deepcopy(self.extras)
        new.losses = list(self.losses)
        new.notes = list(self.notes)
        new.sources = [dict(s) for s in self.sources]
        for key, value in changes.items():
            if not hasattr(new, key):
                raise AttributeError(f"Image has no attribute {key!r}")
            if key == "affine":
                value = np.array(value, dtype=np.float64)
            setattr(new, key, value)
        return new

    def load(self) -> Image:
        """Copy whose data is an in-memory numpy array."""
        return self.replace(data=self.stored())

    def record_loss(self, what: str) -> None:
        """Say what a conversion dropped or changed."""
        if what not in self.losses:
            self.losses.append(what)

    def __repr__(self) -> str:
        scale = f", slope={self.slope:g}, inter={self.inter:g}" if self.is_scaled else ""
        codes = "".join(self.axcodes)
        return f"Image(shape={self.shape}, dtype={self.dtype}{scale}, axcodes={codes})"

    # -- interoperability ---------------------------------------------------------------
    def to_nibabel(self) -> Any:
        """A ``nibabel.Nifti1Image`` (NIfTI-2 when a dimension is too big) with real values."""
        from .lazy import import_nibabel

        nib = import_nibabel()

        arr = self.stored()
        klass = nib.Nifti1Image if max(self.shape, default=0) <= 32767 else nib.Nifti2Image
        img = klass(arr, self.affine)
        img.header.set_qform(self.affine, code=1)
        img.header.set_sform(self.affine, code=1)
        if self.is_scaled:
            img.header.set_slope_inter(self.slope, self.inter)
        img.header.set_xyzt_units("mm", "sec")
        return img

    @classmethod
    def from_nibabel(cls, img: Any) -> Image:
        """Wrap any nibabel spatial image; its data stays lazy."""
        # nibabel moves scaling from a loaded header onto its proxy (the header copy is reset).
        proxy = img.dataobj
        slope = getattr(proxy, "slope", None)
        inter = getattr(proxy, "inter", None)
        data = UnscaledProxy(proxy) if hasattr(proxy, "get_unscaled") else np.asarray(proxy)
        return cls(
            data,
            img.affine,
            slope=1.0 if slope is None or not np.isfinite(slope) else float(slope),
            inter=0.0 if inter is None or not np.isfinite(inter) else float(inter),
        )

    def to_sitk(self) -> Any:
        """A ``SimpleITK.Image`` of the real values (ITK's LPS world, z-y-x array order)."""
        import SimpleITK as sitk

        arr = self.values() if self.is_scaled else self.stored()
        nd = min(self.ndim, 4)
        if self.ndim > 4:
            raise ValueError("SimpleITK holds at most 4 dimensions")
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.T), isVector=False)
        spacing, direction, origin = geometry.spacing_direction_origin(
            geometry.ras_to_lps(self.affine)
        )
        full_dir = np.eye(nd)
        k = min(nd, 3)
        full_dir[:k, :k] = direction[:k, :k]
        full_spacing = [1.0] * nd
        full_spacing[:k] = [float(s) if s > 0 else 1.0 for s in spacing[:k]]
        full_origin = [0.0] * nd
        full_origin[:k] = [float(o) for o in origin[:k]]
        if nd == 4 and self.meta.repetition_time:
            full_spacing[3] = float(self.meta.repetition_time)
        img.SetSpacing(full_spacing)
        img.SetOrigin(full_origin)
        img.SetDirection(full_dir.ravel().tolist())
        return img

    @classmethod
    def from_sitk(cls, img: Any) -> Image:
        """Wrap a ``SimpleITK.Image``: LPS to RAS, z-y-x to i-j-k, components last."""
        import SimpleITK as sitk

        arr = sitk.GetArrayFromImage(img)
        nd = img.GetDimension()
        ncomp = img.GetNumberOfComponentsPerPixel()
        # z, y, x[, c] -> i, j, k[, c]
        spatial = np.moveaxis(arr, -1, 0).T if ncomp > 1 else arr.T
        k = min(nd, 3)
        direction = np.asarray(img.GetDirection()).reshape(nd, nd)
        lps = np.eye(4)
        lps[:k, :k] = direction[:k, :k] * np.asarray(img.GetSpacing()[:k])[None, :]
        lps[:k, 3] = img.GetOrigin()[:k]
        # GetArrayFromImage gave a copy; its transpose is already Fortran-ordered (i fastest),
        # which is how writers lay voxels out: no second copy here or there.
        out = cls(np.asfortranarray(spatial), geometry.lps_to_ras(lps))
        if nd == 4:
            out.meta.repetition_time = float(img.GetSpacing()[3])
        return out


class LazyArray:
    """Base for lazy voxel data: ``shape`` and ``dtype`` known up front, values on demand.

    Subclasses set ``_shape`` and ``_dtype`` and implement ``__array__``; this gives the rest
    of the array-like contract that ``Image.data`` needs.
    """

    _shape: tuple[int, ...]
    _dtype: np.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape, known without reading data."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the values ``__array__`` gives."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self._shape)

    #: True when ``fortran_blocks`` reads block by block instead of loading everything:
    #: the pipeline then leaves the data lazy and the writer streams it.
    streams: bool = False

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]

    def fortran_blocks(self, max_bytes: int) -> Iterator[np.ndarray]:
        """The data as consecutive arrays, for writers that stream.

        The blocks' Fortran-order bytes, joined, are the whole array's Fortran-order bytes, so
        a writer never needs the whole volume at once. A block may be reused for the next
        one: consume it before asking for more. This default loads everything as one block.
        """
        yield np.asarray(self)


class UnscaledProxy:
    """Exposes a nibabel ArrayProxy's *stored* values, still lazily."""

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape without reading data."""
        return tuple(self._proxy.shape)

    @property
    def dtype(self) -> np.dtype:
        """On-disk dtype (native byte order)."""
        return np.dtype(self._proxy.dtype).newbyteorder("=")

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self._proxy.get_unscaled())
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]


def scaled_dtype(stored: np.dtype, slope: float, inter: float) -> np.dtype:
    """float32 when it holds stored*slope+inter well, else float64."""
    stored = np.dtype(stored)
    if stored.kind == "c":
        return np.result_type(stored, np.complex64)
    if stored.itemsize >= 4 and stored.kind in "iuf" and stored != np.float32:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    return value


#: Arrays at least this large get their pages mapped in one call (see ``empty_array``).
POPULATE_BYTES = 16 << 20


def empty_array(shape: tuple[int, ...], dtype: Any, order: str = "F") -> np.ndarray:
    """An uninitialised array whose memory is mapped up front, for readers to fill.

    Touching a fresh 262 MB ``np.empty`` page by page cost 0.5-0.6 s of page faults on this
    machine; one ``mmap`` with ``MAP_POPULATE`` maps the same memory in about 0.12 s. Small
    arrays, and systems without ``MAP_POPULATE``, get ``np.empty``.
    """
    import mmap

    dtype = np.dtype(dtype)
    count = 1
    for size in shape:
        count *= int(size)
    nbytes = count * dtype.itemsize
    populate = getattr(mmap, "MAP_POPULATE", None)
    if nbytes < POPULATE_BYTES or populate is None:
        return np.empty(shape, dtype=dtype, order=order)
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except (OSError, ValueError):
        return np.empty(shape, dtype=dtype, order=order)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape, order=order)
