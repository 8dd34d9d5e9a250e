"""Read NRRD (attached ``.nrrd`` or detached ``.nhdr``) into the canonical image.

World coordinates follow what 3D Slicer shows: ``space directions`` and ``space origin`` in
the file's ``space`` converted to RAS (LPS and LAS flipped as Slicer and ITK do). Spaces that
name no anatomy (``scanner-xyz``, ``3D-right-handed``, ``3D-left-handed`` or a bare ``space
dimension``) and files without any space are taken as LPS, as ITK, and so Slicer's volume
loader, take them. Axes without a space direction (``none``) are not spatial: list/time axes
follow i, j, k; component axes (vector, RGB, tensor...) go last, wherever they are stored.
Measurement frames are kept with the values, not applied (see ``extras["nrrd"]``).
"""

from __future__ import annotations

import bz2
import math
from pathlib import Path
from typing import Any

import numpy as np
from anyconv.errors import ReadError
from anyconv.model import Image, LazyArray, Meta, empty_array
from anyconv.specs import ReadOptions
from zlib_ng import zlib_ng as zlib

from ._header import (
    ENCODINGS,
    TYPES,
    DataFiles,
    Header,
    axis_items,
    data_files,
    fail,
    floats,
    ints,
    parse_header,
    quoted,
    vectors,
)

# Space name -> (anatomical code of the three space axes, has a time axis, taken as ITK does).
_SPACES: dict[str, tuple[str, bool, bool]] = {
    "right-anterior-superior": ("RAS", False, False),
    "ras": ("RAS", False, False),
    "left-anterior-superior": ("LAS", False, False),
    "las": ("LAS", False, False),
    "left-posterior-superior": ("LPS", False, False),
    "lps": ("LPS", False, False),
    "right-anterior-superior-time": ("RAS", True, False),
    "rast": ("RAS", True, False),
    "left-anterior-superior-time": ("LAS", True, False),
    "last": ("LAS", True, False),
    "left-posterior-superior-time": ("LPS", True, False),
    "lpst": ("LPS", True, False),
    "scanner-xyz": ("LPS", False, True),
    "scanner-xyz-time": ("LPS", True, True),
    "3d-right-handed": ("LPS", False, True),
    "3d-left-handed": ("LPS", False, True),
    "3d-right-handed-time": ("LPS", True, True),
    "3d-left-handed-time": ("LPS", True, True),
}
_WORDS = {
    "right": "R", "left": "L", "anterior": "A", "posterior": "P", "superior": "S",
    "inferior": "I",
}  # fmt: skip
_RAS_AXIS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0),
             "I": (2, -1.0)}  # fmt: skip

#: Axis kinds that hold the components of one value; they go last in the canonical array.
_COMPONENT_KINDS = {
    "vector": "vector", "covariant-vector": "vector", "normal": "vector",
    "2-vector": "vector", "3-vector": "vector", "4-vector": "vector", "3-gradient": "vector",
    "3-normal": "vector", "point": "vector", "hsv-color": "vector", "xyz-color": "vector",
    "rgb-color": "rgb", "3-color": "rgb", "rgba-color": "rgba", "4-color": "rgba",
    "quaternion": "quaternion", "complex": "complex",
    "2d-symmetric-matrix": "symmetric matrix", "2d-masked-symmetric-matrix": "symmetric matrix",
    "3d-symmetric-matrix": "symmetric matrix", "3d-masked-symmetric-matrix": "symmetric matrix",
    "2d-matrix": "general matrix", "2d-masked-matrix": "general matrix",
    "3d-matrix": "general matrix", "3d-masked-matrix": "general matrix",
}  # fmt: skip
_DOMAIN_KINDS = {"domain", "space", "???", "none", ""}

_DICOM_META = {
    "Modality": ("modality", str, 1.0),
    "Manufacturer": ("manufacturer", str, 1.0),
    "ManufacturerModelName": ("model_name", str, 1.0),
    "SeriesDescription": ("series_description", str, 1.0),
    "ProtocolName": ("protocol_name", str, 1.0),
    "SeriesNumber": ("series_number", int, 1.0),
    "RepetitionTime": ("repetition_time", float, 1e-3),
    "EchoTime": ("echo_time", float, 1e-3),
    "InversionTime": ("inversion_time", float, 1e-3),
    "FlipAngle": ("flip_angle", float, 1.0),
}
_UNITS = {"mm": "mm", "millimeter": "mm", "m": "m", "meter": "m", "um": "um", "micron": "um",
          "cm": "cm"}  # fmt: skip
