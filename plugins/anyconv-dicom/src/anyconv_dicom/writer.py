"""Write a canonical image as DICOM: a classic single-frame series or one enhanced instance.

Classic: one instance per slice (voxel axis k) and per volume (axis t), MR or CT Image
Storage. Column = i, row = j, so ImageOrientationPatient holds the LPS directions of i and j
and ImagePositionPatient the LPS position of voxel (0, 0, k): any DICOM reader then puts
every voxel at the same world point, whatever voxel order it picks.

Enhanced (``-O layout=enhanced``): one Enhanced MR (or Enhanced CT) multi-frame instance,
frames k fastest then t, with a (StackID, InStackPositionNumber, TemporalPositionIndex)
dimension organisation.

Identity comes from the source's DICOM header (``extras["dicom"]["header"]``, the DICOM JSON
model) when there is one, through a whitelist of patient, study, equipment, series and frame
of reference attributes (PS3.3 modules); nothing per-instance, geometric, pixel-related,
private or vendor-specific is carried. New UIDs are UUID-derived under ``2.25.`` (PS3.5 B.2).
"""

from __future__ import annotations

from . import _lean_import  # isort: skip  # noqa: F401 - before pydicom (see there)
import datetime as _dt
import math
import re
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from anyconv.errors import LossyConversionError, UsageError, WriteError
from anyconv.geometry import ras_to_lps
from anyconv.model import Image, scaled_dtype
from anyconv.specs import WriteOptions
from pydicom import config as _config
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)
from pydicom.valuerep import format_number_as_ds, validate_value

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
IMPLEMENTATION_UID = "2.25.153196407186128374925873218738127359114"
IMPLEMENTATION_VERSION = "ANYCONV_010"
#: ``-O ts=...``: lossless transfer syntaxes the installed packages can encode.
TRANSFER_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "deflate": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
}
_ENCAPSULATED = {RLELossless, JPEG2000Lossless}

#: Attributes carried from the source header, by PS3.3 module. Only entity-level identity
#: (patient, study, equipment, series, frame of reference): a derived series describes the
#: same patient, study and patient coordinate system. Nothing per-instance (UIDs, numbers,
#: times of the image), geometric, pixel-related (those are rebuilt from the image),
#: acquisition-specific, private or vendor-specific (mosaic, CSA) is listed.
CARRIED_BY_MODULE: dict[str, tuple[str, ...]] = {
    "Patient (C.7.1.1)": (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
        "TypeOfPatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "QualityControlSubject",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "EthnicGroup",
        "PatientComments",
        "PatientSpeciesDescription",
        "PatientSpeciesCodeSequence",
        "PatientBreedDescription",
        "PatientBreedCodeSequence",
        "BreedRegistrationSequence",
        "StrainDescription",
        "StrainNomenclature",
        "ResponsiblePerson",
        "ResponsiblePersonRole",
        "ResponsibleOrganization",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "ReferencedPatientSequence",
    ),
    "Clinical Trial Subject (C.7.1.3)": (
        "ClinicalTrialSponsorName",
        "ClinicalTrialProtocolID",
        "ClinicalTrialProtocolName",
        "ClinicalTrialSiteID",
        "ClinicalTrialSiteName",
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
        "ClinicalTrialProtocolEthicsCommitteeName",
        "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
    ),
    "General Study (C.7.2.1)": (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "ReferringPhysicianIdentificationSequence",
        "ConsultingPhysicianName",
        "ConsultingPhysicianIdentificationSequence",
        "StudyID",
        "AccessionNumber",
        "IssuerOfAccessionNumberSequence",
        "StudyDescription",
        "PhysiciansOfRecord",
        "PhysiciansOfRecordIdentificationSequence",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansReadingStudyIdentificationSequence",
        "RequestingServiceCodeSequence",
        "ReferencedStudySequence",
        "ProcedureCodeSequence",
        "ReasonForPerformedProcedureCodeSequence",
    ),
    "Patient Study (C.7.2.2)": (
        "AdmittingDiagnosesDescription",
        "AdmittingDiagnosesCodeSequence",
        "PatientAge",
        "PatientSize",
        "PatientSizeCodeSequence",
        "PatientBodyMassIndex",
        "MeasuredAPDimension",
        "MeasuredLateralDimension",
        "PatientWeight",
        "MedicalAlerts",
        "Allergies",
        "SmokingStatus",
        "PregnancyStatus",
        "LastMenstrualDate",
        "PatientState",
        "Occupation",
        "AdditionalPatientHistory",
        "AdmissionID",
        "IssuerOfAdmissionIDSequence",
        "ServiceEpisodeID",
        "ServiceEpisodeDescription",
        "IssuerOfServiceEpisodeIDSequence",
        "PatientSexNeutered",
        "ReasonForVisit",
        "ReasonForVisitCodeSequence",
    ),
    "Clinical Trial Study (C.7.2.3)": (
        "ClinicalTrialTimePointID",
        "ClinicalTrialTimePointDescription",
        "ConsentForClinicalTrialUseSequence",
    ),
    "General Series (C.7.3.1)": (
        "SeriesNumber",
        "Laterality",
        "SeriesDate",
        "SeriesTime",
        "PerformingPhysicianName",
        "PerformingPhysicianIdentificationSequence",
        "ProtocolName",
        "SeriesDescription",
        "SeriesDescriptionCodeSequence",
        "OperatorsName",
        "OperatorIdentificationSequence",
        "ReferencedPerformedProcedureStepSequence",
        "RelatedSeriesSequence",
        "BodyPartExamined",
        "PatientPosition",
        "AnatomicalOrientationType",
        "RequestAttributesSequence",
        "PerformedProcedureStepID",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepEndDate",
        "PerformedProcedureStepEndTime",
        "PerformedProcedureStepDescription",
        "PerformedProtocolCodeSequence",
        "CommentsOnThePerformedProcedureStep",
    ),
    "Clinical Trial Series (C.7.3.2)": (
        "ClinicalTrialCoordinatingCenterName",
        "ClinicalTrialSeriesID",
        "ClinicalTrialSeriesDescription",
    ),
    "Frame of Reference (C.7.4.1)": ("FrameOfReferenceUID", "PositionReferenceIndicator"),
    "General Equipment (C.7.5.1)": (
        "Manufacturer",
        "InstitutionName",
        "InstitutionAddress",
        "StationName",
        "InstitutionalDepartmentName",
        "ManufacturerModelName",
        "DeviceSerialNumber",
        "SoftwareVersions",
        "GantryID",
        "DateOfLastCalibration",
        "TimeOfLastCalibration",
    ),
    # what an anonymizer says it did to dates (PS3.15 E.1) stays with the dates it changed
    "SOP Common (C.12.1)": ("TimezoneOffsetFromUTC", "LongitudinalTemporalInformationModified"),
}
CARRIED_TAGS: frozenset[int] = frozenset(
    tag_for_keyword(kw) for kws in CARRIED_BY_MODULE.values() for kw in kws
)

