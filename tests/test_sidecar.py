"""BIDS sidecar and FSL bval/bvec written beside images that carry acquisition metadata."""

import json

import anyconv_nifti.plugin as nifti_plugin
import nibabel as nib
import numpy as np
import pytest
from anyconv.registry import Registry
from anyconv.sidecar import fsl_bvecs
from anyconv.specs import WriteOptions
from anyconv.testing import synthetic_image


@pytest.fixture
def reg():
    return Registry(plugins=[nifti_plugin], entry_points=False)


def dwi_image(affine):
    img = synthetic_image((4, 3, 2, 3), "int16", affine=affine)
    img.meta.bvals = [0.0, 1000.0, 1000.0]
    img.meta.bvecs = [[0, 0, 0], [1, 0, 0], [0, 0.6, 0.8]]
    img.meta.echo_time = 0.089
    img.meta.repetition_time = 7.2
    img.meta.phase_encoding_direction = "j-"
    img.meta.bids = {"Manufacturer": "Acme", "EchoTime": 0.5}
    return img


def test_sidecar_written_with_image_and_typed_fields_win(reg, tmp_path):
    img = dwi_image(np.diag([-2.0, 2.0, 3.0, 1.0]))
    files = reg.write(img, tmp_path / "dwi.v1.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dwi.v1.bval", "dwi.v1.bvec", "dwi.v1.json", "dwi.v1.nii.gz",
    ]  # fmt: skip
    assert files[0].name == "dwi.v1.nii.gz"
    side = json.loads((tmp_path / "dwi.v1.json").read_text())
    assert side["EchoTime"] == 0.089
    assert side["RepetitionTime"] == 7.2
    assert side["Manufacturer"] == "Acme"
    assert side["PhaseEncodingDirection"] == "j-"
    assert side["ConversionSoftware"] == "anyconv"
    assert (tmp_path / "dwi.v1.bval").read_text().split() == ["0", "1000", "1000"]
    assert nib.load(str(tmp_path / "dwi.v1.nii.gz")).shape == (4, 3, 2, 3)


def test_no_sidecar_option_and_plain_images(reg, tmp_path):
    img = dwi_image(np.eye(4))
    reg.write(img, tmp_path / "a.nii", options=WriteOptions(sidecar=False))
    reg.write(synthetic_image(), tmp_path / "b.nii")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii", "b.nii"]


def test_bvecs_in_fsl_voxel_frame():
    # LAS storage (det < 0): i points left, so a rightward gradient is -1 along i.
    las = dwi_image(np.diag([-2.0, 2.0, 3.0, 1.0]))
    np.testing.assert_allclose(fsl_bvecs(las)[:, 1], [-1, 0, 0])
    # RAS storage (det > 0): +1 along i, negated by FSL's convention: the same -1.
    ras = dwi_image(np.diag([2.0, 2.0, 3.0, 1.0]))
    np.testing.assert_allclose(fsl_bvecs(ras)[:, 1], [-1, 0, 0])
    # Axes swapped: voxel i along world y (P->A), j along world x.
    swap = np.array([[0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    img = dwi_image(swap)  # det < 0
    np.testing.assert_allclose(fsl_bvecs(img)[:, 2], [0.6, 0, 0.8])
    np.testing.assert_allclose(np.linalg.norm(fsl_bvecs(img)[:, 1:], axis=0), 1.0)
