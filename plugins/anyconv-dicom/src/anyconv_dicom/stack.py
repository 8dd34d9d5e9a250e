"""Slices to volumes: split groups, sort along the slice normal, geometry as dcm2niix.

Voxel axes follow dcm2niix: i = DICOM column, j = DICOM row *flipped* (dcm2niix's default
row flip, so a transverse slice is stored bottom-up), k = position along the slice normal
(row x column, or the CSA slice normal for mosaics), t = repeated positions ordered by
temporal index, instance number and time.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import geometry

from .scan import Slice

log = logging.getLogger("anyconv")

#: Two slices closer than this along the normal (mm) share a position.
POSITION_TOL = 0.01
#: Deviation of a slice gap from the mean gap reported as uneven spacing: relative, and
#: in mm (positions printed with one decimal, e.g. 0.625 mm CT, must not count).
SPACING_TOL = 0.02
SPACING_TOL_MM = 0.06


@dataclass
class Volume:
    """Slices arranged as ``grid[t][k]`` plus the voxel-to-RAS affine."""

    grid: list[list[Slice]]
    affine: np.ndarray
    notes: list[str] = field(default_factory=list)
    tilt_deg: float = 0.0
    tilt_mm: float = 0.0  # in-plane offset of the last slice from the first's normal line
    uneven: bool = False
    positions: np.ndarray | None = None

    @property
    def first(self) -> Slice:
        """The first slice of the first volume (its header describes the series)."""
        return self.grid[0][0]

    @property
    def nz(self) -> int:
        """Slices per volume."""
        return len(self.grid[0])

    @property
    def nt(self) -> int:
        """Volumes."""
        return len(self.grid)


def group_slices(slices: list[Slice]) -> list[list[Slice]]:
    """Split by series and by everything that must not share a volume (the slice key)."""
    groups: dict[tuple, list[Slice]] = {}
    for sl in slices:
        groups.setdefault(sl.key, []).append(sl)
    return list(groups.values())


def slice_normal(sl: Slice) -> np.ndarray:
    """Unit normal the slices are sorted along."""
    if sl.normal is not None:
        return sl.normal
    if sl.iop is None:
        return np.array([0.0, 0.0, 1.0])
    n = np.cross(sl.iop[:3], sl.iop[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _where(first: Slice) -> str:
    """The folder and series a warning is about, so a user can find it."""
    return f"{first.path.parent}: series {first.ds.get('SeriesNumber', '?')}"


def build_volumes(slices: list[Slice]) -> list[Volume]:
    """Arrange one group's slices into volumes (usually one; more if it had to be split)."""
    slices, dropped = _drop_duplicates(slices)
    first = slices[0]
    normal = slice_normal(first)
    if dropped:
        msg = (
            f"{_where(first)}: {dropped} duplicate image(s) "
            "ignored (same SOPInstanceUID, or same position, instance number and time)"
        )
        log.warning(msg)
    if first.ipp is None or first.iop is None:
        # No geometry: keep file order, unit spacing, and say so.
        ordered = sorted(slices, key=lambda s: s.order)
        vol = Volume([ordered], _affine(first, None, None, len(ordered)))
        vol.notes.append("no ImagePositionPatient/ImageOrientationPatient: geometry is nominal")
        return [vol]
    dist = np.array([float(s.ipp @ normal) for s in slices])
    order = np.argsort(dist, kind="stable")
    positions: list[list[Slice]] = []
    pos_values: list[float] = []
    for idx in order:
        if pos_values and abs(dist[idx] - pos_values[-1]) <= POSITION_TOL:
            positions[-1].append(slices[idx])
        else:
            positions.append([slices[idx]])
            pos_values.append(float(dist[idx]))
    for p in positions:
        p.sort(key=lambda s: s.order)
    counts = Counter(len(p) for p in positions)
    notes: list[str] = [msg] if dropped else []
    nt = min(counts)
    grid = None
    if len(counts) > 1:
        grid = _grid_by_volume_key(positions)
        kept = len(grid) if grid is not None else nt
        msg = (
            f"{_where(first)}: slices per position differ "
            f"({dict(sorted(counts.items()))}): missing or duplicate slices; "
            f"kept {kept} complete volume(s)"
        )
        log.warning(msg)
        notes.append(msg)
    if grid is None:
        grid = [[p[t] for p in positions] for t in range(nt)]
    vol = Volume(grid, np.eye(4), notes=notes, positions=np.asarray(pos_values))
    nz = len(positions)
    ipp0 = positions[0][0].ipp
    ipp1 = positions[-1][0].ipp
    if nz > 1:
        gaps = np.diff(np.asarray(pos_values))
        mean_gap = float(gaps.mean())
        tol = max(SPACING_TOL * mean_gap, SPACING_TOL_MM)
        if mean_gap > 0 and float(np.abs(gaps - mean_gap).max()) > tol:
            vol.uneven = True
            msg = f"{_where(first)}: uneven slice spacing ({gaps.min():.4g} to {gaps.max():.4g} mm)"
            log.warning(msg)
            vol.notes.append(msg)
        kvec = (ipp1 - ipp0) / (nz - 1)
        cos = float(np.dot(kvec, normal) / np.linalg.norm(kvec))
        vol.tilt_deg = float(np.degrees(np.arccos(np.clip(abs(cos), 0.0, 1.0))))
        d = ipp1 - ipp0
        vol.tilt_mm = float(np.linalg.norm(d - normal * float(d @ normal)))
    else:
        kvec = None
    vol.affine = _affine(first, ipp0, kvec, nz)
    return [vol]


