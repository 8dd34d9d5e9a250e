"""Core geometry helpers against nibabel's and SimpleITK's own conventions."""

import itertools

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv import Image, geometry
from anyconv.testing import assert_same_world, synthetic_affine, synthetic_image

PERMS = list(itertools.permutations(range(3)))
FLIPS = list(itertools.product((1, -1), repeat=3))
ORDERINGS = [(p, f) for p in PERMS for f in FLIPS]  # the 48 axis orderings


@pytest.mark.parametrize(("perm", "flips"), ORDERINGS)
def test_axcodes_match_nibabel_for_all_48_orderings(perm, flips):
    affine = synthetic_affine(angles_deg=(8, -5, 11), perm=perm, flips=flips)
    assert geometry.axcodes(affine) == nib.aff2axcodes(affine)


def test_lps_ras_is_an_involution():
    a = synthetic_affine()
    np.testing.assert_allclose(geometry.ras_to_lps(geometry.lps_to_ras(a)), a)
    assert geometry.lps_to_ras(np.eye(4))[0, 0] == -1


def test_spacing_direction_origin_round_trip():
    a = synthetic_affine(zooms=(0.5, 1.5, 3.0))
    spacing, direction, origin = geometry.spacing_direction_origin(a)
    np.testing.assert_allclose(spacing, (0.5, 1.5, 3.0))
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(
        geometry.from_spacing_direction_origin(spacing, direction, origin), a
    )


def test_obliquity_and_shear():
    assert geometry.obliquity(np.diag([2.0, 3.0, 4.0, 1.0])) == pytest.approx(0.0)
    rot = synthetic_affine(angles_deg=(10, 0, 0))
    assert geometry.obliquity(rot) == pytest.approx(10.0, abs=1e-6)
    assert not geometry.is_sheared(rot)
    sheared = rot.copy()
    sheared[:3, 1] += 0.3 * sheared[:3, 0]
    assert geometry.is_sheared(sheared)
    assert not geometry.is_sheared(geometry.orthogonalize(sheared))


def test_axis_aligned_snaps_but_keeps_codes():
    a = synthetic_affine(angles_deg=(10, -10, 5), perm=(2, 0, 1), flips=(1, -1, 1))
    snapped = geometry.axis_aligned(a)
    assert geometry.obliquity(snapped) == pytest.approx(0.0)
    assert geometry.axcodes(snapped) == geometry.axcodes(a)
    np.testing.assert_allclose(geometry.zooms(snapped), geometry.zooms(a))


@pytest.mark.parametrize(("perm", "flips"), ORDERINGS[::7])
def test_sitk_interop_keeps_world_coordinates(perm, flips):
    img = synthetic_image((7, 6, 5), "float32", affine=synthetic_affine(perm=perm, flips=flips))
    s = img.to_sitk()
    # ITK's own index->physical mapping (LPS) for the far corner:
    corner = (6, 5, 4)
    lps = np.asarray(s.TransformIndexToPhysicalPoint(corner))
    ras = geometry.voxel_to_world(img.affine, [corner])[0]
    np.testing.assert_allclose(lps * [-1, -1, 1], ras, atol=1e-6)
    assert s[corner] == pytest.approx(float(img.values()[corner]))
    back = Image.from_sitk(s)
    np.testing.assert_array_equal(back.values(), img.values())
    assert_same_world(back.affine, img.affine, img.shape)


def test_sitk_4d_and_vector_images():
    img4 = synthetic_image((5, 4, 3, 2), "int16")
    img4.meta.repetition_time = 2.5
    s = img4.to_sitk()
    assert s.GetDimension() == 4
    assert s.GetSpacing()[3] == pytest.approx(2.5)
    back = Image.from_sitk(s)
    np.testing.assert_array_equal(back.values(), img4.values())
    vec = sitk.Compose([sitk.Image([4, 3, 2], sitk.sitkFloat32) + float(i) for i in range(3)])
    vimg = Image.from_sitk(vec)
    assert vimg.shape == (4, 3, 2, 3)
    assert vimg.values()[0, 0, 0, 2] == 2.0


def test_nibabel_interop(tmp_path):
    img = synthetic_image((6, 5, 4), "int16", slope=0.5, inter=2.0)
    n = img.to_nibabel()
    nib.save(n, str(tmp_path / "a.nii"))
    back = nib.load(str(tmp_path / "a.nii"))
    np.testing.assert_allclose(back.get_fdata(), img.values(), rtol=1e-6)
    again = Image.from_nibabel(back)
    assert again.dtype == np.int16
    assert again.slope == 0.5
    assert again.inter == 2.0
    assert_same_world(again.affine, img.affine, img.shape)


def test_values_scaling_dtypes():
    img = synthetic_image((3, 3, 3), "int16", slope=2.0, inter=1.0)
    assert img.values().dtype == np.float32
    np.testing.assert_array_equal(img.values(), img.stored() * 2.0 + 1.0)
    assert synthetic_image((3, 3, 3), "int32", slope=2.0).values().dtype == np.float64
    assert synthetic_image((3, 3, 3), "uint8").values().dtype == np.uint8


def test_empty_array_maps_large_arrays_and_keeps_order():
    """Large reader buffers are mmap-populated (page faults cost 0.5 s per 262 MB here)."""
    import mmap

    import numpy as np
    from anyconv.model import POPULATE_BYTES, empty_array

    small = empty_array((4, 5, 6), "int16")
    assert small.flags.f_contiguous and small.flags.writeable
    big = empty_array((POPULATE_BYTES // 2 + 64,), np.dtype(">i2"))
    assert big.dtype == np.dtype(">i2") and big.flags.writeable
    if hasattr(mmap, "MAP_POPULATE"):
        owner = big
        while isinstance(owner, np.ndarray):
            owner = owner.base
        owner = owner.obj if isinstance(owner, memoryview) else owner
        assert isinstance(owner, mmap.mmap)
    big[:] = 7
    cube = empty_array((256, 256, 200), "float32")
    assert cube.flags.f_contiguous and cube.shape == (256, 256, 200)
