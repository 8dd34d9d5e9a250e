import gzip
import math
import subprocess
import sys

import anyconv_mgh.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv import geometry
from anyconv.errors import LossyConversionError, ReadError
from anyconv.pipeline import load_data
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import (
    ReaderConformance,
    WriterConformance,
    assert_same_world,
    manifest_cases,
    synthetic_affine,
    synthetic_image,
)


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


def nib_read(path):
    img = nib.load(str(path))
    assert isinstance(img, nib.MGHImage)
    return np.asanyarray(img.dataobj), img.affine


class TestMgz(ReaderConformance, WriterConformance):
    plugin = "anyconv_mgh.plugin"
    read_formats = ("mgh",)
    write_format = "mgh"
    suffix = ".mgz"
    dtypes = ("int16", "float32", "uint8", "int32")

    def independent_read(self, path):
        return nib_read(path)


class TestMghPlain(WriterConformance):
    plugin = "anyconv_mgh.plugin"
    write_format = "mgh"
    suffix = ".mgh"
    dtypes = ("int16", "float32")

    def independent_read(self, path):
        assert path.read_bytes()[:4] == b"\x00\x00\x00\x01"
        return nib_read(path)


def _corpus(testdata):
    return [testdata / c["path"] for c in manifest_cases(testdata, "mgh")]


def test_corpus_matches_nibabel(reg, testdata, tmp_path):
    """Every corpus case: voxels, corner world coordinates, tkr vox2ras and MR parameters as
    nibabel reads them; written back and re-read by nibabel the same."""
    paths = _corpus(testdata)
    assert len(paths) >= 3
    for path in paths:
        ref = nib.load(str(path))
        ref_values = np.asanyarray(ref.dataobj)
        img = reg.read(path)[0]
        np.testing.assert_array_equal(img.stored(), ref_values, str(path))
        assert img.dtype == ref.get_data_dtype().newbyteorder("=")
        assert_same_world(img.affine, ref.affine, img.shape)
        ext = img.extras["mgh"]
        np.testing.assert_allclose(ext["vox2ras_tkr"], ref.header.get_vox2ras_tkr(), atol=1e-6)
        np.testing.assert_allclose(ext["c_ras"], ref.header["Pxyz_c"], atol=0)
        tr = float(ref.header["tr"])
        assert img.meta.repetition_time == (pytest.approx(tr / 1000) if tr else None)
        for suffix in (".mgz", ".mgh"):
            out = tmp_path / (path.name.split(".")[0] + suffix)
            reg.write(img.load(), out)
            back = nib.load(str(out))
            np.testing.assert_array_equal(np.asanyarray(back.dataobj), ref_values)
            assert back.get_data_dtype() == ref.get_data_dtype()
            assert_same_world(back.affine, ref.affine, img.shape)
            for key in ("delta", "Mdc", "Pxyz_c", "tr", "te", "ti", "flip_angle", "fov", "dof"):
                np.testing.assert_array_equal(back.header[key], ref.header[key], key)
            with gzip.open(path) as fh:
                src_tail = fh.read()[ref.header.get_footer_offset() :]
            raw = out.read_bytes() if suffix == ".mgh" else gzip.decompress(out.read_bytes())
            tail = raw[back.header.get_footer_offset() :]
            assert tail.rstrip(b"\0") == src_tail.rstrip(b"\0")  # footer and tags


def values_at_same_world(values_a, affine_a, values_b, affine_b):
    """Compare two grids voxel by voxel at the same world points."""
    t = np.linalg.inv(affine_b) @ affine_a
    rounded = np.round(t)
    assert np.abs(t - rounded).max() < 1e-4, t
    idx = np.indices(values_a.shape[:3]).reshape(3, -1)
    mapped = (rounded[:3, :3] @ idx + rounded[:3, 3:4]).astype(int)
    np.testing.assert_array_equal(values_a[tuple(idx)], values_b[tuple(mapped)])


def test_i2nii_mgz_agrees_with_nrrd_reference(reg, testdata):
    """Slicer's .mgz of dicom/ge_signa_hdx_epi and dcm2niix's .nhdr (read by SimpleITK) put
    every voxel value at the same world point."""
    img = reg.read(testdata / "mgh/i2nii/mgh.mgz")[0]
    s = sitk.ReadImage(str(testdata / "nrrd/i2nii/nrrd.nhdr"))
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(s.GetDirection()).reshape(3, 3) * np.asarray(s.GetSpacing())
    lps[:3, 3] = s.GetOrigin()
    ref_affine = geometry.lps_to_ras(lps)
    assert_same_world(img.affine, ref_affine, img.shape, atol=1e-3)
    values_at_same_world(img.stored(), img.affine, sitk.GetArrayFromImage(s).T, ref_affine)


