"""Worker processes (header scan, compressed decoding) change nothing but the time taken."""

from __future__ import annotations

import shutil

import anyconv
import anyconv_dicom.pixels as pixels
import anyconv_dicom.reader as reader
import numpy as np
import pytest


@pytest.mark.parametrize("case", ["siemens_trio_mosaic_jpeg_lossless", "ge_pioneer_dwi_oblique"])
def test_parallel_equals_serial(testdata, tmp_path, monkeypatch, case):
    folder = tmp_path / case
    shutil.copytree(testdata / "dicom" / case, folder)
    (folder / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x00")

    monkeypatch.setenv("ANYCONV_DECODE_WORKERS", "1")
    serial = anyconv.read_all(folder)
    monkeypatch.setenv("ANYCONV_DECODE_WORKERS", "2")
    monkeypatch.setattr(reader, "PARALLEL_SCAN_FILES", 2)
    monkeypatch.setattr(pixels, "PARALLEL_MIN_FILES", 2)
    # pytest may run helper threads; forking is what this test exercises
    monkeypatch.setattr(pixels.threading, "active_count", lambda: 1)
    assert pixels.decode_workers() == 2
    parallel = anyconv.read_all(folder)
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
        np.testing.assert_array_equal(a.affine, b.affine)
        assert a.sources == b.sources and a.meta == b.meta


def test_a_skipped_file_is_reported_from_a_worker(testdata, tmp_path, monkeypatch):
    folder = tmp_path / "s"
    shutil.copytree(testdata / "dicom" / "ge_pioneer_dwi_oblique", folder)
    (folder / "zz_junk.dcm").write_bytes(b"not DICOM at all, but named .dcm")
    monkeypatch.setenv("ANYCONV_DECODE_WORKERS", "2")
    monkeypatch.setattr(reader, "PARALLEL_SCAN_FILES", 2)
    monkeypatch.setattr(pixels.threading, "active_count", lambda: 1)
    skipped: list[str] = []
    slices = reader.scan([folder], skipped)
    assert len({sl.path for sl in slices}) == len(list(folder.iterdir())) - 1
    assert len(skipped) == 1 and "zz_junk.dcm" in skipped[0]


@pytest.mark.parametrize(
    "case", ["philips_achieva_enhanced_t1_balls", "siemens_vida_xa10_enhanced_fmri"]
)
def test_frame_by_frame_reading_equals_whole_file_reading(testdata, monkeypatch, case):
    folder = testdata / "dicom" / case
    whole = anyconv.read_all(folder)
    monkeypatch.setattr(pixels, "FRAME_BY_FRAME_BYTES", 0)
    calls = []
    original = pixels.FrameReader.__getitem__

    def counting(self, frame):
        calls.append(frame)
        return original(self, frame)

    monkeypatch.setattr(pixels.FrameReader, "__getitem__", counting)
    framewise = anyconv.read_all(folder)
    for a, b in zip(whole, framewise, strict=True):
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    assert calls  # the frame-by-frame path was taken


def test_no_fork_from_a_threaded_process(monkeypatch):
    """A Dask worker or an application thread pool: decoding and scanning stay in-process."""
    import threading

    monkeypatch.setenv("ANYCONV_DECODE_WORKERS", "4")
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert pixels.decode_workers() == 1
    finally:
        stop.set()
        thread.join()


def test_packed_records_come_back_whole(testdata):
    """Worker results travel as plain tuples: the rebuilt headers equal the scanned ones."""
    import pickle

    folder = testdata / "dicom" / "siemens_trio_mosaic_ax_asc35"
    scanned = reader._scan_files(sorted(folder.iterdir()))
    assert scanned[0].ds.ImageType  # one element converted by pydicom, not raw any more
    expected = [(sl.ds._dict.copy(), dict(sl.ds.__dict__), sl.ipp.copy()) for sl in scanned]
    back = reader._unpack_slices(pickle.loads(pickle.dumps(reader._pack_slices(scanned))))
    assert len(back) == len(expected)
    for sl, (elements, attrs, ipp) in zip(back, expected, strict=True):
        assert sl.ds._dict == elements
        assert sl.ds.__dict__.keys() == attrs.keys()
        np.testing.assert_array_equal(sl.ipp, ipp)
        assert sl.ds.SOPInstanceUID == attrs["_dict"][0x00080018].value.decode().strip("\0 ")
