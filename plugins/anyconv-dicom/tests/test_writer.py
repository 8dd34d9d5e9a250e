"""The DICOM writer: geometry and voxels agree with independent readers, files validate.

Every written series is read back by our reader, dcm2niix and SimpleITK's GDCM series
reader; each may pick its own voxel order, so readings are compared voxel by voxel through
their affines (axis permutation and flips allowed). Every instance of every layout,
transfer syntax and value variant passes dciodvfy without errors (warnings only from
``dciodvfy_warnings.txt``, each with its reason) and dcmdump parses it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from anyconv.errors import LossyConversionError, OutputExistsError, UsageError, WriteError
from anyconv.geometry import from_spacing_direction_origin, lps_to_ras
from anyconv.model import Image
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import assert_same_world, synthetic_affine, synthetic_image
from anyconv_dicom.writer import CARRIED_TAGS, parse_set_values
from pydicom.dataset import Dataset

HERE = Path(__file__).parent
KNOWN_WARNINGS = [
    line.split("\t", 1)
    for line in (HERE / "dciodvfy_warnings.txt").read_text().splitlines()
    if line and not line.startswith("#")
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} missing in CI")
        pytest.skip(f"{name} not installed")
    return path


def _write(img: Image, folder: Path, **kw: object) -> list[Path]:
    options = kw.pop("options", None) or WriteOptions(sidecar=False)
    return Registry().write(img, folder / "series.dcm", fmt="dicom", options=options, **kw)


def _opts(**extra: str) -> WriteOptions:
    return WriteOptions(extra=extra, sidecar=False)


def _aligned(values: np.ndarray, affine: np.ndarray, ref_affine: np.ndarray) -> np.ndarray:
    """``values`` (read with ``affine``) reordered onto the reference voxel grid.

    The voxel-to-voxel map must be an axis permutation with flips and integer shifts; the
    world coordinates of every voxel then agree within 1e-3 mm (checked here).
    """
    vox = np.linalg.inv(affine) @ ref_affine
    rounded = np.rint(vox)
    assert np.abs(vox - rounded).max() < 1e-3 / 0.9, f"grids differ:\n{vox}"
    assert_same_world(affine @ rounded, ref_affine, values.shape[:3], atol=1e-3)
    perm = [int(np.flatnonzero(rounded[:3, c])[0]) for c in range(3)]
    out = np.transpose(values, perm + list(range(3, values.ndim)))
    for axis in range(3):
        if rounded[perm[axis], axis] < 0:
            out = np.flip(out, axis)
    return out


def _check(values: np.ndarray, affine: np.ndarray, img: Image, exact: bool = True) -> None:
    got = _aligned(values, affine, img.affine)
    assert got.shape == img.shape
    if exact:
        np.testing.assert_array_equal(got.astype(img.values().dtype), img.values())
    else:
        np.testing.assert_allclose(got, img.values(), rtol=1e-6, atol=1e-6)


def _ours(folder: Path) -> Image:
    (back,) = Registry().read(folder)
    return back


def _dcm2niix(src: Path, out: Path, *args: str) -> nib.Nifti1Image:
    exe = _tool("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "-z", "n", "-f", "x", *args, "-o", str(out), str(src)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, errors="replace")
    assert run.returncode == 0, run.stdout + run.stderr
    (nii,) = out.glob("*.nii")
    return nib.load(nii)


def _dcm2niix_date() -> int:
    run = subprocess.run([_tool("dcm2niix"), "-v"], capture_output=True, text=True)
    match = re.search(r"v1\.0\.(\d{8})", run.stdout + run.stderr)
    return int(match.group(1)) if match else 0


def _image(shape: tuple[int, ...], dtype: str = "int16", modality: str = "MR", **kw) -> Image:
    """Oblique, anisotropic, all voxels different; float32 made as int16 * slope + intercept.

    The float values are what a reader computes from scaled int16 (float32 arithmetic), the
    case DICOM's rescale keeps exactly.
    """
    if dtype == "float32":
        scaled = synthetic_image(shape, "int16", slope=0.37, inter=-11.5)
        img = Image(scaled.values().astype(np.float32), scaled.affine)
    else:
        img = synthetic_image(shape, dtype, **kw)
    img.meta.modality = modality
    img.meta.repetition_time = 2.5
    return img


SHAPES = [(11, 7, 5), (6, 5, 4, 3)]
DTYPES = ["int16", "float32"]


# --- classic series: round trips ------------------------------------------------------------


@pytest.mark.parametrize("modality", ["MR", "CT"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_our_reader_round_trip(
    tmp_path: Path, shape: tuple[int, ...], dtype: str, modality: str
) -> None:
    img = _image(shape, dtype, modality=modality)
    files = _write(img, tmp_path)
    n = int(np.prod(shape[2:]))
    assert sorted(p.name for p in files) == [f"series_{i:04d}.dcm" for i in range(1, n + 1)]
    back = _ours(tmp_path)
    _check(np.asarray(back.values()), back.affine, img)
    assert not img.losses


@pytest.mark.parametrize("modality", ["MR", "CT"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_dcm2niix_agrees(tmp_path: Path, shape: tuple[int, ...], dtype: str, modality: str) -> None:
    img = _image(shape, dtype, modality=modality)
    _write(img, tmp_path / "dcm")
    ref = _dcm2niix(tmp_path / "dcm", tmp_path / "nii")
    values = np.asarray(ref.dataobj).astype(np.float64)  # dcm2niix keeps stored values
    slope, inter = ref.header.get_slope_inter()
    if slope is not None:
        values = values * slope + (inter or 0.0)
    got = _aligned(values, ref.affine, img.affine)
    np.testing.assert_allclose(got, img.values(), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_simpleitk_series_reader_agrees(tmp_path: Path, dtype: str, shape: tuple[int, ...]) -> None:
    """GDCM's series reader, one volume at a time (files are numbered volume-major)."""
    sitk = pytest.importorskip("SimpleITK")
    img = _image(shape, dtype)
    _write(img, tmp_path)
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path))
    nk, nt = shape[2], int(np.prod(shape[3:]))
    assert len(names) == nk * nt
    names = sorted(
        names, key=lambda n: int(pydicom.dcmread(n, stop_before_pixels=True).InstanceNumber)
    )
    want = img.values().reshape((*shape[:3], nt), order="F")
    for t in range(nt):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(names[t * nk : (t + 1) * nk])
        vol = reader.Execute()
        values = sitk.GetArrayFromImage(vol).transpose(2, 1, 0).astype(np.float64)
        direction = np.array(vol.GetDirection()).reshape(3, 3)
        origin, spacing = vol.GetOrigin(), vol.GetSpacing()
        affine = lps_to_ras(from_spacing_direction_origin(spacing, direction, origin))
        got = _aligned(values, affine, img.affine)
        np.testing.assert_allclose(got, want[..., t], rtol=1e-6, atol=1e-5)


