"""The transform on the canonical image: header, sidecar keys, sources, other formats' extras."""

import json

import pytest
from anyconv.errors import LossyConversionError, UsageError
from anyconv.testing import synthetic_image
from anyconv_anonymize.policy import new_uid
from anyconv_anonymize.transform import anonymize
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

KEY = {"key": "transform-test"}


def dicom_image(ds):
    img = synthetic_image()
    img.meta.modality = "MR"
    img.meta.patient = {"name": "Doeberman^Janette", "id": "PID123456", "sex": "F", "age": "050Y"}
    img.meta.study = {"uid": ds.StudyInstanceUID, "date": "20200111", "time": "010000",
                      "description": "Study of Doeberman"}  # fmt: skip
    img.meta.series_description = "T1 of Doeberman"
    img.meta.protocol_name = "proto Janette"
    img.meta.bids = {
        "InstitutionName": "Springfield General Hospital",
        "StationName": "STATION9",
        "EchoTime": 0.03,
        "AcquisitionTime": "01:00:00.000000",
        "AcquisitionDateTime": "2020-01-11T01:00:00",
        "SeriesInstanceUID": ds.SeriesInstanceUID,
        "MyVendorComment": "Doeberman said hi",
        "SomethingDate": "20200101",
        "ImageComments": "scanned Janette",
        "CoilString": "HEAD Doeberman",
    }
    img.source = "/data/Doeberman_Janette/series1"
    img.extras = {
        "dicom": {
            "header": {k: v for k, v in ds.to_json_dict().items()},
            "SeriesInstanceUID": ds.SeriesInstanceUID,
            "files": 2,
            "frame_type": ["ORIGINAL"],
        },
        "nifti": {"descrip": "Doeberman"},
        "nrrd": {"keyvalue": {"who": "Doeberman"}},
    }
    img.sources = [
        {
            "path": f"/data/Doeberman_Janette/IM{i}.dcm",
            "uid": f"{ds.SOPInstanceUID}.{i}",
            "series_uid": ds.SeriesInstanceUID,
            "study_uid": ds.StudyInstanceUID,
            "axis": 2,
            "index": i,
            "volume": 0,
            "number": i + 1,
        }
        for i in range(3)
    ]
    return img, ds


def test_header_is_deidentified_and_kept(make_sample):
    img, ds = dicom_image(make_sample())
    out = anonymize(img, KEY)
    assert set(out.extras) == {"dicom"}
    header = Dataset.from_json(out.extras["dicom"]["header"])
    assert header.PatientIdentityRemoved == "YES"
    assert header.SeriesInstanceUID == new_uid(b"transform-test", ds.SeriesInstanceUID)
    assert out.extras["dicom"]["SeriesInstanceUID"] == header.SeriesInstanceUID
    assert out.extras["dicom"]["files"] == 2
    assert "ImageComments" not in header and header.PatientID.startswith("ANON-")
    text = json.dumps(out.extras) + json.dumps(out.meta.as_dict())
    for needle in ("Doeberman", "Janette", "PID123456", "Springfield", "STATION9",
                   "20200111", "1.2.826.0.1.3680043.99"):  # fmt: skip
        assert needle not in text, needle
    assert out.source is None
    assert img.extras["nifti"] == {"descrip": "Doeberman"}  # the input is not changed


def test_sources_get_the_headers_new_uids_and_keep_linkage(make_sample):
    img, _ds = dicom_image(make_sample())
    out = anonymize(img, KEY)
    header = Dataset.from_json(out.extras["dicom"]["header"])
    for old, new in zip(img.sources, out.sources, strict=True):
        assert "path" not in new
        assert new["series_uid"] == header.SeriesInstanceUID
        assert new["study_uid"] == header.StudyInstanceUID == out.meta.study["uid"]
        assert new["uid"] == new_uid(b"transform-test", old["uid"])
        assert new["linkage"] == {k: old[k] for k in ("path", "uid", "series_uid", "study_uid")}
        assert (new["axis"], new["index"], new["number"]) == (
            old["axis"],
            old["index"],
            old["number"],
        )
    outside = {k: v for s in out.sources for k, v in s.items() if k != "linkage"}
    assert "Doeberman" not in json.dumps(outside)


def test_sidecar_keys_follow_the_table(make_sample):
    img, _ = dicom_image(make_sample())
    out = anonymize(img, KEY)
    bids = out.meta.bids
    for gone in ("InstitutionName", "StationName", "MyVendorComment", "ImageComments"):
        assert gone not in bids, gone
    assert bids["EchoTime"] == 0.03
    assert bids["AcquisitionTime"] != "01:00:00.000000"
    assert bids["SomethingDate"] != "20200101"
    assert bids["CoilString"] == "HEAD XXXXXXXXX"  # kept technical text is scrubbed
    assert bids["SeriesInstanceUID"].startswith("2.25.")
    assert bids["PatientIdentityRemoved"] == "YES"
    assert "Basic Application Confidentiality Profile" in bids["DeidentificationMethod"]
    assert out.meta.patient["id"].startswith("ANON-") and out.meta.patient["sex"] == "F"
    assert out.meta.series_description is None and out.meta.protocol_name is None
    assert "description" not in out.meta.study


def test_options_and_recipe(tmp_path, make_sample):
    img, _ = dicom_image(make_sample())
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[options]\ndevice_identity = 1\npatient_characteristics = 0\n"
        'descriptors = "keep"\n[actions]\nInstitutionName = "K"\n'
    )
    out = anonymize(img, {**KEY, "recipe": str(recipe)})
    assert out.meta.bids["InstitutionName"] == "Springfield General Hospital"
    assert out.meta.bids["StationName"] == "STATION9"
    assert "sex" not in out.meta.patient
    assert out.meta.series_description == "T1 of XXXXXXXXX"
    header = Dataset.from_json(out.extras["dicom"]["header"])
    assert header.InstitutionName == "Springfield General Hospital"
    assert "PatientSex" not in header or header.PatientSex == ""
    recipe.write_text('[actions]\nInstitutionName = "Q"\n')
    with pytest.raises(UsageError):
        anonymize(img, {**KEY, "recipe": str(recipe)})
    with pytest.raises(UsageError):
        anonymize(img, {**KEY, "colour": "blue"})


def test_other_formats_extras_dropped_without_dicom():
    img = synthetic_image()
    img.meta.patient = {"name": "Doe^Jane", "id": "123"}
    img.extras = {"nifti": {"descrip": "Doe"}, "minc2": {"history": "Doe"}}
    out = anonymize(img, KEY)
    assert out.extras == {}
    assert out.meta.bids["PatientIdentityRemoved"] == "YES"


@pytest.mark.parametrize(
    "change",
    [
        {"BurnedInAnnotation": "YES"},
        {"SOPClassUID": SecondaryCaptureImageStorage},
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.6.1", "Modality": "US"},
    ],
)
def test_burned_in_is_refused_unless_allowed(change, make_sample):
    ds = make_sample()
    for k, v in change.items():
        setattr(ds, k, v)
    img, _ = dicom_image(ds)
    img.meta.modality = ds.Modality
    with pytest.raises(LossyConversionError, match="burned-in"):
        anonymize(img, KEY)
    assert anonymize(img, {**KEY, "allow_burned_in": "1"}).meta.bids["PatientIdentityRemoved"]


def test_burned_in_by_modality_without_header():
    img = synthetic_image()
    img.meta.modality = "US"
    with pytest.raises(LossyConversionError):
        anonymize(img, KEY)
