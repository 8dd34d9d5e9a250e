from pathlib import Path

import anyconv_nifti.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv import geometry
from anyconv.errors import LossyConversionError
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


def _nib_read(path):
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine


class TestNifti1(ReaderConformance, WriterConformance):
    plugin = "anyconv_nifti.plugin"
    read_formats = ("nifti1", "nifti2", "analyze")
    corpus_formats = ("nifti1", "nifti2", "analyze")
    write_format = "nifti1"
    suffix = ".nii.gz"
    dtypes = ("int16", "uint8", "float32", "float64", "int32")

    def independent_read(self, path):
        return _nib_read(path)


class TestNifti2Pair(WriterConformance):
    plugin = "anyconv_nifti.plugin"
    write_format = "nifti2"
    suffix = ".nii"

    def independent_read(self, path):
        img = nib.load(str(path))
        assert isinstance(img, nib.Nifti2Image)
        return np.asanyarray(img.dataobj), img.affine


class TestNifti1PairWriter(WriterConformance):
    plugin = "anyconv_nifti.plugin"
    write_format = "nifti1"
    suffix = ".hdr"

    def independent_read(self, path):
        assert path.with_suffix(".img").exists()
        return _nib_read(path)


def _corpus(testdata):
    cases = [c for f in ("nifti1", "nifti2", "analyze") for c in manifest_cases(testdata, f)]
    return [testdata / c["path"] for c in cases]


def test_corpus_matches_nibabel_and_sitk(reg, testdata, tmp_path):
    """Each corpus file: voxels, scaling and affine as nibabel reads them; written back
    and re-read by nibabel and SimpleITK with the same world coordinates."""
    paths = _corpus(testdata)
    assert len(paths) >= 7
    for path in paths:
        ref = nib.load(str(path))
        img = reg.read(path)[0]
        ref_values = np.asanyarray(ref.dataobj)
        np.testing.assert_allclose(
            img.values().squeeze(), ref_values.squeeze(), rtol=1e-6, err_msg=str(path)
        )
        assert img.dtype == ref.get_data_dtype().newbyteorder("=") or ref.get_data_dtype().names
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
        out = tmp_path / (path.name.split(".")[0] + ".nii.gz")
        reg.write(img.load(), out)
        back = nib.load(str(out))
        np.testing.assert_array_equal(np.asanyarray(back.dataobj).squeeze(), ref_values.squeeze())
        assert_same_world(back.affine, ref.affine, ref.shape, atol=1e-5)
        assert back.get_data_dtype() == img.dtype
        if img.ndim <= 4 and not np.any(np.asarray(img.shape) == 1):
            s = sitk.ReadImage(str(out))
            sv = sitk.GetArrayFromImage(s).T
            np.testing.assert_allclose(sv, ref_values, rtol=1e-5, atol=1e-5)
            lps = np.eye(4)
            direction = np.asarray(s.GetDirection()).reshape(s.GetDimension(), -1)[:3, :3]
            lps[:3, :3] = direction * np.asarray(s.GetSpacing()[:3])
            lps[:3, 3] = s.GetOrigin()[:3]
            assert_same_world(geometry.lps_to_ras(lps), ref.affine, ref.shape[:3], atol=1e-4)


def test_qform_sform_and_codes_survive(reg, testdata, tmp_path):
    for path in _corpus(testdata):
        ref = nib.load(str(path))
        if not isinstance(ref, nib.Nifti1Image):
            continue
        out = tmp_path / "x.nii"
        # Same NIfTI version: NIfTI-1 stores the qform quaternion as float32.
        fmt = "nifti2" if isinstance(ref, nib.Nifti2Image) else "nifti1"
        reg.write(reg.read(path)[0], out, force=True, fmt=fmt)
        back = nib.load(str(out))
        for code in ("qform_code", "sform_code"):
            assert back.header[code] == ref.header[code], (path, code)
        if ref.header["qform_code"] > 0:
            np.testing.assert_allclose(
                back.get_qform(), ref.get_qform(), atol=1e-5, err_msg=str(path)
            )
        if ref.header["sform_code"] > 0:
            np.testing.assert_allclose(back.get_sform(), ref.get_sform(), atol=1e-5)
        np.testing.assert_allclose(back.header.get_zooms(), ref.header.get_zooms(), atol=1e-5)
        assert back.header.get_xyzt_units() == ref.header.get_xyzt_units()


