import gzip
import os
import shutil
import subprocess

import anyconv_mrtrix.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
from anyconv.errors import LossyConversionError, ReadError
from anyconv.registry import Registry
from anyconv.testing import (
    ReaderConformance,
    WriterConformance,
    assert_same_world,
    manifest_cases,
    synthetic_affine,
    synthetic_image,
)


def tool(name):
    """An MRtrix command; missing is a failure in CI, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (Debian package mrtrix3)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def mrconvert(src, dst, *args):
    subprocess.run(
        [tool("mrconvert"), "-quiet", "-force", str(src), str(dst), *map(str, args)],
        check=True,
        capture_output=True,
    )


def via_mrconvert(path, tmp):
    """Values (scaling applied) and RAS affine as MRtrix itself reads ``path``: mrconvert to
    NIfTI keeping the file's axis order, then nibabel."""
    out = tmp / (path.name.split(".")[0] + "_ref.nii")
    mrconvert(path, out, "-strides", ",".join(str(i + 1) for i in range(_ndim(path))))
    ref = nib.load(str(out))
    return np.asanyarray(ref.dataobj), ref.affine


def _ndim(path):
    out = subprocess.run(
        [tool("mrinfo"), "-ndim", str(path)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


class TestMrtrix(ReaderConformance, WriterConformance):
    plugin = "anyconv_mrtrix.plugin"
    read_formats = ("mrtrix",)
    write_format = "mrtrix"
    suffix = ".mif"
    dtypes = ("int16", "float32", "uint8", "float64", "int32")

    def independent_read(self, path):
        values, affine = via_mrconvert(path, path.parent)
        return values, affine


class TestMrtrixGz(WriterConformance):
    plugin = "anyconv_mrtrix.plugin"
    write_format = "mrtrix"
    suffix = ".mif.gz"

    def independent_read(self, path):
        return via_mrconvert(path, path.parent)


def test_corpus_matches_mrconvert(reg, testdata, tmp_path):
    """Every .mif of the corpus: voxels and corner world coordinates as MRtrix reads them."""
    cases = manifest_cases(testdata, "mrtrix")
    assert cases
    for case in cases:
        path = testdata / case["path"]
        img = reg.read(path)[0]
        values, affine = via_mrconvert(path, tmp_path)
        np.testing.assert_allclose(img.values(), values, rtol=1e-6, atol=1e-6, err_msg=str(path))
        assert_same_world(img.affine, affine, img.shape, atol=1e-4)


def test_ras_mif_matches_its_nifti(reg, testdata):
    """The corpus README: mrtrix/niivue/RAS.mif is nifti/niivue_nifti_space/RAS.nii.gz."""
    img = reg.read(testdata / "mrtrix/niivue/RAS.mif")[0]
    ref = nib.load(str(testdata / "nifti/niivue_nifti_space/RAS.nii.gz"))
    assert img.dtype == np.uint8 and img.is_scaled
    np.testing.assert_array_equal(img.stored(), np.asanyarray(ref.dataobj.get_unscaled()))
    # MRtrix prints the float32 slope with 6 digits: values agree to that precision
    np.testing.assert_allclose(img.values(), ref.get_fdata(), rtol=1e-5, atol=2e-4)
    # MRtrix 3.0.4 printed vox with 6 significant digits (2.38523 for 2.3852322): the origin
    # agrees to 1e-4 mm, the far corner (63 voxels on) to the 3e-4 mm that rounding leaves.
    np.testing.assert_allclose(img.affine[:3, 3], ref.affine[:3, 3], atol=1e-4)
    assert_same_world(img.affine, ref.affine, img.shape, atol=5e-4)


@pytest.mark.parametrize(
    "strides",
    ["1,2,3", "-1,2,3", "3,1,2", "-2,-3,1", "2,-1,3,4", "4,3,2,1", "-1,-2,-3,-4", "3,4,1,2"],
)
def test_layouts_written_by_mrconvert(reg, tmp_path, strides):
    """Any storage order and direction: same voxels and world as the NIfTI mrconvert read."""
    ndim = len(strides.split(","))
    shape = (7, 5, 4, 3)[:ndim]
    src = synthetic_image(shape, "int16")
    nii = tmp_path / "src.nii"
    nib.save(nib.Nifti1Image(src.stored(), src.affine), str(nii))
    out = tmp_path / "s.mif"
    mrconvert(nii, out, "-strides", strides)
    img = reg.read(out)[0]
    np.testing.assert_array_equal(img.values(), src.values())
    assert_same_world(img.affine, src.affine, shape)


@pytest.mark.parametrize("datatype", ["int8", "uint16be", "int32le", "float32be", "float64", "bit"])
def test_datatypes_written_by_mrconvert(reg, tmp_path, datatype):
    src = synthetic_image((9, 6, 5), "int16")
    values = src.values() % 2 if datatype == "bit" else src.values() % 100
    nii = tmp_path / "src.nii"
    nib.save(nib.Nifti1Image(values.astype(np.int16), src.affine), str(nii))
    out = tmp_path / "d.mif"
    mrconvert(nii, out, "-datatype", datatype)
    img = reg.read(out)[0]
    np.testing.assert_array_equal(img.values(), values)
    assert_same_world(img.affine, src.affine, values.shape)


def test_dw_scheme_both_ways(reg, tmp_path):
    """dw_scheme is in scanner RAS: our bvecs go out unchanged and mrinfo agrees."""
    img = synthetic_image((6, 5, 4, 4), "float32")
    bvecs = np.array([[0, 0, 0], [1, 0, 0], [0, 0.6, 0.8], [-0.48, 0.6, 0.64]])
    img.meta.bvals = [0.0, 1000.0, 1000.0, 3000.0]
    img.meta.bvecs = bvecs.tolist()
    out = tmp_path / "dwi.mif"
    reg.write(img, out, options=__import__("anyconv").specs.WriteOptions(sidecar=False))
    grad = subprocess.run(
        [tool("mrinfo"), "-dwgrad", str(out)], check=True, capture_output=True, text=True
    ).stdout
    table = np.loadtxt(grad.splitlines())
    np.testing.assert_allclose(table[:, 3], img.meta.bvals)
    np.testing.assert_allclose(table[1:, :3], bvecs[1:], atol=1e-6)
    back = reg.read(out)[0]
    assert back.meta.bvals == img.meta.bvals
    np.testing.assert_allclose(back.meta.bvecs, bvecs, atol=1e-12)
    # and a table MRtrix wrote itself (imported in FSL's voxel frame, stored in scanner RAS)
    nii = tmp_path / "dwi.nii"
    nib.save(nib.Nifti1Image(img.stored(), img.affine), str(nii))
    rows = [" ".join(map(str, [*g, b])) for g, b in zip(bvecs, img.meta.bvals, strict=True)]
    (tmp_path / "b.txt").write_text("\n".join(rows))
    mr = tmp_path / "mr.mif"
    mrconvert(nii, mr, "-grad", tmp_path / "b.txt")
    back = reg.read(mr)[0]
    np.testing.assert_allclose(back.meta.bvals, img.meta.bvals, atol=1e-3)
    np.testing.assert_allclose(back.meta.bvecs, bvecs, atol=1e-5)


def test_written_gz_and_scaling_read_by_mrtrix(reg, tmp_path):
    img = synthetic_image((9, 8, 7), "int16", slope=0.25, inter=-3.0)
    out = tmp_path / "s.mif.gz"
    reg.write(img, out)
    with gzip.open(out) as fh:
        assert fh.read(13) == b"mrtrix image\n"
    values, affine = via_mrconvert(out, tmp_path)
    np.testing.assert_allclose(values, img.values(), rtol=1e-6)
    assert_same_world(affine, img.affine, img.shape)
    back = reg.read(out)[0]
    assert back.dtype == np.int16 and (back.slope, back.inter) == (0.25, -3.0)


def test_same_format_keeps_keys_and_tr(reg, tmp_path):
    img = synthetic_image((5, 4, 3, 2), "uint8")
    img.meta.repetition_time = 2.5
    img.meta.echo_time = 0.03
    img.extras["mrtrix"] = {"keyval": {"comments": ["one", "two"], "mykey": ["x y"]}}
    out = tmp_path / "k.mif"
    reg.write(img, out)
    back = reg.read(out)[0]
    assert back.meta.repetition_time == 2.5 and back.meta.echo_time == 0.03
    assert back.extras["mrtrix"]["keyval"]["comments"] == ["one", "two"]
    assert back.extras["mrtrix"]["keyval"]["mykey"] == ["x y"]
    info = subprocess.run(
        [tool("mrinfo"), "-property", "mykey", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert info == "x y"


def test_sheared_affine_is_refused(reg, tmp_path):
    affine = synthetic_affine()
    affine[:3, 1] += affine[:3, 0] * 0.2
    with pytest.raises(LossyConversionError):
        reg.write(synthetic_image(affine=affine), tmp_path / "x.mif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("header", "what"),
    [
        (b"mrtrix image\ndim: 4,4,4\nvox: 1,1,1\nlayout: +0,+1,+2\ndatatype: Int16LE\n", "END"),
        (
            b"mrtrix image\ndim: 4,4\nvox: 1,1\nlayout: +0,+1\ndatatype: Int99\nfile: . 0\nEND\n",
            "datatype",
        ),
        (
            b"mrtrix image\ndim: 4,4\nvox: 1,1\nlayout: +0,+0\ndatatype: UInt8\nfile: . 0\nEND\n",
            "layout",
        ),
        (
            b"mrtrix image\ndim: 4,-4\nvox: 1,1\nlayout: +0,+1\ndatatype: UInt8\nfile: . 0\nEND\n",
            "dim",
        ),
        (
            b"mrtrix image\ndim: 99999,99999,9999\nvox: 1,1,1\nlayout: +0,+1,+2\n"
            b"datatype: Float64LE\nfile: . 128\nEND\n",
            "truncated",
        ),
        (
            b"mrtrix image\ndim: 4,4\nvox: 1,1\nlayout: +0,+1\ndatatype: UInt8\n"
            b"file: ../../etc/passwd 0\nEND\n",
            "outside",
        ),
    ],
)
def test_bad_headers_are_read_errors(reg, tmp_path, header, what):
    path = tmp_path / "bad.mif"
    path.write_bytes(header + b"\0" * 64)
    with pytest.raises(ReadError, match=what):
        reg.read(path)


def test_detached_header(reg, tmp_path):
    img = synthetic_image((5, 4, 3), "float32")
    (tmp_path / "d.dat").write_bytes(img.stored().tobytes(order="F"))
    aff = img.affine
    rot = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    rows = "".join(
        "transform: " + ",".join(str(float(v)) for v in [*rot[r], aff[r, 3]]) + "\n"
        for r in range(3)
    )
    zooms = ",".join(str(float(v)) for v in np.linalg.norm(aff[:3, :3], axis=0))
    (tmp_path / "d.mih").write_text(
        f"mrtrix image\ndim: 5,4,3\nvox: {zooms}\nlayout: +0,+1,+2\ndatatype: Float32LE\n"
        f"{rows}file: d.dat 0\nEND\n"
    )
    back = reg.read(tmp_path / "d.mih")[0]
    np.testing.assert_array_equal(back.values(), img.values())
    assert_same_world(back.affine, img.affine, img.shape)


def _canonical(values, affine):
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(values), affine))
    return np.asanyarray(img.dataobj), img.affine


@pytest.mark.parametrize(
    ("perm", "flips"),
    [((0, 1, 2), (-1, -1, 1)), ((1, 2, 0), (1, -1, 1)), ((2, 0, 1), (-1, 1, -1))],
)
def test_written_mif_any_axis_order_read_by_mrconvert(reg, tmp_path, perm, flips):
    """MRtrix realigns axes near RAS when it loads an image, so compare in RAS order: the
    same voxel lands on the same world point, oblique and permuted."""
    affine = synthetic_affine(perm=perm, flips=flips)
    img = synthetic_image((9, 7, 5), "int16", affine=affine)
    out = tmp_path / "p.mif"
    reg.write(img, out)
    ref = tmp_path / "p.nii"
    mrconvert(out, ref)
    theirs = nib.load(str(ref))
    ours_v, ours_a = _canonical(img.values(), img.affine)
    ref_v, ref_a = _canonical(np.asanyarray(theirs.dataobj), theirs.affine)
    np.testing.assert_array_equal(ref_v, ours_v)
    assert_same_world(ref_a, ours_a, ours_v.shape)
    back = reg.read(out)[0]
    np.testing.assert_array_equal(back.values(), img.values())
    assert_same_world(back.affine, img.affine, img.shape)


@pytest.mark.parametrize(
    ("perm", "flips"),
    [((0, 1, 2), (-1, -1, 1)), ((1, 2, 0), (1, -1, 1)), ((2, 0, 1), (-1, 1, -1))],
)
def test_mrconvert_realigned_mif_reads_at_the_same_world(reg, tmp_path, perm, flips):
    """mrconvert writes a far-from-RAS NIfTI as realigned axes plus a layout: our reading of
    that .mif puts every voxel where nibabel puts it in the source NIfTI."""
    src = synthetic_image((9, 7, 5), "int16", affine=synthetic_affine(perm=perm, flips=flips))
    nii = tmp_path / "src.nii"
    nib.save(nib.Nifti1Image(src.stored(), src.affine), str(nii))
    out = tmp_path / "r.mif"
    mrconvert(nii, out)
    img = reg.read(out)[0]
    ours_v, ours_a = _canonical(img.values(), img.affine)
    ref_v, ref_a = _canonical(src.values(), src.affine)
    np.testing.assert_array_equal(ours_v, ref_v)
    assert_same_world(ours_a, ref_a, ref_v.shape)


def test_gzipped_header_promising_too_much_is_read_error(reg, tmp_path):
    head = (
        b"mrtrix image\ndim: 4000,4000,4000\nvox: 1,1,1\nlayout: +0,+1,+2\n"
        b"datatype: Float32LE\nfile: . 128\nEND\n"
    )
    (tmp_path / "bomb.mif.gz").write_bytes(gzip.compress(head.ljust(128, b"\0") + bytes(1000)))
    with pytest.raises(ReadError, match="truncated"):
        reg.read(tmp_path / "bomb.mif.gz")


@pytest.mark.parametrize("dtype", ["complex64", "int64", "uint16", "int8"])
def test_more_types_read_by_mrconvert(reg, tmp_path, dtype):
    img = synthetic_image((6, 5, 4), dtype)
    out = tmp_path / "c.mif"
    reg.write(img, out)
    values, affine = via_mrconvert(out, tmp_path)
    np.testing.assert_array_equal(values, img.values())
    assert_same_world(affine, img.affine, img.shape)
    back = reg.read(out)[0]
    assert back.dtype == img.dtype
    np.testing.assert_array_equal(back.values(), img.values())


def test_dw_scheme_that_does_not_fit_is_left_out(reg, tmp_path):
    img = synthetic_image((4, 3, 2, 2), "uint8")
    img.extras["mrtrix"] = {"keyval": {"dw_scheme": ["0,0,0,0"]}}  # not written by the writer
    out = tmp_path / "w.mif"
    reg.write(img, out)
    text = out.read_bytes().replace(b"file: .", b"dw_scheme: 0,0,1,1000\nfile: .", 1)
    # keep the data offset right: drop as many header padding bytes as were added
    head, _, rest = text.partition(b"\nEND\n")
    added = len(b"dw_scheme: 0,0,1,1000\n")
    offset = int(head.rsplit(b" ", 1)[1])
    head = head.rsplit(b" ", 1)[0] + b" " + str(offset + added).encode()
    (tmp_path / "x.mif").write_bytes(head + b"\nEND\n" + rest)
    back = reg.read(tmp_path / "x.mif")[0]
    assert back.meta.bvals is None
    assert any("dw_scheme" in n for n in back.notes)
    np.testing.assert_array_equal(back.values(), img.values())


def test_dicom_dwi_gradients_match_mrtrix_reading_of_dcm2niix(tmp_path, testdata):
    """dw_scheme is scanner RAS: a DWI read by the installed DICOM reader and written as .mif
    has the gradient table MRtrix itself makes from dcm2niix's reference NIfTI + FSL bvecs."""
    full = Registry()
    images = full.read(testdata / "dicom/ge_pioneer_dwi_oblique")
    dwi = next(i for i in images if i.meta.bvals)
    out = tmp_path / "dwi.mif"
    full.write(dwi, out, fmt="mrtrix")
    ref = testdata / "dicom-ref/ge_pioneer_dwi_oblique/Ax_DWI_TENSOR_R2_1"
    ref_mif = tmp_path / "ref.mif"
    mrconvert(ref.with_suffix(".nii"), ref_mif, "-fslgrad", ref.with_suffix(".bvec"),
              ref.with_suffix(".bval"))  # fmt: skip

    def table(path):
        text = subprocess.run(
            [tool("mrinfo"), "-dwgrad", str(path)], check=True, capture_output=True, text=True
        ).stdout
        return np.loadtxt(text.splitlines())

    ours, theirs = table(out), table(ref_mif)
    np.testing.assert_allclose(ours[:, :3], theirs[:, :3], atol=1e-6)
    # MRtrix rescales b by the squared norm of FSL's rounded vectors: within 0.1 %
    np.testing.assert_allclose(ours[:, 3], theirs[:, 3], rtol=1e-3)
