"""Read FreeSurfer MGH/MGZ: nibabel's header layout, our own single-pass data access.

nibabel reads an ``.mgz`` twice (once to seek to the footer behind the data, once for the
data); we inflate it once, bounded by what the header promises. The affine is the scanner
vox2ras (``Mdc``, ``delta``, ``c_ras``) computed in float64 from the stored float32 fields;
FreeSurfer's tkregister vox2ras is kept in ``extras["mgh"]``.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import deflate as _deflate
from anyconv.errors import ReadError
from anyconv.lazy import import_nibabel
from anyconv.model import Image, Meta
from anyconv.specs import ReadOptions

_mghformat = import_nibabel().freesurfer.mghformat
DATA_OFFSET, MGHHeader = _mghformat.DATA_OFFSET, _mghformat.MGHHeader
footer_dtype, header_dtype = _mghformat.footer_dtype, _mghformat.header_dtype

#: MGH type codes nibabel and FreeSurfer's load_mgh.m know.
DTYPES = {0: "u1", 1: "i4", 3: "f4", 4: "i2", 10: "u2"}
HEADER_BYTES = header_dtype.itemsize
FOOTER_BYTES = footer_dtype.itemsize
#: tags after the footer (command lines, talairach file name...) are kept up to this size.
MAX_TAG_BYTES = 16 * 1024 * 1024
_GZIP = b"\x1f\x8b"


def read_mgh(path: Path, options: ReadOptions) -> Image:
    """Read one MGH or MGZ volume (3-D, or 4-D with frames)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == _GZIP:
                raw, hdr = _inflate(fh.read(), path)
                data: Any = _BufferData(raw, hdr)
                tail = raw[_footer_offset(hdr) :]
            else:
                hdr = _parse(fh.read(DATA_OFFSET), path)
                size = path.stat().st_size
                need = DATA_OFFSET + _data_bytes(hdr)
                if size < need:
                    raise ReadError(
                        f"{path}: truncated: header promises {need} bytes, file has {size}"
                    )
                fh.seek(need)
                tail = fh.read(MAX_TAG_BYTES + FOOTER_BYTES)
                data = _FileData(path, hdr)
    except OSError as exc:
        raise ReadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    footer = tail[:FOOTER_BYTES].ljust(FOOTER_BYTES, b"\x00")
    fields = np.frombuffer(hdr, dtype=header_dtype)[0]
    header = MGHHeader(hdr + footer, check=False)
    image = Image(data)
    if int(fields["goodRASFlag"]) > 0:
        mdc, delta, c_ras = fields["Mdc"].T, fields["delta"], fields["Pxyz_c"]
    else:
        # FreeSurfer's mghRead: no valid cosines -> coronal (LIA), 1 mm, centre at 0.
        # (nibabel substitutes LSP here; we follow the format's owner.)
        mdc, delta, c_ras = CORONAL, np.ones(3), np.zeros(3)
        image.notes.append(
            f"goodRASFlag {int(fields['goodRASFlag'])}: no direction cosines, "
            "FreeSurfer's default coronal (LIA) 1 mm geometry used"
        )
    image.affine = vox2ras(mdc, delta, c_ras, fields["dims"][:3])
    image.meta = _meta(header)
    image.extras["mgh"] = _extras(header, fields, image.affine, tail[FOOTER_BYTES:])
    return image


