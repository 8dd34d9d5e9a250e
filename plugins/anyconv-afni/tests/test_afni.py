import gzip
import shutil

import anyconv_afni.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
from anyconv.errors import ReadError
from anyconv.pipeline import load_data
from anyconv.registry import Registry
from anyconv.testing import ReaderConformance, assert_same_world, manifest_cases

CORPUS_4D = "afni/nibabel/example4d+orig.HEAD"


class TestAfni(ReaderConformance):
    plugin = "anyconv_afni.plugin"
    read_formats = ("afni",)


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


def test_corpus_matches_nibabel(reg, testdata):
    """Every AFNI case: voxels (scaling applied) and world corners as nibabel reads them."""
    cases = manifest_cases(testdata, "afni")
    assert len(cases) >= 2
    for case in cases:
        path = testdata / case["path"]
        ref = nib.load(str(path))
        img = reg.read(path)[0]
        ref_values = np.asanyarray(ref.dataobj)
        if ref.shape[3] == 1:
            ref_values = ref_values[..., 0]
        assert img.shape == ref_values.shape
        np.testing.assert_allclose(img.values(), ref_values, rtol=1e-6, err_msg=str(path))
        assert_same_world(img.affine, ref.affine, img.shape, atol=1e-4)


def test_4d_timing(reg, testdata):
    img = reg.read(testdata / CORPUS_4D)[0]
    assert img.shape == (33, 41, 25, 3)
    assert img.meta.repetition_time == pytest.approx(3.0)
    assert img.meta.slice_axis == 2 and len(img.meta.slice_timing) == 25
    assert img.meta.slice_timing[:2] == pytest.approx([0.3260869, 1.826087])
    assert img.extras["afni"]["view"] == "orig"
    assert img.extras["afni"]["labels"] == ["#0", "#1", "#2"]


def test_i2nii_matches_its_dcm2niix_reference(reg, testdata):
    """afni/i2nii is AFNI's 3dcopy of dicom/ge_signa_hdx_epi, whose dcm2niix conversion is
    nrrd/i2nii/nrrd.nhdr (the corpus reference), read here by whichever NRRD plugin the
    installed registry has: same voxels, same world corners."""
    img = reg.read(testdata / "afni/i2nii/afni.BRIK+orig.HEAD")[0]
    assert img.shape == (64, 64, 37) and img.axcodes == ("L", "A", "S")
    assert img.dtype == np.int16 and not img.is_scaled
    ref = Registry().read(testdata / "nrrd/i2nii/nrrd.nhdr")[0]
    np.testing.assert_array_equal(img.values(), ref.values())
    assert_same_world(img.affine, ref.affine, img.shape, atol=1e-4)


def _attrs(text):
    """HEAD text -> list of attribute blocks (keeps the exact spelling)."""
    return [b.strip("\n") for b in text.split("\n\n") if b.strip()]


def _name(block):
    return next(line.split("=", 1)[1].strip() for line in block.splitlines() if "name" in line)


def _set(blocks, name, kind, values):
    body = " ".join(str(v) for v in values)
    new = f"type = {kind}-attribute\nname = {name}\ncount = {len(values)}\n {body}"
    out = [b for b in blocks if _name(b) != name]
    return [*out, new]


def _copy(testdata, tmp_path, edit):
    src = testdata / CORPUS_4D
    blocks = edit(_attrs(src.read_text()))
    head = tmp_path / "x+orig.HEAD"
    head.write_text("\n" + "\n\n".join(blocks) + "\n")
    shutil.copyfile(src.with_name("example4d+orig.BRIK.gz"), tmp_path / "x+orig.BRIK.gz")
    return head


def test_per_brick_scale_factors(reg, testdata, tmp_path):
    head = _copy(testdata, tmp_path, lambda b: _set(b, "BRICK_FLOAT_FACS", "float", [0.5, 0, 2.25]))
    img = reg.read(head)[0]
    ref = nib.load(str(head))
    np.testing.assert_allclose(img.values(), np.asanyarray(ref.dataobj), rtol=1e-6)
    raw = np.asanyarray(nib.load(str(testdata / CORPUS_4D)).dataobj)
    np.testing.assert_allclose(img.values()[..., 2], raw[..., 2] * 2.25, rtol=1e-6)
    np.testing.assert_allclose(img.values()[..., 1], raw[..., 1], rtol=1e-6)
    assert img.dtype == np.float32


