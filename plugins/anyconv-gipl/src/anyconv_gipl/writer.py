"""Write GIPL with SimpleITK: voxels reordered so ITK's identity direction is right.

GIPL has no direction field: a reader places voxel axis i along LPS x, j along y, k along z.
The writer permutes and flips the voxel axes of an axis-aligned image to that order and moves
the origin to the voxel that becomes index 0, so the world coordinates of every voxel stay
the same. Oblique images never get here without ``--lossy`` (``WriterSpec(oblique=False)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from anyconv import geometry
from anyconv.model import Image
from anyconv.specs import WriteOptions


def to_lps_order(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Voxels permuted/flipped so axes run along LPS +x, +y, +z.

    Returns the reordered array, its LPS affine (diagonal) and whether anything moved.
    """
    lps = geometry.ras_to_lps(affine)
    cos = geometry.direction_cosines(lps)
    world_of = [int(np.argmax(np.abs(cos[:, v]))) for v in range(3)]
    if sorted(world_of) != [0, 1, 2]:
        raise ValueError(f"voxel axes do not map one to one onto world axes: {world_of}")
    perm = [world_of.index(w) for w in range(3)]
    signs = [np.sign(cos[world_of[v], v]) for v in range(3)]
    shape = [*data.shape[:3], 1, 1, 1][:3]
    start = np.array([shape[v] - 1 if signs[v] < 0 else 0 for v in range(3)], dtype=float)
    origin = geometry.voxel_to_world(lps, start)[0]
    out = np.transpose(data, [*perm, *range(3, data.ndim)])
    flips = tuple(slice(None, None, -1) if signs[perm[w]] < 0 else slice(None) for w in range(3))
    out = out[flips]
    zooms = geometry.zooms(lps)[perm]
    new = np.eye(4)
    new[:3, :3] = np.diag(zooms)
    new[:3, 3] = origin
    moved = perm != [0, 1, 2] or any(s < 0 for s in signs)
    return out, new, moved


def write_gipl(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``image`` (axis-aligned, at most 4-D, GIPL dtypes) to ``path``."""
    data = image.stored()
    while data.ndim < 3:
        data = data[..., np.newaxis]
    out, lps, moved = to_lps_order(data, image.affine)
    if moved:
        image.notes.append("GIPL stores no direction: voxel axes reordered to LPS")
    img = sitk.GetImageFromArray(np.ascontiguousarray(out.T), isVector=False)
    spacing = [float(z) if z > 0 else 1.0 for z in np.diag(lps[:3, :3])]
    origin = [float(o) for o in lps[:3, 3]]
    if out.ndim == 4:
        spacing.append(float(image.meta.repetition_time or 1.0))
        origin.append(0.0)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    level = -1 if options.compress_level is None else int(options.compress_level)
    gz = path.name.lower().endswith(".gz")
    sitk.WriteImage(img, str(path), useCompression=gz, compressionLevel=level)
