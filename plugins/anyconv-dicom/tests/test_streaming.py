"""Streamed pixel reading: a series written block by block gives the bytes of the whole array.

The DICOM reader's lazy array offers ``fortran_blocks`` so a writer never holds the volume;
these tests check the blocks against the loaded array, that the command line really streams
(the whole-array path is made to fail), and that errors met while streaming stay read errors.
"""

from __future__ import annotations

import gc
import shutil

import anyconv
import anyconv_dicom.pixels as pixels
import nibabel as nib
import numpy as np
import pydicom
import pytest
from anyconv.errors import ReadError

CASES = [
    "philips_achieva_epi_classic",  # classic, one file per slice
    "siemens_trio_mosaic_ax_asc35",  # mosaic tiles
    "siemens_trio_mosaic_jpeg_lossless",  # compressed mosaics (decoded in order)
    "siemens_vida_xa10_enhanced_fmri",  # one multi-frame file, 4D
    "philips_achieva_enhanced_t1_balls",  # 3D acquisition turned as dcm2niix does: whole
    "ge_pioneer_dwi_oblique",  # 4D classic
    "ts_rle",  # compressed classic
]


def fortran_bytes_of_blocks(data, max_bytes):
    """Copy each block as it comes (blocks may reuse one buffer)."""
    pieces = [np.asarray(b).tobytes(order="F") for b in data.fortran_blocks(max_bytes)]
    return b"".join(pieces), len(pieces)