#: FreeSurfer's MRI_CORONAL direction cosines (columns: x, y, z voxel axes in RAS).
CORONAL = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def vox2ras(mdc: Any, delta: Any, c_ras: Any, dims: Any) -> np.ndarray:
    """Scanner vox2ras: ``Mdc * delta``, centre voxel (``dims / 2``) at ``c_ras``; float64.

    ``mdc`` has the voxel axes' direction cosines as columns; the float32 header fields are
    combined in float64, so no rounding is added to what the file stores.
    """
    mdc = np.asarray(mdc, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    c_ras = np.asarray(c_ras, dtype=np.float64)
    dims = np.asarray(dims, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = mdc * delta[None, :]
    affine[:3, 3] = c_ras - affine[:3, :3] @ (dims / 2.0)
    return affine


def _parse(block: bytes, path: Path) -> bytes:
    """The fixed header bytes, checked: version 1, positive sizes, a known type."""
    if len(block) < HEADER_BYTES:
        raise ReadError(f"{path}: truncated: {len(block)} bytes, an MGH header needs 284")
    arr = np.frombuffer(block[:HEADER_BYTES], dtype=header_dtype)[0]
    if int(arr["version"]) != 1:
        raise ReadError(f"{path}: not an MGH file (version {int(arr['version'])}, expected 1)")
    dims = [int(d) for d in arr["dims"]]
    if any(d <= 0 for d in dims):
        raise ReadError(f"{path}: MGH dimensions must be positive, got {dims}")
    if int(arr["type"]) not in DTYPES:
        raise ReadError(f"{path}: unknown MGH data type code {int(arr['type'])}")
    if not np.all(np.isfinite(arr["delta"])) or not np.all(np.isfinite(arr["Pxyz_c"])):
        raise ReadError(f"{path}: non-finite voxel size or centre in the MGH header")
    if not np.all(np.isfinite(arr["Mdc"])):
        raise ReadError(f"{path}: non-finite direction cosines in the MGH header")
    return block[:HEADER_BYTES]


def _dtype(hdr: bytes) -> np.dtype:
    code = int(np.frombuffer(hdr, dtype=header_dtype)[0]["type"])
    return np.dtype(">" + DTYPES[code])


def _shape(hdr: bytes) -> tuple[int, ...]:
    dims = tuple(int(d) for d in np.frombuffer(hdr, dtype=header_dtype)[0]["dims"])
    return dims[:3] if dims[3] == 1 else dims


def _data_bytes(hdr: bytes) -> int:
    return math.prod(_shape(hdr)) * _dtype(hdr).itemsize


def _footer_offset(hdr: bytes) -> int:
    return DATA_OFFSET + _data_bytes(hdr)


def _inflate(compressed: bytes, path: Path) -> tuple[bytes, bytes]:
    """Inflate an .mgz once; never more than the header's data plus footer and tags."""
    d = _deflate.decompressobj(zlib.MAX_WBITS | 16)
    try:
        head = d.decompress(compressed, DATA_OFFSET)
        hdr = _parse(head, path)
        need = _data_bytes(hdr)
        if need > len(compressed) * 1100 + 1024:
            raise ReadError(
                f"{path}: {len(compressed)} compressed bytes cannot hold the {need} bytes "
                "the header asks for"
            )
        cap = need + FOOTER_BYTES + MAX_TAG_BYTES
        rest = b"" if d.eof else d.decompress(d.unconsumed_tail, cap)
    except _deflate.ERRORS as exc:
        raise ReadError(f"{path}: corrupt gzip data: {exc}") from exc
    raw = head + rest
    if len(raw) < DATA_OFFSET + need:
        raise ReadError(
            f"{path}: truncated: header promises {DATA_OFFSET + need} bytes, "
            f"the gzip stream holds {len(raw)}"
        )
    if not d.eof and len(rest) < cap:
        raise ReadError(f"{path}: truncated: the gzip stream ends early")
    return raw, hdr


class _BufferData:
    """Voxels of an inflated .mgz, made native-endian only when asked for."""

    def __init__(self, raw: bytes, hdr: bytes) -> None:
        self._raw = raw
        self._disk = _dtype(hdr)
        self.shape = _shape(hdr)
        self.dtype = self._disk.newbyteorder("=")
        self.ndim = len(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        n = math.prod(self.shape)
        arr = np.frombuffer(self._raw, dtype=self._disk, count=n, offset=DATA_OFFSET)
        arr = arr.astype(self.dtype).reshape(self.shape, order="F")
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]


class _FileData:
    """Voxels of an .mgh file, read from disk only when asked for."""

    def __init__(self, path: Path, hdr: bytes) -> None:
        self._path = path
        self._disk = _dtype(hdr)
        self.shape = _shape(hdr)
        self.dtype = self._disk.newbyteorder("=")
        self.ndim = len(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        n = math.prod(self.shape)
        # One pass: map the big-endian voxels and convert them into a native array.
        disk = np.memmap(self._path, dtype=self._disk, mode="r", offset=DATA_OFFSET, shape=(n,))
        try:
            arr = disk.astype(self.dtype)
        finally:
            del disk
        arr = arr.reshape(self.shape, order="F")
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]


def _meta(header: MGHHeader) -> Meta:
    """TR, TE, TI in seconds and flip angle in degrees (MGH stores ms and radians)."""
    meta = Meta()
    tr, te, ti, flip = (float(header[k]) for k in ("tr", "te", "ti", "flip_angle"))
    meta.repetition_time = tr / 1000.0 if tr > 0 else None
    meta.echo_time = te / 1000.0 if te > 0 else None
    meta.inversion_time = ti / 1000.0 if ti > 0 else None
    meta.flip_angle = math.degrees(flip) if flip > 0 else None
    return meta


def _extras(header: MGHHeader, fields: Any, affine: np.ndarray, tags: bytes) -> dict[str, Any]:
    """FreeSurfer's own view: tkr vox2ras, Mdc, c_ras as stored, dof, fov and the raw tags."""
    return {
        "vox2ras": affine.tolist(),
        "vox2ras_tkr": np.asarray(header.get_vox2ras_tkr(), dtype=np.float64).tolist(),
        "Mdc": np.asarray(fields["Mdc"], dtype=np.float64).T.tolist(),
        "delta": [float(v) for v in fields["delta"]],
        "c_ras": [float(v) for v in fields["Pxyz_c"]],
        "dims": [int(v) for v in fields["dims"]],
        "dof": int(header["dof"]),
        "goodRASFlag": int(fields["goodRASFlag"]),
        "fov": float(header["fov"]),
        "type": int(header["type"]),
        "tags": bytes(tags[:MAX_TAG_BYTES]),
    }
