"""Reorient: permute and flip voxel axes so they point along the asked anatomical codes.

Every voxel keeps its world coordinate: the affine absorbs the permutation and flips. Oblique
data stay oblique (axes go to their *closest* world axis, as nibabel's as_closest_canonical).
Metadata that refers to voxel axes (phase/slice/frequency axis, phase-encoding direction,
slice timing order) follows; b-vectors are held in world space and need no change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from anyconv import geometry
from anyconv.errors import UsageError
from anyconv.model import Image

_PAIRS = ("LR", "PA", "IS")
_AXIS_LETTERS = "ijk"


def parse_axcodes(text: str) -> tuple[str, str, str]:
    """``"ras"`` -> ``("R", "A", "S")``; ``canonical`` is RAS; anything else is a UsageError."""
    codes = text.strip().upper()
    if codes == "CANONICAL":
        codes = "RAS"
    worlds = [next((w for w, pair in enumerate(_PAIRS) if c in pair), None) for c in codes]
    if len(codes) != 3 or None in worlds or len(set(worlds)) != 3:
        raise UsageError(
            f"bad axis codes {text!r}",
            hint="three letters, one each of L/R, P/A, I/S (e.g. RAS, LPS, PIR) or 'canonical'",
        )
    return codes[0], codes[1], codes[2]


def orientation_plan(affine: np.ndarray, target: tuple[str, str, str]) -> list[tuple[int, bool]]:
    """For each new axis: the old voxel axis it comes from, and whether it is flipped."""
    current = geometry.axcodes(affine)
    if "?" in current:
        raise UsageError("cannot reorient: the affine has a degenerate (zero) axis")
    plan = []
    for code in target:
        world = next(w for w, pair in enumerate(_PAIRS) if code in pair)
        old = next(a for a, c in enumerate(current) if c in _PAIRS[world])
        plan.append((old, current[old] != code))
    return plan


def reorient(image: Image, options: dict[str, str]) -> Image:
    """Return ``image`` with voxel axes along ``options["axcodes"]`` (default canonical)."""
    target = parse_axcodes(options.get("axcodes", "canonical"))
    plan = orientation_plan(image.affine, target)
    if all(old == new and not flip for new, (old, flip) in enumerate(plan)):
        return image
    shape = image.shape
    perm = [old for old, _ in plan] + list(range(3, image.ndim))
    flips = tuple(new for new, (_, flip) in enumerate(plan) if flip)
    arr = ReorientedArray(image.data, tuple(perm), flips)
    # new index n maps to old index o: o[old] = n[new] or (size - 1 - n[new])
    to_old = np.zeros((4, 4))
    to_old[3, 3] = 1.0
    for new, (old, flip) in enumerate(plan):
        to_old[old, new] = -1.0 if flip else 1.0
        to_old[old, 3] = shape[old] - 1 if flip else 0.0
    out = image.replace(data=arr, affine=image.affine @ to_old)
    _update_meta(out, plan, shape)
    out.notes.append(f"reoriented {''.join(geometry.axcodes(image.affine))} -> {''.join(target)}")
    return out


class ReorientedArray:
    """Voxel data permuted and flipped when read, so a reorient reads no pixels itself."""

    def __init__(self, data: Any, perm: tuple[int, ...], flips: tuple[int, ...]) -> None:
        self._data = data
        self._perm = perm
        self._flips = flips
        self.shape = tuple(int(data.shape[p]) for p in perm)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.transpose(np.asarray(self._data), self._perm)
        if self._flips:
            arr = np.flip(arr, axis=self._flips)
        return arr if dtype is None else arr.astype(dtype)


def _update_meta(image: Image, plan: list[tuple[int, bool]], old_shape: tuple[int, ...]) -> None:
    meta = image.meta
    new_of_old = {old: (new, flip) for new, (old, flip) in enumerate(plan)}
    for attr in ("slice_axis", "phase_axis", "frequency_axis"):
        axis = getattr(meta, attr)
        if axis is not None and axis in new_of_old:
            setattr(meta, attr, new_of_old[axis][0])
    meta.phase_encoding_direction = _map_direction(meta.phase_encoding_direction, new_of_old)
    for key in ("PhaseEncodingDirection", "SliceEncodingDirection"):
        if key in meta.bids:
            meta.bids[key] = _map_direction(meta.bids[key], new_of_old)
    if meta.slice_timing is not None and meta.slice_axis is not None:
        old_axis = plan[meta.slice_axis][0]
        if plan[meta.slice_axis][1] and len(meta.slice_timing) == old_shape[old_axis]:
            meta.slice_timing = list(reversed(meta.slice_timing))
            if "SliceTiming" in meta.bids:
                meta.bids["SliceTiming"] = list(meta.slice_timing)
    # the slice-to-instance map follows its slices to their new axis and index
    for entry in image.sources:
        axis, index = entry.get("axis"), entry.get("index")
        if axis in new_of_old and isinstance(index, int):
            new, flip = new_of_old[axis]
            entry["axis"] = new
            entry["index"] = old_shape[axis] - 1 - index if flip else index


def _map_direction(value: Any, new_of_old: dict[int, tuple[int, bool]]) -> Any:
    """``"j-"`` in old voxel axes -> the same direction named in new voxel axes."""
    if not isinstance(value, str) or not value or value[0] not in _AXIS_LETTERS:
        return value
    old = _AXIS_LETTERS.index(value[0])
    negative = value.endswith("-")
    new, flip = new_of_old[old]
    negative ^= flip
    return _AXIS_LETTERS[new] + ("-" if negative else "")
