"""The study view: `info FOLDER` tree, `--json`, and `--fhir` ImagingStudy (issue 15)."""

import json
from collections import defaultdict
from pathlib import Path

import pytest
from anyconv import study as st
from anyconv.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def dicom_folders(testdata):
    return sorted(p for p in (testdata / "dicom").iterdir() if p.is_dir())


def pydicom_census(folder):
    """Independently: per SeriesInstanceUID, its study, SOP instances and files (pydicom)."""
    import pydicom

    series = defaultdict(lambda: {"study": None, "instances": {}, "files": set()})
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: not part of the census
            continue
        entry = series[str(ds.SeriesInstanceUID)]
        entry["study"] = str(ds.StudyInstanceUID)
        entry["instances"][str(ds.SOPInstanceUID)] = (
            str(ds.SOPClassUID),
            int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
        )
        entry["files"].add(str(path))
    return series


def info_json(*args):
    result = runner.invoke(app, ["info", "--json", *map(str, args)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def all_series(tree):
    for patient in tree["patients"]:
        for study in patient["studies"]:
            for series in study["series"]:
                yield study, series


def test_info_json_lists_every_series_with_its_instance_count(testdata):
    """Acceptance 1: every series, with the instances pydicom counts per SeriesInstanceUID."""
    folders = dicom_folders(testdata)
    assert len(folders) >= 15
    for folder in [*folders, testdata / "dicom"]:
        census = pydicom_census(folder)
        tree = info_json(folder)
        listed = {s["uid"]: (study, s) for study, s in all_series(tree)}
        assert set(listed) == set(census), folder
        for uid, (study, series) in listed.items():
            expected = len(census[uid]["instances"])
            if len({Path(f).parent for f in census[uid]["files"]}) > 1:
                # The whole corpus at once: the ts_* folders hold re-encoded copies (new SOP
                # Instance UIDs, same slices) of one series; the reader keeps one copy of each
                # slice and so one folder's instances.
                assert series["instances"] <= expected
            else:
                assert series["instances"] == expected, (folder, uid)
            assert study["uid"] == census[uid]["study"], (folder, uid)
            assert series["files"] <= len(census[uid]["files"])
            assert series["outputs"], (folder, uid)
            assert all(img["format"] == "dicom" for img in series["images"])


def test_tree_fields_sizes_and_output_names_match_a_conversion(testdata, tmp_path):
    """Size is the files' bytes; the names shown are the ones convert then writes."""
    folder = testdata / "dicom/ge_signa_hdx_epi"
    tree = info_json(folder)
    (patient,) = tree["patients"]
    assert patient["id"] == "TESTSLICE_20070205"
    (study,) = patient["studies"]
    assert study["date"] == "20070205"
    assert study["series_count"] == 1
    (series,) = study["series"]
    files = sorted(folder.iterdir())
    assert series["size"] == sum(f.stat().st_size for f in files)
    assert series["files"] == len(files) == series["instances"] == 37
    assert (series["number"], series["modality"]) == (15, "MR")
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(folder), f"{out}/"])
    assert result.exit_code == 0, result.output
    assert series["outputs"] == sorted(p.name for p in out.iterdir() if p.suffix == ".gz")
    # several outputs from one series (magnitude and field map), and --to changes the names
    tree = json.loads(
        runner.invoke(
            app,
            [
                "info",
                "--json",
                "--to",
                "nrrd",
                str(testdata / "dicom/philips_achieva_enhanced_fieldmap"),
            ],
        ).stdout
    )
    ((_, series),) = list(all_series(tree))
    assert series["outputs"] == ["801_B0_NS.nrrd", "801_B0_NS_fieldmaphz.nrrd"]
    assert len(series["images"]) == 2
    assert series["body_part"] == "BRAIN"


