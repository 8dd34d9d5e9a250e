"""Corpus checks: same volumes after anonymization, no planted identity in any output, dciodvfy.

Conversions run in process (the registry the CLI uses) to stay quick; a few CLI runs check the
flags end to end.
"""

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from anyconv import get_registry
from anyconv.errors import AnyconvError
from anyconv.pipeline import ConvertRequest, convert
from anyconv.specs import WriteOptions
from anyconv_anonymize._command import anonymize_tree
from anyconv_anonymize.policy import Policy, new_uid
from anyconv_anonymize.transform import _bids_action
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

KEY = "corpus-key"
SAME_VOLUME_CASES = [
    "siemens_trio_mosaic_ax_asc35",
    "siemens_trio_mosaic_cor_asc35",
    "siemens_trio_mosaic_sag_int36",
    "siemens_trio_mosaic_jpeg_lossless",
    "ge_pioneer_dwi_oblique",
    "canon_galan_enhanced_dti",
    "philips_achieva_enhanced_fieldmap",
    "philips_achieva_enhanced_t1_balls",
    "siemens_vida_xa10_enhanced_fmri",
]
PHI_CASES = [
    "siemens_trio_mosaic_ax_asc35",
    "ge_pioneer_dwi_oblique",
    "philips_achieva_enhanced_t1_balls",
    "siemens_vida_xa10_enhanced_fmri",
]
IDENTIFYING_KEYS = {
    "InstitutionName", "StationName", "DeviceSerialNumber", "InstitutionAddress",
    "InstitutionalDepartmentName", "SeriesDescription", "ProtocolName", "StudyDescription",
    "PatientName", "PatientID", "PatientBirthDate", "ProcedureStepDescription",
}  # fmt: skip
UID_ROOT = "1.2.826.0.1.3680043.99.8675309"
PLANTED = {
    "PatientName": "Zyxwvut^Qwertyuiop",
    "PatientID": "PHIPID8675309",
    "PatientBirthDate": "19230405",
    "PatientBirthTime": "041526",
    "OtherPatientIDs": "PHIOTHER4242",
    "OtherPatientNames": "Zyxwvut^Othername",
    "PatientAddress": "17 Phistreet Quuxtown",
    "PatientTelephoneNumbers": "555-8675309",
    "PatientMotherBirthName": "Mothphi^Qwertyuiop",
    "MilitaryRank": "Phicolonel",
    "PatientComments": "Phicomment about Qwertyuiop",
    "AdditionalPatientHistory": "Phihistory of Qwertyuiop",
    "IssuerOfPatientID": "PHIISSUER",
    "InstitutionName": "Phi General Hospital Xq",
    "InstitutionAddress": "99 Phiroad Barville",
    "InstitutionalDepartmentName": "Phidepartment",
    "ReferringPhysicianName": "Drphi^Refer",
    "ReferringPhysicianAddress": "1 Phireferral Lane",
    "PerformingPhysicianName": "Drphi^Perform",
    "NameOfPhysiciansReadingStudy": "Drphi^Reader",
    "PhysiciansOfRecord": "Drphi^Record",
    "RequestingPhysician": "Drphi^Request",
    "OperatorsName": "Opphi^Tech",
    "StationName": "PHISTATION7",
    "DeviceSerialNumber": "PHISERIAL55443",
    "AccessionNumber": "PHIACC991",
    "StudyID": "PHISTUDY77",
    "StudyDescription": "Phi study of Qwertyuiop",
    "SeriesDescription": "Phi series of Qwertyuiop",
    "ProtocolName": "Phi protocol of Qwertyuiop",
    "PerformedProcedureStepDescription": "Phi step of Qwertyuiop",
    "PerformedProcedureStepID": "PHIPPSID",
    "RequestedProcedureDescription": "Phi request of Qwertyuiop",
    "ImageComments": "Phicomment about Qwertyuiop",
    "StudyComments": "Phistudycomment",
    "StudyDate": "19991231",
    "SeriesDate": "19991231",
    "AcquisitionDate": "19991231",
    "ContentDate": "19991231",
    "PerformedProcedureStepStartDate": "19991231",
    "StudyTime": "235958.123456",
    "SeriesTime": "235958.123456",
    "AcquisitionTime": "235958.123456",
    "ContentTime": "235958.123456",
    "PerformedProcedureStepStartTime": "235958.123456",
    "StudyInstanceUID": UID_ROOT + ".1",
    "SeriesInstanceUID": UID_ROOT + ".2",
    "FrameOfReferenceUID": UID_ROOT + ".4",
}
NEEDLES = sorted(
    {v.encode() for v in PLANTED.values()}
    | {
        b"Qwertyuiop",
        b"Zyxwvut",
        b"1999-12-31",
        b"23:59:58",
        b"8675309",
        b"PHIPRIVATE",
        b"PHINESTED",
    }
)