def test_mr_parameters_in_seconds_and_degrees(reg, tmp_path):
    img = synthetic_image((6, 5, 4, 3), "float32")
    img.meta.repetition_time = 2.0
    img.meta.echo_time = 0.03
    img.meta.inversion_time = 0.9
    img.meta.flip_angle = 12.5
    reg.write(img, tmp_path / "mr.mgz")
    hdr = nib.load(str(tmp_path / "mr.mgz")).header
    assert hdr["tr"] == pytest.approx(2000.0)
    assert hdr["te"] == pytest.approx(30.0)
    assert hdr["ti"] == pytest.approx(900.0)
    assert hdr["flip_angle"] == pytest.approx(math.radians(12.5))
    assert hdr.get_zooms()[3] == pytest.approx(2000.0)
    back = reg.read(tmp_path / "mr.mgz")[0]
    assert back.meta.repetition_time == pytest.approx(2.0)
    assert back.meta.echo_time == pytest.approx(0.03)
    assert back.meta.inversion_time == pytest.approx(0.9)
    assert back.meta.flip_angle == pytest.approx(12.5, rel=1e-6)


def test_scanner_affine_not_tkr(reg, tmp_path):
    """The affine is the scanner vox2ras (c_ras honoured); tkr is kept aside."""
    affine = synthetic_affine(perm=(0, 2, 1), flips=(-1, 1, -1), origin=(30.0, -20.0, 11.0))
    img = synthetic_image((10, 8, 6), "int16", affine=affine)
    reg.write(img, tmp_path / "s.mgh")
    ref = nib.load(str(tmp_path / "s.mgh"))
    back = reg.read(tmp_path / "s.mgh")[0]
    assert_same_world(back.affine, affine, img.shape)
    assert_same_world(ref.affine, affine, img.shape)
    tkr = np.asarray(back.extras["mgh"]["vox2ras_tkr"])
    np.testing.assert_allclose(tkr, ref.header.get_vox2ras_tkr(), atol=1e-6)
    assert not np.allclose(tkr, back.affine, atol=1e-3)
    c_ras = affine @ np.array([5.0, 4.0, 3.0, 1.0])
    np.testing.assert_allclose(back.extras["mgh"]["c_ras"], c_ras[:3], atol=1e-4)


def test_what_mgh_cannot_hold_is_refused_unless_lossy(reg, tmp_path):
    for img in (synthetic_image((5, 4, 3), "float64"), synthetic_image((4, 3, 2, 2, 2), "int16")):
        with pytest.raises(LossyConversionError):
            reg.write(img, tmp_path / "x.mgz")
        assert list(tmp_path.iterdir()) == []
    img = synthetic_image((5, 4, 3), "float64")
    reg.write(img, tmp_path / "d.mgz", options=WriteOptions(lossy=True))
    assert any("float64" in loss for loss in img.losses)
    assert nib.load(str(tmp_path / "d.mgz")).get_data_dtype() == np.dtype(">f4")
    five = synthetic_image((4, 3, 2, 2, 2), "int16")
    reg.write(five, tmp_path / "five.mgz", options=WriteOptions(lossy=True))
    assert nib.load(str(tmp_path / "five.mgz")).shape == (4, 3, 2, 4)
    assert five.losses
    # Value-preserving widenings are not losses: int8 -> int16, uint16 -> int32, scaled -> f32
    for dtype, stored in (("int8", np.int16), ("uint16", np.int32)):
        img = synthetic_image((5, 4, 3), dtype)
        reg.write(img, tmp_path / f"{dtype}.mgz")
        back = nib.load(str(tmp_path / f"{dtype}.mgz"))
        assert back.get_data_dtype() == np.dtype(stored).newbyteorder(">")
        np.testing.assert_array_equal(np.asanyarray(back.dataobj), img.values())
        assert not img.losses and img.notes


