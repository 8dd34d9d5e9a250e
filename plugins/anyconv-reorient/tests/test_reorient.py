import itertools

import anyconv_reorient.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
from anyconv import geometry
from anyconv.errors import UsageError
from anyconv.registry import Registry
from anyconv.testing import synthetic_affine, synthetic_image
from anyconv_reorient.transform import parse_axcodes, reorient
from hypothesis import given, settings
from hypothesis import strategies as st

ALL_CODES = [
    "".join(pair[side] for pair, side in zip(pairs, sides, strict=True))
    for pairs in itertools.permutations(("LR", "PA", "IS"))
    for sides in itertools.product((0, 1), repeat=3)
]
ORDERINGS = [
    (perm, flips)
    for perm in itertools.permutations(range(3))
    for flips in itertools.product((1, -1), repeat=3)
]


def test_there_are_48_codes():
    assert len(set(ALL_CODES)) == 48


def image_for(ordering, shape=(7, 5, 4, 2)):
    perm, flips = ordering
    affine = synthetic_affine(angles_deg=(11, -8, 14), perm=perm, flips=flips)
    img = synthetic_image(shape, "int16", affine=affine)
    img.meta.phase_axis = 1
    img.meta.slice_axis = 2
    img.meta.phase_encoding_direction = "j-"
    img.meta.slice_timing = [0.0, 0.5, 0.25, 0.75]
    return img


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ORDERINGS), st.sampled_from(ALL_CODES), st.data())
def test_every_voxel_keeps_its_world_coordinate(ordering, code, data):
    img = image_for(ordering)
    out = reorient(img, {"axcodes": code})
    assert "".join(geometry.axcodes(out.affine)) == code
    values = out.values()
    src = img.values()
    # map each new index to the old one through world space, compare values
    new_idx = np.array(list(np.ndindex(out.shape[:3])), dtype=float)
    world = geometry.voxel_to_world(out.affine, new_idx)
    old_idx = np.rint(geometry.voxel_to_world(np.linalg.inv(img.affine), world)).astype(int)
    back_world = geometry.voxel_to_world(img.affine, old_idx)
    np.testing.assert_allclose(back_world, world, atol=1e-6)
    t = data.draw(st.integers(0, img.shape[3] - 1))
    n = new_idx.astype(int)
    np.testing.assert_array_equal(
        values[n[:, 0], n[:, 1], n[:, 2], t], src[old_idx[:, 0], old_idx[:, 1], old_idx[:, 2], t]
    )
    # and back again gives the original array and affine
    again = reorient(out, {"axcodes": "".join(geometry.axcodes(img.affine))})
    np.testing.assert_array_equal(again.values(), src)
    np.testing.assert_allclose(again.affine, img.affine, atol=1e-9)


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_agrees_with_nibabel(ordering):
    img = image_for(ordering, shape=(6, 5, 4))
    nimg = nib.Nifti1Image(img.values(), img.affine)
    for code in ("RAS", "LPS", "PIR"):
        ours = reorient(img, {"axcodes": code})
        target = nib.orientations.axcodes2ornt(tuple(code))
        ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine), target)
        theirs = nimg.as_reoriented(ornt)
        np.testing.assert_array_equal(ours.values(), np.asanyarray(theirs.dataobj))
        np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-9)


def test_canonical_matches_nibabel_and_stays_oblique():
    img = image_for(((2, 0, 1), (-1, 1, -1)), shape=(6, 5, 4))
    ours = reorient(img, {})
    theirs = nib.as_closest_canonical(nib.Nifti1Image(img.values(), img.affine))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-9)
    assert geometry.obliquity(ours.affine) == pytest.approx(geometry.obliquity(img.affine))


def test_metadata_follows_the_axes():
    # voxel axes L, P, I -> asking R, A, S flips all three; asking P/A first swaps i and j
    img = synthetic_image((4, 3, 4), affine=np.diag([-1.0, -2.0, -3.0, 1.0]))
    img.meta.phase_axis, img.meta.slice_axis = 1, 2
    img.meta.phase_encoding_direction = "j-"
    img.meta.slice_timing = [0.0, 0.5, 0.25, 0.75]
    img.meta.bvecs = [[1.0, 0.0, 0.0]]
    out = reorient(img, {"axcodes": "RAS"})
    assert out.meta.phase_encoding_direction == "j"
    assert out.meta.slice_timing == [0.75, 0.25, 0.5, 0.0]
    assert out.meta.bvecs == [[1.0, 0.0, 0.0]]  # world frame: unchanged
    swapped = reorient(img, {"axcodes": "PLI"})
    assert swapped.meta.phase_axis == 0
    assert swapped.meta.phase_encoding_direction == "i-"
    assert swapped.meta.slice_timing == img.meta.slice_timing


@pytest.mark.parametrize("bad", ["RAX", "RRS", "RA", "LPSI", ""])
def test_bad_codes_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_axcodes(bad)


def test_registered_and_run_through_registry():
    reg = Registry(plugins=[plugin], entry_points=False)
    assert [t.name for t in reg.transforms()] == ["reorient"]
    img = image_for(ORDERINGS[5], shape=(5, 4, 3))
    out = reg.apply_transform(img, "reorient", {"axcodes": "LPS"})
    assert "".join(out.axcodes) == "LPS"


def test_cli_reorient_then_nibabel(testdata, tmp_path, run_cli):
    src = testdata / "nifti/niivue_nifti_space/PIR.nii.gz"
    out = tmp_path / "ras.nii.gz"
    code, _, stderr = run_cli(src, out, "--reorient", "RAS")
    assert code == 0, stderr
    got = nib.load(str(out))
    assert nib.aff2axcodes(got.affine) == ("R", "A", "S")
    ref = nib.load(str(testdata / "nifti/niivue_nifti_space/RAS.nii.gz"))
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-4)
    np.testing.assert_allclose(got.get_fdata(), ref.get_fdata())
    code, _, stderr = run_cli(src, tmp_path / "x.nii", "--reorient", "XYZ")
    assert code == 2
    assert "bad axis codes" in stderr


@pytest.mark.parametrize("code", ["RAS", "PIL", "SLA", "ILP"])
def test_slice_to_instance_map_follows_the_slices(code):
    img = image_for(ORDERINGS[13])
    img.sources = [
        {"path": f"f{k}_{t}", "axis": 2, "index": k, "volume": t}
        for t in range(img.shape[3])
        for k in range(img.shape[2])
    ]
    out = reorient(img, {"axcodes": code})
    src, new = img.values(), out.values()
    for before, after in zip(img.sources, out.sources, strict=True):
        assert after["path"] == before["path"]
        old_slice = np.take(src[..., before["volume"]], before["index"], axis=before["axis"])
        new_slice = np.take(new[..., after["volume"]], after["index"], axis=after["axis"])
        # the same voxels, whatever in-plane order they now have
        assert sorted(old_slice.ravel().tolist()) == sorted(new_slice.ravel().tolist())
    assert img.sources[0]["axis"] == 2  # the input image is not changed