SAFE_BLOCKS = (
    (0x0043, "GEMS_PARM_01"),
    (0x2001, "Philips Imaging DD 001"),
    (0x0021, "SIEMENS MR SDS 01"),
    (0x0019, "SIEMENS MR HEADER"),
)


def plant(src: Path, dst: Path) -> Path:
    """Identifying values in every kind of place, nested and private ones too."""
    dst.mkdir(parents=True)
    for i, f in enumerate(sorted(p for p in src.iterdir() if p.is_file())):
        ds = pydicom.dcmread(f)
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        ds.SOPInstanceUID = f"{UID_ROOT}.3.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "AcquisitionDateTime" in ds:
            ds.AcquisitionDateTime = "19991231235958.123456"
        request = Dataset()
        request.RequestedProcedureID = "PHINESTED1"
        request.ScheduledProcedureStepDescription = "PHINESTED step of Qwertyuiop"
        ds.RequestAttributesSequence = Sequence([request])
        other = Dataset()
        other.PatientID = "PHINESTED2"
        ds.OtherPatientIDsSequence = Sequence([other])
        block = ds.private_block(0x0011, "PHI TEST", create=True)
        block.add_new(0x01, "LO", "PHIPRIVATE Qwertyuiop")
        # a value in a safe-listed private block (kept, so it must be scrubbed)
        for group, creator in SAFE_BLOCKS:
            if any(e.tag.group == group and e.value == creator for e in ds if e.tag.is_private):
                safe = ds.private_block(group, creator)
                safe.add_new(0xFE, "LO", "Phisafe note about Zyxwvut Qwertyuiop")
        ds.save_as(dst / f"IM{i:04d}.dcm")
    return dst


def all_bytes(path: Path) -> bytes:
    """Every byte a reader of this file could see (decompressed, HDF5 attributes listed)."""
    raw = path.read_bytes()
    chunks = [raw, path.name.encode()]
    if raw[:2] == b"\x1f\x8b":
        chunks.append(gzip.decompress(raw))
    if raw[:8] == b"\x89HDF\r\n\x1a\n":
        with h5py.File(path) as f:

            def visit(name, obj):
                chunks.append(name.encode())
                for k, v in obj.attrs.items():
                    chunks.append(
                        k.encode() + b"=" + (v if isinstance(v, bytes) else str(v).encode())
                    )
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "SOU":
                    chunks.append(str(obj[()]).encode())

            f.visititems(visit)
            chunks.extend(v if isinstance(v, bytes) else str(v).encode() for v in f.attrs.values())
    return b"\n".join(chunks)


def run(src, dst, *, to=None, anonymize=None, lossy=False):
    """One conversion as the CLI does it, in process; the files written."""
    req = ConvertRequest(
        src=Path(src),
        dst=Path(dst),
        dst_is_folder=True,
        to_fmt=to,
        transforms=[("anonymize", dict(anonymize))] if anonymize is not None else [],
        write_options=WriteOptions(lossy=lossy),
    )
    return [f for written in convert(get_registry(), req) for f in written.files]


def need(tool):
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed")
        pytest.skip(f"{tool} is not installed")


def dcm2niix(src, out):
    need("dcm2niix")
    out.mkdir(parents=True)
    subprocess.run(["dcm2niix", "-o", str(out), "-f", "x", "-z", "n", str(src)],
                   capture_output=True, check=True)  # fmt: skip
    return sorted(out.glob("x*"))


@pytest.fixture(scope="module")
def anonymized(testdata, tmp_path_factory):
    """Each case through ``anyconv anonymize`` (the file command), once."""
    root = tmp_path_factory.mktemp("anon")
    policy = Policy.from_options({"key": KEY})
    return {
        case: anonymize_tree(testdata / "dicom" / case, root / case, policy)
        for case in SAME_VOLUME_CASES
    }


