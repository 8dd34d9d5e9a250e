"""The de-identification profile as data: PS3.15 Annex E actions for the keys anyconv carries.

Actions (PS3.15 Table E.1-1 codes): ``X`` remove, ``Z`` replace with an empty or dummy value,
``D`` dummy, ``K`` keep, ``U`` replace a UID consistently, ``C`` clean (descriptors: kept or
removed by the ``descriptors`` option), ``S`` shift a date/time consistently per patient (the
*Retain Longitudinal Temporal Information with Modified Dates* option; ``dates=remove`` turns it
into ``X``, ``dates=keep`` into ``K``).
"""

from __future__ import annotations

import re

#: Actions for BIDS sidecar keys (DICOM keywords, as dcm2niix names them).
BIDS_ACTIONS: dict[str, str] = {
    # patient identity (Basic Profile)
    "PatientName": "X", "PatientID": "X", "PatientBirthDate": "X", "PatientBirthTime": "X",
    "OtherPatientIDs": "X", "OtherPatientNames": "X", "PatientAddress": "X",
    "PatientTelephoneNumbers": "X", "PatientMotherBirthName": "X", "MilitaryRank": "X",
    "EthnicGroup": "X", "PatientComments": "X", "PatientReligiousPreference": "X",
    "MedicalRecordLocator": "X", "PatientInsurancePlanCodeSequence": "X",
    # patient characteristics (Retain Patient Characteristics option: "P")
    "PatientSex": "P", "PatientAge": "P", "PatientWeight": "P", "PatientSize": "P",
    "PregnancyStatus": "P", "SmokingStatus": "P",
    # people and places
    "InstitutionName": "X", "InstitutionAddress": "X", "InstitutionalDepartmentName": "X",
    "ReferringPhysicianName": "X", "PerformingPhysicianName": "X", "OperatorsName": "X",
    "NameOfPhysiciansReadingStudy": "X", "RequestingPhysician": "X",
    "PhysiciansOfRecord": "X", "ScheduledPerformingPhysicianName": "X",
    # device identity (Retain Device Identity option: "V")
    "StationName": "V", "DeviceSerialNumber": "V", "DeviceUID": "U",
    # study and request identifiers
    "AccessionNumber": "X", "StudyID": "X", "RequestedProcedureID": "X",
    "PerformedProcedureStepID": "X", "ScheduledProcedureStepID": "X",
    "StudyInstanceUID": "U", "SeriesInstanceUID": "U", "FrameOfReferenceUID": "U",
    "SOPInstanceUID": "U", "ReferencedSOPInstanceUID": "U",
    # free text
    "StudyDescription": "C", "SeriesDescription": "C", "ProtocolName": "C",
    "ImageComments": "X", "AdditionalPatientHistory": "X", "AdmittingDiagnosesDescription": "X",
    "RequestedProcedureDescription": "C", "PerformedProcedureStepDescription": "C",
    "ReasonForStudy": "X", "RequestAttributesSequence": "X", "TextComments": "X",
    # dates and times
    "StudyDate": "S", "SeriesDate": "S", "AcquisitionDate": "S", "ContentDate": "S",
    "AcquisitionDateTime": "S", "StudyTime": "S", "SeriesTime": "S", "AcquisitionTime": "S",
    "ContentTime": "S",
    # the marks we set ourselves
    "PatientIdentityRemoved": "K", "DeidentificationMethod": "K",
}  # fmt: skip

#: Keys anyconv keeps although a pattern below would catch them (technical, not personal).
TECHNICAL = frozenset({
    "SequenceName", "ReceiveCoilName", "CoilString", "ManufacturersModelName", "Manufacturer",
    "PulseSequenceName", "ScanningSequence", "SoftwareVersions", "CoilName",
    "TransmitCoilName", "InternalPulseSequenceName", "BodyPartExamined", "Modality",
    "ImageType", "ImageTypeText", "ConversionSoftware", "ConversionSoftwareVersion",
    "DataSetTrailingPadding", "PhilipsRWVSlope", "PhilipsRWVIntercept",
})  # fmt: skip

#: Unknown keys matching this are removed: names, people, places, free text, identifiers.
_PERSONAL = re.compile(
    r"Patient|Physician|Operator|Institution|Address|Telephone|Name|Comment|Accession|"
    r"Identifier|Sponsor|Requesting|Referring|Station|Serial",
)
#: Unknown keys matching this are dates: shifted, removed or kept (``dates`` option). Times of
#: day are in the table; a pattern on "Time" would catch EchoTime and RepetitionTime.
_DATE = re.compile(r"Date")
#: Unknown keys matching this are UIDs: replaced consistently.
_UID = re.compile(r"UID$")


def action_for(key: str, overrides: dict[str, str]) -> str:
    """The action for a sidecar key: the recipe's, the table's, else by its name."""
    if key in overrides:
        return overrides[key]
    if key in BIDS_ACTIONS:
        return BIDS_ACTIONS[key]
    if key in TECHNICAL:
        return "K"
    if _UID.search(key):
        return "U"
    if _DATE.search(key):
        return "S"
    if _PERSONAL.search(key):
        return "X"
    return "K"


#: Burned-in text is likely in these modalities / storage classes (PS3.15 E.3.1).
BURNED_IN_MODALITIES = frozenset({"US", "SC", "XC", "ES", "OT", "DOC", "SM", "GM"})
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
