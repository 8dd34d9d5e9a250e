"""Pixel decoding: each file read once, frames/tiles placed into the volume, lazily.

pydicom's pixel handlers decode every transfer syntax the installed codecs cover (GDCM,
pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls); 12-bit JPEG Extended, which none of those
decodes, goes through imagecodecs (libjpeg-turbo) when it is installed.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom  # noqa: TID253 - only reader.py imports this module
from anyconv.errors import AnyconvError, ReadError
from anyconv.io import usable_cores
from anyconv.model import LazyArray, empty_array
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: TID253 - only reader.py imports this module
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian  # noqa: TID253 - only reader.py imports this module

from .fastread import PIXEL_AT
from .scan import FILE_SIZE, Slice, file_size, hval
from .stack import Volume

#: Largest plausible lossless compression ratio before a header is taken for corrupt.
MAX_COMPRESSION_RATIO = 1000

_JPEG_FAMILY = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
}
_CODEC_HINT = {
    "1.2.840.10008.1.2.4.50": "python-gdcm or imagecodecs",
    "1.2.840.10008.1.2.4.51": "imagecodecs (12-bit JPEG Extended)",
    "1.2.840.10008.1.2.4.57": "python-gdcm",
    "1.2.840.10008.1.2.4.70": "python-gdcm",
    "1.2.840.10008.1.2.4.80": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.81": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg or python-gdcm",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (or pydicom's own RLE decoder)",
}


def stored_dtype(ds: Dataset) -> np.dtype:
    """Dtype of the stored values, as pydicom decodes them (12-bit unsigned fits int16)."""
    marked = getattr(ds, "_anyconv_float", None)  # set by the scan, which stops before it
    if marked is not None:
        return marked
    if "FloatPixelData" in ds:
        return np.dtype(np.float32)
    if "DoubleFloatPixelData" in ds:
        return np.dtype(np.float64)
    bits = int(hval(ds, "BitsAllocated", 16) or 16)
    stored = int(hval(ds, "BitsStored", bits) or bits)
    signed = int(hval(ds, "PixelRepresentation", 0) or 0) == 1
    if bits == 1:
        return np.dtype(np.uint8)
    size = {8: 1, 16: 2, 32: 4, 64: 8}.get(bits, 2)
    if int(hval(ds, "SamplesPerPixel", 1) or 1) > 1:
        return np.dtype(f"u{size}")
    if not signed and stored < bits:
        return np.dtype(f"i{size}")  # fits, and NIfTI tools prefer signed (as dcm2niix)
    return np.dtype(f"{'i' if signed else 'u'}{size}")


def _decode(path: Path) -> np.ndarray:
    """All frames of one file as (frames, rows, cols[, samples])."""
    try:
        # From memory: a file object would allocate whatever length a corrupt header
        # declares; a bytes buffer only ever returns what the file holds.
        ds = pydicom.dcmread(io.BytesIO(path.read_bytes()), force=True)
    except Exception as exc:
        raise ReadError(f"{path}: cannot re-read DICOM: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:
        # No meta header: say how pydicom found the dataset encoded.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ts = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
        ds.file_meta = FileMetaDataset() if meta is None else meta
        ds.file_meta.TransferSyntaxUID = ts
        ts = str(ts)
    try:
        if ts == "1.2.840.10008.1.2.4.51" and int(ds.get("BitsStored", 8) or 8) > 8:
            raise NotImplementedError("12-bit JPEG Extended: pydicom's codecs lack it")
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
        arr = _fallback(ds, ts, path, exc)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if nframes == 1:
        arr = arr[None, ...]
    if spp == 1 and arr.ndim != 3:
        raise ReadError(f"{path}: decoded pixel data has shape {arr.shape}")
    return arr


def _fallback(ds: Dataset, ts: str, path: Path, exc: Exception) -> np.ndarray:
    """12-bit JPEG (and others pydicom cannot) through imagecodecs, else a clear error."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ReadError(f"{path}: no pixel data (truncated file?)") from exc
    if ts in _JPEG_FAMILY:
        try:
            import imagecodecs
            from pydicom.encaps import generate_frames
        except ImportError:
            pass
        else:
            nframes = int(ds.get("NumberOfFrames", 1) or 1)
            frames = [
                np.asarray(imagecodecs.jpeg8_decode(f))
                for f in generate_frames(ds.PixelData, number_of_frames=nframes)
            ]
            arr = np.stack(frames) if nframes > 1 else frames[0]
            dtype = stored_dtype(ds)
            if int(ds.get("PixelRepresentation", 0) or 0) == 1 and arr.dtype.kind == "u":
                bits = int(ds.get("BitsStored", 16))
                arr = arr.astype(np.int32)
                arr = np.where(arr >= 1 << (bits - 1), arr - (1 << bits), arr)
            return arr.astype(dtype if int(ds.get("SamplesPerPixel", 1)) == 1 else arr.dtype)
    hint = _CODEC_HINT.get(ts)
    first = str(exc).strip().splitlines()
    detail = first[-1] if first else type(exc).__name__
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ReadError(f"{path}: no pixel data") from exc
    msg = f"{path}: cannot decode pixel data (transfer syntax {ts or '?'}): {detail}"
    raise ReadError(msg + (f"; install {hint}" if hint else "")) from exc


