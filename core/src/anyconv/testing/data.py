"""Test data: the shared corpus, synthetic oblique images, and world-coordinate checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry
from ..model import Image

TESTDATA_ENV = "ANYCONV_TESTDATA"


def find_testdata(start: Path | None = None) -> Path | None:
    """``$ANYCONV_TESTDATA``, else the first ``../shared/testdata`` above ``start``."""
    env = os.environ.get(TESTDATA_ENV)
    if env:
        path = Path(env)
        return path if path.is_dir() else None
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        cand = folder.parent / "shared" / "testdata"
        if cand.is_dir():
            return cand
    return None


def manifest_cases(testdata: Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """Cases of the corpus manifest, optionally of one format."""
    manifest = json.loads((testdata / "manifest.json").read_text())
    cases = manifest["cases"]
    return [c for c in cases if fmt is None or c["format"] == fmt]


def synthetic_affine(
    zooms: tuple[float, float, float] = (0.9, 1.3, 2.7),
    angles_deg: tuple[float, float, float] = (12.0, -7.0, 20.0),
    origin: tuple[float, float, float] = (-91.5, 37.25, -12.0),
    perm: tuple[int, int, int] = (0, 1, 2),
    flips: tuple[int, int, int] = (1, 1, 1),
) -> np.ndarray:
    """An oblique, anisotropic RAS affine: rotation about x, y, z, then axis permute/flip."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rot = rz @ ry @ rx
    axes = np.eye(3)[:, list(perm)] * np.asarray(flips)[None, :]
    affine = np.eye(4)
    affine[:3, :3] = rot @ axes @ np.diag(zooms)
    affine[:3, 3] = origin
    return affine


def synthetic_image(
    shape: tuple[int, ...] = (11, 7, 5),
    dtype: Any = np.int16,
    *,
    affine: np.ndarray | None = None,
    slope: float = 1.0,
    inter: float = 0.0,
) -> Image:
    """A non-cubic image whose voxels all differ, so a flipped or swapped axis shows."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    ramp = np.arange(n, dtype=np.float64).reshape(shape, order="F")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        span = min(int(info.max) - max(int(info.min), -1000), n) or 1
        data = (ramp % span + max(int(info.min), -1000 if dtype.kind == "i" else 0)).astype(dtype)
    elif dtype.kind == "c":
        data = (ramp * 0.5 + 1j * ramp).astype(dtype)
    else:
        data = (ramp * 0.37 - 11.5).astype(dtype)
    return Image(
        data,
        synthetic_affine() if affine is None else affine,
        slope=slope,
        inter=inter,
    )


def assert_same_world(
    affine_a: np.ndarray, affine_b: np.ndarray, shape: tuple[int, ...], atol: float = 1e-5
) -> None:
    """Corner voxels of two readings map to the same world points (mm)."""
    a = geometry.corner_world(affine_a, shape)
    b = geometry.corner_world(affine_b, shape)
    worst = float(np.abs(a - b).max())
    assert worst <= atol, f"world coordinates differ by {worst:.3g} mm (> {atol})"


def truncated_copy(src: Path, dst_folder: Path, keep: float = 0.5) -> Path:
    """A copy of ``src`` cut to ``keep`` of its length, same name."""
    data = src.read_bytes()
    out = dst_folder / src.name
    out.write_bytes(data[: max(1, int(len(data) * keep))])
    return out