def test_one_factor_is_a_slope(reg, testdata, tmp_path):
    head = _copy(testdata, tmp_path, lambda b: _set(b, "BRICK_FLOAT_FACS", "float", [0.5] * 3))
    img = reg.read(head)[0]
    assert img.dtype == np.int16 and img.slope == 0.5
    np.testing.assert_allclose(img.values(), np.asanyarray(nib.load(str(head)).dataobj))


def test_tr_in_milliseconds(reg, testdata, tmp_path):
    def edit(blocks):
        blocks = _set(blocks, "TAXIS_NUMS", "integer", [3, 25, 77001, -999, -999, -999, -999, -999])
        floats = [0.0, 2500.0, 0.0, -52.3511, 3.0, -999999.0, -999999.0, -999999.0]
        return _set(blocks, "TAXIS_FLOATS", "float", floats)

    img = reg.read(_copy(testdata, tmp_path, edit))[0]
    assert img.meta.repetition_time == pytest.approx(2.5)
    assert img.meta.slice_timing[0] == pytest.approx(0.3260869e-3)


@pytest.mark.parametrize("orient", [[0, 3, 4], [1, 2, 5], [4, 0, 3], [3, 5, 1]])
def test_geometry_without_ijk_to_dicom_real(reg, testdata, tmp_path, orient):
    """Old HEAD files have only ORIENT_SPECIFIC/ORIGIN/DELTA: build AFNI's cardinal grid,
    checked against the IJK_TO_DICOM_REAL AFNI would have written for it."""
    origin, delta = [-49.5, -82.312, -52.3511], [3.0, -2.5, 4.0]
    axis_of = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2}
    real = np.zeros((3, 4))
    for a, code in enumerate(orient):
        real[axis_of[code], a] = delta[a]
        real[axis_of[code], 3] = origin[a]

    def edit(blocks, with_real):
        blocks = [b for b in blocks if _name(b) not in ("IJK_TO_DICOM_REAL", "IJK_TO_DICOM")]
        blocks = _set(blocks, "ORIENT_SPECIFIC", "integer", orient)
        blocks = _set(blocks, "ORIGIN", "float", origin)
        blocks = _set(blocks, "DELTA", "float", delta)
        if with_real:
            blocks = _set(blocks, "IJK_TO_DICOM_REAL", "float", real.ravel().tolist())
        return blocks

    old = reg.read(_copy(testdata, tmp_path, lambda b: edit(b, False)))[0]
    (tmp_path / "r").mkdir()
    with_real = _copy(testdata, tmp_path / "r", lambda b: edit(b, True))
    ref = nib.load(str(with_real))
    assert_same_world(old.affine, ref.affine, old.shape)


def test_truncated_brik_is_read_error(reg, testdata, tmp_path):
    head = _copy(testdata, tmp_path, lambda b: b)
    brik = tmp_path / "x+orig.BRIK.gz"
    raw = brik.read_bytes()
    brik.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError):
        for img in reg.read(head):
            load_data(img)
    plain = tmp_path / "x+orig.BRIK"
    plain.write_bytes(gzip.decompress(raw)[:1000])
    brik.unlink()
    with pytest.raises(ReadError, match="truncated"):
        reg.read(head)


def test_missing_brik_is_read_error(reg, testdata, tmp_path):
    head = _copy(testdata, tmp_path, lambda b: b)
    (tmp_path / "x+orig.BRIK.gz").unlink()
    with pytest.raises(ReadError, match="BRIK"):
        reg.read(head)


def test_folder_reads_one_dataset(reg, testdata, tmp_path):
    _copy(testdata, tmp_path, lambda b: b)
    images = reg.read(tmp_path)
    assert len(images) == 1 and images[0].shape == (33, 41, 25, 3)