class VolumeProxy(LazyArray):
    """Lazy voxel array of one volume: ``shape``, ``dtype``, ``__array__``.

    Files are decoded once each when the array is asked for; with ``apply_scaling`` the
    per-slice slope/intercept are applied (float32) because they differ across the volume.
    """

    def __init__(
        self,
        vol: Volume,
        *,
        apply_scaling: bool,
        decoder: Callable[[Path], np.ndarray] = _decode,
        tilt_shifts: list[tuple[float, float]] | None = None,
        tilt_pad: tuple[int, int, int, int] = (0, 0, 0, 0),
        k_resample: list[tuple[int, int, float]] | None = None,
    ) -> None:
        first = vol.first
        self._vol = vol
        self._apply = apply_scaling
        self._decoder = decoder
        self._shifts = tilt_shifts
        self._resample = k_resample
        self._spp = int(first.ds.get("SamplesPerPixel", 1) or 1)
        base = stored_dtype(first.ds)
        resampled = apply_scaling or tilt_shifts or k_resample
        self._dtype = np.dtype(np.float32) if resampled else base
        nz = len(k_resample) if k_resample else vol.nz
        self._pad = tilt_pad if tilt_shifts else (0, 0, 0, 0)
        ni = first.cols + self._pad[0] + self._pad[1]
        nj = first.rows + self._pad[2] + self._pad[3]
        shape: tuple[int, ...] = (ni, nj, nz)
        if vol.nt > 1:
            shape += (vol.nt,)
        if self._spp > 1:
            shape += (self._spp,)
        self._shape = shape
        self._reorient: tuple[tuple[int, ...], tuple[bool, ...]] | None = None

    def reorient(self, perm: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> None:
        """Deliver the array with spatial axes permuted and flipped; nothing is decoded here.

        New axis n is old axis ``perm[n]``; ``flips`` are per old axis (as dcm2niix rotates
        3D acquisitions).
        """
        if tuple(perm) == (0, 1, 2) and not any(flips):
            return
        self._reorient = (tuple(perm), tuple(flips))
        old = self._shape
        self._shape = (old[perm[0]], old[perm[1]], old[perm[2]], *old[3:])

    def _expected_bytes(self) -> int:
        return int(np.prod(self._shape)) * self._dtype.itemsize

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        shape = self._stored_shape()
        if self._resample:
            stack = self._stack((*shape[:2], self._vol.nz, *shape[3:]))
            out = np.empty(shape, dtype=self._dtype, order="F")
            for k, (k0, k1, w) in enumerate(self._resample):
                out[:, :, k] = stack[:, :, k0] * np.float32(1 - w) + stack[:, :, k1] * np.float32(w)
        else:
            out = self._stack(shape)
        if self._reorient is not None:
            perm, flips = self._reorient
            index = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
            out = np.asfortranarray(np.transpose(out[index], (*perm, *range(3, out.ndim))))
        return out if dtype is None else out.astype(dtype)

    @property
    def streams(self) -> bool:
        """Whether ``fortran_blocks`` reads block by block.

        It does when the slices land as stored (no reorientation, resampling, tilt shift or
        colour) and each file's slices are consecutive in Fortran order (decoded once). A
        series of many compressed files is decoded whole first: its decoding forks worker
        processes, which must happen before a writer starts threads (a gzip output does).
        """
        runs = self._file_runs()
        return (
            self._reorient is None
            and not self._resample
            and self._shifts is None
            and self._spp == 1
            and runs is not None
            and not (
                sum(not _is_native(items[0].ds) for _, items in runs) >= PARALLEL_MIN_FILES
                and decode_workers() > 1
            )
        )

    def _file_runs(self) -> list[tuple[Path, list[Slice]]] | None:
        """The slices in Fortran order (k fastest, then t), grouped by file.

        ``None`` when a file's slices are not consecutive (it would be decoded twice).
        """
        if not hasattr(self, "_runs"):
            runs: list[tuple[Path, list[Slice]]] | None = []
            seen: set[Path] = set()
            for row in self._vol.grid:
                for sl in row:
                    if runs and runs[-1][0] == sl.path:
                        runs[-1][1].append(sl)
                    elif sl.path in seen:
                        runs = None
                        break
                    else:
                        seen.add(sl.path)
                        runs.append((sl.path, [sl]))
                if runs is None:
                    break
            self._runs = runs
        return self._runs

    def fortran_blocks(self, max_bytes: int) -> Iterator[np.ndarray]:
        """Blocks of whole slices read as they are asked for, into one reused buffer.

        A CT series written to ``.nii`` then never holds the volume (250 MB for 512x512x500)
        and the output is written while the files are still being read.
        """
        runs = self._file_runs() if self.streams else None
        if runs is None:
            yield np.asarray(self)
            return
        ni, nj = self._shape[:2]
        count = sum(len(items) for _, items in runs)
        per_block = max(1, min(count, max_bytes // (ni * nj * self._dtype.itemsize)))
        block = np.empty((ni, nj, per_block, 1), dtype=self._dtype, order="F")
        shape = block.shape
        filled = 0
        try:
            for (path, items), frames in zip(runs, self._frames_in_order(runs), strict=True):
                for sl in items:
                    self._place(block, frames, [(filled, 0, sl)], path, shape)
                    filled += 1
                    if filled == per_block:
                        yield block[:, :, :, 0]
                        filled = 0
            if filled:
                yield block[:, :, :filled, 0]
        except AnyconvError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()
            raise ReadError(
                f"{self._vol.first.path}: cannot read pixel data: "
                f"{first[0] if first else type(exc).__name__}"
            ) from exc

    def _frames_in_order(self, runs: list[tuple[Path, list[Slice]]]) -> Iterator[Any]:
        """Each run's decoded frames in turn.

        Compressed files are decoded ahead in worker processes (results in order);
        uncompressed ones are read when their turn comes.
        """
        if self._decoder is not _decode:
            for path, _ in runs:
                yield self._decoder(path)
            return
        compressed = [path for path, items in runs if not _is_native(items[0].ds)]
        decoded = _decode_all(compressed)
        buffers: dict = {}
        for path, items in runs:
            if not _is_native(items[0].ds):
                got, frames = next(decoded)
                assert got == path
                yield frames
                continue
            frames = read_native(path, items[0].ds, buffers)
            yield _decode(path) if frames is None else frames

    def _stored_shape(self) -> tuple[int, ...]:
        """Shape before any reorientation (column, flipped row, slice[, t, c])."""
        if self._reorient is None:
            return self._shape
        perm = self._reorient[0]
        spatial = [0, 0, 0]
        for new, old in enumerate(perm):
            spatial[old] = self._shape[new]
        return (*spatial, *self._shape[3:])

    def _stack(self, shape: tuple[int, ...]) -> np.ndarray:
        """The slices as stored (after per-slice scaling and tilt shifts), one per k."""
        out = empty_array(shape, self._dtype)
        if self._spp == 1:
            view = out.reshape((*out.shape[:3], -1), order="F")
        else:
            view = out.reshape((*out.shape[:3], -1, self._spp), order="F")
        by_file: dict[Path, list[tuple[int, int, Slice]]] = defaultdict(list)
        for t, row in enumerate(self._vol.grid):
            for k, sl in enumerate(row):
                by_file[sl.path].append((k, t, sl))
        buffers: dict = {}
        pending: list[Path] = []
        for path, items in by_file.items():
            frames = None
            if self._decoder is _decode:
                frames = read_native(path, items[0][2].ds, buffers)
                if frames is None:
                    pending.append(path)  # compressed or unusual: decoded below, in parallel
                    continue
            else:
                frames = self._decoder(path)
            self._place(view, frames, items, path, shape)
        for path, frames in _decode_all(pending):
            self._place(view, frames, by_file[path], path, shape)
        return out

    def _place(
        self,
        view: np.ndarray,
        frames: np.ndarray,
        items: list[tuple[int, int, Slice]],
        path: Path,
        shape: tuple[int, ...],
    ) -> None:
        """Put one decoded file's slices where they belong."""
        for k, t, sl in items:
            img = _pick(frames, sl, path)
            if self._apply:
                img = img.astype(np.float32) * np.float32(sl.slope) + np.float32(sl.inter)
            if self._shifts is not None:
                view[:, :, k, t] = _shift(img, self._shifts[k], self._pad, shape[:2])
                continue
            # i = column, j = flipped row: a row-reversed C image is this F slice.
            if self._spp == 1:
                view[:, :, k, t].T[...] = img[::-1]
            else:
                view[:, :, k, t] = np.swapaxes(img[::-1], 0, 1)



def decode_workers() -> int:
    """Processes decoding compressed files: ``$ANYCONV_DECODE_WORKERS``, else the cores (<= 4).

    JPEG, JPEG 2000 and JPEG-LS decoders hold the GIL (threads gained nothing for JPEG,
    measured), so files are decoded in forked processes.
    """
    if threading.active_count() > 1:
        # forking a multi-threaded process (a Dask worker, an application's thread pool) can
        # leave the child waiting forever on a lock another thread held: stay in-process
        return 1
    text = os.environ.get("ANYCONV_DECODE_WORKERS", "")
    if text.isdigit():
        return max(1, int(text))
    return usable_cores()


def fork_pool(workers: int) -> ProcessPoolExecutor | None:
    """Forked worker processes, or ``None``: the caller then works in-process.

    ``None`` for one worker, without ``fork``, in a daemon process or at a process limit.
    """
    if workers < 2 or "fork" not in mp.get_all_start_methods():
        return None
    try:
        return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    except (OSError, ValueError, AssertionError):
        return None


#: Fewer compressed files than this are decoded in this process (forking costs ~50 ms).
PARALLEL_MIN_FILES = 8


def _decode_all(paths: list[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """Decoded frames of each file, in order; in worker processes when it pays."""
    many = len(paths) >= PARALLEL_MIN_FILES
    pool = fork_pool(min(decode_workers(), len(paths))) if many else None
    if pool is None:
        for path in paths:
            yield path, _decode(path)
        return
    with pool:
        # a few files per task: fewer round trips, results still arrive in order
        yield from zip(paths, pool.map(_decode, paths, chunksize=4), strict=True)


_NATIVE = {
    "1.2.840.10008.1.2": "<",
    "1.2.840.10008.1.2.1": "<",
    "1.2.840.10008.1.2.2": ">",
}


def _is_native(ds: Dataset) -> bool:
    """Uncompressed transfer syntax (pixels readable straight from the file)."""
    meta = getattr(ds, "file_meta", None)
    return meta is not None and str(hval(meta, "TransferSyntaxUID", "") or "") in _NATIVE


def read_native(path: Path, ds: Dataset, buffers: dict | None = None) -> np.ndarray | None:
    """Uncompressed pixels straight from the file, when they are its last element.

    Reads (frames, rows, cols) without re-parsing the header; ``None`` whenever anything is
    unusual (trailing elements, signed data needing sign extension, colour, odd sizes), so
    pydicom decodes it instead.
    """
    meta = getattr(ds, "file_meta", None)
    ts = str(hval(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    order = _NATIVE.get(ts)
    bits = int(hval(ds, "BitsAllocated", 0) or 0)
    stored = int(hval(ds, "BitsStored", bits) or bits)
    signed = int(hval(ds, "PixelRepresentation", 0) or 0) == 1
    if (
        order is None
        or bits not in (8, 16, 32)
        or int(hval(ds, "SamplesPerPixel", 1) or 1) != 1
        or not 1 <= stored <= bits
        or "FloatPixelData" in ds
        or getattr(ds, "_anyconv_float", None) is not None
    ):
        return None
    try:
        nframes = int(hval(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None
    rows, cols = int(hval(ds, "Rows")), int(hval(ds, "Columns"))
    itemsize = bits // 8
    nbytes = rows * cols * nframes * itemsize
    length = nbytes + (nbytes & 1)
    implicit = ts == "1.2.840.10008.1.2"
    tag = b"\xe0\x7f\x10\x00" if order == "<" else b"\x7f\xe0\x00\x10"
    length_bytes = length.to_bytes(4, "little" if order == "<" else "big")
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{itemsize}")
    unused = bits - stored if signed and stored < bits else 0
    shape = (nframes, rows, cols)
    # One reused buffer per shape: fresh pages for every file cost more than the read.
    buf = None if buffers is None else buffers.get((shape, dtype))
    if buf is None and not (nframes > 1 and nbytes > FRAME_BY_FRAME_BYTES):
        buf = np.empty(shape, dtype=dtype)
        if buffers is not None:
            buffers[(shape, dtype)] = buf
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        at = ds.__dict__.get(PIXEL_AT)
        size = ds.__dict__.get(FILE_SIZE) or os.fstat(fd).st_size
        if at is not None:
            # the scan saw where the element starts (elements may follow it)
            head = bytearray(8 if implicit else 12)
            offset = at + len(head)
        else:
            # otherwise the pixel data must be the file's last element
            head = bytearray(12)
            offset = size - length
        if offset < len(head) or offset + nbytes > size:
            return None
        if buf is None:  # a large multi-frame file: read frame by frame later
            got = _pread_into(fd, [head], offset - len(head))
        else:
            got = _pread_into(fd, [head, memoryview(buf).cast("B")], offset - len(head))
            got -= nbytes
    except OSError:
        return None
    finally:
        os.close(fd)
    if got != len(head):
        return None
    if at is not None and not implicit:
        ok = head[0:4] == tag and head[4:6] in (b"OW", b"OB") and head[8:12] == length_bytes
    elif at is not None:
        ok = head[0:4] == tag and head[4:8] == length_bytes
    else:
        explicit = head[0:4] == tag and head[4:6] in (b"OW", b"OB") and head[8:12] == length_bytes
        ok = explicit or (implicit and head[4:8] == tag and head[8:12] == length_bytes)
    if not ok:
        return None
    if buf is None:
        return FrameReader(path, offset, shape, dtype, unused)
    _sign_extend(buf, unused)
    return buf


def _pread_into(fd: int, buffers: list[Any], at: int) -> int:
    """Fill ``buffers`` in turn from offset ``at``: one system call where ``preadv`` exists."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, buffers, at)
    with os.fdopen(fd, "rb", closefd=False) as fh:
        fh.seek(at)
        return sum(fh.readinto(b) or 0 for b in buffers)


def _sign_extend(buf: np.ndarray, unused: int) -> None:
    """Two's complement in BitsStored bits, as pydicom's decoder does (shifts, in place).

    The sign bit fills the unused high bits, whatever they held.
    """
    if unused:
        np.left_shift(buf, unused, out=buf)
        np.right_shift(buf, unused, out=buf)


#: A multi-frame file with more pixel bytes than this is read one frame at a time.
FRAME_BY_FRAME_BYTES = 32 << 20


class FrameReader:
    """The frames of a large uncompressed multi-frame file, read one at a time on demand.

    A 500-frame enhanced CT held its whole pixel data (262 MB) in a buffer beside the output
    array; frame by frame into one reused buffer, peak memory is the output plus one frame.
    """

    def __init__(
        self, path: Path, offset: int, shape: tuple[int, int, int], dtype: np.dtype, unused: int
    ) -> None:
        self.shape = shape
        self._path, self._offset, self._dtype, self._unused = path, offset, dtype, unused
        self._buf = np.empty(shape[1:], dtype=dtype)
        self._frame_bytes = self._buf.nbytes

    def __getitem__(self, frame: int) -> np.ndarray:
        with self._path.open("rb") as fh:
            fh.seek(self._offset + frame * self._frame_bytes)
            got = fh.readinto(memoryview(self._buf).cast("B"))
        if got != self._frame_bytes:
            raise ReadError(f"{self._path}: frame {frame + 1} is truncated")
        _sign_extend(self._buf, self._unused)
        return self._buf


def _pick(frames: np.ndarray, sl: Slice, path: Path) -> np.ndarray:
    """The 2D image of one slice record out of a decoded file."""
    f = sl.frame or 0
    if f >= frames.shape[0]:
        raise ReadError(f"{path}: frame {f + 1} missing (file holds {frames.shape[0]})")
    img = frames[f]
    if sl.mosaic is not None and sl.tile is not None:
        per_row, tr, tc = sl.mosaic
        r0, c0 = (sl.tile // per_row) * tr, (sl.tile % per_row) * tc
        img = img[r0 : r0 + tr, c0 : c0 + tc]
    if img.shape[:2] != (sl.rows, sl.cols):
        raise ReadError(f"{path}: image is {img.shape[:2]}, header says {(sl.rows, sl.cols)}")
    return img


def _shift(
    img: np.ndarray,
    shift: tuple[float, float],
    pad: tuple[int, int, int, int],
    size: tuple[int, ...],
) -> np.ndarray:
    """A slice (rows, cols) resampled into the padded (i, j) grid, moved by (si, sj) voxels.

    Linear interpolation, zero where no source pixel is.
    """
    ij = np.swapaxes(img[::-1], 0, 1).astype(np.float32)  # i = column, j = flipped row
    out = _resample_axis(ij, int(size[0]), pad[0] + shift[0], axis=0)
    return _resample_axis(out, int(size[1]), pad[2] + shift[1], axis=1)


def _resample_axis(img: np.ndarray, n_out: int, offset: float, axis: int) -> np.ndarray:
    """Sample ``img`` at ``index - offset`` for each output index along ``axis``.

    Linear between pixels; a sample within half a pixel of the data takes the edge pixel
    (the edge pixel covers that half); farther out it is zero.
    """
    m = img.shape[axis]
    src = np.arange(n_out, dtype=np.float64) - offset
    valid = (src >= -0.5) & (src <= m - 0.5)
    src = np.clip(src, 0, m - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, m - 1)
    w = (src - lo).astype(np.float32)
    shape = [1] * img.ndim
    shape[axis] = n_out
    a = np.take(img, lo, axis=axis)
    b = np.take(img, hi, axis=axis)
    w = w.reshape(shape)
    return np.where(valid.reshape(shape), a * (1 - w) + b * w, 0).astype(np.float32)


def check_sizes(vol: Volume) -> None:
    """Refuse a volume whose header promises more pixel bytes than its files can hold."""
    total = 0
    seen = set()
    for row in vol.grid:
        for sl in row:
            if sl.path not in seen:
                seen.add(sl.path)
                total += file_size(sl.ds, sl.path) or 0
    first = vol.first
    bits = int(first.ds.get("BitsAllocated", 16) or 16)
    spp = int(first.ds.get("SamplesPerPixel", 1) or 1)
    need = first.rows * first.cols * vol.nz * vol.nt * max(bits // 8, 1) * spp
    ts = str(getattr(first.ds, "file_meta", {}).get("TransferSyntaxUID", ""))
    compressed = ts not in ("", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
    if not compressed and need > total + 1024:
        raise ReadError(
            f"{first.path}: header promises {need} bytes of pixels, the files hold {total}"
        )
    if compressed and need > MAX_COMPRESSION_RATIO * total + (64 << 20):
        raise ReadError(
            f"{first.path}: header promises {need} bytes of pixels from {total} bytes of "
            f"compressed files (more than {MAX_COMPRESSION_RATIO}:1): refusing to allocate"
        )
