"""The de-identification profile as data: PS3.15 Table E.1-1, its options, the safe private list.

Standard library only (``anyconv formats`` and ``--print-recipe`` read it without pydicom).

Resolved actions, one letter each (PS3.15 E.1.1 codes, combinations resolved as below):

- ``X`` remove; ``Z`` empty value; ``D`` dummy value of the VR; ``K`` keep;
- ``U`` replace a UID by a keyed ``2.25`` UID (the same input gives the same output);
- ``C`` clean: keep, with every identifying value found elsewhere in the data set blanked out
  (descriptors, safe private attributes, structured content);
- ``S`` shift: how ``C`` is done for dates and times under *Retain Longitudinal Temporal
  Information with Modified Dates* (one keyed offset per patient).

Combination codes of the table resolve to the choice that keeps an instance valid without
knowing its IOD's attribute types: anything with ``D`` (``X/D``, ``Z/D``, ``X/Z/D``) gives
``D``, ``X/Z`` gives ``Z``, and ``X/Z/U*`` gives ``K`` (the sequence stays; the UIDs inside are
replaced by their own rows).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

TABLE_FILE = "ps3.15_table_e.1-1.csv"

#: Option columns of Table E.1-1, in the order their actions are looked up.
OPTION_COLUMNS = (
    "rtn_safe_private",
    "rtn_uids",
    "rtn_device",
    "rtn_institution",
    "rtn_patient_chars",
    "rtn_long_full_dates",
    "rtn_long_modified_dates",
    "clean_desc",
    "clean_struct",
    "clean_graph",
)
DATE_COLUMNS = frozenset({"rtn_long_full_dates", "rtn_long_modified_dates"})

#: CID 7050 (De-identification Method) code of the profile and of each option (DCM scheme).
CID_7050 = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_graph": ("113103", "Clean Graphics Option"),
    "clean_struct": ("113104", "Clean Structured Content Option"),
    "clean_desc": ("113105", "Clean Descriptors Option"),
    "rtn_long_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "rtn_long_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "rtn_patient_chars": ("113108", "Retain Patient Characteristics Option"),
    "rtn_device": ("113109", "Retain Device Identity Option"),
    "rtn_uids": ("113110", "Retain UIDs Option"),
    "rtn_safe_private": ("113111", "Retain Safe Private Option"),
    "rtn_institution": ("113112", "Retain Institution Identity Option"),
}

ACTIONS = frozenset("XZDKUCS")


@dataclass(frozen=True)
class Row:
    """One row of Table E.1-1: the Basic Profile code and each option column's code."""

    tag: str
    name: str
    basic: str
    options: tuple[tuple[str, str], ...]


@cache
def table() -> dict[str, Row]:
    """Table E.1-1 keyed by ``GGGGEEEE`` (upper case; ``50xxxxxx``, ``60xx3000``, ``private``)."""
    text = resources.files(__package__).joinpath("data", TABLE_FILE).read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = {}
    for rec in csv.DictReader(lines):
        opts = tuple((c, rec[c]) for c in OPTION_COLUMNS if rec[c])
        tag = rec["tag"] if "x" in rec["tag"] or rec["tag"] == "private" else rec["tag"].upper()
        rows[tag] = Row(tag, rec["name"], rec["basic"], opts)
    return rows


def row_for(tag: int) -> Row | None:
    """The table row of a public tag, including the curve (50xx) and overlay (60xx) groups."""
    rows = table()
    found = rows.get(f"{tag:08X}")
    if found is not None:
        return found
    group, element = tag >> 16, tag & 0xFFFF
    if group & 0xFF01 == 0x5000:
        return rows["50xxxxxx"]
    if group & 0xFF01 == 0x6000 and element in (0x3000, 0x4000):
        return rows[f"60xx{element:04X}"]
    return None


def resolve(code: str, column: str | None = None) -> str:
    """One action letter for a table code (see the module docstring)."""
    if code == "C" and column in DATE_COLUMNS:
        return "S"
    if code == "X/Z/U*":
        return "K"
    if "/" in code:
        return "D" if "D" in code else "Z"
    return code


def row_action(row: Row, enabled: frozenset[str]) -> str:
    """The action of a row given the enabled option columns (first option with a code wins)."""
    for column, code in row.options:
        if column in enabled:
            return resolve(code, column)
    return resolve(row.basic)