def test_scaling_kept_as_stored_type(reg, testdata, tmp_path):
    """LPS.nii.gz stores uint8 with scl_slope: it must stay uint8 + slope."""
    path = testdata / "nifti/niivue_nifti_space/LPS.nii.gz"
    img = reg.read(path)[0]
    assert img.dtype == np.uint8 and img.is_scaled
    out = tmp_path / "lps.nii.gz"
    reg.write(img, out)
    back = nib.load(str(out))
    assert back.get_data_dtype() == np.uint8
    assert back.dataobj.slope == pytest.approx(img.slope)
    np.testing.assert_array_equal(back.get_fdata(), nib.load(str(path)).get_fdata())


def test_sheared_affine_goes_to_sform(reg, tmp_path):
    affine = synthetic_affine()
    affine[:3, 1] += affine[:3, 0] * 0.2  # shear j towards i
    img = synthetic_image(affine=affine)
    out = tmp_path / "shear.nii"
    reg.write(img, out)
    back = nib.load(str(out))
    np.testing.assert_allclose(back.get_sform(), affine, atol=1e-5)
    assert back.header["sform_code"] == 1 and back.header["qform_code"] == 1
    assert any("shear" in n for n in img.notes)


def test_nifti1_too_large_dimension_is_refused(reg, tmp_path):
    img = synthetic_image((40000, 1, 1), "uint8")
    with pytest.raises(LossyConversionError):
        reg.write(img, tmp_path / "big.nii")
    assert list(tmp_path.iterdir()) == []
    reg.write(img, tmp_path / "big.nii", fmt="nifti2")
    assert nib.load(str(tmp_path / "big.nii")).shape == (40000, 1, 1)


def test_rgb_and_complex(reg, tmp_path):
    rgb = np.zeros((4, 3, 2, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[1, 2, 1] = (1, 2, 3)
    img = synthetic_image((4, 3, 2)).replace(data=rgb)
    img.meta.intent = "rgb"
    reg.write(img, tmp_path / "rgb.nii")
    back_nib = nib.load(str(tmp_path / "rgb.nii"))
    assert back_nib.get_data_dtype().names == ("R", "G", "B")
    back = reg.read(tmp_path / "rgb.nii")[0]
    assert back.meta.intent == "rgb"
    np.testing.assert_array_equal(back.values(), rgb)
    cimg = synthetic_image((5, 4, 3), "complex64")
    reg.write(cimg, tmp_path / "c.nii.gz")
    np.testing.assert_array_equal(nib.load(str(tmp_path / "c.nii.gz")).dataobj, cimg.values())


def test_float16_stored_without_loss_and_bool_as_uint8(reg, tmp_path):
    img = synthetic_image((5, 4, 3), "float16")
    reg.write(img, tmp_path / "h.nii")
    back = nib.load(str(tmp_path / "h.nii"))
    assert back.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), img.values().astype(np.float32))


def test_pair_is_atomic(reg, tmp_path):
    img = synthetic_image()
    reg.write(img, tmp_path / "p.hdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.hdr", "p.img"]
    (tmp_path / "q.img").write_bytes(b"x")
    with pytest.raises(Exception, match="exists"):
        reg.write(img, tmp_path / "q.hdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.hdr", "p.img", "q.img"]


def test_header_extensions_and_descrip_survive(reg, tmp_path):
    src = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), synthetic_affine())
    src.header["descrip"] = b"made by a test"
    src.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"some comment"))
    src.header.set_intent("z score")
    nib.save(src, str(tmp_path / "src.nii"))
    img = reg.read(tmp_path / "src.nii")[0]
    assert img.meta.description == "made by a test"
    reg.write(img, tmp_path / "dst.nii.gz")
    back = nib.load(str(tmp_path / "dst.nii.gz"))
    assert back.header["descrip"].tobytes().rstrip(b"\0") == b"made by a test"
    assert [e.get_code() for e in back.header.extensions] == [6]
    assert back.header.get_intent()[0] == "z score"


