"""Geometry helpers every plugin needs: LPS/RAS, spacing, cosines, axis codes, obliquity.

Affines are 4x4, mapping a 0-based voxel index (voxel centre) to world millimetres.
The canonical world is RAS+ (NIfTI, nibabel); DICOM, ITK and NRRD often use LPS+.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Flips x and y: LPS+ <-> RAS+ (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Return an LPS+ affine as the RAS+ affine of the same voxels."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """Return a RAS+ affine as the LPS+ affine of the same voxels."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def from_spacing_direction_origin(
    spacing: Sequence[float], direction: np.ndarray, origin: Sequence[float]
) -> np.ndarray:
    """Build an affine from ITK-style spacing, direction (columns = axis cosines) and origin."""
    direction = np.asarray(direction, dtype=np.float64)
    n = len(spacing)
    affine = np.eye(4)
    affine[:n, :n] = direction[:n, :n] * np.asarray(spacing, dtype=np.float64)[None, :]
    affine[:n, 3] = np.asarray(origin, dtype=np.float64)[:n]
    return affine


def zooms(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes along each voxel axis (lengths of the affine's columns)."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def direction_cosines(affine: np.ndarray) -> np.ndarray:
    """Unit column vectors of the voxel axes in world space (3x3); zero columns kept."""
    rzs = np.asarray(affine, dtype=np.float64)[:3, :3]
    z = zooms(affine)
    safe = np.where(z == 0, 1.0, z)
    return rzs / safe[None, :]


def spacing_direction_origin(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split an affine into ITK-style spacing, direction (3x3) and origin."""
    affine = np.asarray(affine, dtype=np.float64)
    return zooms(affine), direction_cosines(affine), affine[:3, 3].copy()


def axcodes(affine: np.ndarray, labels: Sequence[tuple[str, str]] = _LABELS) -> tuple[str, ...]:
    """Anatomical direction each voxel axis points to, as nibabel's ``aff2axcodes``.

    Each voxel axis takes the world axis it is closest to, without two axes sharing one.
    """
    cos = np.abs(direction_cosines(affine))
    codes: list[str | None] = [None, None, None]
    used_world: set[int] = set()
    # Greedy on the strongest alignment first, like nibabel's io_orientation.
    order = np.dstack(np.unravel_index(np.argsort(-cos, axis=None), cos.shape))[0]
    for world, vox in order:
        if codes[vox] is not None or world in used_world or cos[world, vox] == 0:
            continue
        sign = np.asarray(affine)[world, vox] > 0
        codes[vox] = labels[world][1 if sign else 0]
        used_world.add(int(world))
    return tuple(c if c is not None else "?" for c in codes)


def obliquity(affine: np.ndarray) -> float:
    """Largest angle in degrees between a voxel axis and its nearest world axis."""
    cos = np.abs(direction_cosines(affine))
    best = np.clip(cos.max(axis=0), 0.0, 1.0)
    best = best[zooms(affine) > 0]
    return float(np.degrees(np.arccos(best)).max()) if best.size else 0.0


def is_oblique(affine: np.ndarray, tolerance_deg: float = 1e-3) -> bool:
    """Whether any voxel axis is rotated away from the world axes."""
    return obliquity(affine) > tolerance_deg


def shear(affine: np.ndarray) -> float:
    """Largest |cosine| between two voxel axes: 0 for orthogonal axes."""
    cos = direction_cosines(affine)
    gram = cos.T @ cos
    np.fill_diagonal(gram, 0.0)
    return float(np.abs(gram).max())


def is_sheared(affine: np.ndarray, tolerance: float = 1e-5) -> bool:
    """Whether the voxel axes are not orthogonal."""
    return shear(affine) > tolerance


def voxel_to_world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """World coordinates (N x 3) of voxel indices (N x 3)."""
    ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
    affine = np.asarray(affine, dtype=np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def corner_indices(shape: Sequence[int]) -> np.ndarray:
    """Indices of the 8 corner voxels of the first three axes (8 x 3)."""
    dims = [max(int(s), 1) for s in [*shape[:3], 1, 1, 1][:3]]
    return np.array(
        [[i, j, k] for i in (0, dims[0] - 1) for j in (0, dims[1] - 1) for k in (0, dims[2] - 1)],
        dtype=np.float64,
    )


def corner_world(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """World coordinates of the corner voxels: what a geometry check compares."""
    return voxel_to_world(affine, corner_indices(shape))


def orthogonalize(affine: np.ndarray) -> np.ndarray:
    """Nearest affine with orthogonal axes and the same zooms, for formats without shear."""
    affine = np.asarray(affine, dtype=np.float64).copy()
    z = zooms(affine)
    u, _, vt = np.linalg.svd(direction_cosines(affine))
    affine[:3, :3] = (u @ vt) * z[None, :]
    return affine


def axis_aligned(affine: np.ndarray) -> np.ndarray:
    """Affine with each voxel axis snapped to its nearest world axis, keeping zooms and origin."""
    affine = np.asarray(affine, dtype=np.float64).copy()
    codes = axcodes(affine)
    z = zooms(affine)
    out = np.zeros((3, 3))
    for vox, code in enumerate(codes):
        for world, (neg, pos) in enumerate(_LABELS):
            if code in (neg, pos):
                out[world, vox] = z[vox] if code == pos else -z[vox]
    affine[:3, :3] = out
    return affine