#: Private attributes that conversion needs, kept by *Retain Safe Private* (and scrubbed):
#: creator -> element offsets (low byte), or ``None`` for the whole block.
SAFE_PRIVATE: dict[str, tuple[int, ...] | None] = {
    # Siemens: CSA image and series headers (mosaic, slice times, b-matrix, phase encoding).
    "SIEMENS CSA HEADER": (0x08, 0x09, 0x10, 0x18, 0x19, 0x20),
    # Siemens MR header: mosaic size, slice duration, b-value and direction, bandwidth,
    # dwell time, mosaic slice times, coil string.
    "SIEMENS MR HEADER": (
        0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        0x17, 0x18, 0x27, 0x28, 0x29,
    ),
    # Siemens XA enhanced: per-frame private sequences (polarity, bandwidth, slice timing).
    "SIEMENS MR SDS 01": None,
    "SIEMENS MR SDI 02": None,
    # GE: b-value/slop_int, diffusion directions, ASSET, echo spacing, image part, slice order.
    "GEMS_PARM_01": None,
    "GEMS_ACQU_01": None,
    "GEMS_SERS_01": None,
    "GEMS_IMAG_01": None,
    # Philips: b-value, gradient direction, scale slope/intercept, per-frame private groups.
    "Philips Imaging DD 001": None,
    "Philips MR Imaging DD 001": None,
    "Philips MR Imaging DD 004": None,
    "Philips MR Imaging DD 005": None,
}  # fmt: skip

#: SOP classes whose pixels often carry burned-in text (PS3.15 E.3.1): secondary capture,
#: ultrasound, visible light, documents.
BURNED_IN_CLASS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture (and its multi-frame variants)
    "1.2.840.10008.5.1.4.1.1.6.",  # Ultrasound
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame
    "1.2.840.10008.5.1.4.1.1.77.1",  # VL endoscopic, microscopic, photographic
    "1.2.840.10008.5.1.4.1.1.104",  # Encapsulated documents
)
BURNED_IN_MODALITIES = frozenset({"US", "SC", "XC", "ES", "OT", "DOC", "SM", "GM", "IVUS"})


def burned_in_reason(
    burned_in_annotation: str | None, sop_class: str | None, modality: str | None
) -> str | None:
    """Why pixels may hold identifying text, or ``None``."""
    if str(burned_in_annotation or "").strip().upper() == "YES":
        return "BurnedInAnnotation = YES"
    sop = str(sop_class or "")
    if sop and any(sop.startswith(p) for p in BURNED_IN_CLASS_PREFIXES):
        return f"SOP class {sop} (secondary capture, ultrasound or photographic)"
    if str(modality or "").upper() in BURNED_IN_MODALITIES:
        return f"modality {modality}"
    return None


#: Keys anyconv keeps in sidecars although a pattern below would catch them (technical).
TECHNICAL = frozenset({
    "SequenceName", "ReceiveCoilName", "CoilString", "ManufacturersModelName", "Manufacturer",
    "PulseSequenceName", "ScanningSequence", "SoftwareVersions", "CoilName",
    "TransmitCoilName", "InternalPulseSequenceName", "BodyPartExamined", "Modality",
    "ImageType", "ImageTypeText", "ConversionSoftware", "ConversionSoftwareVersion",
    "PhilipsRWVSlope", "PhilipsRWVIntercept", "PatientPosition",
    "PatientIdentityRemoved", "DeidentificationMethod", "LongitudinalTemporalInformationModified",
})  # fmt: skip

#: Non-DICOM sidecar keys matching this are removed: names, people, places, free text, IDs.
PERSONAL = re.compile(
    r"Patient|Physician|Operator|Institution|Address|Telephone|Name|Comment|Accession|"
    r"Identifier|Sponsor|Requesting|Referring|Station|Serial|Description",
)
#: Non-DICOM sidecar keys matching this are dates: shifted, removed or kept.
DATE = re.compile(r"Date")
#: Non-DICOM sidecar keys matching this are UIDs: replaced consistently.
UID = re.compile(r"UID$")


def heuristic_action(key: str) -> str:
    """The action for a sidecar key that is not a DICOM keyword, by its name."""
    if key in TECHNICAL:
        return "K"
    if UID.search(key):
        return "U"
    if DATE.search(key):
        return "S"
    if PERSONAL.search(key):
        return "X"
    return "K"
