"""Write MRtrix ``.mif``/``.mif.gz``: one file, text header then voxels in +0,+1,+2... order."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from anyconv import geometry
from anyconv.io import open_output, write_fortran
from anyconv.model import Image
from anyconv.specs import WriteOptions

from ._header import STRUCTURAL, datatype_name, format_number

#: Data starts on a multiple of this many bytes (MRtrix memory-maps it).
ALIGN = 16
_META_KEYS = {
    "repetition_time": "RepetitionTime",
    "echo_time": "EchoTime",
    "inversion_time": "InversionTime",
    "flip_angle": "FlipAngle",
}


def write_mrtrix(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``image`` with its stored values, scaling, RAS transform and dw_scheme."""
    data = image.data
    dtype = np.dtype(image.dtype)
    lines = ["mrtrix image", *header_lines(image, dtype)]
    text = "\n".join(lines) + "\n"
    # "file: . OFFSET" holds its own length: grow the offset until it is stable.
    offset = len(text.encode()) + len("file: . \nEND\n")
    while True:
        tail = f"file: . {offset}\nEND\n"
        size = len(text.encode()) + len(tail)
        aligned = -(-size // ALIGN) * ALIGN
        if aligned == offset:
            break
        offset = aligned
    head = (text + tail).encode()
    arr = np.asarray(data)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not _little()):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    with open_output(path, options.compress_level) as fh:
        fh.write(head + b"\0" * (offset - len(head)))
        write_fortran(fh, arr)


def _little() -> bool:
    import sys

    return sys.byteorder == "little"


def header_lines(image: Image, dtype: np.dtype) -> list[str]:
    """Every header line but the first and ``file``/``END``."""
    shape = image.shape
    ndim = len(shape)
    affine = image.affine
    zooms = geometry.zooms(affine)
    rot = geometry.direction_cosines(affine)
    for axis in range(3):
        if zooms[axis] == 0:  # a degenerate axis: give it a unit direction MRtrix accepts
            rot[:, axis] = np.eye(3)[:, axis]
    vox = [float(z) if z > 0 else 1.0 for z in zooms]
    ext = image.extras.get("mrtrix") or {}
    meta = image.meta
    extra_vox = list(ext.get("vox") or [])
    for axis in range(3, ndim):
        value = extra_vox[axis] if axis < len(extra_vox) else None
        if axis == 3 and meta.repetition_time:
            value = meta.repetition_time
        vox.append(float(value) if value is not None else math.nan)
    lines = [
        "dim: " + ",".join(str(int(s)) for s in shape),
        "vox: " + ",".join(_num(v) for v in vox[:ndim]),
        "layout: " + ",".join(f"+{a}" for a in range(ndim)),
        "datatype: " + datatype_name(dtype),
    ]
    for row in range(3):
        values = [*rot[row, :3], affine[row, 3]]
        lines.append("transform: " + ",".join(_num(v) for v in values))
    if image.is_scaled:
        lines.append(f"scaling: {_num(image.inter)},{_num(image.slope)}")
    lines += _keyval_lines(image)
    return lines


def _num(value: float) -> str:
    return "nan" if not math.isfinite(value) else format_number(value)


def _keyval_lines(image: Image) -> list[str]:
    meta = image.meta
    ext = image.extras.get("mrtrix") or {}
    out: dict[str, list[str]] = {}
    for key, values in (ext.get("keyval") or {}).items():
        if key in STRUCTURAL or key == "dw_scheme":
            continue
        out[key] = [str(v).replace("\n", " ") for v in values]
    for attr, key in _META_KEYS.items():
        value = getattr(meta, attr)
        if value is not None:
            out[key] = [_num(float(value))]
    if meta.phase_encoding_direction:
        out["PhaseEncodingDirection"] = [meta.phase_encoding_direction]
    if meta.slice_timing:
        out["SliceTiming"] = [",".join(_num(t) for t in meta.slice_timing)]
    if meta.description and "comments" not in out:
        out["comments"] = meta.description.splitlines()
    lines = [f"{key}: {v}" for key, values in out.items() for v in values if _safe_key(key)]
    nvol = image.shape[3] if image.ndim > 3 else 1
    if meta.bvals is not None and meta.bvecs is not None and len(meta.bvals) == nvol:
        for b, g in zip(meta.bvals, meta.bvecs, strict=True):
            lines.append("dw_scheme: " + ",".join(_num(float(x)) for x in (*g, b)))
    elif meta.bvals is not None:
        image.notes.append(f"{len(meta.bvals)} b-values for {nvol} volumes: dw_scheme not written")
    return lines


def _safe_key(key: str) -> bool:
    return bool(key) and ":" not in key and "\n" not in key and key != "END"
