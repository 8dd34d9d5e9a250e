"""Every ordered pair of writable formats keeps voxels and world geometry, checked by our own
reader and by an independent one (nibabel, SimpleITK) on oblique, anisotropic, non-cubic data."""

import itertools

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv import geometry
from anyconv.registry import Registry
from anyconv.testing import assert_same_world, synthetic_affine, synthetic_image

FORMATS = {
    ".nii.gz": "nifti1",
    ".nrrd": "nrrd",
    ".mha": "metaimage",
    ".mgz": "mgh",
    ".mnc": "minc2",
}


def images():
    yield "int16+slope, RAS-ish", synthetic_image((9, 7, 5), "int16", slope=0.5, inter=-8.0)
    yield (
        "float32, PIL oblique",
        synthetic_image(
            (8, 6, 5), "float32", affine=synthetic_affine(perm=(1, 2, 0), flips=(1, -1, -1))
        ),
    )
    img4 = synthetic_image(
        (6, 5, 4, 3), "float32", affine=synthetic_affine(perm=(2, 0, 1), flips=(-1, 1, 1))
    )
    img4.meta.repetition_time = 2.0
    yield "float32 4D, SRP", img4


CASES = list(images())


def sitk_read(path):
    s = sitk.ReadImage(str(path))
    nd = s.GetDimension()
    k = min(nd, 3)
    lps = np.eye(4)
    lps[:k, :k] = np.asarray(s.GetDirection()).reshape(nd, nd)[:k, :k] * np.asarray(
        s.GetSpacing()[:k]
    )
    lps[:k, 3] = s.GetOrigin()[:k]
    return sitk.GetArrayFromImage(s).T, geometry.lps_to_ras(lps)


def nib_read(path):
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine


INDEPENDENT = {".nii.gz": nib_read, ".nrrd": sitk_read, ".mha": sitk_read, ".mgz": nib_read,
               ".mnc": nib_read}  # fmt: skip


def assert_same_world_values(values, affine, ref_values, ref_affine):
    """Voxel by voxel through world space, whatever the two voxel orders are."""
    if values.ndim > 3 and values.shape[0] == ref_values.shape[-1] != values.shape[-1]:
        values = np.moveaxis(values, 0, -1)  # nibabel's MINC keeps time first
    ijk = np.array(list(np.ndindex(ref_values.shape[:3])), dtype=float)
    world = geometry.voxel_to_world(ref_affine, ijk)
    other = geometry.voxel_to_world(np.linalg.inv(affine), world)
    idx = np.rint(other).astype(int)
    assert np.abs(other - idx).max() < 1e-4, "voxel centres do not coincide"
    spatial = values.shape[:3]
    assert all((idx[:, a] >= 0).all() and (idx[:, a] < spatial[a]).all() for a in range(3))
    ours = values[idx[:, 0], idx[:, 1], idx[:, 2]]
    theirs = ref_values[tuple(ijk.astype(int).T)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def reg():
    reg = Registry()
    have = {w.format for w in reg.writers()}
    missing = set(FORMATS.values()) - have
    assert not missing, f"writers not installed: {missing}"
    return reg


@pytest.mark.parametrize(("label", "image"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize(("src", "dst"), list(itertools.product(FORMATS, repeat=2)))
def test_pair(reg, tmp_path, label, image, src, dst):
    first = tmp_path / f"a{src}"
    reg.write(image, first)
    mid = reg.read(first)[0]
    np.testing.assert_allclose(mid.values(), image.values(), rtol=1e-6, atol=1e-6)
    assert_same_world(mid.affine, image.affine, image.shape)
    second = tmp_path / f"b{dst}"
    reg.write(mid.load(), second)
    back = reg.read(second)[0]
    np.testing.assert_allclose(back.values(), image.values(), rtol=1e-6, atol=1e-6)
    assert_same_world(back.affine, image.affine, image.shape)
    if image.ndim == 4 and dst == ".mnc":
        return  # nibabel gives a 4D MINC a 5x5 affine over (t, z, y, x); minc-tools check it
    values, affine = INDEPENDENT[dst](second)
    assert_same_world_values(values, affine, image.values(), image.affine)


def test_corpus_chain_nrrd_mgz_mha_nii(testdata, tmp_path, run_cli):
    """Issue 5 acceptance 3: x.nrrd -> y.mgz -> z.mha -> w.nii.gz, every voxel in place."""
    src = testdata / "nrrd/niivue/FLAIR.nrrd"
    chain = [src, tmp_path / "y.mgz", tmp_path / "z.mha", tmp_path / "w.nii.gz"]
    for a, b in itertools.pairwise(chain):
        code, _, stderr = run_cli(a, b)
        assert code == 0, stderr
    ref_values, ref_affine = sitk_read(src)
    for path in chain[1:]:
        values, affine = INDEPENDENT["".join(path.suffixes)](path)
        assert_same_world_values(values, affine, ref_values, ref_affine)