def same_images(a: list[Path], b: list[Path]) -> None:
    """Voxels and affines of NIfTI files, bvals and bvecs, pairwise."""
    assert [p.suffix for p in a] == [p.suffix for p in b]
    for x, y in zip(a, b, strict=True):
        if x.name.endswith((".nii", ".nii.gz")):
            img_x, img_y = nib.load(x), nib.load(y)
            np.testing.assert_array_equal(
                np.asanyarray(img_x.dataobj), np.asanyarray(img_y.dataobj)
            )
            np.testing.assert_array_equal(img_x.affine, img_y.affine)
            assert img_x.header.get_slope_inter() == img_y.header.get_slope_inter()
        elif x.suffix in (".bval", ".bvec"):
            assert x.read_text() == y.read_text()


@pytest.mark.parametrize("case", SAME_VOLUME_CASES)
def test_conversion_after_anonymization_is_identical(testdata, anonymized, tmp_path, case):
    src = testdata / "dicom" / case
    anon_dir = anonymized[case][0].parent.parent
    plain = sorted(run(src, tmp_path / "plain"), key=lambda p: p.suffix)
    anon = sorted(run(anon_dir, tmp_path / "anon"), key=lambda p: p.suffix)
    same_images(plain, anon)
    # sidecars differ only in keys the profile changes
    policy = Policy.from_options({"key": KEY})
    for x, y in zip(plain, anon, strict=True):
        if x.suffix == ".json":
            side_x, side_y = json.loads(x.read_text()), json.loads(y.read_text())
            changed = {k for k in set(side_x) | set(side_y) if side_x.get(k) != side_y.get(k)}
            assert {k for k in changed if _bids_action(k, policy) == "K"} == set(), x.name
    # dcm2niix agrees too
    same_images(dcm2niix(src, tmp_path / "d_plain"), dcm2niix(anon_dir, tmp_path / "d_anon"))
    # and the transform path (acceptance 2): same volumes, a sidecar with no identifying key
    direct = sorted(run(src, tmp_path / "direct", anonymize={"key": KEY}), key=lambda p: p.suffix)
    same_images(plain, direct)
    for side in (p for p in direct if p.suffix == ".json"):
        keys = set(json.loads(side.read_text()))
        assert {k for k in keys if _bids_action(k, policy) not in ("K", "C", "S", "U")} == set()
        assert not keys & IDENTIFYING_KEYS