#: Largest voxel data we agree to describe (1 TiB); a header claiming more is refused.
MAX_DATA_BYTES = 1 << 40
#: With a negative byte skip on compressed data, how much may precede the values.
MAX_LEADING_BYTES = 1 << 30
_TIME_SCALE = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "usec": 1e-6}


def read_nrrd(path: Path, options: ReadOptions) -> Image:
    """Read one NRRD image; voxel data stays on disk until asked for.

    Detached data files outside the header's folder tree are refused unless
    ``options.allow_outside`` or ``-O allow_outside=1``.
    """
    path = Path(path)
    hdr = parse_header(path)
    allow = options.allow_outside or str(options.extra.get("allow_outside", "")).lower() in (
        "1", "true", "yes", "on",
    )  # fmt: skip
    sizes = ints(hdr, "sizes")
    encoding = ENCODINGS.get(hdr.fields["encoding"].strip().lower())
    if encoding is None:
        raise fail(path, f"unknown encoding {hdr.fields['encoding']!r}")
    dtype = _dtype(hdr)
    files = data_files(hdr, allow)
    line_skip = _int_field(hdr, "line skip", 0)
    byte_skip = _int_field(hdr, "byte skip", 0)
    if line_skip < 0:
        raise fail(path, f"line skip {line_skip} is negative")
    if byte_skip < 0 and encoding in ("ascii", "hex"):
        raise fail(path, f"byte skip {byte_skip} with {encoding} encoding")
    total = math.prod(sizes)
    if total * dtype.itemsize > MAX_DATA_BYTES:
        raise fail(path, f"sizes {sizes} describe {total * dtype.itemsize} bytes of data")
    per_file = total // len(files.files)
    if encoding == "raw":
        _check_raw_sizes(hdr, files, per_file * dtype.itemsize, byte_skip)
    geo = _geometry(hdr, sizes, dtype)
    loader = _Loader(hdr, files, dtype, encoding, line_skip, byte_skip, per_file, sizes)
    data = NrrdData(loader, geo["order"], geo["shape"], geo["complex"])
    image = Image(data, geo["affine"], meta=_meta(hdr, geo), source=str(path), format="nrrd")
    image.notes.extend(geo["notes"])
    image.extras["nrrd"] = {
        "version": hdr.version,
        "fields": dict(hdr.fields),
        "keyvalues": [[k, v] for k, v in hdr.keyvalues],
        "comments": list(hdr.comments),
        "order": geo["order"],
        "complex": geo["complex"],
        "shape": list(geo["shape"]),
        "affine": geo["affine"].tolist(),
        "measurement_frame_ras": geo["mf_ras"],
        "encoding": encoding,
    }
    return image


def _int_field(hdr: Header, name: str, default: int) -> int:
    value = hdr.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise fail(hdr.path, f"{name} {value!r} is not an integer") from None


def _dtype(hdr: Header) -> np.dtype:
    name = " ".join(hdr.fields["type"].split()).lower()
    if name == "block":
        raise ReadError(f"{hdr.path}: NRRD type 'block' (opaque records) is not supported")
    code = TYPES.get(name)
    if code is None:
        raise fail(hdr.path, f"unknown type {hdr.fields['type']!r}")
    dtype = np.dtype(code)
    encoding = ENCODINGS.get(hdr.fields["encoding"].strip().lower())
    if dtype.itemsize > 1 and encoding != "ascii":
        endian = (hdr.get("endian") or "").strip().lower()
        if endian not in ("little", "big"):
            raise fail(hdr.path, f"endian {hdr.get('endian')!r} (little or big needed)")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    return dtype


def _check_raw_sizes(hdr: Header, files: DataFiles, need: int, byte_skip: int) -> None:
    """Refuse raw data files too short for the sizes, before anything is allocated."""
    for f in files.files:
        have = f.stat().st_size - (files.attached_offset or 0)
        # byte skip -N-1: the data ends N bytes before the end of the file
        want = need + (byte_skip if byte_skip >= 0 else -byte_skip - 1)
        if have < want:
            raise ReadError(
                f"{hdr.path}: truncated: sizes need {want} bytes of data, {f.name} has {have}"
            )