# --- values ---------------------------------------------------------------------------------


def test_scaled_and_unsigned_values_kept(tmp_path: Path) -> None:
    img = _image((9, 8, 7), slope=0.25, inter=-3.0)
    _write(img, tmp_path / "s")
    back = _ours(tmp_path / "s")
    _check(np.asarray(back.values()), back.affine, img, exact=False)
    # int32 values within the uint16 range: stored losslessly as uint16.
    data = ((np.arange(9 * 8 * 7).reshape(9, 8, 7) * 900) % 60000).astype(np.int32)
    wide = Image(data, synthetic_affine(), meta=img.meta)
    _write(wide, tmp_path / "u")
    d = pydicom.dcmread(next((tmp_path / "u").glob("*.dcm")))
    assert (d.PixelRepresentation, "RescaleSlope" in d) == (0, False)
    back = _ours(tmp_path / "u")
    _check(np.asarray(back.values()), back.affine, wide)


def test_wide_integers_and_scaled_floats_kept_exactly(tmp_path: Path) -> None:
    """Values on a grid of <= 65536 steps go through RescaleSlope/Intercept without loss."""
    big = Image(
        np.arange(4 * 5 * 3, dtype=np.int32).reshape(4, 5, 3) * 5000 - 7, synthetic_affine()
    )
    _write(big, tmp_path / "a")
    assert not big.losses
    d = pydicom.dcmread(next((tmp_path / "a").glob("*.dcm")))
    assert (float(d.RescaleSlope), float(d.RescaleIntercept)) == (5000.0, -7.0)
    back = _ours(tmp_path / "a")
    _check(np.asarray(back.values()), back.affine, big)
    scaled = Image(big.data, synthetic_affine(), slope=0.5, inter=0.25)  # int32 with scaling
    _write(scaled, tmp_path / "s")
    d = pydicom.dcmread(next((tmp_path / "s").glob("*.dcm")))
    assert (float(d.RescaleSlope), float(d.RescaleIntercept)) == (2500.0, -3.25)
    back = _ours(tmp_path / "s")
    _check(np.asarray(back.values()), back.affine, scaled)
    # float32 made from int16 * slope + intercept, as a reader computes it
    q = np.random.default_rng(0).integers(-3000, 3000, (6, 5, 4)).astype(np.int16)
    flt = Image(Image(q, synthetic_affine(), slope=0.00123, inter=5.1).values(), synthetic_affine())
    assert flt.dtype == np.float32
    _write(flt, tmp_path / "f")
    back = _ours(tmp_path / "f")
    got = _aligned(np.asarray(back.values()), back.affine, flt.affine)
    np.testing.assert_array_equal(got.astype(np.float32), flt.values())