#: ``--set`` may not touch what the writer derives from the image or must keep unique.
_PROTECTED_KEYWORDS = {
    "SOPClassUID",
    "SOPInstanceUID",
    "SpecificCharacterSet",
    "InstanceNumber",
    "ImageType",
    "NumberOfFrames",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "TemporalPositionIdentifier",
    "NumberOfTemporalPositions",
}
_PROTECTED_GROUPS = {0x0002, 0x0028, 0x7FE0}  # file meta, image pixel, pixel data


def new_uid() -> str:
    """A fresh UID under the UUID root ``2.25`` (unique without a registered root)."""
    return f"2.25.{uuid.uuid4().int}"


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters, as precise as that allows."""
    return format_number_as_ds(float(value))


def _text(value: Any, limit: int = 64) -> str:
    return "" if value is None else str(value)[:limit]


# --- values -------------------------------------------------------------------------------


@dataclass
class Stored:
    """16-bit stored values (voxel order) and the rescale giving the real values back."""

    data: np.ndarray
    slope: float = 1.0
    inter: float = 0.0
    losses: list[str] = field(default_factory=list)

    @property
    def scaled(self) -> bool:
        """Whether RescaleSlope/Intercept must be written."""
        return self.slope != 1.0 or self.inter != 0.0


def _fits16(lo: float, hi: float) -> np.dtype | None:
    if lo >= 0 and hi <= 65535:
        return np.dtype(np.uint16)
    if lo >= -32768 and hi <= 32767:
        return np.dtype(np.int16)
    return None


def stored_values(image: Image, lossy: bool) -> Stored:
    """Choose 16-bit stored values that give the image's real values back.

    In order: integers (and integer-valued floats) that fit 16 bits are stored as they are,
    with the image's own scaling; values on an evenly spaced grid of at most 65536 steps
    (int32 multiples, float data that were int16 * slope + intercept) are stored exactly
    through RescaleSlope/Intercept; anything else is quantised linearly, which only
    ``lossy`` allows (else exit 6). The MR and CT IODs hold 16 bits, not 32.
    """
    arr = np.asarray(image.data)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "c":
        raise LossyConversionError(
            f"DICOM cannot hold complex data ({arr.dtype})", hint="take the magnitude first"
        )
    slope, inter = float(image.slope), float(image.inter)
    if arr.size == 0:
        return Stored(arr.astype(np.int16), slope, inter)
    finite = bool(np.isfinite(arr).all()) if arr.dtype.kind == "f" else True
    if finite:
        lo, hi = float(arr.min()), float(arr.max())
        whole = arr.dtype.kind in "iu" or bool(np.all(arr == np.rint(arr)))
        dtype = _fits16(lo, hi) if whole else None
        if dtype is not None:
            return Stored(arr.astype(dtype, copy=False), slope, inter)
    real = arr.astype(np.float64) * slope + inter
    if finite:
        integer = arr.dtype.kind in "iu" and slope.is_integer() and inter.is_integer()
        exact = _exact_grid(real, integer=integer)
        if exact is not None:
            return exact
    return _quantised(arr.dtype, real, lossy)


def _read_back(q: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """Real values as anyconv's model computes them from uint16 and scaling (``values()``)."""
    slope, inter = float(slope), float(inter)  # Python floats: weak scalars, as Image has
    out = q.astype(scaled_dtype(np.dtype(np.uint16), slope, inter))
    if slope != 1.0:
        out *= slope
    if inter != 0.0:
        out += inter
    return out


