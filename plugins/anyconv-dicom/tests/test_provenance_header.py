"""The reader hands on where each slice came from and the series header, format-neutrally."""

from __future__ import annotations

import anyconv
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset


@pytest.mark.parametrize(
    "case",
    ["ge_pioneer_dwi_oblique", "siemens_trio_mosaic_ax_asc35", "philips_achieva_enhanced_t1_balls"],
)
def test_slice_map_and_header(testdata, case):
    folder = testdata / "dicom" / case
    (image,) = anyconv.read_all(folder)
    files = {str(p): pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()}
    shape = image.shape
    nvol = shape[3] if len(shape) > 3 else 1
    assert len(image.sources) == shape[image.sources[0]["axis"]] * nvol
    seen = set()
    for entry in image.sources:
        ds = files[entry["path"]]
        assert entry["uid"] == ds.SOPInstanceUID
        assert entry["study_uid"] == ds.StudyInstanceUID
        assert 0 <= entry["index"] < shape[entry["axis"]]
        seen.add((entry["index"], entry["volume"]))
    assert len(seen) == len(image.sources)  # one source per stored slice
    header = Dataset.from_json(image.extras["dicom"]["header"])
    first = files[image.sources[0]["path"]]
    assert header.StudyInstanceUID == first.StudyInstanceUID
    assert header.get("PatientID") == first.get("PatientID")
    assert "PixelData" not in header and "PerFrameFunctionalGroupsSequence" not in header


def test_slice_map_names_the_file_each_slice_came_from(testdata):
    """Decode the named file alone: its pixels are the stored slice (a classic series)."""
    folder = testdata / "dicom" / "ge_pioneer_dwi_oblique"
    (image,) = anyconv.read_all(folder)
    data = np.asarray(image.data)
    for entry in image.sources[:: max(1, len(image.sources) // 5)]:
        pixels = pydicom.dcmread(entry["path"]).pixel_array  # rows = j, columns = i
        stored = np.take(data[..., entry["volume"]], entry["index"], axis=entry["axis"])
        assert sorted(pixels.ravel().tolist()) == sorted(stored.ravel().tolist())
