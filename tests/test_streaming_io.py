"""Core pieces of the speed work: streamed blocks, gzip bytes independent of write sizes,
and folder reading that decides once per kind of file."""

from __future__ import annotations

import gzip
import io
import shutil

import anyconv
import nibabel as nib
import numpy as np
import pytest
from anyconv.io import open_output, write_fortran
from anyconv.model import LazyArray
from anyconv.testing import synthetic_affine


class SlabArray(LazyArray):
    """A lazy array that streams slabs along its last axis and refuses to load whole."""

    streams = True

    def __init__(self, full: np.ndarray) -> None:
        self._full = np.asfortranarray(full)
        self._shape, self._dtype = full.shape, full.dtype
        self.blocks_given = 0

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("loaded whole")

    def fortran_blocks(self, max_bytes):
        step = max(1, max_bytes // (self._full[..., 0].nbytes))
        for k in range(0, self._shape[-1], step):
            self.blocks_given += 1
            yield self._full[..., k : k + step]


def test_a_streaming_array_is_written_block_by_block():
    full = np.arange(5 * 4 * 9, dtype=np.int16).reshape(5, 4, 9)
    data = SlabArray(full)
    buf = io.BytesIO()
    write_fortran(buf, data)
    assert buf.getvalue() == full.tobytes(order="F")
    assert data.blocks_given == 1  # 16 MiB blocks: one here

    class Tiny(SlabArray):
        def fortran_blocks(self, max_bytes):
            return super().fortran_blocks(2 * 5 * 4 * 2)

    data = Tiny(full)
    buf = io.BytesIO()
    write_fortran(buf, data)
    assert buf.getvalue() == full.tobytes(order="F") and data.blocks_given == 5


def test_the_default_blocks_are_the_whole_array():
    class Plain(LazyArray):
        def __init__(self, full):
            self._full, self._shape, self._dtype = full, full.shape, full.dtype

        def __array__(self, dtype=None, copy=None):
            return self._full

    full = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blocks = list(Plain(full).fortran_blocks(8))
    assert len(blocks) == 1 and blocks[0] is full
    assert not Plain(full).streams


@pytest.mark.parametrize("threads", ["1", "2"])
def test_gzip_bytes_do_not_depend_on_how_the_writes_are_cut(tmp_path, monkeypatch, threads):
    monkeypatch.setenv("ANYCONV_GZIP_THREADS", threads)
    rng = np.random.default_rng(1)
    payload = rng.integers(0, 50, size=(3 << 20) + 12345, dtype=np.uint8).tobytes()
    outputs = []
    for cuts in ([len(payload)], [348, 1 << 20, 7, (1 << 20) - 7], [100_000] * 40):
        path = tmp_path / f"c{len(outputs)}.gz"
        with open_output(path) as fh:
            pos = 0
            for size in cuts:
                fh.write(payload[pos : pos + size])
                pos += size
            fh.write(payload[pos:])
        outputs.append(path.read_bytes())
        assert gzip.decompress(outputs[-1]) == payload
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_folder_of_look_alike_files_goes_to_the_right_readers(testdata, tmp_path):
    """Files that share a suffix but not a signature are still told apart."""
    folder = tmp_path / "mixed"
    shutil.copytree(testdata / "dicom" / "ge_pioneer_dwi_oblique", folder)
    affine = synthetic_affine()
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(data, affine), folder / "a_volume.nii")
    anyconv.write(anyconv.read(folder / "a_volume.nii"), tmp_path / "v.nrrd")
    shutil.copy(tmp_path / "v.nrrd", folder / "b_really_nrrd.nii")  # NRRD named .nii
    formats = sorted(img.format for img in anyconv.read_all(folder))
    assert formats == ["dicom", "nifti1", "nrrd"]


@pytest.mark.parametrize("scale", [None, (0.5, -3.0)])
def test_a_cast_for_the_writer_streams_too(scale):
    from anyconv.adapt import CastProxy

    full = np.arange(6 * 5 * 8, dtype=np.uint16).reshape(6, 5, 8) * 7
    source = SlabArray(full)
    cast = CastProxy(source, np.int32 if scale is None else np.float32, scale)
    assert cast.streams
    joined = b"".join(b.tobytes(order="F") for b in cast.fortran_blocks(6 * 5 * 4 * 2))
    expected = full.astype(np.float64) * (scale[0] if scale else 1) + (scale[1] if scale else 0)
    got = np.frombuffer(joined, dtype=cast.dtype).reshape(full.shape, order="F")
    np.testing.assert_array_equal(got, expected.astype(cast.dtype))
    assert source.blocks_given == 4  # int32/float32 blocks: half the slices of uint16 ones