def dciodvfy_errors(path: Path) -> set[str]:
    need("dciodvfy")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return {line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.parametrize("case", ["siemens_trio_mosaic_ax_asc35", "ge_pioneer_dwi_oblique",
                                  "philips_achieva_enhanced_fieldmap",
                                  "siemens_vida_xa10_enhanced_fmri"])  # fmt: skip
def test_anonymized_files_pass_dciodvfy_as_well_as_their_input(testdata, anonymized, case):
    key = Policy.from_options({"key": KEY}).key
    by_uid = {p.stem: p for p in anonymized[case]}
    inputs = sorted(p for p in (testdata / "dicom" / case).iterdir() if p.is_file())[:2]
    for src in inputs:
        uid = pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
        out = by_uid[new_uid(key, str(uid))]
        assert dciodvfy_errors(out) <= dciodvfy_errors(src), out


def test_command_output_keeps_pixels_and_marks(testdata, anonymized):
    case = "ge_pioneer_dwi_oblique"
    key = Policy.from_options({"key": KEY}).key
    by_uid = {p.stem: p for p in anonymized[case]}
    for src in sorted((testdata / "dicom" / case).iterdir())[:3]:
        a = pydicom.dcmread(src)
        b = pydicom.dcmread(by_uid[new_uid(key, str(a.SOPInstanceUID))])
        assert a.PixelData == b.PixelData
        assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
        assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
        assert b.PatientIdentityRemoved == "YES"
        assert b.StudyInstanceUID == new_uid(key, a.StudyInstanceUID)
        assert not [e for e in b if e.tag.is_private and e.tag.group == 0x0009]  # GEMS_IDEN_01


@pytest.fixture(scope="module")
def planted(testdata, tmp_path_factory):
    root = tmp_path_factory.mktemp("phi")
    return {case: plant(testdata / "dicom" / case, root / case) for case in PHI_CASES}


@pytest.mark.parametrize("case", PHI_CASES)
def test_no_planted_value_reaches_any_output(planted, tmp_path, case):
    """The PHI test: every writer, sidecars too, searched byte by byte (gunzipped, HDF5)."""
    src = planted[case]
    control = run(src, tmp_path / "control", to="nifti1")  # the search finds what is there
    assert [n for n in NEEDLES if any(n in all_bytes(f) for f in control)]
    formats = sorted({spec.format for spec in get_registry().writers()})
    assert {"nifti1", "nrrd", "metaimage", "mgh", "minc2", "dicom"} <= set(formats)
    found, refused = [], []
    for fmt in formats:
        out = tmp_path / fmt
        try:
            files = run(src, out, to=fmt, anonymize={"key": KEY}, lossy=True)
        except AnyconvError as exc:  # a format that cannot hold this image says why
            refused.append((fmt, type(exc).__name__, str(exc)[:80]))
            continue
        assert files, fmt
        for f in files:
            data = all_bytes(f)
            found += [(fmt, f.name, n) for n in NEEDLES if n.lower() in data.lower()]
    assert found == []
    assert [
        r for r in refused if r[0] in {"nifti1", "nrrd", "metaimage", "mgh", "minc2", "dicom"}
    ] == []


def test_anonymized_dicom_output_passes_dciodvfy(planted, tmp_path):
    """``--to dicom --anonymize``: no error the plain DICOM output does not have."""
    src = planted["siemens_trio_mosaic_ax_asc35"]
    plain = run(src, tmp_path / "plain", to="dicom")
    anon = run(src, tmp_path / "anon", to="dicom", anonymize={"key": KEY})
    assert len(plain) == len(anon)
    assert dciodvfy_errors(anon[0]) <= dciodvfy_errors(plain[0])
    ds = pydicom.dcmread(anon[0])
    assert str(ds.PatientID).startswith("ANON-")


def test_batch_of_one_patient_stays_linked(planted, tmp_path, run_cli):
    """Acceptance 3: two series of one patient keep one new study UID and one date shift."""
    a, b = planted["siemens_trio_mosaic_ax_asc35"], planted["ge_pioneer_dwi_oblique"]
    code, _, stderr = run_cli("batch", a, b, tmp_path / "nii", "--anonymize", "-t",
                              f"anonymize:key={KEY}", "-j", "2")  # fmt: skip
    assert code == 0, stderr
    sides = [json.loads(p.read_text()) for p in sorted((tmp_path / "nii").rglob("*.json"))]
    assert len(sides) == 2
    times = {s["AcquisitionTime"] for s in sides}
    assert len(times) == 1 and "23:59:58.123456" not in times  # planted equal, shifted equally
    code, _, stderr = run_cli("batch", a, b, tmp_path / "dcm", "--to", "dicom", "-t",
                              f"anonymize:key={KEY}")  # fmt: skip
    assert code == 0, stderr
    files = sorted((tmp_path / "dcm").rglob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert len({h.SeriesInstanceUID for h in headers}) == 2
    studies = {h.StudyInstanceUID for h in headers}
    assert {h.StudyDate for h in headers} != {"19991231"} and len(
        {h.StudyDate for h in headers}
    ) == 1
    assert studies == {new_uid(KEY.encode(), PLANTED["StudyInstanceUID"])}


def test_cli_command_flags_force_and_print_recipe(planted, tmp_path, run_cli):
    src = planted["siemens_trio_mosaic_ax_asc35"]
    code, out, _ = run_cli("anonymize", "--print-recipe", "--device-identity", "--dates", "keep")
    assert code == 0
    assert "device_identity = 1" in out and 'dates = "keep"' in out
    assert 'StationName = "K"' in out and 'StudyDate = "K"' in out
    recipe = tmp_path / "r.toml"
    recipe.write_text('[actions]\nInstitutionName = "K"\n[safe_private]\n"ACME 1" = "*"\n')
    code, out, _ = run_cli("anonymize", "--print-recipe", "--recipe", recipe)
    assert code == 0 and 'InstitutionName = "K"' in out and '"ACME 1" = "*"' in out
    assert 'StationName = "D"' in out
    dst = tmp_path / "out"
    code, _, stderr = run_cli("anonymize", src, dst, "--key", KEY, "--clean-descriptors")
    assert code == 0, stderr
    files = sorted(dst.rglob("*.dcm"))
    assert len(files) == 2 and not list(dst.rglob("*.tmp"))
    ds = pydicom.dcmread(files[0])
    assert "Qwertyuiop" not in str(ds.SeriesDescription) and ds.SeriesDescription
    code, _, stderr = run_cli("anonymize", src, dst, "--key", KEY)
    assert code == 5 and "exists" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = run_cli("anonymize", src, dst, "--key", KEY, "--force")
    assert code == 0, stderr
    code, _, stderr = run_cli("anonymize", src)
    assert code == 2


def test_cli_refuses_burned_in(testdata, tmp_path, run_cli):
    src = tmp_path / "sc"
    src.mkdir()
    ds = pydicom.dcmread(testdata / "dicom" / "pydicom" / "CT_small.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(src / "a.dcm")
    code, _, stderr = run_cli("anonymize", src, tmp_path / "out", "--key", KEY)
    assert code == 6 and "burned-in" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    code, _, stderr = run_cli("anonymize", src, tmp_path / "out", "--key", KEY, "--allow-burned-in")
    assert code == 0, stderr
    code, _, stderr = run_cli(src, tmp_path / "nii/", "--anonymize", "-t", f"anonymize:key={KEY}")
    assert code == 6 and "burned-in" in stderr


def test_cli_transform_recipe_and_order(planted, tmp_path, run_cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[options]\ndescriptors = "keep"\nkey = "{KEY}"\n')
    src = planted["siemens_trio_mosaic_ax_asc35"]
    code, _, stderr = run_cli(src, f"{tmp_path / 'o'}/", "--anonymize", "--anon-recipe", recipe,
                              "--reorient", "LPS")  # fmt: skip
    assert code == 0, stderr
    (out,) = (tmp_path / "o").glob("*.nii.gz")
    assert "Qwertyuiop" not in out.name  # descriptors kept but scrubbed
    assert nib.aff2axcodes(nib.load(out).affine) == ("L", "P", "S")
    side = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    assert side["PatientIdentityRemoved"] == "YES"
    assert "InstitutionName" not in side
    assert side["SeriesDescription"] == "Phi series of XXXXXXXXXX"


@pytest.mark.parametrize("case", PHI_CASES)
def test_no_planted_value_in_anonymized_files(planted, tmp_path, case):
    """``anyconv anonymize`` output, every byte of every file (safe private tags kept)."""
    policy = Policy.from_options({"key": KEY})
    files = anonymize_tree(planted[case], tmp_path / "out", policy)
    found = [(f.name, n) for f in files for n in NEEDLES if n.lower() in f.read_bytes().lower()]
    assert found == []
    notes = [e.value for f in files for e in pydicom.dcmread(f, stop_before_pixels=True)
             if e.tag.is_private and str(e.value).startswith("Phisafe")]  # fmt: skip
    if case.startswith(("ge_", "philips_")):  # planted into a safe-listed block: kept, scrubbed
        assert notes and set(notes) == {"Phisafe note about " + "X" * 18}  # "Zyxwvut Qwertyuiop"


def test_command_bad_inputs(testdata, tmp_path, run_cli):
    """Truncated pixels: one line, exit 4, nothing left; bare data sets get a file meta."""
    src = tmp_path / "in"
    src.mkdir()
    good = testdata / "dicom" / "pydicom" / "MR_small_implicit.dcm"
    ds = pydicom.dcmread(good)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.save_as(src / "bare.dcm", enforce_file_format=False)
    (src / "notes.txt").write_text("not DICOM")
    code, _, stderr = run_cli("anonymize", src, tmp_path / "out", "--key", KEY)
    assert code == 0, stderr
    (out,) = (tmp_path / "out").rglob("*.dcm")
    written = pydicom.dcmread(out)
    assert written.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert written.PixelData == ds.PixelData and written.PatientIdentityRemoved == "YES"
    ct = (testdata / "dicom" / "pydicom" / "CT_small.dcm").read_bytes()
    (src / "z_truncated.dcm").write_bytes(ct[: len(ct) - 5000])
    code, _, stderr = run_cli("anonymize", src, tmp_path / "out2", "--key", KEY)
    assert code == 4 and "truncated" in stderr and len(stderr.strip().splitlines()) <= 2
    assert not list((tmp_path / "out2").rglob("*.dcm"))  # the good file taken back too