def _exact_grid(real: np.ndarray, *, integer: bool) -> Stored | None:
    """Values q * slope + intercept (q in 0..65535), exact once read back; else ``None``.

    Exact means: the stored values scaled as a reader (anyconv's ``Image.values``: float32
    arithmetic) computes them give every source value back.
    """
    flat = real.ravel()
    if flat.size > 2_000_000 and np.unique(flat[:: flat.size // 1_000_000]).size > 65536:
        return None  # a sample already has too many values: skip the full sort
    uniq = np.unique(flat)
    if uniq.size > 65536:
        return None
    lo = float(uniq[0])
    if uniq.size == 1:
        return Stored(np.zeros(real.shape, np.uint16), 1.0, lo)
    gaps = np.diff(uniq)
    ulps = 0.0 if integer else 8 * float(np.spacing(np.float32(np.abs(uniq).max())))
    if integer:
        step = float(np.gcd.reduce(gaps.astype(np.int64)))
        q = np.rint((uniq - lo) / step)
    else:
        # Gaps are whole multiples of the step give or take the source's rounding (a few
        # float32 ulps): the step is their approximate greatest common divisor (values
        # 0, 0.3, 0.5 lie on a 0.1 grid, not on the smallest gap's 0.2).
        tol = max(ulps, float(gaps.min()) * 1e-6)
        step = float(gaps.min())
        for gap in np.unique(np.round(gaps / tol))[:2000] * tol:
            a, b = float(gap), step
            while True:  # Euclid, with the rounding noise allowed for
                if b <= 2 * tol:
                    return None
                k = float(np.rint(a / b))
                r = abs(a - k * b)
                if r <= tol * (k + 1):
                    step = b
                    break
                a, b = b, r
        for _ in range(3):  # refine: the step that best fits every gap's multiple
            steps_per_gap = np.maximum(np.rint(gaps / step), 1.0)
            step = float(gaps.sum() / steps_per_gap.sum())
        if np.abs(gaps - steps_per_gap * step).max() > 2 * tol:
            return None
        q = np.concatenate([[0.0], np.cumsum(steps_per_gap)])
    if q[-1] > 65535:
        return None
    span = int(q[-1])
    steps = [step]
    if not integer:
        # Refine on all points (the smallest gap is only roughly the step), then prefer the
        # shortest decimals: data made as int16 * 0.37 - 11.5 in float32 carry rounding
        # noise that a least-squares fit would keep.
        fit = float(np.polyfit(q, uniq, 1)[0])
        steps = [float(f"{fit:.{d}g}") for d in range(3, 17)] + [fit]
    # Stored values are q + n for an offset n that keeps them in int16 or uint16; a reader
    # computes (q + n) * slope + intercept in float32, so only the source's own intercept
    # (usually a short decimal) reproduces its rounding. Offsets whose intercept has the
    # fewest decimals are screened on a sample, then checked on every value.
    offsets = np.arange(-32768, 65536 - span, dtype=np.int64)
    sample = np.unique(np.linspace(0, uniq.size - 1, 64).astype(np.int64))
    for step_c in steps:
        s = float(_ds(step_c))
        if s <= 0:
            continue
        inters = lo - offsets * s
        tried = np.zeros(offsets.size, dtype=bool)
        for decimals in [*range(0, 9), None]:
            if decimals is None:
                pick = ~tried & (offsets == 0)
                cand = inters[pick]
            else:
                cand = np.round(inters, decimals)
                # the noise is the lowest value's rounding, a few of its float32 ulps
                near = max(8 * float(np.spacing(np.float32(abs(lo)))), 1e-9 * max(1.0, abs(lo)))
                pick = ~tried & (np.abs(cand - inters) < near)
                cand = cand[pick]
            tried |= pick
            order = np.argsort(np.abs(cand), kind="stable")  # the smallest intercept first
            found = _first_exact(q, uniq, sample, offsets[pick][order], cand[order], s)
            if found is not None:
                n, b = found
                dtype = _fits16(float(n), float(n + span))
                assert dtype is not None
                index = np.searchsorted(uniq, real)  # every value is one of uniq
                stored = (q[index].astype(np.int64) + n).astype(dtype)
                return Stored(stored, s, b)
    return None


def _first_exact(
    q: np.ndarray,
    uniq: np.ndarray,
    sample: np.ndarray,
    offsets: np.ndarray,
    inters: np.ndarray,
    slope: float,
) -> tuple[int, float] | None:
    """The first (offset, intercept) whose read-back gives ``uniq`` exactly, screened in bulk."""
    for start in range(0, offsets.size, 4096):
        n = offsets[start : start + 4096]
        b = np.array([float(_ds(x)) for x in inters[start : start + 4096]])
        qs = (q[sample][None, :] + n[:, None]).astype(np.float32)
        back = qs * np.float32(slope) + b.astype(np.float32)[:, None]
        good = np.flatnonzero((back.astype(np.float64) == uniq[sample][None, :]).all(axis=1))
        for i in good:
            stored_q = q + n[i]
            if np.array_equal(_read_back(stored_q, slope, b[i]).astype(np.float64), uniq):
                return int(n[i]), float(b[i])
    return None


def _quantised(dtype: np.dtype, real: np.ndarray, lossy: bool) -> Stored:
    bad = ~np.isfinite(real)
    losses = []
    if bad.any():
        losses.append(f"{int(bad.sum())} NaN/inf values (stored as 0)")
        real = np.where(bad, 0.0, real)
    lo, hi = float(real.min()), float(real.max())
    q_slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    q_inter = lo + 32768.0 * q_slope
    # DS holds 16 characters: quantise with the values as they will be read back.
    q_slope, q_inter = float(_ds(q_slope)), float(_ds(q_inter))
    stored = np.clip(np.rint((real - q_inter) / q_slope), -32768, 32767).astype(np.int16)
    error = float(np.abs(stored * q_slope + q_inter - real)[~bad].max(initial=0.0))
    losses.insert(
        0, f"{dtype} values quantised to int16 with slope {q_slope:.6g} (max error {error:.3g})"
    )
    if not lossy:
        raise LossyConversionError(
            f"DICOM (16-bit) cannot hold {'; '.join(losses)}",
            hint="-O layout=parametric keeps them as float pixel data; "
            "--lossy quantises them and records the loss",
        )
    return Stored(stored, q_slope, q_inter, losses)


# --- identity -----------------------------------------------------------------------------


def carried_header(image: Image) -> Dataset | None:
    """The whitelisted attributes of the source's DICOM header, or ``None`` without one.

    Values are taken as the header gives them (an anonymized header stays anonymized);
    private elements nested in carried sequences are dropped too.
    """
    header = (image.extras.get("dicom") or {}).get("header")
    if not isinstance(header, dict) or not header:
        return None
    out = Dataset()
    for key, value in header.items():
        try:
            tag = int(key, 16)
        except (TypeError, ValueError):
            continue
        if tag not in CARRIED_TAGS:
            continue
        try:
            item = Dataset.from_json({key: value})
        except Exception:  # noqa: BLE001 - an element JSON cannot rebuild is not carried
            image.notes.append(f"DICOM header element {keyword_for_tag(tag) or key} not carried")
            continue
        for elem in item:
            out.add(elem)
    out.remove_private_tags()
    for keyword in _REFERENCE_SEQUENCES:
        # SOP Instance Reference Macro: a class and an instance UID per item, nothing else
        # (vendors add instance dates and numbers that no IOD lists there).
        for ref in out.get(keyword) or []:
            for elem in list(ref):
                if int(elem.tag) not in (0x00081150, 0x00081155):
                    del ref[elem.tag]
    return out


#: Body Part Examined values (PS3.16 CID 4031) of paired structures: General Series'
#: Laterality (type 2C) is required for them and must be absent for unpaired ones.
PAIRED_BODY_PARTS = frozenset(
    [
        "ACJOINT",
        "ADRENAL",
        "ANKLE",
        "ARM",
        "BREAST",
        "CLAVICLE",
        "EAR",
        "ELBOW",
        "EXTREMITY",
        "EYE",
        "FEMUR",
        "FINGER",
        "FOOT",
        "FOREARM",
        "HAND",
        "HIP",
        "HUMERUS",
        "KIDNEY",
        "KNEE",
        "LEG",
        "LOWERLIMB",
        "LUNG",
        "ORBIT",
        "OVARY",
        "PAROTID",
        "RADIUS",
        "SCAPULA",
        "SHOULDER",
        "SJOINT",
        "TESTIS",
        "THIGH",
        "TIBIA",
        "TMJ",
        "TOE",
        "UPPERLIMB",
        "WRIST",
    ]
)


def _laterality(ds: Dataset) -> None:
    """Keep Laterality where General Series wants it: paired or unknown body part."""
    part = str(ds.get("BodyPartExamined") or "").strip().upper()
    if not part or part in PAIRED_BODY_PARTS:
        if "Laterality" not in ds:
            ds.Laterality = ""  # type 2: the side is not known
    elif not str(ds.get("Laterality") or "").strip():
        ds.pop(0x00200060, None)  # an unpaired part has no laterality


_REFERENCE_SEQUENCES = (
    "ReferencedPatientSequence",
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
)


def parse_set_values(values: dict[str, str]) -> list[tuple[int, str, Any]]:
    """``--set KEY=VALUE`` pairs as (tag, VR, value), each checked against its VR.

    KEY is a keyword (``PatientName``) or a tag (``0010,0010``, ``(0010,0010)``,
    ``00100010``). Unknown keys, private or writer-derived attributes and invalid values
    are usage errors (exit 2).
    """
    out = []
    for key, text in values.items():
        tag = _tag_of(key)
        kw = keyword_for_tag(tag)
        protected = tag >> 16 in _PROTECTED_GROUPS and tag != 0x00280303
        if protected or kw in _PROTECTED_KEYWORDS:
            raise UsageError(f"--set {key}: {kw or key} is derived from the image by the writer")
        vr = dictionary_VR(tag)
        if "SQ" in vr or vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or " or " in vr:
            raise UsageError(f"--set {key}: a {vr} attribute cannot be set from text")
        out.append((tag, vr, _checked_value(key, vr, dictionary_VM(tag), text)))
    return out


def _tag_of(key: str) -> int:
    clean = key.strip()
    match = re.fullmatch(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?", clean)
    if match:
        tag = int(match.group(1) + match.group(2), 16)
        if tag >> 16 & 1:
            raise UsageError(f"--set {key}: private attributes cannot be set")
        if not keyword_for_tag(tag):
            raise UsageError(f"--set {key}: not a standard DICOM attribute")
        return tag
    tag = tag_for_keyword(clean)
    if tag is None:
        raise UsageError(
            f"--set {key}: unknown DICOM keyword", hint="use a keyword such as PatientName"
        )
    return tag


def _checked_value(key: str, vr: str, vm: str, text: str) -> Any:
    parts = text.split("\\") if vm != "1" and vr not in ("LT", "ST", "UT") else [text]
    values: list[Any] = []
    for part in parts:
        value: Any = part
        try:
            if vr in ("US", "UL", "SS", "SL", "UV", "SV"):
                value = int(part)
            elif vr in ("FL", "FD"):
                value = float(part)
                if not math.isfinite(value):
                    raise ValueError("not a finite number")
            validate_value(vr, value, _config.RAISE)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--set {key}={text!r}: invalid {vr} value: {exc}") from exc
        values.append(value)
    return values[0] if len(values) == 1 else values


def _identity(image: Image, options: WriteOptions) -> Dataset:
    """Patient/study/series/equipment attributes for every instance.

    From the source's header when it has one, else from ``image.meta``, with placeholders
    for the type 1/2 attributes nothing gives; then the ``-O`` aliases and ``--set``.
    """
    meta = image.meta
    carried = carried_header(image)
    ds = Dataset()
    if carried is not None:
        ds.update(carried)
    else:
        ds.PatientName = _text(meta.patient.get("name"))
        ds.PatientID = _text(meta.patient.get("id"))
        ds.PatientBirthDate = _text(meta.patient.get("birth_date"), 8)
        ds.PatientSex = _text(meta.patient.get("sex"), 16)
        if meta.patient.get("age"):
            ds.PatientAge = _text(meta.patient.get("age"), 4)
        ds.StudyInstanceUID = _text(meta.study.get("uid"))
        ds.StudyDate = _text(meta.study.get("date"), 8)
        ds.StudyTime = _text(meta.study.get("time"), 16)
        ds.StudyID = _text(meta.study.get("id"), 16)
        ds.AccessionNumber = _text(meta.study.get("accession_number"), 16)
        if meta.study.get("description"):
            ds.StudyDescription = _text(meta.study.get("description"))
        if meta.study.get("institution"):
            ds.InstitutionName = _text(meta.study.get("institution"))
        if meta.manufacturer:
            ds.Manufacturer = _text(meta.manufacturer)
        if meta.model_name:
            ds.ManufacturerModelName = _text(meta.model_name)
        if meta.protocol_name:
            ds.ProtocolName = _text(meta.protocol_name)
        if meta.series_number is not None:
            ds.SeriesNumber = int(meta.series_number)
        description = meta.series_description or meta.description
        if description:
            ds.SeriesDescription = _text(description)
    aliases = {
        "patient_name": "PatientName",
        "patient_id": "PatientID",
        "study_description": "StudyDescription",
        "series_description": "SeriesDescription",
    }
    for option, keyword in aliases.items():
        if options.get(option) is not None:
            setattr(ds, keyword, options.get(option))
    if options.get("series_number") is not None:
        try:
            ds.SeriesNumber = int(options.get("series_number"))
        except ValueError as exc:
            raise UsageError(
                f"series_number={options.get('series_number')!r}: expected an integer"
            ) from exc
    new_study = str(options.get("new_study", "no")).lower() in ("yes", "y", "1", "true")
    if new_study or not ds.get("StudyInstanceUID"):
        ds.StudyInstanceUID = new_uid()
    ds.SeriesInstanceUID = new_uid()
    if new_study or not ds.get("FrameOfReferenceUID"):
        ds.FrameOfReferenceUID = new_uid()
    # Type 2 attributes of the IODs written: empty when nothing gives them. A header's own
    # values (empty ones too, as an anonymizer left them) stay; other sources get
    # placeholders for the patient's name and ID.
    defaults: dict[str, Any] = dict.fromkeys(
        (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyDate",
            "StudyTime",
            "StudyID",
            "AccessionNumber",
            "ReferringPhysicianName",
            "PositionReferenceIndicator",
            "Manufacturer",
            "PatientPosition",
        ),
        "",
    )
    defaults["SeriesNumber"] = 1
    if carried is None:
        now = _dt.datetime.now()  # a study made of this output, today
        defaults.update(
            PatientName="ANONYMOUS",
            PatientID="ANON",
            PatientPosition="HFS",
            StudyDate=now.strftime("%Y%m%d"),
            StudyTime=now.strftime("%H%M%S"),
            StudyID="1",
        )
    for keyword, value in defaults.items():
        if keyword not in ds or (carried is None and value and not ds.get(keyword)):
            setattr(ds, keyword, value)
    for tag, vr, value in parse_set_values(options.set_values):
        ds.add_new(tag, vr, value)
    return ds


def _sop_class(image: Image) -> tuple[str, str | None]:
    """Modality (MR or CT) and a note when the source was neither."""
    modality = (image.meta.modality or "").upper()
    if modality in ("CT", "MR"):
        return modality, None
    note = (
        f"source modality {modality or 'unknown'}: written as MR "
        "(classic and enhanced volumes need an image IOD with geometry)"
    )
    return "MR", note


# --- writing ------------------------------------------------------------------------------


@dataclass
class _Geometry:
    lps: np.ndarray
    spacing: tuple[float, float, float]
    iop: list[str]
    normal: np.ndarray

    def position(self, k: int) -> list[str]:
        return [_ds(x) for x in self.lps[:3, 3] + k * self.lps[:3, 2]]


def _geometry(image: Image, path: Path) -> _Geometry:
    lps = ras_to_lps(image.affine)
    vi, vj, vk = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    di, dj, dk = (float(np.linalg.norm(v)) for v in (vi, vj, vk))
    if min(di, dj, dk) <= 0:
        raise WriteError(f"{path}: affine has a zero-length voxel axis")
    iop = [_ds(x) for x in (*(vi / di), *(vj / dj))]
    return _Geometry(lps, (di, dj, dk), iop, np.cross(vi / di, vj / dj))


def _file_meta(sop_class: str, ts: str) -> FileMetaDataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = ""
    fm.TransferSyntaxUID = ts
    fm.ImplementationClassUID = IMPLEMENTATION_UID
    fm.ImplementationVersionName = IMPLEMENTATION_VERSION
    return fm


def _pixel_module(ds: Dataset, rows: int, columns: int, stored: Stored) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    # BitsStored stays 16: with fewer, dcm2niix (v1.0.2024) masks signed values without
    # sign extension, so -1000 in 12 bits reads as 3096.
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.data.dtype.kind == "i" else 0


def _encode(frames: list[np.ndarray], ts: str, signed: bool) -> bytes:
    """Pixel Data for ``frames`` (rows x columns, little-endian 16-bit) in syntax ``ts``."""
    if ts not in _ENCAPSULATED:
        if len(frames) == 1:
            return frames[0].tobytes()
        return b"".join(f.tobytes() for f in frames)
    from pydicom.pixels import get_encoder

    encoder = get_encoder(ts)
    rows, columns = frames[0].shape
    kwargs = {
        "rows": rows,
        "columns": columns,
        "samples_per_pixel": 1,
        "bits_allocated": 16,
        "bits_stored": 16,
        "pixel_representation": int(signed),
        "photometric_interpretation": "MONOCHROME2",
        "number_of_frames": 1,
    }
    return encapsulate([encoder.encode(f, **kwargs) for f in frames], has_bot=len(frames) > 1)


def write_dicom(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``image`` as ``<stem>_0001.dcm``... beside ``path`` (classic) or as ``path``.

    Files are named from ``path`` so that core's staging commits the whole series at once.
    """
    path = Path(path)
    ts_name = str(options.get("ts", "explicit")).lower()
    if ts_name not in TRANSFER_SYNTAXES:
        raise UsageError(f"ts={ts_name!r}: expected one of {', '.join(TRANSFER_SYNTAXES)}")
    ts = TRANSFER_SYNTAXES[ts_name]
    layout = str(options.get("layout", "classic")).lower()
    if layout not in ("classic", "enhanced", "parametric"):
        raise UsageError(f"layout={layout!r}: expected classic, enhanced or parametric")
    if (
        layout == "parametric"
        and ts != ExplicitVRLittleEndian
        and ts != DeflatedExplicitVRLittleEndian
    ):
        raise UsageError(f"ts={ts_name}: float pixel data are written uncompressed or deflated")
    shape = image.shape
    if len(shape) < 2 or len(shape) > 4:
        raise WriteError(f"{path}: DICOM holds 2-4 axes, not {len(shape)}")
    if ts == JPEG2000Lossless and min(shape[:2]) < 32:
        # OpenJPEG (pylibjpeg-openjpeg) always codes 6 wavelet resolutions: 32 pixels at least.
        raise WriteError(
            f"{path}: ts=jpeg2000 needs slices of at least 32 x 32 pixels, not "
            f"{shape[0]} x {shape[1]}",
            hint="use ts=rle or ts=deflate for small images",
        )
    identity = _identity(image, options)  # usage errors before any pixel work
    geometry = _geometry(image, path)
    if layout == "parametric":
        modality, note = _sop_class(image)
        if note:
            image.notes.append(note)
        _write_parametric(image, path, identity, geometry, modality, ts)
        return
    stored = stored_values(image, options.lossy)
    for loss in stored.losses:
        image.record_loss(loss)
    stored.data = stored.data.reshape(shape + (1,) * (4 - len(shape)), order="F")
    modality, note = _sop_class(image)
    if note:
        image.notes.append(note)
    if layout == "enhanced":
        _write_enhanced(image, path, identity, geometry, stored, modality, ts)
    else:
        _write_classic(image, path, identity, geometry, stored, modality, ts)


class _FastSeries:
    """Part 10 files from one template dataset, re-encoding only what changes per instance.

    pydicom's ``dcmwrite`` encodes every element of every file (5 ms a file); a series
    differs only in a few attributes, so the rest is encoded once and the bytes reused.
    """

    def __init__(self, template: Dataset, dynamic: set[int], ts: str) -> None:
        self.ts = ts
        self.encodings = convert_encodings(["ISO_IR 192"])
        self.segments: list[bytes | int] = []
        run = b""
        for tag in sorted(int(elem.tag) for elem in template):
            if tag in dynamic:
                self.segments += [run, tag]
                run = b""
            else:
                run += self._encode(template[tag])
        self.segments.append(run)
        fm = template.file_meta
        self.meta_head = self._encode(_meta_element(0x00020001, "OB", b"\x00\x01")) + self._encode(
            fm["MediaStorageSOPClassUID"]
        )
        self.meta_tail = b"".join(
            self._encode(fm[t])
            for t in ("TransferSyntaxUID", "ImplementationClassUID", "ImplementationVersionName")
        )

    def _encode(self, elem: Any) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_data_element(fp, elem, self.encodings)
        return fp.getvalue()

    def write(self, path: Path, ds: Dataset, pixels: bytes) -> None:
        """Write ``path`` from ``ds``'s current dynamic values and the Pixel Data value."""
        body = []
        for seg in self.segments:
            if isinstance(seg, bytes):
                body.append(seg)
            elif seg == 0x7FE00010:
                body.append(_pixel_data_element(pixels, self.ts in _ENCAPSULATED))
            elif seg in ds:
                body.append(self._encode(ds[seg]))
        data = b"".join(body)
        if self.ts == DeflatedExplicitVRLittleEndian:
            deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = deflate.compress(data) + deflate.flush()
            if len(data) % 2:
                data += b"\x00"
        uid = self._encode(_meta_element(0x00020003, "UI", ds.SOPInstanceUID))
        meta = self.meta_head + uid + self.meta_tail
        group = self._encode(_meta_element(0x00020000, "UL", len(meta)))
        with path.open("wb") as fh:
            fh.write(b"\x00" * 128 + b"DICM" + group + meta + data)


def _meta_element(tag: int, vr: str, value: Any) -> Any:
    from pydicom.dataelem import DataElement

    return DataElement(tag, vr, value)


def _pixel_data_element(pixels: bytes, encapsulated: bool) -> bytes:
    """(7FE0,0010): OW with its length, or OB of undefined length ending in a delimiter."""
    tag = b"\xe0\x7f\x10\x00"
    if encapsulated:
        return tag + b"OB\x00\x00\xff\xff\xff\xff" + pixels + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    if len(pixels) % 2:
        pixels += b"\x00"
    return tag + b"OW\x00\x00" + len(pixels).to_bytes(4, "little") + pixels


def _write_classic(
    image: Image,
    path: Path,
    identity: Dataset,
    geo: _Geometry,
    stored: Stored,
    modality: str,
    ts: str,
) -> None:
    """One file per slice and volume; one template dataset, per-instance values changed."""
    ni, nj, nk, nt = stored.data.shape
    meta = image.meta
    sop_class = CT_STORAGE if modality == "CT" else MR_STORAGE
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, ts)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ""
    ds.Modality = modality
    ds.update(identity)
    ds.ContentDate = ds.ContentTime = ""
    ds.InstanceNumber = 1
    _laterality(ds)
    ds.BurnedInAnnotation = "NO"
    if modality == "MR":
        ds.ScanningSequence = "RM"  # research mode: the acquisition is not known
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = ""
        ds.RepetitionTime = _ds(meta.repetition_time * 1000) if meta.repetition_time else ""
        ds.EchoTime = _ds(meta.echo_time * 1000) if meta.echo_time else ""
        ds.EchoTrainLength = ""
        if meta.inversion_time:
            ds.InversionTime = _ds(meta.inversion_time * 1000)
        if meta.flip_angle:
            ds.FlipAngle = _ds(meta.flip_angle)
    else:
        ds.KVP = ""
    ds.ImageOrientationPatient = geo.iop
    di, dj, dk = geo.spacing
    ds.PixelSpacing = [_ds(dj), _ds(di)]
    ds.SliceThickness = _ds(dk)
    ds.SpacingBetweenSlices = _ds(dk)
    _pixel_module(ds, nj, ni, stored)
    if stored.scaled or modality == "CT":
        ds.RescaleIntercept = _ds(stored.inter)
        ds.RescaleSlope = _ds(stored.slope)
        ds.RescaleType = "HU" if modality == "CT" else "US"
    mr_temporal = nt > 1 and modality == "MR"  # MR Image module attributes, not in CT's
    if mr_temporal:
        ds.NumberOfTemporalPositions = nt
    base = _base_time(identity) if nt > 1 and meta.repetition_time else None
    signed = stored.data.dtype.kind == "i"
    little = stored.data.dtype.newbyteorder("<")
    dynamic = {
        0x00080018,  # SOPInstanceUID
        0x00080032,  # AcquisitionTime
        0x00200012,  # AcquisitionNumber
        0x00200013,  # InstanceNumber
        0x00200032,  # ImagePositionPatient
        0x00200100,  # TemporalPositionIdentifier
        0x00201041,  # SliceLocation
        0x7FE00010,  # PixelData
    }
    ds.SliceLocation = ds.AcquisitionNumber = ""
    ds.ImagePositionPatient = ""
    ds.PixelData = b""
    if mr_temporal:
        ds.TemporalPositionIdentifier = ""
    if base is not None:
        ds.AcquisitionTime = ""
    fast = _FastSeries(ds, dynamic, ts)

    suffix = ".dcm"
    stem = path.name[: -len(suffix)] if path.name.lower().endswith(suffix) else path.name
    width = max(4, len(str(nk * nt)))
    number = 0
    for t in range(nt):
        ds.AcquisitionNumber = t + 1
        if mr_temporal:
            ds.TemporalPositionIdentifier = t + 1
            if base is not None:
                acq = base + _dt.timedelta(seconds=float(meta.repetition_time) * t)
                ds.AcquisitionTime = acq.strftime("%H%M%S.%f")
        for k in range(nk):
            number += 1
            ds.SOPInstanceUID = new_uid()
            ds.InstanceNumber = number
            position = geo.lps[:3, 3] + k * geo.lps[:3, 2]
            ds.ImagePositionPatient = [_ds(x) for x in position]
            ds.SliceLocation = _ds(float(position @ geo.normal))
            frame = np.ascontiguousarray(stored.data[:, :, k, t].T, dtype=little)
            out = path.with_name(f"{stem}_{number:0{width}d}{suffix}")
            fast.write(out, ds, _encode([frame], ts, signed))


def _base_time(identity: Dataset) -> _dt.datetime | None:
    """The series' start (SeriesTime, else StudyTime) from the header, for acquisition times."""
    for keyword in ("SeriesTime", "StudyTime"):
        text = str(identity.get(keyword) or "").strip()
        if len(text) >= 6 and text[:6].isdigit():
            frac = float("0" + text[6:]) if text[6:7] == "." else 0.0
            return _dt.datetime(2000, 1, 1, int(text[:2]), int(text[2:4]), int(text[4:6])) + (
                _dt.timedelta(seconds=frac)
            )
    return None


def _multiframe_base(
    sop_class: str, ts: str, modality: str, identity: Dataset
) -> tuple[Dataset, str]:
    """The one instance of a multi-frame layout: file meta, identity, equipment, content.

    Also returns the laterality taken out of the series: multi-frame IODs give it per frame
    (Frame Anatomy), not in the series.
    """
    uid = new_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, ts)
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.Modality = modality
    ds.update(identity)
    # Enhanced General Equipment makes these type 1: the source's, else this software's.
    ds.Manufacturer = ds.get("Manufacturer") or "anyconv"
    ds.ManufacturerModelName = ds.get("ManufacturerModelName") or "anyconv"
    ds.DeviceSerialNumber = ds.get("DeviceSerialNumber") or "0"
    ds.SoftwareVersions = ds.get("SoftwareVersions") or "anyconv"
    ds.ContentDate, ds.ContentTime = _content_date_time(ds)
    ds.InstanceNumber = 1
    laterality = str(ds.pop(0x00200060).value or "") if "Laterality" in ds else ""
    return ds, laterality


def _content_date_time(ds: Dataset) -> tuple[str, str]:
    """Type 1 content date and time of a multi-frame instance.

    The series' (else the study's) date and time as the header or metadata give them, so an
    anonymizer's shifted dates stay consistent and no real date is added; the time of
    writing only when neither has a date.
    """
    for date_kw, time_kw in (("SeriesDate", "SeriesTime"), ("StudyDate", "StudyTime")):
        date = str(ds.get(date_kw) or "").strip()
        if date:
            return date, str(ds.get(time_kw) or "").strip() or "000000"
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _item(**attrs: Any) -> Dataset:
    item = Dataset()
    for key, value in attrs.items():
        setattr(item, key, value)
    return item


def _write_enhanced(
    image: Image,
    path: Path,
    identity: Dataset,
    geo: _Geometry,
    stored: Stored,
    modality: str,
    ts: str,
) -> None:
    """One Enhanced MR or CT instance: frames k fastest, then t.

    Shared groups hold what all frames share (spacing, orientation, scaling, frame type);
    per-frame groups hold each frame's position and its (stack, in-stack position, temporal
    position) indices.
    """
    ni, nj, nk, nt = stored.data.shape
    ct = modality == "CT"
    sop_class = ENHANCED_CT_STORAGE if ct else ENHANCED_MR_STORAGE
    ds, laterality = _multiframe_base(sop_class, ts, modality, identity)
    ds.ContentQualification = "RESEARCH"
    ds.ImageComments = "written by anyconv"
    if not ct:
        # Type 1C in the MR Image and Spectroscopy Instance macro (dciodvfy requires it);
        # the source's acquisition is unknown, so this names the usual agency.
        ds.ApplicableSafetyStandardAgency = "IEC"
        ds.ComplexImageComponent = "MAGNITUDE"
        ds.AcquisitionContrast = "UNKNOWN"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.PixelPresentation = "MONOCHROME"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.AcquisitionContextSequence = []
    ds.NumberOfFrames = nk * nt
    _pixel_module(ds, nj, ni, stored)
    frame_type = {
        "FrameType": ["DERIVED", "PRIMARY", "VOLUME", "NONE"],
        "PixelPresentation": "MONOCHROME",
        "VolumetricProperties": "VOLUME",
        "VolumeBasedCalculationTechnique": "NONE",
    }
    if not ct:
        frame_type.update(ComplexImageComponent="MAGNITUDE", AcquisitionContrast="UNKNOWN")
    shared = _shared_geometry(geo, laterality)
    shared.PixelValueTransformationSequence = [
        _item(
            RescaleIntercept=_ds(stored.inter),
            RescaleSlope=_ds(stored.slope),
            RescaleType="HU" if ct else "US",
        )
    ]
    if ct:
        shared.CTImageFrameTypeSequence = [_item(**frame_type)]
        # dciodvfy requires the Irradiation Event Identification macro even for DERIVED
        # frames; one new UID says only that the frames share one (unknown) event.
        shared.IrradiationEventIdentificationSequence = [_item(IrradiationEventUID=new_uid())]
    else:
        shared.MRImageFrameTypeSequence = [_item(**frame_type)]
    ds.SharedFunctionalGroupsSequence = [shared]
    _add_frames(ds, geo, nk, nt)
    little = stored.data.dtype.newbyteorder("<")
    order = np.ascontiguousarray(stored.data.transpose(3, 2, 1, 0), dtype=little)  # t,k,j,i
    if ts in _ENCAPSULATED:
        ds.PixelData = _encode([f for vol in order for f in vol], ts, stored.data.dtype.kind == "i")
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = order.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _shared_geometry(geo: _Geometry, laterality: str) -> Dataset:
    """Shared functional groups every enhanced layout has: spacing, orientation, anatomy."""
    di, dj, dk = geo.spacing
    return _item(
        PixelMeasuresSequence=[
            _item(
                PixelSpacing=[_ds(dj), _ds(di)],
                SliceThickness=_ds(dk),
                SpacingBetweenSlices=_ds(dk),
            )
        ],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=geo.iop)],
        FrameAnatomySequence=[
            _item(
                FrameLaterality=laterality if laterality in ("R", "L", "B") else "U",
                AnatomicRegionSequence=[
                    _item(
                        CodeValue="38266002",
                        CodingSchemeDesignator="SCT",
                        CodeMeaning="Entire body",
                    )
                ],
            )
        ],
    )