def test_unrepresentable_values_refused_unless_lossy(tmp_path: Path) -> None:
    noisy = np.random.default_rng(1).normal(size=(6, 5, 4)).astype(np.float32) * 1000
    flt = Image(noisy, synthetic_affine())
    with pytest.raises(LossyConversionError):
        _write(flt, tmp_path / "f")
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").iterdir())
    _write(flt, tmp_path / "f", options=WriteOptions(lossy=True, sidecar=False))
    assert flt.losses and "quantised" in flt.losses[0]
    back = _ours(tmp_path / "f")
    got = _aligned(np.asarray(back.values()), back.affine, flt.affine)
    span = float(flt.values().max() - flt.values().min())
    np.testing.assert_allclose(got, flt.values(), atol=span / 65535)
    wide = Image(np.arange(70000, dtype=np.int32).reshape(70, 50, 20), synthetic_affine())
    with pytest.raises(LossyConversionError, match="16-bit"):
        _write(wide, tmp_path / "w")


def test_integer_valued_float_is_lossless(tmp_path: Path) -> None:
    img = _image((6, 5, 4), "float32")
    img.data = np.rint(np.asarray(img.data))
    _write(img, tmp_path)
    assert not img.losses
    back = _ours(tmp_path)
    _check(np.asarray(back.values()), back.affine, img)


# --- identity -------------------------------------------------------------------------------


def test_placeholders_without_a_dicom_source(tmp_path: Path) -> None:
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
    d = pydicom.dcmread(_write(anon, tmp_path / "b")[0])
    assert (str(d.PatientName), d.PatientID, d.Modality) == ("ANONYMOUS", "ANON", "MR")
    assert anon.notes and "written as MR" in anon.notes[-1]
    ct = _image((5, 4, 3), modality="CT")
    d = pydicom.dcmread(_write(ct, tmp_path / "c")[0])
    assert d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_options_set_identity_and_new_study(tmp_path: Path) -> None:
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
    d = pydicom.dcmread(_write(img, tmp_path, options=_opts(**opts))[0])
    assert (str(d.PatientName), d.PatientID, d.SeriesDescription) == ("Roe^Rick", "X9", "seg")
    assert (d.SeriesNumber, d.StudyDescription) == (12, "follow-up")
    assert d.StudyInstanceUID.startswith("2.25.")
    assert img.meta.patient == {}  # the source image is left as it was