def test_lazy_header_read_does_not_load_data(reg, tmp_path):
    big = nib.Nifti1Image(np.zeros((64, 64, 64), np.float32), np.eye(4))
    nib.save(big, str(tmp_path / "big.nii.gz"))
    img = reg.read(tmp_path / "big.nii.gz")[0]
    assert not isinstance(img.data, np.ndarray)
    assert img.shape == (64, 64, 64)


def test_truncated_gz_data_is_read_error(reg, tmp_path):
    from anyconv.errors import ReadError
    from anyconv.pipeline import load_data

    src = nib.Nifti1Image(
        np.random.default_rng(0).integers(0, 999, (30, 30, 30)).astype(np.int16), np.eye(4)
    )
    nib.save(src, str(tmp_path / "a.nii.gz"))
    raw = (tmp_path / "a.nii.gz").read_bytes()
    (tmp_path / "b.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError):
        for img in reg.read(tmp_path / "b.nii.gz"):
            load_data(img)


def test_write_options_compress_level(reg, testdata, tmp_path):
    img = reg.read(testdata / "nifti/nibabel/example4d.nii.gz")[0]
    sizes = {}
    for level in (0, 1, 9):
        out = tmp_path / f"l{level}.nii.gz"
        reg.write(img, out, options=WriteOptions(compress_level=level))
        sizes[level] = out.stat().st_size
        np.testing.assert_array_equal(nib.load(str(out)).dataobj, img.values())
    assert max(sizes[1], sizes[9]) < 0.5 * sizes[0]
    assert sizes[0] > img.values().nbytes  # level 0 stores


def test_detection_prefers_content_over_suffix(reg, testdata, tmp_path):
    src = testdata / "nifti2/nibabel/example_nifti2.nii.gz"
    assert reg.choose_reader(src).spec.format == "nifti2"
    assert reg.choose_reader(testdata / "analyze/spm99/avg152T1.hdr").spec.format == "analyze"
    assert reg.choose_reader(testdata / "nifti/niivue/ras.hdr").spec.format == "nifti1"
    renamed = tmp_path / "notes.txt"
    renamed.write_bytes(Path(testdata / "nifti/nibabel/anatomical.nii").read_bytes())
    assert reg.choose_reader(renamed).spec.format == "nifti1"


def test_same_image_gives_same_bytes(reg, tmp_path):
    img = synthetic_image((20, 10, 5), "int16")
    reg.write(img, tmp_path / "a.nii.gz")
    reg.write(img, tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


def test_dicom_extension_bytes_kept_as_stored(tmp_path):
    """ecode 2 (DICOM) comes back as its stored bytes whether or not pydicom is loaded."""
    import anyconv
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.eye(4))
    payload = b"\x08\x00\x60\x00CS\x02\x00MR"  # (0008,0060) Modality "MR", explicit VR
    img.header.extensions.append(nib.nifti1.Nifti1Extension(2, payload))
    path = tmp_path / "ext.nii"
    nib.save(img, path)
    got = anyconv.read(path).extras["nifti"]["extensions"]
    assert [(c, bytes(b).rstrip(b"\0")) for c, b in got] == [(2, payload)]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_gzip_voxels_equal_nibabel(tmp_path, endian):
    """The ISA-L path reads what nibabel reads, either byte order, and refuses a short file."""
    import anyconv
    import nibabel as nib
    from anyconv.errors import ReadError

    data = np.arange(4 * 5 * 6 * 2, dtype=np.int16).reshape(4, 5, 6, 2) - 100
    hdr = nib.Nifti1Header(endianness=endian)
    img = nib.Nifti1Image(data, np.diag([1.5, 2, 2.5, 1]), hdr)
    img.header.set_data_dtype(np.dtype(endian + "i2"))
    path = tmp_path / "x.nii.gz"
    nib.save(img, path)
    got = anyconv.read(path)
    assert type(got.data).__name__ == "GzipVoxels"
    np.testing.assert_array_equal(np.asarray(got.data), np.asarray(nib.load(path).dataobj))
    import gzip

    raw = gzip.decompress(path.read_bytes())
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(raw[:-50]))
    with pytest.raises(ReadError, match="truncated"):
        np.asarray(anyconv.read(short).data)
