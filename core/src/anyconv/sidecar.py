"""BIDS JSON sidecar and FSL .bval/.bvec files written beside an image.

Written only when the image carries acquisition metadata (a DICOM source, or any reader that
fills ``meta.bids``), into the same staging folder as the image, so all appear together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .model import Image, _jsonable

#: Typed Meta fields and their BIDS names (values already in BIDS units: s, degrees).
_BIDS_FIELDS = (
    ("modality", "Modality"),
    ("manufacturer", "Manufacturer"),
    ("model_name", "ManufacturersModelName"),
    ("series_description", "SeriesDescription"),
    ("protocol_name", "ProtocolName"),
    ("series_number", "SeriesNumber"),
    ("echo_time", "EchoTime"),
    ("repetition_time", "RepetitionTime"),
    ("inversion_time", "InversionTime"),
    ("flip_angle", "FlipAngle"),
    ("slice_timing", "SliceTiming"),
    ("phase_encoding_direction", "PhaseEncodingDirection"),
)


def wants_sidecar(image: Image) -> bool:
    """Whether the image has acquisition metadata worth a sidecar."""
    return bool(image.meta.bids) or image.meta.bvals is not None


def bids_sidecar(image: Image) -> dict[str, Any]:
    """The sidecar dict: ``meta.bids`` first, typed fields over it, then our name."""
    out: dict[str, Any] = dict(image.meta.bids)
    for attr, key in _BIDS_FIELDS:
        value = getattr(image.meta, attr)
        if value is not None:
            out[key] = value
    out["ConversionSoftware"] = "anyconv"
    out["ConversionSoftwareVersion"] = __version__
    return _jsonable(out)


def fsl_bvecs(image: Image) -> np.ndarray:
    """Gradient directions (RAS world, one row per volume) in FSL's voxel frame (3 x N).

    FSL reads bvecs along the image's voxel axes, with x negated when the voxel-to-world
    matrix has a positive determinant (neurological storage), as dcm2niix writes them.
    """
    bvecs = np.asarray(image.meta.bvecs, dtype=np.float64).reshape(-1, 3)
    rzs = image.affine[:3, :3]
    cosines = rzs / np.linalg.norm(rzs, axis=0)
    vox = bvecs @ cosines  # each row: components along voxel axes i, j, k
    if np.linalg.det(rzs) > 0:
        vox[:, 0] = -vox[:, 0]
    norms = np.linalg.norm(vox, axis=1)
    vox[norms > 0] /= norms[norms > 0, None]
    return vox.T


def write_sidecars(image: Image, folder: Path, stem: str) -> list[Path]:
    """Write ``<stem>.json`` (and ``.bval``/``.bvec``) into ``folder``."""
    written = []
    sidecar = folder / f"{stem}.json"
    sidecar.write_text(json.dumps(bids_sidecar(image), indent=2) + "\n")
    written.append(sidecar)
    if image.meta.bvals is not None:
        bval = folder / f"{stem}.bval"
        bval.write_text(" ".join(f"{b:g}" for b in image.meta.bvals) + "\n")
        written.append(bval)
        if image.meta.bvecs is not None:
            bvec = folder / f"{stem}.bvec"
            rows = fsl_bvecs(image)
            bvec.write_text("\n".join(" ".join(f"{v:.6g}" for v in row) for row in rows) + "\n")
            written.append(bvec)
    return written