def test_cli_float64_is_exit_6(tmp_path):
    src = tmp_path / "d.nii"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float64) + 0.1, np.eye(4)), str(src))
    cmd = [sys.executable, "-c", "from anyconv.cli import main; main()", str(src)]
    proc = subprocess.run([*cmd, str(tmp_path / "d.mgz")], capture_output=True, text=True)
    if (
        "nifti"
        not in subprocess.run(
            [sys.executable, "-c", "from anyconv.cli import main; main()", "formats"],
            capture_output=True,
            text=True,
        ).stdout
    ):
        pytest.skip("the NIfTI plugin is not installed")
    assert proc.returncode == 6, proc.stderr
    assert not (tmp_path / "d.mgz").exists()
    proc = subprocess.run(
        [*cmd, str(tmp_path / "d.mgz"), "--lossy"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert nib.load(str(tmp_path / "d.mgz")).get_data_dtype() == np.dtype(">f4")


def _mgh_bytes(dims=(4, 3, 2, 1), code=4, version=1, good=1, data=None):
    hdr = nib.freesurfer.mghformat.MGHHeader()
    hdr["version"] = version
    hdr["dims"] = dims
    hdr["type"] = code
    hdr["goodRASFlag"] = good
    hdr["delta"] = (1.5, 2.0, 2.5)
    hdr["Mdc"] = np.eye(3)
    hdr["Pxyz_c"] = (1.0, 2.0, 3.0)
    block = hdr.binaryblock
    if data is None:
        data = np.arange(int(np.prod(dims)), dtype=">i2").tobytes()
    return block[:90].ljust(284, b"\x00") + data + block[90:110]


@pytest.mark.parametrize(
    ("name", "blob", "match"),
    [
        ("v2.mgh", _mgh_bytes(version=2), "version"),
        ("zero.mgh", _mgh_bytes(dims=(4, 0, 2, 1)), "positive"),
        ("type.mgh", _mgh_bytes(code=7), "type code"),
        ("short.mgh", _mgh_bytes()[:300], "truncated"),
        ("tiny.mgh", b"\x00\x00\x00\x01\x00", "truncated"),
        ("cut.mgz", gzip.compress(_mgh_bytes())[:-30], "truncated"),
        (
            "bomb.mgz",
            gzip.compress(_mgh_bytes(dims=(4000, 4000, 4000, 1), data=b"")),
            "cannot hold",
        ),
        ("garbage.mgz", b"\x1f\x8b" + b"\x00" * 40, "gzip"),
    ],
)
def test_bad_input_is_read_error(reg, tmp_path, name, blob, match):
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(ReadError, match=match) as info:
        for img in reg.read(path, fmt="mgh"):
            load_data(img)
    assert "\n" not in str(info.value)


def test_good_ras_flag_zero_uses_freesurfer_default(reg, tmp_path):
    path = tmp_path / "noras.mgh"
    path.write_bytes(_mgh_bytes(good=0))
    ref = nib.load(str(path))
    img = reg.read(path)[0]
    # FreeSurfer's mghRead uses MRI_CORONAL (x_r = -1, y_s = -1, z_a = 1), 1 mm, c_ras 0;
    # nibabel substitutes another default (LSP), so the reference here is FreeSurfer's.
    coronal = np.array([[-1, 0, 0, 2], [0, 0, 1, -1], [0, -1, 0, 1.5], [0, 0, 0, 1]])
    assert_same_world(img.affine, coronal, img.shape)
    assert "".join(img.axcodes) == "LIA"
    assert any("goodRASFlag" in n for n in img.notes)
    np.testing.assert_array_equal(img.stored(), np.asanyarray(ref.dataobj))


def test_lazy_plain_and_detection(reg, testdata, tmp_path):
    path = tmp_path / "lazy.mgh"
    path.write_bytes(_mgh_bytes())
    img = reg.read(path)[0]
    assert not isinstance(img.data, np.ndarray)
    assert img.shape == (4, 3, 2)
    renamed = tmp_path / "wm.bin"
    renamed.write_bytes((testdata / "mgh/niivue/wm.mgz").read_bytes())
    assert reg.choose_reader(renamed).spec.format == "mgh"


def test_compress_level(reg, tmp_path):
    img = synthetic_image((40, 30, 20), "int16")
    reg.write(img, tmp_path / "fast.mgz", options=WriteOptions(compress_level=1))
    reg.write(img, tmp_path / "small.mgz", options=WriteOptions(compress_level=9))
    assert (tmp_path / "small.mgz").stat().st_size <= (tmp_path / "fast.mgz").stat().st_size
    for name in ("fast.mgz", "small.mgz"):
        np.testing.assert_array_equal(nib_read(tmp_path / name)[0], img.values())
