"""Analyze 7.5 writing (``--to analyze``): SPM2 conventions, checked with nibabel's reader."""

import anyconv_nifti.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
from anyconv import geometry
from anyconv.errors import LossyConversionError
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import WriterConformance, synthetic_affine, synthetic_image
from anyconv_nifti.writer import ANALYZE_WARNING


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


def nib_read(path):
    img = nib.load(str(path))
    # written as plain Analyze: no NIfTI magic, so nibabel takes it for SPM2 Analyze
    assert type(img) is nib.Spm2AnalyzeImage, type(img)
    return img.get_fdata(), img.affine


def las(affine, voxel=(2, 3, 1)):
    """The affine Analyze holds as is: LAS, same sizes, world origin on a whole voxel."""
    out = np.diag([-1.0, 1.0, 1.0, 1.0])
    out[:3, :3] *= geometry.zooms(affine)[None, :]
    out[:3, 3] = -out[:3, :3] @ np.asarray(voxel, dtype=float)
    return out


class TestAnalyzeWriter(WriterConformance):
    plugin = "anyconv_nifti.plugin"
    write_format = "analyze"
    suffix = ".hdr"
    dtypes = ("int16", "uint8", "float32", "int32", "float64")

    # Analyze holds no orientation: an oblique image is refused, other axis orders are written
    # reordered to LAS (both tested below). The kit's images use the LAS affine Analyze holds
    # as is (anisotropic sizes, origin on a whole voxel).
    affine = las(synthetic_affine())

    def independent_read(self, path):
        assert path.with_suffix(".img").exists()
        return nib_read(path)


def _world_lookup(img, path):
    """Reference values at the world position of each of our voxels."""
    values, affine = nib_read(path)
    ijk = np.argwhere(np.ones(img.shape[:3], bool))
    world = geometry.voxel_to_world(img.affine, ijk)
    inv = np.linalg.inv(affine)
    back = geometry.voxel_to_world(inv, world)
    assert np.allclose(back, np.rint(back), atol=1e-4), "voxel centres moved"
    back = np.rint(back).astype(int)
    return values[tuple(back.T)], img.values()[tuple(ijk.T)]


@pytest.mark.parametrize(
    ("perm", "flips"),
    [((0, 1, 2), (1, 1, 1)), ((0, 1, 2), (-1, 1, 1)), ((1, 2, 0), (1, -1, 1)),
     ((2, 0, 1), (-1, -1, -1)), ((1, 0, 2), (1, 1, -1))],
)  # fmt: skip
def test_any_axis_order_keeps_world(reg, tmp_path, perm, flips):
    affine = synthetic_affine(angles_deg=(0, 0, 0), perm=perm, flips=flips)
    affine[:3, 3] = -affine[:3, :3] @ [3, 1, 2]
    img = synthetic_image((7, 5, 4), "int16", affine=affine)
    reg.write(img, tmp_path / "a.hdr", fmt="analyze")
    ref, ours = _world_lookup(img, tmp_path / "a.hdr")
    np.testing.assert_array_equal(ref, ours)
    assert ANALYZE_WARNING in img.losses  # shown as a warning by the CLI
    back = reg.read(tmp_path / "a.hdr")[0]
    assert back.format == "analyze" and back.axcodes == ("L", "A", "S")


def test_oblique_needs_lossy(reg, tmp_path):
    img = synthetic_image()
    img.affine[:3, 3] = -img.affine[:3, :3] @ [2, 2, 2]
    with pytest.raises(LossyConversionError, match="oblique"):
        reg.write(img, tmp_path / "o.hdr", fmt="analyze")
    assert list(tmp_path.iterdir()) == []
    reg.write(img, tmp_path / "o.hdr", fmt="analyze", options=WriteOptions(lossy=True))
    assert any("oblique" in loss for loss in img.losses)


def test_origin_between_voxels_needs_lossy(reg, tmp_path):
    affine = las(synthetic_affine())
    affine[:3, 3] += [0.3, 0.0, 0.0]  # world origin 0.3 mm off a voxel centre
    img = synthetic_image((7, 5, 4), affine=affine)
    with pytest.raises(LossyConversionError, match="origin"):
        reg.write(img, tmp_path / "b.hdr", fmt="analyze")
    assert list(tmp_path.iterdir()) == []
    reg.write(img, tmp_path / "b.hdr", fmt="analyze", options=WriteOptions(lossy=True))
    assert any("origin moved 0.3 mm" in loss for loss in img.losses)
    _, ref_affine = nib_read(tmp_path / "b.hdr")
    np.testing.assert_allclose(ref_affine[:3, 3] - affine[:3, 3], [-0.3, 0, 0], atol=1e-5)


def test_centred_volume_uses_an_unset_origin(reg, tmp_path):
    """SPM's origin 0,0,0 means 'centre of the volume', even between voxels."""
    shape = (8, 7, 6)
    affine = np.diag([-2.0, 2.5, 3.0, 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    img = synthetic_image(shape, affine=affine)
    reg.write(img, tmp_path / "c.hdr", fmt="analyze")
    assert list(nib.load(str(tmp_path / "c.hdr")).header["origin"][:3]) == [0, 0, 0]
    ref, ours = _world_lookup(img, tmp_path / "c.hdr")
    np.testing.assert_array_equal(ref, ours)


def test_spm_template_round_trip(reg, testdata, tmp_path):
    """SPM99's avg152T1 read and written back: same voxels, affine and origin field."""
    src = testdata / "analyze/spm99/avg152T1.hdr"
    ref = nib.load(str(src))
    img = reg.read(src)[0]
    reg.write(img, tmp_path / "t.hdr", fmt="analyze")
    back = nib.load(str(tmp_path / "t.hdr"))
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-5)
    assert list(back.header["origin"][:3]) == list(ref.header["origin"][:3])
    assert back.get_data_dtype() == np.uint8


def test_4d_keeps_repetition_time_and_int8_widens(reg, tmp_path):
    img = synthetic_image((5, 4, 3, 2), "int8", affine=las(synthetic_affine()))
    img.meta.repetition_time = 2.0
    reg.write(img, tmp_path / "d.hdr", fmt="analyze")
    back = nib.load(str(tmp_path / "d.hdr"))
    assert back.get_data_dtype() == np.int16
    assert back.header.get_zooms()[3] == pytest.approx(2.0)
    np.testing.assert_array_equal(back.get_fdata(), img.values())


def test_hdr_suffix_still_means_nifti_pair(reg, tmp_path):
    img = synthetic_image()
    reg.write(img, tmp_path / "n.hdr")
    assert isinstance(nib.load(str(tmp_path / "n.hdr")), nib.Nifti1Pair)