# -- geometry ------------------------------------------------------------------------------
def _parse_space(hdr: Header) -> tuple[np.ndarray | None, int, bool, str | None]:
    """(RAS-from-space 3x3, space dimension, has time, note) of the header's space."""
    name = hdr.get("space")
    sdim_text = hdr.get("space dimension")
    if name is None and sdim_text is None:
        return None, 0, False, None
    if name is not None:
        key = name.strip().lower()
        note = None
        if key in _SPACES:
            code, has_time, itk = _SPACES[key]
            if itk:
                note = f"space {name!r} names no anatomy: taken as LPS, as ITK and Slicer do"
        else:
            code, has_time = _generic_space(hdr, key)
            note = f"space {name!r} is not a teem space name: read as anatomical axes {code}"
        sdim = 4 if has_time else 3
        if sdim_text is not None and int(sdim_text) != sdim:
            raise fail(hdr.path, f"space dimension {sdim_text} disagrees with space {name!r}")
    else:
        try:
            sdim = int(sdim_text)
        except ValueError:
            raise fail(hdr.path, f"space dimension {sdim_text!r}") from None
        if not 1 <= sdim <= 3:
            raise fail(hdr.path, f"space dimension {sdim} without a space name is unsupported")
        code, has_time = "LPS", False
        note = "space dimension without a space name: taken as LPS, as ITK and Slicer do"
    to_ras = np.zeros((3, 3))
    for axis, letter in enumerate(code):
        ras, sign = _RAS_AXIS[letter]
        to_ras[ras, axis] = sign
    return to_ras, sdim, has_time, note


def _generic_space(hdr: Header, key: str) -> tuple[str, bool]:
    """``LPI``, ``left-posterior-inferior`` and the like (an extension beyond teem's names)."""
    has_time = False
    words = key.split("-")
    if len(words) > 1:
        if words[-1] == "time":
            has_time, words = True, words[:-1]
        letters = [_WORDS.get(w) for w in words]
        code = "".join(c for c in letters if c) if all(letters) else ""
    else:
        code = key.upper()
        if len(code) == 4 and code.endswith("T"):
            has_time, code = True, code[:3]
    if len(code) != 3 or any(c not in _RAS_AXIS for c in code):
        raise fail(hdr.path, f"unknown space {hdr.get('space')!r}")
    if sorted(_RAS_AXIS[c][0] for c in code) != [0, 1, 2]:
        raise fail(hdr.path, f"space {hdr.get('space')!r} names one anatomical axis twice")
    return code, has_time