def _grid_by_volume_key(positions: list[list[Slice]]) -> list[list[Slice]] | None:
    """Volumes by their own number (temporal position, acquisition number).

    Used when a slice is missing, so a gap never shifts later slices into the wrong volume;
    incomplete volumes are dropped. ``None`` when the headers carry no usable number.
    """
    keys = {sl.extra.get("vol_key") for p in positions for sl in p}
    keys.discard(None)
    longest = max(len(p) for p in positions)
    if len(keys) < longest:
        return None
    by_key: dict = {}
    for p in positions:
        for sl in p:
            by_key.setdefault(sl.extra.get("vol_key"), {})[id(p)] = sl
    grid = []
    for key in sorted(keys):
        row = [by_key[key].get(id(p)) for p in positions]
        if all(sl is not None for sl in row):
            grid.append(row)
    return grid or None


def _drop_duplicates(slices: list[Slice]) -> tuple[list[Slice], int]:
    """The same image twice is kept once.

    Same SOPInstanceUID, or (a copy re-encoded in another transfer syntax) same position,
    instance number and acquisition time.
    """
    seen: set[tuple] = set()
    kept = []
    tile_zero_kept: dict[Path, bool] = {}
    for sl in slices:
        if sl.tile:  # a mosaic's other tiles share the fate of its first (same file)
            if tile_zero_kept.get(sl.path, True):
                kept.append(sl)
            continue
        uid = sl.extra.get("uid") or str(sl.path)
        by_uid = ("uid", uid, sl.frame, sl.tile)
        numbered = sl.extra.get("numbered", False)
        # rounded in Python: per-slice numpy calls were most of this loop for 7,200 tiles
        pos = None
        if sl.ipp is not None and numbered:
            pos = tuple(round(v, 3) for v in sl.ipp.tolist())
        by_content = ("pos", pos, sl.order[:3], sl.frame, sl.tile)
        duplicate = by_uid in seen or (pos is not None and by_content in seen)
        if sl.tile == 0:
            tile_zero_kept[sl.path] = not duplicate
        if duplicate:
            continue
        seen.update((by_uid, by_content))
        kept.append(sl)
    return kept, len(slices) - len(kept)


def _affine(sl: Slice, ipp0: np.ndarray | None, kvec: np.ndarray | None, nz: int) -> np.ndarray:
    """Voxel (column, flipped row, slice) to RAS+ mm."""
    iop = sl.iop if sl.iop is not None else np.array([1.0, 0, 0, 0, 1.0, 0])
    rowcos, colcos = iop[:3], iop[3:]
    dy, dx = sl.spacing
    if kvec is None:
        normal = slice_normal(sl)
        kvec = normal * (sl.between or sl.thickness or 1.0)
    origin = ipp0 if ipp0 is not None else (sl.ipp if sl.ipp is not None else np.zeros(3))
    lps = np.eye(4)
    lps[:3, 0] = rowcos * dx
    lps[:3, 1] = -colcos * dy
    lps[:3, 2] = kvec
    lps[:3, 3] = origin + colcos * dy * (sl.rows - 1)
    return geometry.lps_to_ras(lps)


def correct_tilt(vol: Volume) -> dict[str, Any]:
    """Geometry for resampling a tilted stack onto a grid orthogonal to the slices.

    Each slice k is shifted in-plane by the component of its offset that is not along the
    normal, as dcm2niix's gantry-tilt correction does; returns the per-slice shift in
    voxels along i and j and the corrected affine.
    """
    first = vol.first
    normal = slice_normal(first)
    rowcos, colcos = first.iop[:3], first.iop[3:]
    dy, dx = first.spacing
    ipp0 = vol.grid[0][0].ipp
    shifts = []
    for sl in vol.grid[0]:
        d = sl.ipp - ipp0
        inplane = d - normal * float(d @ normal)
        # Voxel (i, j) offsets of this slice's origin relative to slice 0 (j is flipped).
        shifts.append((float(inplane @ rowcos) / dx, -float(inplane @ colcos) / dy))
    nz = vol.nz
    dist = float((vol.grid[0][-1].ipp - ipp0) @ normal)
    kvec = normal * (dist / (nz - 1)) if nz > 1 else normal
    affine = _affine(first, ipp0, kvec, nz)
    # Grow the grid so no slice is cut (as dcm2niix does): whole voxels on each side.
    si = [s[0] for s in shifts]
    sj = [s[1] for s in shifts]
    pad = (
        math.ceil(max(0.0, -min(si)) - 1e-6),
        math.ceil(max(0.0, max(si)) - 1e-6),
        math.ceil(max(0.0, -min(sj)) - 1e-6),
        math.ceil(max(0.0, max(sj)) - 1e-6),
    )
    affine[:3, 3] -= pad[0] * affine[:3, 0] + pad[2] * affine[:3, 1]
    return {"shifts": shifts, "affine": affine, "pad": pad}
