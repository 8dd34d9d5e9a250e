"""The table applied to a data set: every attribute, nested sequences, groups, private tags."""

import pytest
from anyconv_anonymize._engine import Deidentifier
from anyconv_anonymize.policy import Policy, new_uid, pseudonym
from pydicom.uid import MRImageStorage

KEY = "engine-test"
CSA = (
    b"SV10\x04\x03\x02\x01 tProtocolName = Doeberman PID123456 study 19700101"
    b" ok ref 1.2.826.0.1.3680043.99.1\x00"
)


@pytest.fixture
def anonymized(make_sample):
    sample = make_sample
    policy = Policy.from_options({"key": KEY})
    original = sample()
    ds = sample()
    engine = Deidentifier(policy)
    engine.apply(ds, engine.context(ds))
    return original, ds, policy


def test_identity_removed_replaced_or_kept(anonymized):
    _original, ds, policy = anonymized
    alias = pseudonym(policy.key, "PID123456")
    assert ds.PatientID == alias and str(ds.PatientName) == alias.replace("-", "^")
    assert ds.PatientBirthDate == ""  # Z
    assert ds.PatientSex == "F" and ds.PatientAge == "050Y"  # Retain Patient Characteristics
    for gone in ("PatientAddress", "OtherPatientIDsSequence", "ImageComments",
                 "SeriesDescription", "RequestAttributesSequence"):  # fmt: skip
        assert gone not in ds, gone
    assert ds.InstitutionName == "ANONYMIZED" and ds.StationName == "ANONYMIZED"  # X/Z/D -> D
    assert ds.DeviceSerialNumber == "ANONYMIZED"
    assert str(ds.EvaluatorName) == ""  # PN outside the table: emptied
    assert ds.EchoTime == 30 and ds.Modality == "MR" and ds.SOPClassUID == MRImageStorage


def test_uids_replaced_consistently_also_in_sequences(anonymized):
    original, ds, policy = anonymized
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "FrameOfReferenceUID", "AcquisitionUID"):  # fmt: skip
        assert ds[keyword].value == new_uid(policy.key, original[keyword].value), keyword
    ref = ds.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert ref.ReferencedSOPClassUID == MRImageStorage


def test_dates_shift_together(anonymized):
    original, ds, _policy = anonymized
    assert ds.StudyDate != original.StudyDate and ds.StudyTime != original.StudyTime
    assert ds.InstanceCreationDate != original.InstanceCreationDate
    assert ds.AcquisitionDateTime.startswith(ds.StudyDate)  # same instant moved as one
    # Study date+time and acquisition date-time keep their 30 min interval
    import datetime as dt

    study = dt.datetime.strptime(ds.StudyDate + ds.StudyTime, "%Y%m%d%H%M%S")
    acq = dt.datetime.strptime(ds.AcquisitionDateTime, "%Y%m%d%H%M%S.%f")
    assert acq - study == dt.timedelta(minutes=30, microseconds=500000)
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_groups_sequences_and_private(anonymized):
    _original, ds, _policy = anonymized
    assert not [e for e in ds if e.tag.group in (0x5000, 0x6000)]  # curves, whole overlay
    assert 0x00110010 not in ds and 0x00111001 not in ds  # unsafe private block, its creator
    assert ds[0x00290010].value == "SIEMENS CSA HEADER"
    assert 0x00291031 not in ds  # same creator, element not in the safe list
    csa = ds[0x00291010].value
    assert len(csa) == len(CSA) and csa.startswith(b"SV10")
    assert b"Doeberman" not in csa and b"PID123456" not in csa and b"19700101" not in csa
    assert ds[0x00431039].value == [1000, 8, 0, 0]
    nested = ds[0x00431077].value[0]
    assert "Doeberman" not in nested.ImageComments if "ImageComments" in nested else True
    assert "Doeberman" not in ds[0x00431078].value and "SER4455" not in ds[0x00431078].value
    content = ds.ContentSequence[0]  # D: structure kept, text and names dummied
    assert content.TextValue == "ANONYMIZED" and str(content.PersonName) == "ANONYMIZED^"
    assert content.ValueType == "TEXT"


def test_marks(anonymized):
    _, ds, _policy = anonymized
    assert ds.PatientIdentityRemoved == "YES"
    codes = [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107", "113108", "113111"]
    assert all(i.CodingSchemeDesignator == "DCM" for i in ds.DeidentificationMethodCodeSequence)
    assert all(len(v) <= 64 for v in ds.DeidentificationMethod)


def test_no_planted_value_survives_anywhere(anonymized):
    _, ds, _ = anonymized
    text = repr(ds).encode() + b"".join(e.value for e in ds.iterall() if isinstance(e.value, bytes))
    for needle in (b"Doeberman", b"Janette", b"PID123456", b"19700101", b"OTHER98765",
                   b"Springfield", b"STATION9", b"SER4455", b"Evalo", b"REQ1",
                   b"1.2.826.0.1.3680043.99"):  # fmt: skip
        assert needle not in text, needle


def test_options_keep_what_they_say(make_sample):
    sample = make_sample
    policy = Policy.from_options(
        {
            "key": KEY,
            "dates": "keep",
            "device_identity": "1",
            "descriptors": "keep",
            "uids": "1",
            "safe_private": "0",
            "graphics": "keep",
        }
    )
    ds = sample()
    engine = Deidentifier(policy)
    engine.apply(ds, engine.context(ds))
    assert ds.StudyDate == "20200111" and ds.StationName == "STATION9"
    assert ds.SOPInstanceUID == "1.2.826.0.1.3680043.99.3"
    assert ds.SeriesDescription == "T1 of XXXXXXXXX"  # Clean Descriptors: kept, scrubbed
    assert not [e for e in ds if e.tag.is_private]
    assert 0x60003000 in ds and 0x60000010 in ds
    codes = [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113103", "113105", "113106", "113108", "113109", "113110"]
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_dates_removed(make_sample):
    sample = make_sample
    policy = Policy.from_options({"key": KEY, "dates": "remove"})
    ds = sample()
    engine = Deidentifier(policy)
    engine.apply(ds, engine.context(ds))
    assert ds.StudyDate == "" and ds.StudyTime == ""
    assert ds.InstanceCreationDate == "19000101"
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_a_date_and_its_time_cross_midnight_together(make_sample):
    import datetime as dt

    from anyconv_anonymize._engine import Context

    policy = Policy.from_options({"key": KEY})
    ds = make_sample()
    ds.StudyDate, ds.StudyTime = "20200111", "010000"
    ds.SeriesDate, ds.SeriesTime = "20200111", "235900"
    ctx = Context(policy, -dt.timedelta(days=10, hours=2), "anchor")
    Deidentifier(policy).apply(ds, ctx)
    assert (ds.StudyDate, ds.StudyTime) == ("20191231", "230000")
    assert (ds.SeriesDate, ds.SeriesTime) == ("20200101", "215900")
    assert ds.InstanceCreationDate == "20191231"  # a date alone: its midnight moved