def _geometry(hdr: Header, sizes: list[int], dtype: np.dtype) -> dict[str, Any]:
    """Canonical axis order, shape and RAS affine of a header."""
    path = hdr.path
    dim = len(sizes)
    notes: list[str] = []
    kinds = [k.lower() for k in axis_items(hdr, "kinds")] if "kinds" in hdr.fields else [""] * dim
    to_ras, sdim, has_time, note = _parse_space(hdr)
    if note:
        notes.append(note)
    spatial: list[int] = []
    timeish: list[int] = []
    columns: list[np.ndarray] = []
    origin = np.zeros(3)
    time_step: float | None = None
    if to_ras is not None and "space directions" in hdr.fields:
        dirs = vectors(hdr, "space directions")
        for axis, vec in enumerate(dirs):
            if vec is None:
                continue
            if len(vec) != sdim:
                raise fail(path, f"space direction {axis} has {len(vec)} values, space {sdim}")
            if not np.all(np.isfinite(vec)):
                raise fail(path, f"space direction {axis} is not finite")
            v3 = np.zeros(3)
            v3[: min(sdim, 3)] = vec[:3]
            if has_time and not np.any(v3) and vec[3] != 0:
                timeish.append(axis)
                time_step = abs(float(vec[3]))
                continue
            if len(spatial) == 3:
                raise fail(path, "more than three spatial axes")
            spatial.append(axis)
            columns.append(to_ras @ v3)
        if "space origin" in hdr.fields:
            orig = vectors(hdr, "space origin")
            if len(orig) != 1 or orig[0] is None or len(orig[0]) != sdim:
                raise fail(path, f"space origin must be one vector of {sdim} values")
            o = orig[0]
            if np.all(np.isfinite(o[:3])):
                o3 = np.zeros(3)
                o3[: min(sdim, 3)] = o[:3]
                origin = to_ras @ o3
            else:
                notes.append("space origin is not finite: origin taken as 0")
    else:
        if to_ras is not None:
            notes.append("space without space directions: axes taken from spacings")
        else:
            to_ras = np.diag([-1.0, -1.0, 1.0])  # ITK reads a spaceless NRRD as LPS
            if dim > 0:
                notes.append("no space in the header: axes taken as LPS, as ITK and Slicer do")
        spacings = floats(hdr, "spacings") if "spacings" in hdr.fields else [np.nan] * dim
        mins = floats(hdr, "axis mins") if "axis mins" in hdr.fields else [np.nan] * dim
        maxs = floats(hdr, "axis maxs") if "axis maxs" in hdr.fields else [np.nan] * dim
        centers = axis_items(hdr, "centerings") if "centerings" in hdr.fields else [""] * dim
        o3 = np.zeros(3)
        for axis in range(dim):
            if kinds[axis] not in _DOMAIN_KINDS or len(spatial) == 3:
                continue
            step = spacings[axis] if np.isfinite(spacings[axis]) else np.nan
            cell = centers[axis].lower() != "node"
            if np.isfinite(mins[axis]) and np.isfinite(maxs[axis]):
                step = (maxs[axis] - mins[axis]) / (
                    sizes[axis] if cell else max(sizes[axis] - 1, 1)
                )
            if not np.isfinite(step) or step == 0:
                step = 1.0
            if np.isfinite(mins[axis]):
                o3[len(spatial)] = mins[axis] + (step / 2 if cell else 0.0)
            v3 = np.zeros(3)
            v3[len(spatial)] = step
            spatial.append(axis)
            columns.append(to_ras @ v3)
        origin = to_ras @ o3
    others = [a for a in range(dim) if a not in spatial and a not in timeish]
    comps = [a for a in others if kinds[a] in _COMPONENT_KINDS]
    extra = [a for a in others if a not in comps]
    time_axis = timeish[0] if timeish else None
    if "spacings" in hdr.fields and time_step is None and extra:
        # a spacing on the first list/time axis is the time between volumes
        spacings = floats(hdr, "spacings")
        first = extra[0]
        if kinds[first] in ("time", "list", "???", "") and np.isfinite(spacings[first]):
            time_step, time_axis = float(spacings[first]), first
    order = spatial + timeish + extra + comps
    affine = np.eye(4)
    for c, col in enumerate(columns):
        affine[:3, c] = col
    if len(columns) < 3:
        _complete(affine, len(columns))
    affine[:3, 3] = origin
    shape = [sizes[a] for a in spatial]
    if len(spatial) < 3 and (timeish or extra or comps):
        shape += [1] * (3 - len(spatial))
    shape += [sizes[a] for a in timeish + extra + comps]
    is_complex = (
        len(comps) == 1
        and kinds[comps[0]] == "complex"
        and sizes[comps[0]] == 2
        and dtype.kind == "f"
    )
    if is_complex:
        shape = shape[:-1]
    intent = None
    if len(comps) == 1 and not is_complex:
        intent = _COMPONENT_KINDS[kinds[comps[0]]]
    elif len(comps) > 1:
        intent = "vector"
    mf_ras = None
    if "measurement frame" in hdr.fields:
        frame = vectors(hdr, "measurement frame")
        if any(v is not None and len(v) != len(frame) for v in frame):
            raise fail(path, "measurement frame must be N vectors of N values")
        if frame and all(v is not None for v in frame):
            m = np.array(frame, dtype=np.float64).T  # each vector is a column
            n = min(m.shape[0], 3)
            full = np.eye(3)
            full[:n, :n] = m[:n, :n]
            mf_ras = (to_ras @ full).tolist() if to_ras is not None else full.tolist()
            if comps:
                notes.append(
                    "measurement frame kept with the values, not applied: component values "
                    "are in the measurement frame (extras['nrrd']['measurement_frame_ras'])"
                )
    return {
        "order": order,
        "shape": tuple(shape),
        "affine": affine,
        "complex": is_complex,
        "intent": intent,
        "time_step": time_step,
        "notes": notes,
        "mf_ras": mf_ras,
        "kinds": kinds,
        "time_axis": time_axis,
    }


def _complete(affine: np.ndarray, n: int) -> None:
    """Give axes without a direction unit columns orthogonal to the given ones."""
    cols = [affine[:3, c] for c in range(n)]
    for c in range(n, 3):
        if c == 2 and n == 2:
            cross = np.cross(cols[0], cols[1])
            norm = np.linalg.norm(cross)
            if norm > 0:
                cols.append(cross / norm)
                affine[:3, c] = cols[-1]
                continue
        basis = [b for b in np.eye(3)]
        for b in basis:
            v = b - sum((b @ u) / (u @ u) * u for u in cols if np.any(u))
            if np.linalg.norm(v) > 1e-6:
                cols.append(v / np.linalg.norm(v))
                break
        affine[:3, c] = cols[-1]


