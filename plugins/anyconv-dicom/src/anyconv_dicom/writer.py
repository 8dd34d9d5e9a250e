"""Write a canonical image as a classic single-frame DICOM series (MR or CT Image Storage).

One instance per slice (voxel axis k) and per volume (axis t). Column = i, row = j, so
ImageOrientationPatient holds the LPS directions of i and j and ImagePositionPatient the
LPS position of voxel (0, 0, k): any DICOM reader then puts every voxel at the same world
point, whatever voxel order it picks. New UIDs are UUID-derived under ``2.25.`` (PS3.5
B.2), which needs no registered root.
"""

from __future__ import annotations

import copy
import datetime as _dt
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from anyconv.errors import LossyConversionError, UsageError, WriteError
from anyconv.geometry import ras_to_lps
from anyconv.model import Image, Meta
from anyconv.specs import WriteOptions
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless
from pydicom.valuerep import format_number_as_ds

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLEMENTATION_UID = "2.25.153196407186128374925873218738127359114"
IMPLEMENTATION_VERSION = "ANYCONV_010"
#: ``-O ts=...``: lossless transfer syntaxes the installed packages can encode.
TRANSFER_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "deflate": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
}


def new_uid() -> str:
    """A fresh UID under the UUID root ``2.25`` (unique without a registered root)."""
    return f"2.25.{uuid.uuid4().int}"


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters, as precise as that allows."""
    return format_number_as_ds(float(value))


def _text(value: Any, limit: int = 64) -> str:
    return "" if value is None else str(value)[:limit]


def _stored_values(image: Image, lossy: bool) -> tuple[np.ndarray, float, float, list[str]]:
    """Stored 16-bit values plus slope/intercept; losses in words (refused unless lossy).

    Integers within the 16-bit range (and integer-valued floats) are kept exactly; anything
    else is quantised linearly onto int16, which only ``lossy`` allows.
    """
    arr = np.asarray(image.data)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    slope, inter = image.slope, image.inter
    if arr.dtype.kind == "c":
        raise LossyConversionError(
            f"DICOM cannot hold complex data ({arr.dtype})", hint="take the magnitude first"
        )
    finite = bool(np.isfinite(arr).all()) if arr.dtype.kind == "f" else True
    if arr.size == 0:
        return arr.astype(np.int16), slope, inter, []
    if finite:
        lo, hi = float(arr.min()), float(arr.max())
        whole = arr.dtype.kind in "iu" or bool(np.all(arr == np.rint(arr)))
        if whole and lo >= 0 and hi <= 65535:
            return arr.astype(np.uint16), slope, inter, []
        if whole and lo >= -32768 and hi <= 32767:
            return arr.astype(np.int16), slope, inter, []
    real = arr.astype(np.float64) * slope + inter
    bad = ~np.isfinite(real)
    losses = []
    if bad.any():
        losses.append(f"{int(bad.sum())} NaN/inf values (stored as 0)")
        real[bad] = 0.0
    lo, hi = float(real.min()), float(real.max())
    q_slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    q_inter = lo + 32768.0 * q_slope
    # DS holds 16 characters: quantise with the values as they will be read back.
    q_slope, q_inter = float(_ds(q_slope)), float(_ds(q_inter))
    stored = np.clip(np.rint((real - q_inter) / q_slope), -32768, 32767).astype(np.int16)
    error = float(np.abs(stored * q_slope + q_inter - real)[~bad].max(initial=0.0))
    losses.insert(
        0,
        f"{arr.dtype} values quantised to int16 with slope {q_slope:.6g} (max error {error:.3g})",
    )
    if not lossy:
        raise LossyConversionError(
            f"DICOM (16-bit) cannot hold {'; '.join(losses)}",
            hint="use --lossy to convert anyway and record the loss",
        )
    return stored, q_slope, q_inter, losses


def _sop_class(image: Image) -> tuple[str, str, str | None]:
    """SOP class, modality and a note when the source was neither MR nor CT."""
    modality = (image.meta.modality or "").upper()
    if modality == "CT":
        return CT_STORAGE, "CT", None
    if modality == "MR":
        return MR_STORAGE, "MR", None
    note = (
        f"source modality {modality or 'unknown'}: written as MR Image Storage "
        "(classic volumes need an image IOD with geometry)"
    )
    return MR_STORAGE, "MR", note


def write_dicom(image: Image, path: Path, options: WriteOptions) -> None:
    """Write ``image`` as ``<stem>_0001.dcm``... beside ``path`` (one file per slice).

    Files are named from ``path`` so that core's staging commits the whole series at once.
    """
    path = Path(path)
    ts_name = str(options.get("ts", "explicit")).lower()
    if ts_name not in TRANSFER_SYNTAXES:
        raise UsageError(f"ts={ts_name!r}: expected one of {', '.join(TRANSFER_SYNTAXES)}")
    shape = image.shape
    if len(shape) < 2 or len(shape) > 4:
        raise WriteError(f"{path}: DICOM series hold 2-4 axes, not {len(shape)}")
    stored, slope, inter, losses = _stored_values(image, options.lossy)
    for loss in losses:
        image.record_loss(loss)
    stored = stored.reshape(shape + (1,) * (4 - len(shape)), order="F")
    ni, nj, nk, nt = stored.shape
    sop_class, modality, note = _sop_class(image)
    if note:
        image.notes.append(note)
    scaled = slope != 1.0 or inter != 0.0 or modality == "CT"
    # BitsStored stays 16: with fewer, dcm2niix (v1.0.2024) masks signed values without
    # sign extension, so -1000 in 12 bits reads as 3096.
    bits = 16

    lps = ras_to_lps(image.affine)
    vi, vj, vk = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    di, dj, dk = (float(np.linalg.norm(v)) for v in (vi, vj, vk))
    if min(di, dj, dk) <= 0:
        raise WriteError(f"{path}: affine has a zero-length voxel axis")
    normal = np.cross(vi / di, vj / dj)
    iop = [_ds(x) for x in (*(vi / di), *(vj / dj))]

    meta = _with_options(image.meta, options)
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    new_study = str(options.get("new_study", "no")).lower() in ("yes", "y", "1", "true")
    study_uid = (not new_study and _text(meta.study.get("uid"))) or new_uid()
    series_uid, frame_uid = new_uid(), new_uid()
    series_number = meta.series_number if meta.series_number is not None else 1
    description = meta.series_description or meta.description or ""
    tr = meta.repetition_time

    layout = str(options.get("layout", "classic")).lower()
    if layout == "enhanced":
        if nt > 1:
            # dcm2niix 1.0.2024 stacks our 4D frames in the wrong order whatever the
            # dimension organisation (ours reads them right): refuse rather than mislead.
            raise WriteError(
                f"{path}: the enhanced layout is written for 3D images only; "
                "use layout=classic for 4D"
            )
        if modality == "CT":
            image.notes.append("enhanced layout: CT data written as Enhanced MR (no Enhanced CT)")
        ds = _base_dataset(meta, ENHANCED_MR_STORAGE, "MR", study_uid, series_uid, frame_uid)
        ds.StudyDate = _text(meta.study.get("date"), 8) or date
        ds.StudyTime = _text(meta.study.get("time"), 16) or time
        ds.SeriesDate, ds.SeriesTime = date, time
        ds.ContentDate, ds.ContentTime = date, time
        ds.AcquisitionDateTime = date + time
        ds.SeriesNumber = int(series_number)
        ds.SeriesDescription = _text(description)
        ds.InstanceNumber = 1
        _enhanced(ds, stored, lps, (di, dj, dk), iop, (slope, inter), tr)
        if ts_name == "rle":
            ds.compress(RLELossless)
        elif ts_name == "deflate":
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
        return
    if layout != "classic":
        raise UsageError(f"layout={layout!r}: expected classic or enhanced")

    suffix = ".dcm"
    stem = path.name[: -len(suffix)] if path.name.lower().endswith(suffix) else path.name
    width = max(4, len(str(nk * nt)))
    number = 0
    for t in range(nt):
        for k in range(nk):
            number += 1
            ds = _base_dataset(meta, sop_class, modality, study_uid, series_uid, frame_uid)
            ds.StudyDate = _text(meta.study.get("date"), 8) or date
            ds.StudyTime = _text(meta.study.get("time"), 16) or time
            ds.SeriesDate, ds.SeriesTime = date, time
            ds.ContentDate, ds.ContentTime = date, time
            ds.SeriesNumber = int(series_number)
            ds.SeriesDescription = _text(description)
            ds.InstanceNumber = number
            ds.AcquisitionNumber = t + 1
            if nt > 1:
                ds.TemporalPositionIdentifier = t + 1
                ds.NumberOfTemporalPositions = nt
                if tr:
                    acq = now + _dt.timedelta(seconds=float(tr) * t)
                    ds.AcquisitionTime = acq.strftime("%H%M%S.%f")
            position = lps[:3, 3] + k * vk
            ds.ImagePositionPatient = [_ds(x) for x in position]
            ds.ImageOrientationPatient = iop
            ds.SliceLocation = _ds(float(position @ normal))
            ds.PixelSpacing = [_ds(dj), _ds(di)]
            ds.SliceThickness = _ds(dk)
            ds.SpacingBetweenSlices = _ds(dk)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = nj, ni
            ds.BitsAllocated = 16
            ds.BitsStored = bits
            ds.HighBit = bits - 1
            ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
            if scaled:
                ds.RescaleIntercept = _ds(inter)
                ds.RescaleSlope = _ds(slope)
                ds.RescaleType = "HU" if modality == "CT" else "US"
            pixels = np.ascontiguousarray(stored[:, :, k, t].T).astype(
                stored.dtype.newbyteorder("<")
            )
            ds.PixelData = pixels.tobytes()
            if ts_name == "rle":
                ds.compress(RLELossless)
            elif ts_name == "deflate":
                ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
            out = path.with_name(f"{stem}_{number:0{width}d}{suffix}")
            ds.save_as(out, enforce_file_format=True)


def _with_options(meta: Meta, options: WriteOptions) -> Meta:
    """The image's metadata with the user's ``--option`` identity values applied."""
    meta = copy.deepcopy(meta)
    for key, field in (("patient_name", "name"), ("patient_id", "id")):
        if options.get(key) is not None:
            meta.patient[field] = options.get(key)
    if options.get("study_description") is not None:
        meta.study["description"] = options.get("study_description")
    if options.get("series_description") is not None:
        meta.series_description = options.get("series_description")
    if options.get("series_number") is not None:
        try:
            meta.series_number = int(options.get("series_number"))
        except ValueError as exc:
            raise UsageError(
                f"series_number={options.get('series_number')!r}: expected an integer"
            ) from exc
    return meta


def _base_dataset(
    meta: Meta, sop_class: str, modality: str, study_uid: str, series_uid: str, frame_uid: str
) -> Dataset:
    """Patient, study, equipment and modality attributes shared by every instance."""
    sop_uid = new_uid()
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = IMPLEMENTATION_UID
    fm.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.Manufacturer = _text(meta.manufacturer)
    ds.ManufacturerModelName = _text(meta.model_name)
    ds.SoftwareVersions = "anyconv"
    ds.PatientName = _text(meta.patient.get("name")) or "ANONYMOUS"
    ds.PatientID = _text(meta.patient.get("id")) or "ANON"
    ds.PatientBirthDate = _text(meta.patient.get("birth_date"), 8)
    ds.PatientSex = _text(meta.patient.get("sex"), 16)
    if meta.patient.get("age"):
        ds.PatientAge = _text(meta.patient.get("age"), 4)
    ds.StudyInstanceUID = study_uid
    ds.StudyID = _text(meta.study.get("id"), 16) or "1"
    ds.AccessionNumber = _text(meta.study.get("accession_number"), 16)
    ds.ReferringPhysicianName = ""
    if meta.study.get("description"):
        ds.StudyDescription = _text(meta.study.get("description"))
    if meta.study.get("institution"):
        ds.InstitutionName = _text(meta.study.get("institution"))
    ds.SeriesInstanceUID = series_uid
    if meta.protocol_name:
        ds.ProtocolName = _text(meta.protocol_name)
    ds.Laterality = ""
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
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
    return ds


def _item(**attrs: Any) -> Dataset:
    item = Dataset()
    for key, value in attrs.items():
        setattr(item, key, value)
    return item


def _enhanced(
    ds: Dataset,
    stored: np.ndarray,
    lps: np.ndarray,
    spacing: tuple[float, float, float],
    iop: list[str],
    scaling: tuple[float, float],
    tr: float | None,
) -> None:
    """Turn ``ds`` into one Enhanced MR instance: frames k fastest, then t.

    Shared groups hold what all frames share (spacing, orientation, scaling, frame type);
    per-frame groups hold each frame's position and its (stack position, temporal index).
    """
    ni, nj, nk, nt = stored.shape
    di, dj, dk = spacing
    ds.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    ds.DeviceSerialNumber = "0"
    ds.Manufacturer = ds.Manufacturer or "anyconv"
    ds.ManufacturerModelName = ds.ManufacturerModelName or "anyconv"
    ds.ContentQualification = "RESEARCH"
    ds.ImageComments = "written by anyconv"
    # Type 1C in the MR Image and Spectroscopy Instance macro (dciodvfy requires it); the
    # source's acquisition is unknown, so this names the usual agency, not a measurement.
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "UNKNOWN"
    ds.PixelPresentation = "MONOCHROME"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.AcquisitionContextSequence = []
    for kw in (
        "ScanningSequence",
        "SequenceVariant",
        "ScanOptions",
        "MRAcquisitionType",
        "RepetitionTime",
        "EchoTime",
        "EchoTrainLength",
        "InversionTime",
        "FlipAngle",
        "SliceLocation",
        "Laterality",
    ):
        if kw in ds:
            delattr(ds, kw)
    ds.NumberOfFrames = nk * nt
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = nj, ni
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    slope, inter = scaling
    shared = _item(
        PixelMeasuresSequence=[
            _item(
                PixelSpacing=[_ds(dj), _ds(di)],
                SliceThickness=_ds(dk),
                SpacingBetweenSlices=_ds(dk),
            )
        ],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=iop)],
        PixelValueTransformationSequence=[
            _item(RescaleIntercept=_ds(inter), RescaleSlope=_ds(slope), RescaleType="US")
        ],
        MRImageFrameTypeSequence=[
            _item(
                FrameType=["DERIVED", "PRIMARY", "VOLUME", "NONE"],
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast="UNKNOWN",
            )
        ],
        FrameAnatomySequence=[
            _item(
                FrameLaterality="U",
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
    ds.SharedFunctionalGroupsSequence = [shared]
    dim_uid = new_uid()
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dim_uid)]
    # Dimensions from slowest to fastest varying, as the frames are stored: t, then k.
    pointers = [(0x0020, 0x9056)] + ([(0x0020, 0x9128)] if nt > 1 else []) + [(0x0020, 0x9057)]
    ds.DimensionOrganizationType = "3D_TEMPORAL" if nt > 1 else "3D"
    ds.DimensionIndexSequence = [
        _item(
            DimensionOrganizationUID=dim_uid,
            DimensionIndexPointer=pointer,
            FunctionalGroupPointer=0x00209111,
        )
        for pointer in pointers
    ]
    frames = []
    for t in range(nt):
        for k in range(nk):
            content = _item(StackID="1", InStackPositionNumber=k + 1)
            index = [1, t + 1, k + 1] if nt > 1 else [1, k + 1]
            if nt > 1:
                content.TemporalPositionIndex = t + 1
                if tr:
                    content.FrameAcquisitionDuration = float(tr) * 1000.0
            content.DimensionIndexValues = index
            position = lps[:3, 3] + k * lps[:3, 2]
            frames.append(
                _item(
                    FrameContentSequence=[content],
                    PlanePositionSequence=[_item(ImagePositionPatient=[_ds(x) for x in position])],
                )
            )
    ds.PerFrameFunctionalGroupsSequence = frames
    order = np.ascontiguousarray(stored.transpose(3, 2, 1, 0))  # t, k, j (row), i (column)
    ds.PixelData = order.astype(stored.dtype.newbyteorder("<"), copy=False).tobytes()
