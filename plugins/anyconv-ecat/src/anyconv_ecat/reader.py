"""Read ECAT 7 PET images with nibabel's ecat module: frames as the 4th axis.

Real values are what nibabel gives: stored x subheader ``scale_factor`` x main header
``ecat_calibration_factor``, per frame. ECAT's ``calibration_units`` says whether the data are
already calibrated (1: the calibration factor was applied by the scanner software, as
PET2BIDS reads it); ``--option calibration=units`` then leaves the factor out, ``never``
always does. ``decay_corr_fctr`` is the decay correction the
reconstruction already applied: it is reported per frame (BIDS ``DecayCorrectionFactor``),
not applied again. The matrix list is read here, not by nibabel, so a corrupt list (a block
pointing back at itself, rows beyond the file) is a ``ReadError`` instead of an endless loop.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from anyconv.errors import ReadError
from anyconv.lazy import import_nibabel
from anyconv.model import Image, LazyArray, Meta
from anyconv.specs import ReadOptions

nib = import_nibabel()

BLOCK = 512
#: matrix-list blocks followed before the list is called corrupt (31 frames each).
MAX_MLIST_BLOCKS = 4096


def read_ecat(path: Path, options: ReadOptions) -> Image:
    """Read every frame of an ECAT 7 image file into one 4-D image."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            raise ReadError(f"{path}: gzipped ECAT: gunzip it first")
        fh.seek(0)
        if size < 2 * BLOCK:
            raise ReadError(f"{path}: truncated: {size} bytes, no room for the matrix list")
        try:
            header = nib.ecat.EcatHeader.from_fileobj(fh)
        except (ValueError, nib.spatialimages.HeaderDataError) as exc:
            raise ReadError(f"{path}: not an ECAT 7 main header: {exc}") from exc
        mlist = _read_mlist(fh, header.endianness, size, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub = nib.ecat.EcatSubHeader(header, mlist, fh)
            order = nib.ecat.get_frame_order(mlist)
        frames = _frames(sub, order, header, size, path, _calibration(header, options, path))
    rows = [f["row"] for f in frames]
    factors = np.array([f["factor"] for f in frames], dtype=np.float64)
    # A static scan (one frame) is a 3-D volume; frames follow on the 4th axis.
    shape = (*frames[0]["shape"], len(frames))
    affine = np.asarray(sub.get_frame_affine(rows[0]), dtype=np.float64)
    notes = []
    if not all(np.allclose(sub.get_frame_affine(r), affine) for r in rows[1:]):
        notes.append("frames have different geometry: the first frame's is used (as nibabel)")
    dtypes = {f["dtype"].newbyteorder("=") for f in frames}
    uniform = np.all(factors == factors[0]) and len(dtypes) == 1
    stored = np.dtype(np.float32) if not uniform else frames[0]["dtype"].newbyteorder("=")
    proxy = EcatProxy(path, header, mlist, rows, shape, factors, stored, scaled=not uniform)
    data: Any = proxy if len(frames) > 1 else _Squeezed(proxy)
    image = Image(data, affine, slope=float(factors[0]) if uniform else 1.0, notes=notes)
    if not uniform:
        image.notes.append("frames have different scale factors: values stored as float32")
    image.meta = _meta(header, frames)
    image.extras["ecat"] = _extras(header, frames)
    return image


def _read_mlist(fh: Any, endianness: str, size: int, path: Path) -> np.ndarray:
    """The matrix list (rows: id, first block, last block, status), loop-safe."""
    dt = np.dtype(np.int32).newbyteorder(endianness)
    rows: list[np.ndarray] = []
    block, seen = 2, set()
    while True:
        if block in seen or len(seen) >= MAX_MLIST_BLOCKS:
            raise ReadError(f"{path}: matrix list loops back to block {block}")
        seen.add(block)
        if block * BLOCK > size:
            raise ReadError(f"{path}: truncated: matrix list block {block} beyond the file end")
        fh.seek((block - 1) * BLOCK)
        table = np.frombuffer(fh.read(BLOCK), dtype=dt).reshape(32, 4)
        n_free, next_block, _, n_used = (int(v) for v in table[0])
        if n_free + n_used != 31 or not 0 <= n_used <= 31:
            if not rows:
                raise ReadError(f"{path}: corrupt matrix list (free {n_free}, used {n_used})")
            break
        rows.append(table[1 : n_used + 1].astype(np.int32))
        if next_block <= 2:
            break
        block = next_block
    mlist = np.vstack(rows) if rows else np.zeros((0, 4), np.int32)
    mlist = mlist[mlist[:, 1] > 0]
    if not len(mlist):
        raise ReadError(f"{path}: no image matrix in the matrix list")
    return mlist


def _calibration(header: Any, options: ReadOptions, path: Path) -> float:
    """The calibration factor to apply, by the ``calibration`` option."""
    mode = options.extra.get("calibration", "always").lower()
    factor = float(header["ecat_calibration_factor"].item())
    if mode == "always":
        return factor
    if mode == "never":
        return 1.0
    if mode == "units":
        return factor if int(header["calibration_unitS"]) == 0 else 1.0
    raise ReadError(f"{path}: calibration={mode!r}: use always, units or never")


def _frames(
    sub: Any, order: dict[int, Any], header: Any, size: int, path: Path, cal: float
) -> list[dict]:
    """Per frame, in time order: matrix row, shape, dtype, factor, times; sizes checked."""
    out = []
    for index in sorted(order):
        row = int(order[index][0])
        sh = sub.subheaders[row]
        shape = tuple(int(x) for x in sub.get_shape(row))
        try:
            dtype = np.dtype(sub._get_data_dtype(row))
        except KeyError as exc:
            raise ReadError(f"{path}: frame {index}: unknown data type {exc}") from exc
        if min(shape) < 1:
            raise ReadError(f"{path}: frame {index}: empty matrix {shape}")
        end = int(sub._get_frame_offset(row)) + int(np.prod(shape)) * dtype.itemsize
        if end > size:
            raise ReadError(f"{path}: truncated: frame {index} needs {end} bytes, file has {size}")
        if out and shape != out[0]["shape"]:
            raise ReadError(f"{path}: frames differ in shape ({out[0]['shape']} vs {shape})")
        scale = float(sh["scale_factor"].item())
        out.append(
            {
                "row": row,
                "shape": shape,
                "dtype": dtype,
                "factor": cal * scale,
                "scale_factor": scale,
                "start": float(sh["frame_start_time"].item()) / 1000.0,
                "duration": float(sh["frame_duration"].item()) / 1000.0,
                "decay": float(sh["decay_corr_fctr"].item()),
            }
        )
    if not out:
        raise ReadError(f"{path}: no frame")
    return out


def _text(value: Any) -> str:
    raw = value.item() if hasattr(value, "item") else value
    if isinstance(raw, bytes):
        raw = raw.split(b"\0")[0].decode("latin-1")
    return str(raw).strip()


def _meta(header: Any, frames: list[dict]) -> Meta:
    meta = Meta(modality="PT")
    bids: dict[str, Any] = {
        "FrameTimesStart": [f["start"] for f in frames],
        "FrameDuration": [f["duration"] for f in frames],
        "DecayCorrectionFactor": [f["decay"] for f in frames],
    }
    units = _text(header["data_units"])
    if units:
        bids["Units"] = units
    isotope = _text(header["isotope_name"])
    if isotope:
        bids["TracerRadionuclide"] = isotope
    tracer = _text(header["radiopharmaceutical"])
    if tracer:
        bids["TracerName"] = tracer
    halflife = float(header["isotope_halflife"].item())
    if halflife > 0:
        bids["RadionuclideHalfLife"] = halflife
    meta.bids = bids
    description = _text(header["study_description"])
    meta.description = description or None
    for key, field in (("patient_id", "id"), ("patient_name", "name")):
        value = _text(header[key])
        if value:
            meta.patient[field] = value
    return meta


def _extras(header: Any, frames: list[dict]) -> dict[str, Any]:
    return {
        "sw_version": int(header["sw_version"]),
        "file_type": int(header["file_type"]),
        "patient_orientation": int(header["patient_orientation"]),
        "ecat_calibration_factor": float(header["ecat_calibration_factor"].item()),
        "calibration_units": int(header["calibration_unitS"]),
        "scale_factors": [f["scale_factor"] for f in frames],
        "scan_start_time": int(header["scan_start_time"]),
        "dose_start_time": int(header["dose_start_time"]),
    }


class EcatProxy(LazyArray):
    """Frames read on demand: stored values, or real values when factors differ."""

    def __init__(
        self,
        path: Path,
        header: Any,
        mlist: np.ndarray,
        rows: list[int],
        shape: tuple[int, ...],
        factors: np.ndarray,
        dtype: np.dtype,
        *,
        scaled: bool,
    ) -> None:
        self._path = path
        self._header = header
        self._mlist = mlist
        self._rows = rows
        self._shape = shape
        self._factors = factors
        self._dtype = np.dtype(dtype)
        self._scaled = scaled

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return 4

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self._shape, dtype=self._dtype)
        with self._path.open("rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub = nib.ecat.EcatSubHeader(self._header, self._mlist, fh)
            for i, row in enumerate(self._rows):
                raw = np.asarray(sub.raw_data_from_fileobj(row))
                if self._scaled:
                    out[..., i] = raw.astype(np.float64) * self._factors[i]
                else:
                    out[..., i] = raw
        return out if dtype is None else out.astype(dtype)


class _Squeezed:
    """A one-frame file as a 3-D volume."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self.shape = tuple(data.shape[:3])
        self.dtype = np.dtype(data.dtype)
        self.ndim = 3

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self._data).reshape(self.shape)
        return arr if dtype is None else arr.astype(dtype)
