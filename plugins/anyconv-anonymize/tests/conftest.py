"""Shared test data: a data set with identity in every kind of place."""

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import MRImageStorage

NAME = "Doeberman^Janette"
CSA = (
    b"SV10\x04\x03\x02\x01 tProtocolName = Doeberman PID123456 study 19700101"
    b" ok ref 1.2.826.0.1.3680043.99.1\x00"
)


def item(**attrs):
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def sample():
    ds = Dataset()
    ds.PatientName = NAME
    ds.PatientID = "PID123456"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "050Y"
    ds.PatientAddress = "17 Elm Street Springfield"
    ds.OtherPatientIDsSequence = Sequence([item(PatientID="OTHER98765")])
    ds.StudyDate = "20200111"
    ds.StudyTime = "010000"
    ds.InstanceCreationDate = "20200111"  # not in the table: follows the date option
    ds.AcquisitionDateTime = "20200111013000.5"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.99.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.3"
    ds.SOPClassUID = MRImageStorage
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.99.4"
    ds.AcquisitionUID = "1.2.826.0.1.3680043.99.5"  # not in this edition's table: safety net
    ds.InstitutionName = "Springfield General Hospital"
    ds.StationName = "STATION9"
    ds.DeviceSerialNumber = "SER4455"
    ds.SeriesDescription = "T1 of Doeberman"
    ds.ImageComments = "scanned Janette"
    ds.EvaluatorName = "Evalo^Eve"  # a PN the table does not list
    ds.Modality = "MR"
    ds.EchoTime = 30
    ds.ReferencedImageSequence = Sequence(
        [item(ReferencedSOPClassUID=MRImageStorage, ReferencedSOPInstanceUID=ds.SOPInstanceUID)]
    )
    ds.RequestAttributesSequence = Sequence([item(RequestedProcedureID="REQ1")])
    ds.ContentSequence = Sequence(
        [item(TextValue="Janette said hello", PersonName="Doc^Who", ValueType="TEXT")]
    )
    ds.add_new(0x50000005, "US", 2)  # curve
    ds.add_new(0x50003000, "OB", b"\x00\x01")
    ds.add_new(0x60000010, "US", 4)  # overlay
    ds.add_new(0x60003000, "OW", b"\x00" * 8)
    ds.add_new(0x60004000, "LT", "overlay by Janette")
    unsafe = ds.private_block(0x0011, "ACME SECRETS", create=True)
    unsafe.add_new(0x01, "LO", "Janette private note")
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x10, "OB", CSA)
    csa.add_new(0x31, "LO", "not in the safe list")
    ge = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    ge.add_new(0x39, "IS", ["1000", "8", "0", "0"])
    ge.add_new(0x77, "SQ", Sequence([item(ImageComments="Doeberman nested")]))
    ge.add_new(0x78, "LO", "contact Doeberman at SER4455")
    return ds


@pytest.fixture
def make_sample():
    """A factory: a fresh identifying data set per call."""
    return sample