def test_set_values_by_keyword_and_tag(tmp_path: Path) -> None:
    img = _image((5, 4, 3))
    values = {
        "PatientName": "Doe^John",
        "(0010,0020)": "ID-7",
        "00081030": "Study set",
        "0020,0011": "42",
        "PatientWeight": "71.5",
        "ImageComments": "a\\b stays one LT value",
        "OtherPatientNames": "A^B\\C^D",
    }
    options = WriteOptions(set_values=values, sidecar=False)
    files = _write(img, tmp_path, options=options)
    for d in map(pydicom.dcmread, files):
        assert (str(d.PatientName), d.PatientID, d.StudyDescription) == (
            "Doe^John",
            "ID-7",
            "Study set",
        )
        assert (d.SeriesNumber, float(d.PatientWeight)) == (42, 71.5)
        assert d.ImageComments == "a\\b stays one LT value"
        assert [str(x) for x in d.OtherPatientNames] == ["A^B", "C^D"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("PatientNam", "x", "unknown DICOM keyword"),
        ("0029,1010", "x", "private"),
        ("0018,0003", "x", "not a standard"),
        ("StudyDate", "2024-01-02", "invalid DA"),
        ("SeriesNumber", "twelve", "invalid IS"),
        ("PatientName", "x" * 70, "invalid PN"),
        ("Rows", "5", "derived from the image"),
        ("ImagePositionPatient", "0\\0\\0", "derived from the image"),
        ("ReferencedImageSequence", "x", "cannot be set"),
    ],
)
def test_set_values_refused(key: str, value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_set_values({key: value})


def test_set_on_the_command_line(tmp_path: Path, run_cli) -> None:
    img = _image((7, 6, 5))
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.data), img.affine), src)
    out = f"{tmp_path / 'out'}/"
    code, _, err = run_cli(src, out, "--to", "dicom", "--set", "StudyDate=20240102")
    assert code == 0, err
    d = pydicom.dcmread(next((tmp_path / "out").glob("*.dcm")))
    assert d.StudyDate == "20240102"
    code, _, err = run_cli(src, f"{tmp_path / 'o2'}/", "--to", "dicom", "--set", "StudyDate=x")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())


def _header_ds(img: Image) -> Dataset:
    return Dataset.from_json(img.extras["dicom"]["header"])


def _carried_values(ds: Dataset) -> dict[int, str]:
    return {int(e.tag): str(e.value) for e in ds if int(e.tag) in CARRIED_TAGS}


