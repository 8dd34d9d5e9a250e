"""The lean header walk gives exactly what pydicom.dcmread gives, or declines."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from anyconv_dicom.fastread import read_header_fast
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid


def _same_as_pydicom(path: Path) -> bool | None:
    """True if equal element by element, None if the fast path declined."""
    got = read_header_fast(path, path.stat().st_size)
    if got is None:
        return None
    ds, _pixel = got
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        assert set(ds.keys()) == set(ref.keys()), path
        for tag in sorted(ref.keys()):
            assert ds[tag].value == ref[tag].value, (path, tag)
    assert ds.file_meta.TransferSyntaxUID == ref.file_meta.TransferSyntaxUID
    return True


def test_corpus_headers_equal_pydicom(testdata):
    files = [p for p in (testdata / "dicom").rglob("*") if p.is_file()]
    results = [_same_as_pydicom(p) for p in files if p.read_bytes()[128:132] == b"DICM"]
    assert results.count(True) > 100  # the fast path is taken for most files ...
    assert results.count(None) < 20  # ... and declines only unusual ones


def _nested(ts: str, path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    inner = Dataset()
    inner.CodeValue = "113100"
    inner.CodeMeaning = "Basic Application Confidentiality Profile"
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, item])
    ds.PatientName = "Doe^J"
    ds.Rows, ds.Columns = 2, 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\0" * 8
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [False, True])
def test_nested_sequences(tmp_path, ts, undefined):
    path = _nested(ts, tmp_path / "x.dcm")
    if undefined:  # rewrite with undefined-length sequences and items
        ds = pydicom.dcmread(path)
        for elem in ds.iterall():
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for it in elem.value:
                    it.is_undefined_length_sequence_item = True
        ds.save_as(path)
    assert _same_as_pydicom(path) is True


def test_truncated_or_inconsistent_headers_are_declined(tmp_path):
    path = _nested(ExplicitVRLittleEndian, tmp_path / "x.dcm")
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:200])
    assert read_header_fast(cut, cut.stat().st_size) is None
    no_preamble = tmp_path / "np.dcm"
    no_preamble.write_bytes(data[132:])
    assert read_header_fast(no_preamble, no_preamble.stat().st_size) is None
