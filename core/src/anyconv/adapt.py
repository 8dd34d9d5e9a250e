"""Fit an image to what a writer can hold: lossless adjustments silently, losses only if allowed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from . import geometry
from .model import Image
from .specs import WriterSpec


class CastProxy:
    """Lazily cast (and optionally scale) an array-like when it is finally read."""

    def __init__(self, data: Any, dtype: Any, scale: tuple[float, float] | None = None) -> None:
        self._data = data
        self._dtype = np.dtype(dtype)
        self._scale = scale

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the source."""
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        """Target dtype."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def streams(self) -> bool:
        """Whether the source streams (then so does the cast, block by block)."""
        return bool(getattr(self._data, "streams", False))

    def fortran_blocks(self, max_bytes: int) -> Iterator[np.ndarray]:
        """The source's blocks, each cast as it comes (see ``LazyArray.fortran_blocks``)."""
        blocks = getattr(self._data, "fortran_blocks", None)
        if blocks is None:
            yield np.asarray(self)
            return
        # the source's blocks are sized so that the cast ones stay within max_bytes
        growth = max(1, -(-self._dtype.itemsize // np.dtype(self._data.dtype).itemsize))
        for block in blocks(max(1, max_bytes // growth)):
            yield self._cast(np.asarray(block))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._cast(np.asarray(self._data))
        return out if dtype is None else out.astype(dtype)

    def _cast(self, arr: np.ndarray) -> np.ndarray:
        if self._scale is not None:
            slope, inter = self._scale
            work = arr.astype(np.result_type(self._dtype, np.float32))
            if slope != 1.0:
                work *= slope
            if inter != 0.0:
                work += inter
            arr = work
        if self._dtype.kind in "iu" and arr.dtype.kind in "fc":
            info = np.iinfo(self._dtype)
            arr = np.clip(np.rint(arr.real), info.min, info.max)
        return arr.astype(self._dtype, copy=False)


def safe_target(dtype: np.dtype, allowed: tuple[str, ...]) -> np.dtype | None:
    """Smallest allowed dtype every value of ``dtype`` fits in, if any."""
    fits = [np.dtype(a) for a in allowed if np.can_cast(dtype, np.dtype(a), "safe")]
    if not fits:
        return None
    return min(fits, key=lambda d: (d.itemsize, d.kind != dtype.kind))


def nearest_target(dtype: np.dtype, allowed: tuple[str, ...]) -> np.dtype:
    """Best lossy stand-in, so the fewest values change.

    Prefer a type at least as wide that keeps the sign (uint32 -> int32, not uint8), then the
    same family (integer or float), then the closest width.
    """

    def rank(cand: np.dtype) -> tuple[bool, bool, int]:
        keeps_sign = not (dtype.kind == "i" and cand.kind == "u")
        wide = cand.itemsize >= dtype.itemsize and keeps_sign
        same_family = (cand.kind in "iu") == (dtype.kind in "iub")
        return (wide, same_family, -abs(cand.itemsize - dtype.itemsize))

    return max((np.dtype(a) for a in allowed), key=rank)


def fit_image(image: Image, spec: WriterSpec, *, lossy: bool) -> tuple[Image, list[str]]:
    """Adapt ``image`` to ``spec``; return the adapted image and the losses it needed.

    Value-preserving changes (int16 to int32, applying a slope as float, dropping trailing
    axes of length 1) are made freely and noted. Losses are returned; the caller refuses
    them unless ``lossy``, in which case they are applied and recorded on the image.
    """
    img = image
    losses: list[str] = []
    if img.is_scaled and not spec.scaling:
        target = np.dtype(np.float32) if img.dtype.itemsize <= 2 else np.dtype(np.float64)
        img = img.replace(
            data=CastProxy(img.data, target, (img.slope, img.inter)), slope=1.0, inter=0.0
        )
        img.notes.append(f"{spec.format} stores no scaling: values stored as {target}")
    if spec.dtypes is not None and img.dtype.name not in spec.dtypes:
        target = safe_target(img.dtype, spec.dtypes)
        if target is not None:
            img = img.replace(data=CastProxy(img.data, target))
            img.notes.append(f"stored as {target} ({spec.format} has no {image.dtype})")
        else:
            target = nearest_target(img.dtype, spec.dtypes)
            losses.append(f"data type {img.dtype} (cast to {target})")
            if lossy:
                img = img.replace(data=CastProxy(img.data, target))
    if spec.max_ndim is not None and img.ndim > spec.max_ndim:
        shape = list(img.shape)
        while len(shape) > max(spec.max_ndim, 3) and shape[-1] == 1:
            shape.pop()
        if len(shape) > spec.max_ndim:
            keep = spec.max_ndim
            merged = [*shape[: keep - 1], int(np.prod(shape[keep - 1 :]))]
            losses.append(f"{len(shape)}-D data (at most {keep}-D; axes {keep}+ merged)")
            shape = merged if lossy else shape
        if lossy or len(shape) <= spec.max_ndim:
            img = img.replace(data=_Reshaped(img.data, tuple(shape)))
    if not spec.shear and geometry.is_sheared(img.affine):
        ortho = geometry.orthogonalize(img.affine)
        shape = [*img.shape[:3], 1, 1, 1][:3]
        moved = float(
            np.abs(
                geometry.corner_world(img.affine, shape) - geometry.corner_world(ortho, shape)
            ).max()
        )
        cosine = geometry.shear(img.affine)
        if moved <= SHEAR_ROUNDING_MM:
            # positions printed with a few decimals make a stack a hair off orthogonal
            img = img.replace(affine=ortho)
            img.notes.append(
                f"voxel axes {cosine:.2g} off orthogonal moved at most "
                f"{moved:.3f} mm to write them orthogonal (rounding, not a real shear)"
            )
        else:
            losses.append(f"sheared voxel axes (shear {cosine:.3g})")
            if lossy:
                img = img.replace(affine=ortho)
    if not spec.oblique and geometry.is_oblique(img.affine):
        losses.append(f"oblique orientation ({geometry.obliquity(img.affine):.2f} deg)")
        if lossy:
            img = img.replace(affine=geometry.axis_aligned(img.affine))
    if lossy:
        for loss in losses:
            img.record_loss(loss)
    return img, losses


#: A shear that moves no voxel corner by more than this is rounding of stored positions
#: (the DICOM reader's limit for "not a gantry tilt" is 0.06 mm): written orthogonal, noted.
SHEAR_ROUNDING_MM = 0.05


class _Reshaped:
    """A lazy reshape (Fortran order: the first axes vary fastest, as in NIfTI)."""

    def __init__(self, data: Any, shape: tuple[int, ...]) -> None:
        self._data = data
        self.shape = shape
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self._data).reshape(self.shape, order="F")
        return arr if dtype is None else arr.astype(dtype)
