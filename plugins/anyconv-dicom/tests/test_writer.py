"""The classic DICOM series writer: geometry and voxels agree with three independent readers.

Every written series is read back by our reader, dcm2niix and SimpleITK's GDCM series
reader; each may pick its own voxel order, so readings are compared voxel by voxel through
their affines (axis permutation and flips allowed). Every file passes dciodvfy without
errors and dcmdump parses it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from anyconv.errors import LossyConversionError
from anyconv.geometry import from_spacing_direction_origin, lps_to_ras
from anyconv.model import Image
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import assert_same_world, synthetic_affine, synthetic_image

#: dciodvfy warnings our output is known to give, each with the reason it is accepted.
KNOWN_WARNINGS = {
    r"Retired Person Name form": "placeholder PatientName ANONYMOUS has no '^' component",
    r"attribute <Laterality>": "Laterality (type 2C) is sent empty: the body part is unknown",
    r"Unrecognized defined term <OTHER> for value 3 of attribute <Image Type>": (
        "CT value 3 terms (AXIAL/LOCALIZER) do not fit a reformatted volume"
    ),
    r"Rescale (Slope|Intercept|Type)": "MR with scaling keeps RescaleSlope/Intercept exactly",
    r"Non-identity Modality LUT Module": "same: the MR IOD has no Modality LUT module",
    r"Standard Extended SOP Class": "same: Rescale attributes make the MR SOP class extended",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} missing in CI")
        pytest.skip(f"{name} not installed")
    return path


def _write(img: Image, folder: Path, **kw: object) -> list[Path]:
    return Registry().write(img, folder / "series.dcm", fmt="dicom", **kw)


def _aligned(values: np.ndarray, affine: np.ndarray, ref_affine: np.ndarray) -> np.ndarray:
    """``values`` (read with ``affine``) reordered onto the reference voxel grid.

    The voxel-to-voxel map must be an axis permutation with flips and integer shifts; the
    world coordinates of every voxel then agree within 1e-3 mm (checked here).
    """
    vox = np.linalg.inv(affine) @ ref_affine
    rounded = np.rint(vox)
    assert np.abs(vox - rounded).max() < 1e-3 / 0.9, f"grids differ:\n{vox}"
    perm = [int(np.flatnonzero(rounded[:3, c])[0]) for c in range(3)]
    out = np.transpose(values, perm + list(range(3, values.ndim)))
    for axis in range(3):
        if rounded[perm[axis], axis] < 0:
            out = np.flip(out, axis)
    return out


def _check(values: np.ndarray, affine: np.ndarray, img: Image) -> None:
    got = _aligned(values, affine, img.affine)
    assert got.shape == img.shape
    np.testing.assert_array_equal(got, img.values())


def _image(shape: tuple[int, ...], dtype: str = "int16", **kw: float) -> Image:
    img = synthetic_image(shape, dtype, **kw)
    img.meta.modality = "MR"
    img.meta.repetition_time = 2.5
    return img


SHAPES = [(11, 7, 5), (6, 5, 4, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_our_reader_round_trip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    img = _image(shape)
    files = _write(img, tmp_path)
    n = int(np.prod(shape[2:]))
    assert sorted(p.name for p in files) == [f"series_{i:04d}.dcm" for i in range(1, n + 1)]
    (back,) = Registry().read(tmp_path)
    _check(np.asarray(back.values()), back.affine, img)
    # Reading may reorder axes; the corner points of the reordered grid must still agree.
    vox = np.rint(np.linalg.inv(back.affine) @ img.affine)
    assert_same_world(back.affine @ vox, img.affine, img.shape, atol=1e-3)


def test_scaled_and_unsigned_values_kept(tmp_path: Path) -> None:
    img = _image((9, 8, 7), slope=0.25, inter=-3.0)
    _write(img, tmp_path / "s")
    (back,) = Registry().read(tmp_path / "s")
    got = _aligned(np.asarray(back.values()), back.affine, img.affine)
    np.testing.assert_allclose(got, img.values(), rtol=1e-6, atol=1e-6)
    # int32 values within the uint16 range: stored losslessly as uint16.
    data = ((np.arange(9 * 8 * 7).reshape(9, 8, 7) * 900) % 60000).astype(np.int32)
    wide = Image(data, synthetic_affine(), meta=img.meta)
    _write(wide, tmp_path / "u")
    (back,) = Registry().read(tmp_path / "u")
    _check(np.asarray(back.values()), back.affine, wide)


def test_int32_and_float_refused_unless_lossy(tmp_path: Path) -> None:
    big = Image(np.arange(4 * 5 * 3, dtype=np.int32).reshape(4, 5, 3) * 5000, synthetic_affine())
    with pytest.raises(LossyConversionError):
        _write(big, tmp_path / "a")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    _write(big, tmp_path / "a", options=WriteOptions(lossy=True))
    assert big.losses and "quantised" in big.losses[0]
    (back,) = Registry().read(tmp_path / "a")
    got = _aligned(np.asarray(back.values()), back.affine, big.affine)
    step = (big.values().max() - big.values().min()) / 65535
    assert np.abs(got - big.values()).max() <= step
    flt = _image((6, 5, 4), "float32")
    flt.data = np.asarray(flt.data) + np.float32(0.3)
    with pytest.raises(LossyConversionError):
        _write(flt, tmp_path / "f")
    _write(flt, tmp_path / "f", options=WriteOptions(lossy=True))
    (back,) = Registry().read(tmp_path / "f")
    got = _aligned(np.asarray(back.values()), back.affine, flt.affine)
    span = float(flt.values().max() - flt.values().min())
    np.testing.assert_allclose(got, flt.values(), atol=span / 65535)


def test_integer_valued_float_is_lossless(tmp_path: Path) -> None:
    img = _image((6, 5, 4), "float32")
    img.data = np.rint(np.asarray(img.data))
    _write(img, tmp_path)
    assert not img.losses
    (back,) = Registry().read(tmp_path)
    _check(np.asarray(back.values()), back.affine, img)


def test_identity_carried_and_placeholders(tmp_path: Path) -> None:
    import pydicom

    img = _image((5, 4, 3))
    img.meta.patient = {"name": "Doe^Jane", "id": "P42"}
    img.meta.study = {"uid": "1.2.3.4", "description": "brain"}
    img.meta.series_number = 7
    img.meta.series_description = "t1 processed"
    files = _write(img, tmp_path / "a")
    ds = [pydicom.dcmread(f) for f in files]
    assert {str(d.PatientName) for d in ds} == {"Doe^Jane"}
    assert {d.StudyInstanceUID for d in ds} == {"1.2.3.4"}
    assert {d.SeriesNumber for d in ds} == {7}
    assert len({d.SeriesInstanceUID for d in ds}) == 1
    assert len({d.SOPInstanceUID for d in ds}) == len(ds)
    assert all(d.SOPInstanceUID.startswith("2.25.") for d in ds)
    anon = synthetic_image((5, 4, 3), "int16")
    files = _write(anon, tmp_path / "b")
    d = pydicom.dcmread(files[0])
    assert (str(d.PatientName), d.PatientID, d.Modality) == ("ANONYMOUS", "ANON", "MR")
    assert anon.notes and "MR Image Storage" in anon.notes[-1]
    ct = _image((5, 4, 3))
    ct.meta.modality = "CT"
    d = pydicom.dcmread(_write(ct, tmp_path / "c")[0])
    assert d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("shape", SHAPES)
def test_dcm2niix_agrees(tmp_path: Path, shape: tuple[int, ...]) -> None:
    exe = _tool("dcm2niix")
    img = _image(shape)
    _write(img, tmp_path / "dcm")
    out = tmp_path / "nii"
    out.mkdir()
    run = subprocess.run(
        [exe, "-z", "n", "-f", "x", "-o", str(out), str(tmp_path / "dcm")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (nii,) = out.glob("*.nii")
    ref = nib.load(nii)
    _check(np.asarray(ref.dataobj).astype(np.float64), ref.affine, img)


@pytest.mark.parametrize("shape", SHAPES[:1])
def test_simpleitk_series_reader_agrees(tmp_path: Path, shape: tuple[int, ...]) -> None:
    sitk = pytest.importorskip("SimpleITK")
    img = _image(shape)
    _write(img, tmp_path)
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(tmp_path))
    assert len(names) == shape[2]
    reader.SetFileNames(names)
    vol = reader.Execute()
    values = sitk.GetArrayFromImage(vol).transpose(2, 1, 0)
    direction = np.array(vol.GetDirection()).reshape(3, 3)
    affine = lps_to_ras(from_spacing_direction_origin(vol.GetSpacing(), direction, vol.GetOrigin()))
    _check(values, affine, img)


def test_every_file_validates(tmp_path: Path) -> None:
    dciodvfy, dcmdump = _tool("dciodvfy"), _tool("dcmdump")
    cases = [_image((6, 5, 4, 2), slope=0.5), _image((6, 5, 3)), synthetic_image((4, 3, 2))]
    cases[1].meta.modality = "CT"
    warnings: set[str] = set()
    for n, img in enumerate(cases):
        for path in _write(img, tmp_path / str(n)):
            run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=30)
            lines = (run.stdout + run.stderr).splitlines()
            errors = [line for line in lines if line.startswith("Error")]
            assert not errors, f"{path.name}: {errors}"
            warnings |= {line for line in lines if line.startswith("Warning")}
            dump = subprocess.run([dcmdump, str(path)], capture_output=True, text=True, timeout=30)
            assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    unknown = [w for w in warnings if not any(re.search(p, w) for p in KNOWN_WARNINGS)]
    assert not unknown, unknown


def test_cli_folder_output(tmp_path: Path) -> None:
    from anyconv.cli import app
    from typer.testing import CliRunner

    img = _image((7, 6, 5))
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.data), img.affine), src)
    result = CliRunner().invoke(app, [str(src), str(tmp_path / "out") + "/", "--to", "dicom"])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out").glob("*.dcm"))
    assert len(files) == 5 and files[0].name == "in_0001.dcm"
    (back,) = Registry().read(tmp_path / "out")
    _check(np.asarray(back.values()), back.affine, img)
    big = tmp_path / "big.nii.gz"
    big_values = (np.full((3, 3, 3), 1e6) * [1, 2, 3]).astype(np.float32)  # beyond 16 bits
    nib.save(nib.Nifti1Image(big_values, np.eye(4)), big)
    result = CliRunner().invoke(app, [str(big), str(tmp_path / "o2") + "/", "--to", "dicom"])
    assert result.exit_code == 6, result.output


@pytest.mark.parametrize("case", ["ts_explicit_le", "philips_achieva_epi_classic"])
def test_corpus_dicom_keeps_identity_and_geometry(
    testdata: Path, tmp_path: Path, case: str
) -> None:
    import pydicom

    reg = Registry()
    (src,) = reg.read(testdata / "dicom" / case)
    files = [p for p in _write(src, tmp_path) if p.suffix == ".dcm"]  # core adds a BIDS .json
    sources = sorted(p for p in (testdata / "dicom" / case).rglob("*") if p.is_file())
    first = pydicom.dcmread(sources[0], force=True, stop_before_pixels=True)
    ds = pydicom.dcmread(files[0])
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID"):
        assert str(ds.get(kw)) == str(first.get(kw)), kw
    assert ds.SeriesInstanceUID != first.SeriesInstanceUID
    (back,) = reg.read(tmp_path)
    got = _aligned(np.asarray(back.values()), back.affine, src.affine)
    np.testing.assert_allclose(got, src.values(), rtol=1e-9)


def test_corpus_minc_through_dcm2niix(testdata: Path, tmp_path: Path) -> None:
    """Acceptance 2: ``mnc -> dicom`` then dcm2niix has the geometry of ``mnc -> nii.gz``."""
    from anyconv.cli import app
    from typer.testing import CliRunner

    exe = _tool("dcm2niix")
    src = testdata / "minc2/nibabel/small.mnc"
    out = tmp_path / "dcm"
    run = CliRunner().invoke(app, [str(src), str(out) + "/", "--to", "dicom", "--lossy"])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(app, [str(src), str(tmp_path / "x.nii.gz")])
    assert run.exit_code == 0, run.output
    ref = nib.load(tmp_path / "x.nii.gz")
    (tmp_path / "n").mkdir()
    done = subprocess.run(
        [exe, "-z", "n", "-f", "y", "-o", str(tmp_path / "n"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = nib.load(next((tmp_path / "n").glob("*.nii")))
    values = _aligned(np.asarray(got.get_fdata()), got.affine, ref.affine)
    want = np.asarray(ref.get_fdata())
    assert values.shape == want.shape
    np.testing.assert_allclose(values, want, atol=float(np.ptp(want)) / 65535 * 1.01)


def test_options_set_identity_and_new_study(tmp_path: Path) -> None:
    import pydicom

    img = _image((5, 4, 3))
    img.meta.study = {"uid": "1.2.3.4"}
    opts = {
        "patient_name": "Roe^Rick",
        "patient_id": "X9",
        "series_description": "seg",
        "series_number": "12",
        "study_description": "follow-up",
        "new_study": "yes",
    }
    d = pydicom.dcmread(_write(img, tmp_path, options=WriteOptions(extra=opts))[0])
    assert (str(d.PatientName), d.PatientID, d.SeriesDescription) == ("Roe^Rick", "X9", "seg")
    assert (d.SeriesNumber, d.StudyDescription) == (12, "follow-up")
    assert d.StudyInstanceUID.startswith("2.25.")
    assert img.meta.patient == {}  # the source image is left as it was


def test_existing_series_not_overwritten(tmp_path: Path) -> None:
    from anyconv.errors import OutputExistsError

    img = _image((5, 4, 3, 2))
    img.meta.repetition_time = None  # volumes told apart by TemporalPositionIdentifier alone
    first = _write(img, tmp_path)
    before = {p: p.read_bytes() for p in first}
    with pytest.raises(OutputExistsError):
        _write(img, tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
    (back,) = Registry().read(tmp_path)
    _check(np.asarray(back.values()), back.affine, img)


@pytest.mark.parametrize("ts", ["rle", "deflate"])
def test_compressed_transfer_syntaxes(tmp_path: Path, ts: str) -> None:
    import pydicom

    dcmdump = _tool("dcmdump")
    img = _image((11, 7, 5, 2))
    files = _write(img, tmp_path / "d", options=WriteOptions(extra={"ts": ts}))
    uid = {"rle": "1.2.840.10008.1.2.5", "deflate": "1.2.840.10008.1.2.1.99"}[ts]
    assert {pydicom.dcmread(f).file_meta.TransferSyntaxUID for f in files} == {uid}
    (back,) = Registry().read(tmp_path / "d")
    _check(np.asarray(back.values()), back.affine, img)
    for path in files:
        dump = subprocess.run([dcmdump, str(path)], capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    if ts == "rle":  # dicom3tools reads no deflated data set
        dciodvfy = _tool("dciodvfy")
        run = subprocess.run([dciodvfy, str(files[0])], capture_output=True, text=True)
        assert not [x for x in (run.stdout + run.stderr).splitlines() if x.startswith("Error")]
        exe = _tool("dcm2niix")
        (tmp_path / "n").mkdir()
        cmd = [exe, "-z", "n", "-f", "x", "-o", str(tmp_path / "n"), str(tmp_path / "d")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        ref = nib.load(next((tmp_path / "n").glob("*.nii")))
        _check(np.asarray(ref.dataobj).astype(np.float64), ref.affine, img)


def test_unknown_transfer_syntax_is_usage_error(tmp_path: Path) -> None:
    from anyconv.errors import UsageError

    with pytest.raises(UsageError):
        _write(_image((4, 3, 2)), tmp_path, options=WriteOptions(extra={"ts": "jpeg"}))


@pytest.mark.parametrize("shape", SHAPES[:1])
def test_enhanced_layout(tmp_path: Path, shape: tuple[int, ...]) -> None:
    import pydicom

    exe, dciodvfy, dcmdump = _tool("dcm2niix"), _tool("dciodvfy"), _tool("dcmdump")
    img = _image(shape, slope=0.5, inter=1.0)
    opts = WriteOptions(extra={"layout": "enhanced"}, sidecar=False)
    files = Registry().write(img, tmp_path / "e.dcm", fmt="dicom", options=opts)
    assert [p.name for p in files] == ["e.dcm"]
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"
    assert ds.NumberOfFrames == int(np.prod(shape[2:]))
    (back,) = Registry().read(files[0])
    got = _aligned(np.asarray(back.values()), back.affine, img.affine)
    np.testing.assert_allclose(got, img.values(), rtol=1e-9)
    run = subprocess.run([dciodvfy, str(files[0])], capture_output=True, text=True, timeout=30)
    lines = (run.stdout + run.stderr).splitlines()
    assert not [x for x in lines if x.startswith("Error")], lines
    unknown = [
        x
        for x in lines
        if x.startswith("Warning") and not any(re.search(p, x) for p in KNOWN_WARNINGS)
    ]
    assert not unknown, unknown
    dump = subprocess.run([dcmdump, str(files[0])], capture_output=True, text=True, timeout=30)
    assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    (tmp_path / "n").mkdir()
    cmd = [exe, "-z", "n", "-f", "x", "-o", str(tmp_path / "n"), str(files[0])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    ref = nib.load(next((tmp_path / "n").glob("*.nii")))
    got = _aligned(np.asarray(ref.get_fdata()), ref.affine, img.affine)
    np.testing.assert_allclose(got, img.values(), rtol=1e-6)


def test_enhanced_4d_refused(tmp_path: Path) -> None:
    from anyconv.errors import WriteError

    opts = WriteOptions(extra={"layout": "enhanced"})
    with pytest.raises(WriteError, match="3D images only"):
        _write(_image((4, 3, 2, 2)), tmp_path, options=opts)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_no_bids_sidecar_beside_a_dicom_series(testdata, tmp_path, run_cli):
    """A DICOM source carries BIDS metadata; the DICOM series written from it holds it itself."""
    src = testdata / "dicom" / "ts_explicit_le"
    code, _, stderr = run_cli(src, f"{tmp_path / 'out'}/", "--to", "dicom")
    assert code == 0, stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names
    assert all(n.endswith(".dcm") for n in names), names
