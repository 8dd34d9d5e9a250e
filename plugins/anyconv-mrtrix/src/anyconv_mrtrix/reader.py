"""Read MRtrix ``.mif``/``.mif.gz``/``.mih`` natively; voxel data stays lazy until asked for."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np
from anyconv.errors import ReadError
from anyconv.model import Image, Meta
from anyconv.specs import ReadOptions

from ._header import HeaderError, MifHeader, open_maybe_gzip, parse_header, read_header_bytes
from ._header import storage_order as _storage_order

#: Free header keys that map onto common metadata (BIDS names, as ``mrconvert -json_import``).
_META_FLOATS = {
    "RepetitionTime": "repetition_time",
    "EchoTime": "echo_time",
    "InversionTime": "inversion_time",
    "FlipAngle": "flip_angle",
}


def read_mrtrix(path: Path, options: ReadOptions) -> Image:
    """Read one MRtrix image: layout, scanner-RAS transform, scaling and dw_scheme."""
    path = Path(path)
    try:
        with open_maybe_gzip(path) as fh:
            raw = read_header_bytes(fh, str(path))
        header = parse_header(raw, str(path))
    except HeaderError as exc:
        raise ReadError(str(exc)) from exc
    except (OSError, EOFError) as exc:
        raise ReadError(f"{path}: unreadable header: {exc}") from exc
    data_file, offset = _data_location(path, header, options)
    gz = _is_gzip(data_file)
    have = data_file.stat().st_size
    # deflate packs at most ~1032:1, so a gzipped file this small cannot hold the data.
    limit = have * 1032 if gz else have
    if limit < offset + header.nbytes:
        raise ReadError(
            f"{path}: truncated: header promises {header.nbytes} bytes of data at "
            f"{offset}, file has {have}{' (gzipped)' if gz else ''}"
        )
    proxy = MifProxy(data_file, offset, header, gz)
    image = Image(
        proxy,
        header.affine(),
        slope=header.scale if math.isfinite(header.scale) else 1.0,
        inter=header.offset if math.isfinite(header.offset) else 0.0,
    )
    image.meta = _meta(header, image.notes)
    image.extras["mrtrix"] = {
        "vox": [None if not math.isfinite(v) else v for v in header.vox],
        "layout": [
            ("-" if s < 0 else "+") + str(r)
            for s, r in zip(header.strides_sign, header.strides_rank, strict=True)
        ],
        "keyval": header.keyval,
    }
    if header.transform is None:
        image.notes.append("no transform in header: MRtrix's default (centred, axis-aligned)")
    return image


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _data_location(path: Path, header: MifHeader, options: ReadOptions) -> tuple[Path, int]:
    """The file and byte offset of the voxel data (``file: . OFFSET`` or a named file)."""
    if len(header.files) != 1:
        raise ReadError(f"{path}: data split over {len(header.files)} files is not supported")
    name, offset = header.files[0]
    if offset < 0:
        raise ReadError(f"{path}: negative data offset {offset}")
    if name == ".":
        if offset < header.header_bytes:
            raise ReadError(f"{path}: data offset {offset} lies inside the header")
        return path, offset
    target = Path(name)
    if not options.allow_outside and (target.is_absolute() or ".." in target.parts):
        raise ReadError(f"{path}: data file {name!r} lies outside the header's folder")
    data_file = target if target.is_absolute() else path.parent / target
    if not data_file.is_file():
        raise ReadError(f"{path}: missing data file {data_file.name}")
    return data_file, offset


class MifProxy:
    """Voxels in i, j, k[, ...] order, read from disk when asked for."""

    def __init__(self, path: Path, offset: int, header: MifHeader, gz: bool) -> None:
        self._path = path
        self._offset = offset
        self._header = header
        self._gz = gz

    @property
    def shape(self) -> tuple[int, ...]:
        """Image shape from ``dim``."""
        return self._header.dim

    @property
    def dtype(self) -> np.dtype:
        """Stored type, native byte order."""
        return self._header.dtype.newbyteorder("=")

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return self._header.ndim

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        h = self._header
        nbytes = h.nbytes
        if self._gz:
            with open_maybe_gzip(self._path) as fh:
                fh.seek(self._offset)
                buf = fh.read(nbytes)
        else:
            with self._path.open("rb") as fh:
                fh.seek(self._offset)
                buf = fh.read(nbytes)
        if len(buf) < nbytes:
            raise ReadError(f"{self._path}: truncated: {len(buf)} of {nbytes} data bytes")
        n = math.prod(h.dim)
        if h.bits:
            flat = np.unpackbits(np.frombuffer(buf, np.uint8), count=n).astype(bool)
        else:
            flat = np.frombuffer(buf, h.dtype, count=n)
        order = _storage_order(h.strides_rank)
        arr = flat.reshape([h.dim[a] for a in order], order="F")
        arr = arr.transpose([order.index(a) for a in range(h.ndim)])
        flips = tuple(slice(None, None, -1) if s < 0 else slice(None) for s in h.strides_sign)
        arr = arr[flips]
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]


def _meta(header: MifHeader, notes: list[str]) -> Meta:
    meta = Meta()
    kv = header.keyval
    for key, attr in _META_FLOATS.items():
        if key in kv:
            with contextlib.suppress(ValueError):
                setattr(meta, attr, float(kv[key][0]))
    if "PhaseEncodingDirection" in kv:
        meta.phase_encoding_direction = kv["PhaseEncodingDirection"][0]
    if "SliceTiming" in kv:
        with contextlib.suppress(ValueError):
            meta.slice_timing = [float(x) for x in kv["SliceTiming"][0].split(",")]
    if "comments" in kv:
        meta.description = "\n".join(kv["comments"])
    if "dw_scheme" in kv:
        _dw_scheme(meta, kv["dw_scheme"], header, notes)
    return meta


def _dw_scheme(meta: Meta, rows: list[str], header: MifHeader, notes: list[str]) -> None:
    """``dw_scheme`` rows ``gx,gy,gz,b``: directions in scanner RAS, b in s/mm².

    A table that does not fit the image is left out with a note, as MRtrix warns and goes on.
    """
    try:
        table = np.array([[float(x) for x in r.split(",")] for r in rows], dtype=np.float64)
    except ValueError:
        notes.append("dw_scheme is not numeric: left out")
        return
    nvol = header.dim[3] if header.ndim > 3 else 1
    if table.ndim != 2 or table.shape[1] < 4 or len(table) != nvol:
        notes.append(f"dw_scheme ({len(rows)} rows) does not fit {nvol} volumes: left out")
        return
    vecs = table[:, :3]
    norms = np.linalg.norm(vecs, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    meta.bvals = [float(b) for b in table[:, 3]]
    meta.bvecs = (vecs / safe[:, None]).tolist()
