import warnings

import anyconv_ecat.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
from anyconv.errors import ReadError
from anyconv.pipeline import load_data
from anyconv.registry import Registry
from anyconv.testing import ReaderConformance, assert_same_world, manifest_cases

TINY = "ecat/nibabel/tinypet.v"
BLOCK = 512


class TestEcat(ReaderConformance):
    plugin = "anyconv_ecat.plugin"
    read_formats = ("ecat",)


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


def _nib(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = nib.ecat.load(str(path))
        return img.get_fdata(), img.affine


def test_corpus_matches_nibabel(reg, testdata):
    cases = manifest_cases(testdata, "ecat")
    assert cases
    for case in cases:
        path = testdata / case["path"]
        img = reg.read(path)[0]
        values, affine = _nib(path)
        if values.shape[3] == 1:
            values = values[..., 0]
        assert img.shape == values.shape
        np.testing.assert_allclose(img.values(), values, rtol=1e-6, err_msg=str(path))
        assert_same_world(img.affine, affine, img.shape, atol=1e-4)


def test_tiny_metadata(reg, testdata):
    img = reg.read(testdata / TINY)[0]
    assert img.dtype == np.int16 and img.slope == pytest.approx(25007614.0)
    assert img.meta.modality == "PT"
    bids = img.meta.bids
    assert bids["FrameTimesStart"] == [pytest.approx(1500.016)]
    assert bids["FrameDuration"] == [300.0]
    assert bids["DecayCorrectionFactor"] == [pytest.approx(1.1895915)]
    assert bids["Units"] == "Bq/cc" and bids["TracerRadionuclide"] == "F-18"


def _multiframe(testdata, tmp_path, scales, ids, starts, name="multi.v", mlist_next=2):
    """An ECAT 7 file of len(scales) frames built from tinypet.v's headers: per-frame scale
    factor, matrix id (frame order) and start time; each frame's voxels differ."""
    src = (testdata / TINY).read_bytes()
    main = bytearray(src[:BLOCK])
    hdr = np.ndarray((), nib.ecat.hdr_dtype.newbyteorder(">"), main)
    hdr["num_frames"] = len(scales)
    mlist = np.zeros((32, 4), ">i4")
    mlist[0] = [31 - len(scales), mlist_next, 0, len(scales)]
    body = bytearray()
    frames = []
    rng = np.random.default_rng(0)
    for k, (scale, mid, start) in enumerate(zip(scales, ids, starts, strict=True)):
        sub_block = 3 + 3 * k  # 1-based block of the subheader; voxels in the next two
        mlist[k + 1] = [mid, sub_block, sub_block + 2, 1]
        sub = bytearray(src[2 * BLOCK : 3 * BLOCK])
        sh = np.ndarray((), nib.ecat.subhdr_dtype.newbyteorder(">"), sub)
        sh["scale_factor"] = scale
        sh["frame_start_time"] = start
        sh["decay_corr_fctr"] = 1.0 + k / 10
        data = rng.integers(-300, 3000, (10, 10, 3)).astype(">i2")
        frames.append(data)
        body += sub + data.tobytes(order="F").ljust(2 * BLOCK, b"\0")
    path = tmp_path / name
    path.write_bytes(bytes(main) + mlist.tobytes() + bytes(body))
    return path


def test_frames_with_their_own_scale_factors(reg, testdata, tmp_path):
    path = _multiframe(testdata, tmp_path, [1.0, 0.5, 2.0], [101, 102, 103], [0, 60000, 180000])
    img = reg.read(path)[0]
    values, affine = _nib(path)
    assert img.shape == (10, 10, 3, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img.values(), values, rtol=1e-6)
    assert_same_world(img.affine, affine, img.shape)
    assert img.meta.bids["FrameTimesStart"] == [0.0, 60.0, 180.0]
    assert img.meta.bids["DecayCorrectionFactor"] == pytest.approx([1.0, 1.1, 1.2])


def test_one_factor_keeps_stored_values(reg, testdata, tmp_path):
    path = _multiframe(testdata, tmp_path, [0.5] * 2, [101, 102], [0, 1000])
    img = reg.read(path)[0]
    assert img.dtype == np.int16 and img.slope == pytest.approx(25007614.0 * 0.5)
    np.testing.assert_allclose(img.values(), _nib(path)[0], rtol=1e-6)


def test_frames_stored_out_of_order(reg, testdata, tmp_path):
    """Matrix ids give the time order, whatever order the file stores the frames in."""
    path = _multiframe(testdata, tmp_path, [1.0, 2.0, 3.0], [103, 101, 102], [2000, 0, 1000])
    img = reg.read(path)[0]
    assert img.meta.bids["FrameTimesStart"] == [0.0, 1.0, 2.0]
    np.testing.assert_allclose(img.values(), _nib(path)[0], rtol=1e-6)


def test_looping_matrix_list_is_read_error(reg, testdata, tmp_path):
    """A matrix list whose next block is itself: nibabel would loop forever."""
    path = _multiframe(testdata, tmp_path, [1.0], [101], [0], mlist_next=2)
    raw = bytearray(path.read_bytes())
    row0 = np.ndarray((4,), ">i4", raw, offset=BLOCK)
    row0[1] = 3  # points at block 3 ...
    raw += bytes(BLOCK * 2)
    loop = np.ndarray((32, 4), ">i4", raw, offset=2 * BLOCK)
    loop[0] = [30, 3, 0, 1]  # ... whose first row points at block 3 again
    path.write_bytes(bytes(raw))
    with pytest.raises(ReadError, match="loops"):
        reg.read(path)


def test_truncated_frame_is_read_error(reg, testdata, tmp_path):
    path = _multiframe(testdata, tmp_path, [1.0, 1.0], [101, 102], [0, 1])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 700])
    with pytest.raises(ReadError, match="truncated"):
        for img in reg.read(path):
            load_data(img)


def test_calibration_option(reg, testdata):
    """tinypet.v says calibration_units 1 (Bq/cc already): 'units' leaves the factor out."""
    from anyconv.specs import ReadOptions

    path = testdata / TINY
    default = reg.read(path)[0]
    units = reg.read(path, options=ReadOptions(extra={"calibration": "units"}))[0]
    never = reg.read(path, options=ReadOptions(extra={"calibration": "never"}))[0]
    assert default.extras["ecat"]["calibration_units"] == 1
    assert units.slope == never.slope == 1.0
    np.testing.assert_allclose(units.values() * 25007614.0, default.values(), rtol=1e-6)
    with pytest.raises(ReadError, match="calibration"):
        reg.read(path, options=ReadOptions(extra={"calibration": "maybe"}))