@pytest.mark.parametrize("case", CASES)
def test_blocks_join_to_the_whole_array(testdata, case):
    images = anyconv.read_all(testdata / "dicom" / case)
    streamed = 0
    for img in images:
        whole = np.asarray(img.data)
        slice_bytes = whole.shape[0] * whole.shape[1] * whole.dtype.itemsize
        joined, count = fortran_bytes_of_blocks(img.data, 3 * slice_bytes)
        assert joined == whole.tobytes(order="F")
        if img.data.streams:
            streamed += 1
            n_slices = int(np.prod(whole.shape[2:]))
            assert count == -(-n_slices // 3)  # blocks of three slices, the last one shorter
        else:
            assert count == 1
    # every case reads as stored but the turned 3D acquisition
    assert bool(streamed) is (case != "philips_achieva_enhanced_t1_balls")


def test_a_reoriented_volume_is_given_whole(testdata):
    img = anyconv.read(testdata / "dicom" / "philips_achieva_epi_classic")
    img.data.reorient((1, 0, 2), (False, True, False))
    assert not img.data.streams
    whole = np.asarray(img.data)
    joined, count = fortran_bytes_of_blocks(img.data, 1 << 10)
    assert count == 1 and joined == whole.tobytes(order="F")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mgz", ".mha", ".nrrd"])
def test_the_command_line_streams_a_series_into_the_output(testdata, tmp_path, monkeypatch, suffix):
    """With the whole-array path broken, DICOM -> NIfTI, MGH, MetaImage or NRRD still succeeds."""
    from anyconv.cli import app
    from typer.testing import CliRunner

    src = testdata / "dicom" / "philips_achieva_epi_classic"
    expected = [i.values() for i in anyconv.read_all(src)]  # real values (MGH has no slope)

    def refuse(self, dtype=None, copy=None):
        raise AssertionError("the volume was loaded whole")

    monkeypatch.setattr(pixels.VolumeProxy, "__array__", refuse)
    out = tmp_path / f"out{suffix}"
    result = CliRunner().invoke(app, [str(src), str(out), "--no-sidecar", "-q"])
    assert result.exit_code == 0, result.output
    if suffix == ".mha":  # read back by SimpleITK (nibabel has no MetaImage reader)
        import SimpleITK as sitk

        got = sitk.GetArrayFromImage(sitk.ReadImage(str(out))).T
    elif suffix == ".nrrd":  # and by pynrrd (axes in file order: i, j, k, t)
        import nrrd

        got = nrrd.read(str(out))[0]
    else:
        got = nib.load(out).get_fdata()
    np.testing.assert_allclose(got, expected[0], rtol=1e-6)


def test_a_pixel_error_met_while_streaming_is_a_read_error(testdata, tmp_path, run_cli):
    folder = tmp_path / "series"
    shutil.copytree(testdata / "dicom" / "philips_achieva_epi_classic", folder)
    victim = sorted(folder.iterdir())[10]
    data = victim.read_bytes()
    victim.write_bytes(data[:-300])  # the header is whole, the pixels are not
    out = tmp_path / "out.nii"
    code, _, err = run_cli(folder, out, "--no-sidecar")
    assert code == ReadError.exit_code, err
    assert len(err.strip().splitlines()) == 1 and victim.name in err
    assert not out.exists() and list(tmp_path.iterdir()) == [folder]


def test_pixels_followed_by_other_elements_are_read_where_the_scan_saw_them(tmp_path):
    """Trailing padding after Pixel Data (allowed by PS3.10): read in place, not by pydicom."""
    src = sorted((pydicom.data.get_testdata_file("CT_small.dcm"),))[0]
    ds = pydicom.dcmread(src)
    ds.DataSetTrailingPadding = b"\0" * 64
    path = tmp_path / "padded.dcm"
    ds.save_as(path, enforce_file_format=True)
    img = anyconv.read(path)
    sl = img.data._vol.grid[0][0]
    assert pixels.read_native(path, sl.ds) is not None  # the fast path took it
    expected = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(np.asarray(img.data)[:, :, 0].T[::-1], expected)


def test_a_pixel_element_of_the_wrong_length_is_left_to_pydicom(tmp_path):
    src = pydicom.data.get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(src)
    ds.Rows = ds.Rows - 1  # Pixel Data now holds more bytes than Rows x Columns
    path = tmp_path / "long.dcm"
    ds.save_as(path, enforce_file_format=True)
    img = anyconv.read(path)
    assert pixels.read_native(path, img.data._vol.grid[0][0].ds) is None


@pytest.mark.parametrize("enabled", [True, False])
def test_reading_leaves_garbage_collection_as_it_was(testdata, enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        anyconv.read_all(testdata / "dicom" / "ge_pioneer_dwi_oblique")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_many_compressed_files_are_decoded_whole_by_worker_processes(testdata, monkeypatch):
    """Forking decoders must come before a writer's threads: such a series does not stream."""
    folder = testdata / "dicom" / "siemens_trio_mosaic_jpeg_lossless"
    monkeypatch.setattr(pixels, "PARALLEL_MIN_FILES", 2)
    monkeypatch.setattr(pixels, "decode_workers", lambda: 2)
    assert not anyconv.read(folder).data.streams
    monkeypatch.setattr(pixels, "decode_workers", lambda: 1)
    assert anyconv.read(folder).data.streams


def test_pydicom_is_loaded_without_requests_which_stays_importable():
    import subprocess
    import sys

    code = (
        "import sys, anyconv_dicom.reader\n"
        "assert 'pydicom' in sys.modules and 'requests' not in sys.modules\n"
        "import requests, pydicom.data\n"
        "print(requests.__name__, pydicom.data.get_testdata_file('CT_small.dcm') is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["requests", "True"]
    # requests loaded first: nothing is hidden, nothing breaks
    code = "import requests, anyconv_dicom.reader, sys; print(sys.modules['requests'] is requests)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("case", ["philips_achieva_epi_classic", "siemens_trio_mosaic_ax_asc35"])
def test_a_series_streamed_into_minc_equals_the_loaded_one(
    testdata, tmp_path, monkeypatch, case
):
    """Same image dataset, valid_range and image-min/max whether streamed or loaded first."""
    import h5py

    img = anyconv.read(testdata / "dicom" / case)
    assert img.data.streams
    anyconv.write(img.load(), tmp_path / "loaded.mnc")

    def refuse(self, dtype=None, copy=None):
        raise AssertionError("the volume was loaded whole")

    monkeypatch.setattr(pixels.VolumeProxy, "__array__", refuse)
    anyconv.write(img, tmp_path / "streamed.mnc")
    monkeypatch.undo()
    with h5py.File(tmp_path / "streamed.mnc") as a, h5py.File(tmp_path / "loaded.mnc") as b:
        ia, ib = a["minc-2.0/image/0/image"], b["minc-2.0/image/0/image"]
        assert ia.shape == ib.shape and ia.dtype == ib.dtype
        np.testing.assert_array_equal(ia[()], ib[()])
        np.testing.assert_array_equal(ia.attrs["valid_range"], ib.attrs["valid_range"])
        for name in ("image-min", "image-max"):
            assert a[f"minc-2.0/image/0/{name}"][()] == b[f"minc-2.0/image/0/{name}"][()]
    # and an independent reader sees the same values and geometry in both
    streamed, loaded = nib.load(tmp_path / "streamed.mnc"), nib.load(tmp_path / "loaded.mnc")
    np.testing.assert_array_equal(streamed.get_fdata(), loaded.get_fdata())
    np.testing.assert_array_equal(streamed.affine, loaded.affine)