def test_text_tree_and_single_files_as_before(testdata, small_nifti_folder):
    result = runner.invoke(app, ["info", str(testdata / "dicom/pydicom")])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Patient CompressedSamples^CT1" in text
    assert "Study 2004-01-19 07:27:30" in text
    # the per-image detail follows the tree, as for a file
    assert "affine (voxel -> RAS mm)" in text
    # a single file: one JSON object, as before; --tree gives the tree for it
    one = testdata / "dicom/pydicom/CT_small.dcm"
    assert info_json(one)["format"] == "dicom"
    tree = json.loads(runner.invoke(app, ["info", "--json", "--tree", str(one)]).stdout)
    ((_, series),) = list(all_series(tree))
    assert series["instances"] == 1
    # images without UIDs (NIfTI): one series each, named, no instance count
    tree = info_json(small_nifti_folder)
    listed = list(all_series(tree))
    assert len(listed) == 2
    assert {s["outputs"][0] for _, s in listed} == {"a.nii.gz", "b.nii.gz"}
    assert all(s["instances"] is None and s["uid"] is None for _, s in listed)
    result = runner.invoke(app, ["info", "--fhir", str(small_nifti_folder)])
    assert result.exit_code == 2
    assert "no study with a Study Instance UID" in result.output


@pytest.fixture
def small_nifti_folder(tmp_path):
    import nibabel as nib
    import numpy as np

    folder = tmp_path / "nii"
    folder.mkdir()
    for name in ("a", "b"):
        nib.save(nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), np.eye(4)), folder / f"{name}.nii")
    return folder


# -- FHIR --------------------------------------------------------------------------------------
#: FHIR R4 (4.0.1) ImagingStudy elements: fhir.resources validates R4B, whose ImagingStudy is
#: R4's; this also keeps R4B/R5-only elements out.
R4_STUDY = {
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "identifier", "status", "modality", "subject", "encounter", "started",
    "basedOn", "referrer", "interpreter", "endpoint", "numberOfSeries", "numberOfInstances",
    "procedureReference", "procedureCode", "location", "reasonCode", "reasonReference", "note",
    "description", "series",
}  # fmt: skip
R4_SERIES = {
    "id", "extension", "modifierExtension", "uid", "number", "modality", "description",
    "numberOfInstances", "endpoint", "bodySite", "laterality", "specimen", "started",
    "performer", "instance",
}  # fmt: skip
R4_INSTANCE = {"id", "extension", "modifierExtension", "uid", "sopClass", "number", "title"}
R4_STATUS = {"registered", "available", "cancelled", "entered-in-error", "unknown"}


def check_r4(resource):
    from fhir.resources.R4B.imagingstudy import ImagingStudy

    ImagingStudy.model_validate(resource)  # structure, types, cardinality, primitives
    assert set(resource) <= R4_STUDY
    assert resource["status"] in R4_STATUS  # a required binding the model does not check
    for series in resource.get("series", []):
        assert set(series) <= R4_SERIES
        assert series["modality"]["system"] == st.DCM_SYSTEM
        for instance in series.get("instance", []):
            assert set(instance) <= R4_INSTANCE


