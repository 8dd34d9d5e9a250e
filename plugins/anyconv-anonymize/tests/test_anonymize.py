"""PHI test: identifying values planted in corpus DICOM never reach any output format."""

import gzip
import json

import anyconv_anonymize.plugin as plugin
import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from anyconv.errors import LossyConversionError, UsageError
from anyconv.registry import Registry
from anyconv.testing import synthetic_image
from anyconv_anonymize.transform import anonymize, date_shift, new_uid, shift_date

KEY = {"key": "test-secret"}
PLANTED = {
    "PatientName": "Zyxwvut^Qwertyuiop",
    "PatientID": "PHIPID8675309",
    "PatientBirthDate": "19230405",
    "OtherPatientIDs": "PHIOTHER4242",
    "PatientAddress": "17 Phistreet Quuxtown",
    "InstitutionName": "Phi General Hospital Xq",
    "InstitutionAddress": "99 Phiroad Barville",
    "ReferringPhysicianName": "Drphi^Refer",
    "PerformingPhysicianName": "Drphi^Perform",
    "OperatorsName": "Opphi^Tech",
    "StationName": "PHISTATION7",
    "DeviceSerialNumber": "PHISERIAL55443",
    "AccessionNumber": "PHIACC991",
    "StudyID": "PHISTUDY77",
    "StudyDescription": "Phi study of Qwertyuiop",
    "SeriesDescription": "Phi series of Qwertyuiop",
    "ProtocolName": "Phi protocol of Qwertyuiop",
    "ImageComments": "Phicomment about Qwertyuiop",
    "StudyDate": "19991231",
    "SeriesDate": "19991231",
    "AcquisitionDate": "19991231",
    "ContentDate": "19991231",
    "StudyTime": "235958.123456",
    "SeriesTime": "235958.123456",
    "AcquisitionTime": "235958.123456",
    "ContentTime": "235958.123456",
    "StudyInstanceUID": "1.2.826.0.1.3680043.99.8675309.1",
}
NEEDLES = [v.encode() for v in PLANTED.values()] + [
    b"Qwertyuiop",
    b"Zyxwvut",
    b"1999-12-31",
    b"23:59:58",
    b"8675309",
    b"PHIPRIVATE",
]
CASES = [
    "siemens_trio_mosaic_ax_asc35",
    "ge_pioneer_dwi_oblique",
    "philips_achieva_enhanced_t1_balls",
]
OUTPUTS = [".nii.gz", ".nrrd", ".mha", ".mgz", ".mnc"]


def plant(src, dst):
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        block = ds.private_block(0x0011, "PHI TEST", create=True)
        block.add_new(0x01, "LO", "PHIPRIVATE Qwertyuiop")
        ds.save_as(dst / f.name)
    return dst


def all_bytes(path):
    """Every byte a reader of this file could see (decompressed, HDF5 attributes listed)."""
    raw = path.read_bytes()
    chunks = [raw]
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

            f.visititems(visit)
            chunks.extend(str(v).encode() for v in f.attrs.values())
    return b"\n".join(chunks)