# -- metadata ------------------------------------------------------------------------------
def _meta(hdr: Header, geo: dict[str, Any]) -> Meta:
    meta = Meta(intent=geo["intent"])
    if "space units" in hdr.fields:
        units = quoted(hdr, "space units")
        if units:
            meta.spatial_unit = _UNITS.get(units[0].strip().lower(), units[0])
    if hdr.get("content"):
        meta.description = hdr.fields["content"]
    step = geo["time_step"]
    if step is not None:
        scale = 1.0
        if "units" in hdr.fields and geo["time_axis"] is not None:
            unit = axis_items(hdr, "units")[geo["time_axis"]].strip().lower()
            scale = _TIME_SCALE.get(unit, 1.0)
        meta.repetition_time = float(step) * scale
    for key, value in hdr.keyvalues:
        if key.startswith("DICOM_"):
            name = key.split("_", 3)[-1]
            if name in _DICOM_META:
                attr, cast, scale = _DICOM_META[name]
                try:
                    val = cast(value.strip())
                except ValueError:
                    continue
                if getattr(meta, attr) is None:
                    setattr(meta, attr, val * scale if cast is float else val)
    _diffusion(hdr, geo, meta)
    return meta


def _diffusion(hdr: Header, geo: dict[str, Any], meta: Meta) -> None:
    """DWMRI_b-value and DWMRI_gradient_NNNN keys as bvals and RAS bvecs (frame applied)."""
    kv = dict(hdr.keyvalues)
    if "DWMRI_b-value" not in kv or len(geo["shape"]) != 4:
        return
    try:
        bmax = float(kv["DWMRI_b-value"])
        nvol = geo["shape"][3]
        grads = np.array(
            [[float(t) for t in kv[f"DWMRI_gradient_{i:04d}"].split()] for i in range(nvol)]
        )
    except (KeyError, ValueError):
        return
    if grads.shape != (nvol, 3):
        return
    frame = np.asarray(geo["mf_ras"] if geo["mf_ras"] is not None else np.eye(3))
    world = grads @ frame.T
    norms = np.linalg.norm(grads, axis=1)
    meta.bvals = [float(bmax * n * n) for n in norms]
    safe = np.where(norms > 0, np.linalg.norm(world, axis=1), 1.0)
    meta.bvecs = (world / safe[:, None]).tolist()