def _add_frames(ds: Dataset, geo: _Geometry, nk: int, nt: int) -> None:
    """Dimension organisation and per-frame groups (content indices, position), k fastest."""
    dim_uid = new_uid()
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dim_uid)]
    # Index values list the spatial position before the temporal one, as Philips does and as
    # dcm2niix sorts them (the last index varies slowest); frames are stored in that order.
    pointers = [0x00209056, 0x00209057] + ([0x00209128] if nt > 1 else [])
    ds.DimensionOrganizationType = "3D_TEMPORAL" if nt > 1 else "3D"
    ds.DimensionIndexSequence = [
        _item(
            DimensionOrganizationUID=dim_uid,
            DimensionIndexPointer=pointer,
            FunctionalGroupPointer=0x00209111,
        )
        for pointer in pointers
    ]
    frames = Sequence()
    for t in range(nt):
        for k in range(nk):
            content = _item(StackID="1", InStackPositionNumber=k + 1)
            if nt > 1:
                content.TemporalPositionIndex = t + 1
            content.DimensionIndexValues = [1, k + 1] + ([t + 1] if nt > 1 else [])
            frames.append(
                _item(
                    FrameContentSequence=[content],
                    PlanePositionSequence=[_item(ImagePositionPatient=geo.position(k))],
                )
            )
    ds.PerFrameFunctionalGroupsSequence = frames