@pytest.fixture(scope="module")
def planted_cases(testdata, tmp_path_factory):
    root = tmp_path_factory.mktemp("phi")
    return {case: plant(testdata / "dicom" / case, root / case) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_no_planted_value_reaches_any_output(planted_cases, tmp_path, run_cli, case):
    src = planted_cases[case]
    found = []
    for suffix in OUTPUTS:
        out = tmp_path / suffix.strip(".").replace(".", "_")
        code, _, stderr = run_cli(
            src,
            f"{out}/",
            "--to",
            Registry().choose_writer(f"x{suffix}").spec.format,
            "-t",
            "anonymize:key=k1",
        )
        assert code == 0, stderr
        files = [p for p in out.rglob("*") if p.is_file()]
        assert files
        for f in files:
            data = all_bytes(f)
            found += [(f.name, n) for n in NEEDLES if n in data]
            assert b"Qwertyuiop" not in f.name.encode()
    assert found == []


@pytest.mark.parametrize("case", CASES)
def test_volumes_identical_to_plain_conversion(planted_cases, tmp_path, run_cli, case):
    src = planted_cases[case]
    assert run_cli(src, f"{tmp_path / 'plain'}/")[0] == 0
    assert run_cli(src, f"{tmp_path / 'anon'}/", "-t", "anonymize:key=k1")[0] == 0
    plain = sorted((tmp_path / "plain").glob("*.nii.gz"))
    anon = sorted((tmp_path / "anon").glob("*.nii.gz"))
    assert len(plain) == len(anon) >= 1
    for a, b in zip(plain, anon, strict=True):
        x, y = nib.load(a), nib.load(b)
        np.testing.assert_array_equal(np.asanyarray(x.dataobj), np.asanyarray(y.dataobj))
        np.testing.assert_array_equal(x.affine, y.affine)
    side = json.loads(next((tmp_path / "anon").glob("*.json")).read_text())
    assert side["PatientIdentityRemoved"] == "YES"
    assert "Basic Profile" in side["DeidentificationMethod"]
    for keyword in ("PatientName", "InstitutionName", "StationName", "StudyDate"):
        assert keyword not in side
    assert side["AcquisitionTime"] != PLANTED["AcquisitionTime"]


def test_batch_of_one_patient_stays_linked(planted_cases, tmp_path, run_cli):
    """Two series of one patient: same new study UID and the same date shift."""
    code, _, stderr = run_cli(
        "batch", planted_cases[CASES[0]], planted_cases[CASES[1]], tmp_path / "out",
        "-t", "anonymize:key=k1,dates=shift,descriptors=keep", "-j", "2",
    )  # fmt: skip
    assert code == 0, stderr
    sides = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").rglob("*.json"))]
    assert len(sides) == 2
    times = {s["AcquisitionTime"] for s in sides}
    assert len(times) == 1  # both planted at the same time: shifted by the same amount


def test_uids_and_shifts_are_consistent_and_keyed():
    assert new_uid(b"a", "1.2.3") == new_uid(b"a", "1.2.3")
    assert new_uid(b"a", "1.2.3") != new_uid(b"b", "1.2.3")
    assert new_uid(b"a", "1.2.3").startswith("2.25.")
    assert len(new_uid(b"a", "1.2.3")) <= 64
    shift = date_shift(b"a", "patient")
    assert shift == date_shift(b"a", "patient")
    assert shift_date("20200101", shift) < "20200101"
    assert shift_date("not a date", shift) is None


def test_options_and_recipe(tmp_path):
    img = synthetic_image()
    img.meta.patient = {"name": "Doe^Jane", "id": "123", "sex": "F", "age": "041Y"}
    img.meta.series_description = "T1 Doe"
    img.meta.bids = {
        "InstitutionName": "X Hosp",
        "StationName": "S1",
        "EchoTime": 0.03,
        "MyPrivateComment": "Doe said hi",
        "SomethingDate": "20200101",
    }
    img.extras = {"nifti": {"descrip": "Doe"}, "nrrd": {"keyvalue": {"who": "Doe"}}}
    out = anonymize(img, {"key": "k"})
    assert out.extras == {}
    assert out.meta.patient["sex"] == "F"
    assert "name" not in out.meta.patient or out.meta.patient["name"] == ""
    assert out.meta.patient["id"].startswith("ANON-")
    assert out.meta.series_description is None
    assert "InstitutionName" not in out.meta.bids
    assert "StationName" not in out.meta.bids
    assert "MyPrivateComment" not in out.meta.bids
    assert out.meta.bids["EchoTime"] == 0.03
    assert out.meta.bids["SomethingDate"] != "20200101"
    assert out.source is None
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[options]\ndevice_identity = 1\npatient_characteristics = 0\n"
        'descriptors = "keep"\n[actions]\nInstitutionName = "K"\n'
    )
    out = anonymize(img, {"key": "k", "recipe": str(recipe)})
    assert out.meta.bids["InstitutionName"] == "X Hosp"
    assert out.meta.bids["StationName"] == "S1"
    assert "sex" not in out.meta.patient
    assert out.meta.series_description == "T1 Doe"
    recipe.write_text('[actions]\nInstitutionName = "Q"\n')
    with pytest.raises(UsageError):
        anonymize(img, {"key": "k", "recipe": str(recipe)})


def test_burned_in_is_refused_unless_allowed():
    img = synthetic_image()
    img.meta.modality = "US"
    with pytest.raises(LossyConversionError, match="burned-in"):
        anonymize(img, {"key": "k"})
    assert anonymize(img, {"key": "k", "allow_burned_in": "1"}).meta.bids["PatientIdentityRemoved"]
    img2 = synthetic_image()
    img2.meta.bids = {"BurnedInAnnotation": "YES"}
    with pytest.raises(LossyConversionError):
        anonymize(img2, {"key": "k"})


def test_registered():
    reg = Registry(plugins=[plugin], entry_points=False)
    assert [t.name for t in reg.transforms()] == ["anonymize"]


def test_key_file_is_private(tmp_path, monkeypatch):
    from anyconv_anonymize import transform

    monkeypatch.delenv("ANYCONV_ANON_KEY", raising=False)
    monkeypatch.setattr(transform, "KEY_FILE", tmp_path / "k" / "anonymize.key")
    first = transform.load_key({})
    assert first == transform.load_key({})
    assert (tmp_path / "k" / "anonymize.key").stat().st_mode & 0o077 == 0


def test_cli_flags_and_order(planted_cases, tmp_path, run_cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[options]\ndescriptors = "keep"\nkey = "k1"\n')
    src = planted_cases[CASES[0]]
    code, _, stderr = run_cli(src, f"{tmp_path / 'o'}/", "--anonymize", "--anon-recipe", recipe,
                              "--reorient", "LPS")  # fmt: skip
    assert code == 0, stderr
    (out,) = (tmp_path / "o").glob("*.nii.gz")
    assert "Phi_series" in out.name  # descriptors kept by the recipe, nothing else
    assert nib.aff2axcodes(nib.load(out).affine) == ("L", "P", "S")
    side = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    assert side["PatientIdentityRemoved"] == "YES"
    assert "InstitutionName" not in side