@pytest.mark.parametrize(
    "case", ["ts_explicit_le", "siemens_trio_mosaic_ax_asc35", "philips_achieva_enhanced_t1_balls"]
)
def test_corpus_dicom_keeps_identity_and_geometry(
    testdata: Path, tmp_path: Path, case: str
) -> None:
    """DICOM -> DICOM: patient/study/series attributes as the header has them, new UIDs.

    A de-mosaiced series must not look like a mosaic (no MOSAIC image type, no CSA or other
    private elements), and dcm2niix must read it with the source's geometry.
    """
    src = _ours(testdata / "dicom" / case)
    header = _header_ds(src)
    files = _write(src, tmp_path / "out")
    ds = pydicom.dcmread(files[0])
    want = {t: v for t, v in _carried_values(header).items() if header[t].VR != "SQ"}
    got = _carried_values(ds)
    assert {t: got.get(t) for t in want} == want
    for elem in header:  # sequences as they are, references reduced to their two UIDs
        if int(elem.tag) in CARRIED_TAGS and elem.VR == "SQ":
            keys = [(0x00081150, 0x00081155)] if "Referenced" in elem.keyword else []
            for a, b in zip(elem.value, ds[elem.tag].value, strict=True):
                wanted = {t: a[t].value for t in (keys[0] if keys else a.keys()) if t in a}
                assert {e.tag: e.value for e in b} == wanted, elem.keyword
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID"):
        assert str(ds.get(kw)) == str(header.get(kw)), kw
    assert ds.FrameOfReferenceUID == header.FrameOfReferenceUID  # same patient space
    assert ds.SeriesInstanceUID != header.SeriesInstanceUID
    assert ds.SOPInstanceUID != header.SOPInstanceUID
    assert "MOSAIC" not in ds.ImageType
    assert not [e for e in ds if e.tag.is_private]
    back = _ours(tmp_path / "out")
    got_values = _aligned(np.asarray(back.values()), back.affine, src.affine)
    np.testing.assert_allclose(got_values, src.values(), rtol=1e-9)
    ref = _dcm2niix(tmp_path / "out", tmp_path / "nii")
    got_values = _aligned(np.asarray(ref.get_fdata()), ref.affine, src.affine)
    np.testing.assert_allclose(got_values, src.values(), rtol=1e-6, atol=1e-4)
    dciodvfy = _tool("dciodvfy")
    for layout in ("classic", "enhanced"):
        out = _write(src, tmp_path / layout, options=_opts(layout=layout))[0]
        run = subprocess.run([dciodvfy, str(out)], capture_output=True, text=True, errors="replace")
        errors = [x for x in (run.stdout + run.stderr).splitlines() if x.startswith("Error")]
        assert not errors, (layout, errors)  # warnings may be the source's own content
    new = _write(src, tmp_path / "new", options=_opts(new_study="yes"))
    d = pydicom.dcmread(new[0])
    assert d.StudyInstanceUID != header.StudyInstanceUID
    assert d.FrameOfReferenceUID != header.FrameOfReferenceUID


def test_anonymized_header_is_carried_as_it_is(testdata: Path, tmp_path: Path) -> None:
    """What the (anonymized) header says is written, and nothing identifying is added."""
    src = _ours(testdata / "dicom" / "siemens_trio_mosaic_ax_asc35")
    header = src.extras["dicom"]["header"]
    for keyword in ("PatientBirthDate", "InstitutionName", "InstitutionAddress", "StudyDate"):
        header.pop(f"{pydicom.datadict.tag_for_keyword(keyword):08X}", None)
    header["00100010"] = {"vr": "PN"}  # emptied name
    header["00100020"] = {"vr": "LO", "Value": ["SUBJ01"]}
    header["00280303"] = {"vr": "CS", "Value": ["MODIFIED"]}
    header["00120062"] = {"vr": "CS", "Value": ["YES"]}
    header["00120063"] = {"vr": "LO", "Value": ["test profile"]}
    files = _write(src, tmp_path)
    ds = pydicom.dcmread(files[0])
    assert (str(ds.PatientName), ds.PatientID) == ("", "SUBJ01")
    assert (ds.LongitudinalTemporalInformationModified, ds.PatientIdentityRemoved) == (
        "MODIFIED",
        "YES",
    )
    for keyword in ("InstitutionName", "InstitutionAddress"):
        assert keyword not in ds
    assert ds.PatientBirthDate == "" and ds.StudyDate == ""  # type 2, left empty
    source = _carried_values(_header_ds(src))
    for tag, value in _carried_values(ds).items():
        if value and tag not in (0x0020000E, 0x0020000D, 0x00200052):
            assert source.get(tag) == value, pydicom.datadict.keyword_for_tag(tag)
    enhanced = _write(src, tmp_path / "e", options=_opts(layout="enhanced"))[0]
    e = pydicom.dcmread(enhanced)
    want = _header_ds(src)
    assert (e.ContentDate, e.ContentTime) == (want.SeriesDate, want.SeriesTime)  # no new date
    dciodvfy = _tool("dciodvfy")
    for path in (files[0], enhanced):
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [x for x in (run.stdout + run.stderr).splitlines() if x.startswith("Error")]
        assert not errors