def _write_parametric(
    image: Image, path: Path, identity: Dataset, geo: _Geometry, modality: str, ts: str
) -> None:
    """One Parametric Map instance holding the real values as Float Pixel Data.

    float32 (and integers within 2**24) as 32-bit Float Pixel Data, float64 and wider
    integers as Double Float Pixel Data: the values are kept as they are, NaN included,
    without the 16-bit grid the image IODs need. The Real World Value Mapping is the
    identity, in unknown units ("1").
    """
    values = np.asarray(image.values())
    if values.dtype.kind == "c":
        raise LossyConversionError(
            f"DICOM cannot hold complex data ({values.dtype})", hint="take the magnitude first"
        )
    if values.dtype.kind in "iub":
        wide = values.size and max(abs(int(values.min())), abs(int(values.max()))) > 2**24
        values = values.astype(np.float64 if wide else np.float32)
    double = values.dtype.itemsize > 4
    values = values.astype("<f8" if double else "<f4")
    shape = values.shape
    data = values.reshape(shape + (1,) * (4 - len(shape)), order="F")
    ni, nj, nk, nt = data.shape
    ds, laterality = _multiframe_base(PARAMETRIC_MAP_STORAGE, ts, modality, identity)
    ds.ContentLabel = "MAP"
    ds.ContentDescription = str(ds.get("SeriesDescription") or "")[:64]
    ds.ContentCreatorName = ""
    ds.ContentQualification = "RESEARCH"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.AcquisitionContextSequence = []
    ds.NumberOfFrames = nk * nt
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = nj, ni
    ds.BitsAllocated = 64 if double else 32
    shared = _shared_geometry(geo, laterality)
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    shared.RealWorldValueMappingSequence = [
        _item(
            LUTExplanation="stored values are the real values",
            LUTLabel="IDENTITY",
            MeasurementUnitsCodeSequence=[
                _item(CodeValue="1", CodingSchemeDesignator="UCUM", CodeMeaning="no units")
            ],
            DoubleFloatRealWorldValueFirstValueMapped=lo,
            DoubleFloatRealWorldValueLastValueMapped=hi,
            RealWorldValueIntercept=0.0,
            RealWorldValueSlope=1.0,
        )
    ]
    shared.ParametricMapFrameTypeSequence = [_item(FrameType=ds.ImageType)]
    shared.PixelValueTransformationSequence = [  # the Identity macro
        _item(RescaleIntercept="0", RescaleSlope="1", RescaleType="US")
    ]
    ds.SharedFunctionalGroupsSequence = [shared]
    _add_frames(ds, geo, nk, nt)
    order = np.ascontiguousarray(data.transpose(3, 2, 1, 0))  # t, k, j, i
    if double:
        ds.DoubleFloatPixelData = order.tobytes()
    else:
        ds.FloatPixelData = order.tobytes()
    ds.save_as(path, enforce_file_format=True)