# -- data ----------------------------------------------------------------------------------
class _Loader:
    """Reads the stored values of every data file, in NRRD axis order (first axis fastest)."""

    def __init__(
        self,
        hdr: Header,
        files: DataFiles,
        dtype: np.dtype,
        encoding: str,
        line_skip: int,
        byte_skip: int,
        per_file: int,
        sizes: list[int],
    ) -> None:
        self.hdr = hdr
        self.files = files
        self.dtype = dtype
        self.encoding = encoding
        self.line_skip = line_skip
        self.byte_skip = byte_skip
        self.per_file = per_file
        self.sizes = sizes

    def load(self) -> np.ndarray:
        """All values, native byte order, shaped as ``sizes`` in Fortran order."""
        n_files = len(self.files.files)
        if n_files == 1:
            flat = self._read_one(self.files.files[0])
        else:
            flat = np.empty(self.per_file * n_files, dtype=self.dtype)
            for i, f in enumerate(self.files.files):
                flat[i * self.per_file : (i + 1) * self.per_file] = self._read_one(f)
        if not flat.dtype.isnative:
            flat = flat.astype(flat.dtype.newbyteorder("="))
        return flat.reshape(self.sizes, order="F")

    def _read_one(self, path: Path) -> np.ndarray:
        count = self.per_file
        nbytes = count * self.dtype.itemsize
        try:
            with path.open("rb") as fh:
                if self.files.attached_offset is not None:
                    fh.seek(self.files.attached_offset)
                for _ in range(self.line_skip):
                    if not fh.readline():
                        raise self._short(path, "line skip runs past the end of the file")
                if self.encoding == "raw":
                    return self._raw(fh, path, count, nbytes)
                if self.encoding in ("gzip", "bzip2"):
                    return self._compressed(fh.read(), path, count, nbytes)
                text = fh.read()[self.byte_skip :]
        except OSError as exc:
            raise ReadError(f"{self.hdr.path}: cannot read {path.name}: {exc}") from exc
        if self.encoding == "hex":
            digits = b"".join(text.split())
            if len(digits) < 2 * nbytes:
                raise self._short(path, f"{len(digits) // 2} hex bytes, {nbytes} needed")
            try:
                raw = bytes.fromhex(digits[: 2 * nbytes].decode("ascii"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ReadError(f"{self.hdr.path}: bad hex data in {path.name}") from exc
            return np.frombuffer(raw, dtype=self.dtype, count=count)
        tokens = text.replace(b",", b" ").split()
        if len(tokens) < count:
            raise self._short(path, f"{len(tokens)} ASCII values, {count} needed")
        try:
            return np.array([t.decode("ascii") for t in tokens[:count]]).astype(self.dtype)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReadError(f"{self.hdr.path}: bad ASCII value in {path.name}: {exc}") from exc

    def _raw(self, fh: Any, path: Path, count: int, nbytes: int) -> np.ndarray:
        if self.byte_skip < 0:
            start = fh.tell()
            fh.seek(0, 2)
            end = fh.tell() - (-self.byte_skip - 1)
            if end - nbytes < start:
                raise self._short(path, f"{end - start} bytes, {nbytes} needed at the end")
            fh.seek(end - nbytes)
        elif self.byte_skip:
            fh.seek(self.byte_skip, 1)
        out = empty_array((count,), self.dtype)
        got = fh.readinto(memoryview(out).cast("B"))
        if got != nbytes:
            raise self._short(path, f"{got} bytes of data, {nbytes} needed")
        return out

    def _compressed(self, comp: bytes, path: Path, count: int, nbytes: int) -> np.ndarray:
        """Values after decompression and byte skip (negative: counted from the end)."""
        if self.byte_skip >= 0:
            buf = self._decompress(comp, path, nbytes + self.byte_skip)
            return np.frombuffer(buf, dtype=self.dtype, count=count, offset=self.byte_skip)
        backwards = -self.byte_skip - 1
        # The data size before the values is unknown: decompress it all, within reason.
        limit = nbytes + backwards + MAX_LEADING_BYTES
        buf = self._decompress(comp, path, limit, exact=False)
        if len(buf) < nbytes + backwards:
            raise self._short(path, f"{len(buf)} bytes after decoding, {nbytes + backwards} needed")
        if len(buf) == limit:
            raise ReadError(f"{self.hdr.path}: more than {limit} bytes of {self.encoding} data")
        end = len(buf) - backwards
        return np.frombuffer(buf, dtype=self.dtype, count=count, offset=end - nbytes)

    def _decompress(self, comp: bytes, path: Path, need: int, exact: bool = True) -> bytes:
        """Decompress at most ``need`` bytes (so a lying header cannot blow up memory)."""
        parts: list[bytes] = []
        got = 0
        try:
            while got < need and comp:
                if self.encoding == "gzip":
                    d = zlib.decompressobj(zlib.MAX_WBITS | 32)
                    chunk = d.decompress(comp, need - got)
                    rest = d.unused_data
                else:
                    d = bz2.BZ2Decompressor()
                    chunk = d.decompress(comp, need - got)
                    rest = d.unused_data if d.eof else b""
                parts.append(chunk)
                got += len(chunk)
                if not chunk and not rest:
                    break
                comp = rest
        except (zlib.error, OSError, EOFError) as exc:
            raise ReadError(
                f"{self.hdr.path}: corrupt {self.encoding} data in {path.name}: {exc}"
            ) from exc
        if got < need and exact:
            raise self._short(path, f"{got} bytes after {self.encoding} decoding, {need} needed")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _short(self, path: Path, what: str) -> ReadError:
        return ReadError(f"{self.hdr.path}: truncated data in {path.name}: {what}")


class NrrdData(LazyArray):
    """Lazy voxel data in canonical order (i, j, k[, t...], components last)."""

    def __init__(
        self, loader: _Loader, order: list[int], shape: tuple[int, ...], is_complex: bool
    ) -> None:
        self._loader = loader
        self._order = order
        self._shape = tuple(int(s) for s in shape)
        self._complex = is_complex
        base = loader.dtype.newbyteorder("=")
        self._dtype = np.dtype(f"c{base.itemsize * 2}") if is_complex else base

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self._loader.load().transpose(self._order)
        if self._complex:
            arr = np.ascontiguousarray(arr).view(self._dtype)[..., 0]
        arr = arr.reshape(self._shape, order="A") if arr.shape != self._shape else arr
        return arr if dtype is None else arr.astype(dtype)