# --- outputs --------------------------------------------------------------------------------


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
    back = _ours(tmp_path / "out")
    _check(np.asarray(back.values()), back.affine, img)
    big = tmp_path / "big.nii.gz"
    noisy = np.random.default_rng(2).normal(size=(3, 3, 3)).astype(np.float32) * 1e6
    nib.save(nib.Nifti1Image(noisy, np.eye(4)), big)
    result = CliRunner().invoke(app, [str(big), str(tmp_path / "o2") + "/", "--to", "dicom"])
    assert result.exit_code == 6, result.output


def test_existing_series_refused_before_writing(tmp_path: Path, monkeypatch) -> None:
    import anyconv_dicom.writer as writer

    img = _image((5, 4, 3, 2))
    img.meta.repetition_time = None  # volumes told apart by TemporalPositionIdentifier alone
    first = _write(img, tmp_path)
    before = {p: p.read_bytes() for p in first}
    calls = []
    monkeypatch.setattr(writer, "_write_classic", lambda *a: calls.append(a))
    with pytest.raises(OutputExistsError, match=r"series_0001\.dcm: output exists"):
        _write(img, tmp_path)
    assert not calls  # refused before any file was made
    monkeypatch.undo()
    (tmp_path / "series_0001.dcm").unlink()  # another file of the series still in the way
    with pytest.raises(OutputExistsError):
        _write(img, tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == {
        p: b for p, b in before.items() if p.name != "series_0001.dcm"
    }
    _write(img, tmp_path, force=True)
    back = _ours(tmp_path)
    _check(np.asarray(back.values()), back.affine, img)


def test_existing_series_exit_code_on_the_command_line(tmp_path: Path, run_cli) -> None:
    src = tmp_path / "in.nii.gz"
    img = _image((6, 5, 4))
    nib.save(nib.Nifti1Image(np.asarray(img.data), img.affine), src)
    out = f"{tmp_path / 'out'}/"
    assert run_cli(src, out, "--to", "dicom")[0] == 0
    code, _, err = run_cli(src, out, "--to", "dicom")
    assert code == 5 and "in_0001.dcm: output exists" in err and len(err.strip().splitlines()) == 1
    assert run_cli(src, out, "--to", "dicom", "--force")[0] == 0


@pytest.mark.parametrize("ts", ["rle", "deflate", "jpeg2000"])
def test_compressed_transfer_syntaxes(tmp_path: Path, ts: str) -> None:
    dcmdump = _tool("dcmdump")
    img = _image((40, 33, 3, 2))
    files = _write(img, tmp_path / "d", options=_opts(ts=ts))
    uid = {
        "rle": "1.2.840.10008.1.2.5",
        "deflate": "1.2.840.10008.1.2.1.99",
        "jpeg2000": "1.2.840.10008.1.2.4.90",
    }[ts]
    assert {pydicom.dcmread(f).file_meta.TransferSyntaxUID for f in files} == {uid}
    back = _ours(tmp_path / "d")
    _check(np.asarray(back.values()), back.affine, img)
    for path in files:
        dump = subprocess.run([dcmdump, str(path)], capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    if ts != "deflate":  # dicom3tools and dcm2niix read no deflated data set
        ref = _dcm2niix(tmp_path / "d", tmp_path / "n")
        _check(np.asarray(ref.dataobj), ref.affine, img)


@pytest.mark.parametrize("ts", ["explicit", "rle", "deflate", "jpeg2000"])
def test_fast_series_bytes_are_what_pydicom_writes(tmp_path: Path, ts: str) -> None:
    """The template writer re-encodes only per-instance elements: same bytes as dcmwrite."""
    import io

    img = _image((40, 33, 3, 2))
    for path in _write(img, tmp_path, options=_opts(ts=ts))[::2]:
        buf = io.BytesIO()
        pydicom.dcmread(path).save_as(buf, enforce_file_format=True)
        assert buf.getvalue() == path.read_bytes()


def test_jpeg2000_decodes_exactly_with_two_decoders(tmp_path: Path) -> None:
    """OpenJPEG (pylibjpeg) encodes; GDCM and OpenJPEG both decode the very same values."""
    img = _image((40, 33, 3), "float32")
    files = _write(img, tmp_path, options=_opts(ts="jpeg2000"))
    raw = _write(img, tmp_path / "raw")
    for enc, plain in zip(sorted(files), sorted(raw), strict=True):
        want = pydicom.dcmread(plain).pixel_array
        for plugin in ("gdcm", "pylibjpeg"):
            got = pydicom.pixels.pixel_array(enc, decoding_plugin=plugin)
            np.testing.assert_array_equal(got, want)
    with pytest.raises(WriteError, match="32 x 32"):
        _write(_image((31, 40, 3)), tmp_path / "small", options=_opts(ts="jpeg2000"))


def test_unknown_options_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        _write(_image((4, 3, 2)), tmp_path, options=_opts(ts="jpeg"))
    with pytest.raises(UsageError):
        _write(_image((4, 3, 2)), tmp_path, options=_opts(layout="mosaic"))
    with pytest.raises(UsageError, match="uncompressed"):
        _write(_image((40, 40, 2)), tmp_path, options=_opts(layout="parametric", ts="rle"))


def test_no_bids_sidecar_beside_a_dicom_series(testdata, tmp_path, run_cli):
    """A DICOM source carries BIDS metadata; the DICOM series written from it holds it itself."""
    src = testdata / "dicom" / "ts_explicit_le"
    code, _, stderr = run_cli(src, f"{tmp_path / 'out'}/", "--to", "dicom")
    assert code == 0, stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names
    assert all(n.endswith(".dcm") for n in names), names


def test_corpus_minc_through_dcm2niix(testdata: Path, tmp_path: Path) -> None:
    """Acceptance 2: ``mnc -> dicom`` then dcm2niix has the geometry of ``mnc -> nii.gz``."""
    from anyconv.cli import app
    from typer.testing import CliRunner

    src = testdata / "minc2/nibabel/small.mnc"
    out = tmp_path / "dcm"
    run = CliRunner().invoke(app, [str(src), str(out) + "/", "--to", "dicom", "--lossy"])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(app, [str(src), str(tmp_path / "x.nii.gz")])
    assert run.exit_code == 0, run.output
    ref = nib.load(tmp_path / "x.nii.gz")
    got = _dcm2niix(out, tmp_path / "n")
    values = _aligned(np.asarray(got.get_fdata()), got.affine, ref.affine)
    want = np.asarray(ref.get_fdata())
    assert values.shape == want.shape
    np.testing.assert_allclose(values, want, atol=float(np.ptp(want)) / 65535 * 1.01)


# --- enhanced -------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["MR", "CT"])
@pytest.mark.parametrize("shape", SHAPES)
def test_enhanced_layout(tmp_path: Path, shape: tuple[int, ...], modality: str) -> None:
    img = _image(shape, "float32", modality=modality)
    files = Registry().write(img, tmp_path / "e.dcm", fmt="dicom", options=_opts(layout="enhanced"))
    assert [p.name for p in files] == ["e.dcm"]
    ds = pydicom.dcmread(files[0])
    uid = {"MR": "1.2.840.10008.5.1.4.1.1.4.1", "CT": "1.2.840.10008.5.1.4.1.1.2.1"}[modality]
    assert (ds.SOPClassUID, ds.Modality) == (uid, modality)
    assert ds.NumberOfFrames == int(np.prod(shape[2:]))
    back = _ours(files[0])
    got = _aligned(np.asarray(back.values()), back.affine, img.affine)
    np.testing.assert_array_equal(got.astype(np.float32), img.values())
    # dcm2niix v1.0.20220720 takes frame order from DimensionIndexValues only for Philips,
    # Bruker and Canon files (others are sorted by position, which interleaves volumes);
    # later versions read every vendor's. A Philips source's header carries its maker.
    newer = _dcm2niix_date() > 20220720
    if len(shape) == 4 and not newer:
        img.extras["dicom"] = {"header": {"00080070": {"vr": "LO", "Value": ["Philips"]}}}
        Registry().write(
            img, tmp_path / "p" / "e.dcm", fmt="dicom", options=_opts(layout="enhanced")
        )
        files = [tmp_path / "p" / "e.dcm"]
    ref = _dcm2niix(files[0].parent, tmp_path / "n")
    values = np.asarray(ref.dataobj).astype(np.float64)
    slope, inter = ref.header.get_slope_inter()
    values = values * (slope or 1.0) + (inter or 0.0)
    got = _aligned(values, ref.affine, img.affine)
    np.testing.assert_allclose(got, img.values(), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("shape", SHAPES)
def test_parametric_map_keeps_any_real_value(
    tmp_path: Path, shape: tuple[int, ...], dtype: str
) -> None:
    """``layout=parametric``: Float Pixel Data, so noisy floats and wide ints need no --lossy."""
    rng = np.random.default_rng(3)
    if dtype == "int32":
        data = rng.integers(-(2**30), 2**30, shape).astype(np.int32)
    else:
        data = (rng.normal(size=shape) * 1000).astype(dtype)
        data.flat[0] = np.nan
    img = Image(data, synthetic_affine())
    img.meta.modality = "MR"
    files = Registry().write(
        img, tmp_path / "p.dcm", fmt="dicom", options=_opts(layout="parametric")
    )
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert ("DoubleFloatPixelData" in ds) == (dtype != "float32")
    assert not img.losses
    back = _ours(files[0])
    got = _aligned(np.asarray(back.values()), back.affine, img.affine)
    np.testing.assert_array_equal(got, img.values().astype(got.dtype))
    if len(shape) == 3 or _dcm2niix_date() > 20220720:  # 4D: see test_enhanced_layout
        ref = _dcm2niix(tmp_path, tmp_path / "n")
        got = _aligned(np.asarray(ref.dataobj), ref.affine, img.affine)
        np.testing.assert_array_equal(got, img.values().astype(got.dtype))


# --- validation -----------------------------------------------------------------------------


VARIANTS = [
    (layout, ts, dtype, modality, shape)
    for layout in ("classic", "enhanced", "parametric")
    for ts in ("explicit", "rle", "jpeg2000")
    for dtype in ("int16", "float32")
    for modality in ("MR", "CT")
    for shape in ((32, 33, 3), (32, 33, 2, 2))
    if layout != "parametric" or ts == "explicit"
]


def test_every_variant_validates(tmp_path: Path) -> None:
    """Every instance of every layout/ts/dtype/modality/3D-4D variant: dciodvfy, dcmdump."""
    dciodvfy, dcmdump = _tool("dciodvfy"), _tool("dcmdump")
    warnings: set[str] = set()
    for n, (layout, ts, dtype, modality, shape) in enumerate(VARIANTS):
        img = _image(shape, dtype, modality=modality)
        for path in _write(img, tmp_path / str(n), options=_opts(layout=layout, ts=ts)):
            run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=30)
            lines = (run.stdout + run.stderr).splitlines()
            errors = [line for line in lines if line.startswith("Error")]
            assert not errors, f"{layout}/{ts}/{dtype}/{modality}/{shape}: {errors}"
            warnings |= {line for line in lines if line.startswith("Warning")}
            dump = subprocess.run([dcmdump, str(path)], capture_output=True, text=True, timeout=30)
            assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    unknown = [w for w in warnings if not any(re.search(p, w) for p, _ in KNOWN_WARNINGS)]
    assert not unknown, unknown