def test_fhir_imaging_study_validates_and_counts(testdata):
    """Acceptance 2: one R4 ImagingStudy per study, validated, with the pydicom census."""
    for folder in [*dicom_folders(testdata), testdata / "dicom"]:
        census = pydicom_census(folder)
        result = runner.invoke(app, ["info", "--fhir", str(folder)])
        assert result.exit_code == 0, result.output
        resources = json.loads(result.stdout)
        studies = {c["study"] for c in census.values()}
        assert len(resources) == len(studies)
        seen_series = set()
        for resource in resources:
            check_r4(resource)
            (ident,) = [i for i in resource["identifier"] if i.get("system") == st.UID_SYSTEM]
            study_uid = ident["value"].removeprefix("urn:oid:")
            assert study_uid in studies
            assert resource["status"] == "available"
            assert resource["subject"]["reference"].startswith("Patient/")
            assert resource["numberOfSeries"] == len(resource["series"])
            assert resource["numberOfInstances"] == sum(
                s["numberOfInstances"] for s in resource["series"]
            )
            for series in resource["series"]:
                seen_series.add(series["uid"])
                expected = census[series["uid"]]
                assert expected["study"] == study_uid
                got = {i["uid"]: i for i in series["instance"]}
                assert series["numberOfInstances"] == len(got)
                if folder.parent.name == "dicom":  # one folder: every instance (see above)
                    assert set(got) == set(expected["instances"])
                assert set(got) <= set(expected["instances"])
                for uid, instance in got.items():
                    class_uid, number = expected["instances"][uid]
                    assert instance["sopClass"] == {
                        "system": "urn:ietf:rfc:3986",
                        "code": f"urn:oid:{class_uid}",
                    }
                    assert instance.get("number") == number
        assert seen_series == set(census)


def test_fhir_fields_from_meta():
    """started needs a zone for a time; accession, bodySite, placeholders, unknown modality."""
    import numpy as np
    from anyconv.model import Image, Meta

    def image(series_uid, body_part=None, modality="CT", number=3):
        meta = Meta(modality=modality, series_number=number, series_description="Head  ")
        meta.patient = {"id": "P 1", "name": "Doe^Jane"}
        meta.study = {
            "uid": "1.2.3",
            "date": "20240131",
            "time": "101502.5",
            "accession_number": "A7",
        }
        if body_part:
            meta.bids["BodyPart"] = body_part
        img = Image(np.zeros((2, 2, 2)), meta=meta)
        img.sources = [
            {"path": "x", "uid": f"{series_uid}.{k}", "class_uid": "1.2.840.10008.5.1.4.1.1.2",
             "series_uid": series_uid, "study_uid": "1.2.3", "number": k + 1, "axis": 2,
             "index": k, "volume": 0}
            for k in range(2)
        ]  # fmt: skip
        return img

    images = [
        image("1.2.3.4", "Head"),
        image("1.2.3.5", "ELBOW", None, None),
        image("1.2.3.6", "paw"),
    ]
    (resource,) = st.imaging_studies(st.build_tree(images))
    check_r4(resource)
    assert resource["started"] == "2024-01-31"
    images[0].meta.study["timezone"] = "-0500"
    (resource,) = st.imaging_studies(st.build_tree(images[:1]))
    check_r4(resource)
    assert resource["started"] == "2024-01-31T10:15:02.5-05:00"
    acsn = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
    assert {"type": {"coding": [acsn]}, "value": "A7"} in resource["identifier"]
    assert resource["subject"]["identifier"] == {"value": "P 1"}
    assert resource["subject"]["display"] == "Doe Jane"
    (resource,) = st.imaging_studies(st.build_tree(images))
    by_uid = {s["uid"]: s for s in resource["series"]}
    head = {"system": st.SNOMED_SYSTEM, "code": "69536005", "display": "Head"}
    assert by_uid["1.2.3.4"]["bodySite"] == head
    assert by_uid["1.2.3.4"]["description"] == "Head"
    assert by_uid["1.2.3.5"]["modality"]["code"] == "OT"
    assert "number" not in by_uid["1.2.3.5"]
    assert by_uid["1.2.3.6"]["bodySite"] == {"display": "paw"}
    assert resource["numberOfInstances"] == 6


def test_body_part_codes_are_the_snomed_concepts_dicom_lists():
    """Each code is the SNOMED CT concept pydicom's DICOM code dictionary has, same meaning."""
    from pydicom.sr._concepts_dict import concepts

    meanings = defaultdict(set)
    for entry in concepts["SCT"].values():
        for code, (text, _) in entry.items():
            meanings[code].add(text.lower())
    for term, (code, display) in st.BODY_PARTS.items():
        assert display.lower() in meanings[code], (term, meanings[code])
