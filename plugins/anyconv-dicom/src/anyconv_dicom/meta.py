"""Metadata: ``Meta`` fields (seconds, degrees, RAS vectors) and BIDS keys as dcm2niix has them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from anyconv import geometry
from anyconv.model import Meta
from pydicom.dataset import Dataset  # noqa: TID253 - only reader.py imports this module

from .csa import csa_float
from .scan import (
    _seq_item,
    csa_image,
    find_private,
    fnum,
    full_header,
    image_type,
    manufacturer,
    private,
    tm_seconds,
)
from .stack import Volume

_STR_KEYS = (
    ("Modality", "Modality"),
    ("InstitutionName", "InstitutionName"),
    ("InstitutionalDepartmentName", "InstitutionalDepartmentName"),
    ("DeviceSerialNumber", "DeviceSerialNumber"),
    ("StationName", "StationName"),
    ("InstitutionAddress", "InstitutionAddress"),
    ("BodyPart", "BodyPartExamined"),
    ("ProcedureStepDescription", "PerformedProcedureStepDescription"),
    ("PatientPosition", "PatientPosition"),
    ("MRAcquisitionType", "MRAcquisitionType"),
    ("StudyDescription", "StudyDescription"),
    ("SeriesDescription", "SeriesDescription"),
    ("ProtocolName", "ProtocolName"),
    ("ScanningSequence", "ScanningSequence"),
    ("SequenceVariant", "SequenceVariant"),
    ("ScanOptions", "ScanOptions"),
    ("SequenceName", "SequenceName"),
    ("ManufacturersModelName", "ManufacturerModelName"),
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value) or None  # as stored in DICOM
    text = str(value).strip()
    return text or None


def _shared(ds: Dataset, macro: str) -> Dataset | None:
    return _seq_item(_seq_item(ds, "SharedFunctionalGroupsSequence"), macro)


def _first_frame(ds: Dataset, macro: str) -> Dataset | None:
    return _seq_item(_seq_item(ds, "PerFrameFunctionalGroupsSequence"), macro)


def _enh(ds: Dataset, macro: str, keyword: str) -> float | None:
    for item in (_shared(ds, macro), _first_frame(ds, macro)):
        if item is not None:
            value = fnum(item, keyword)
            if value is not None:
                return value
    return None


def _hhmmss(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    h = int(seconds // 3600)
    m = int((seconds - h * 3600) // 60)
    s = seconds - h * 3600 - m * 60
    return f"{h:02d}:{m:02d}:{s:09.6f}"


def build_meta(
    vol: Volume, affine: np.ndarray, shape: tuple[int, ...], *, multi_echo: bool = False
) -> Meta:
    """Meta and ``meta.bids`` for one volume, from its first slice's header and all slices.

    ``multi_echo`` says the series holds several echoes, so EchoNumber is written even
    for echo 1 (as dcm2niix does).
    """
    first = vol.first
    ds = full_header(first)
    vendor = manufacturer(ds)
    bids: dict[str, Any] = {}
    for bids_key, kw in _STR_KEYS:
        value = _text(ds.get(kw))
        if value is not None:
            bids[bids_key] = value
    bids["Manufacturer"] = vendor
    for key, kw in (
        ("MagneticFieldStrength", "MagneticFieldStrength"),
        ("ImagingFrequency", "ImagingFrequency"),
        ("PixelBandwidth", "PixelBandwidth"),
    ):
        value = fnum(ds, kw)
        if value is None and key == "MagneticFieldStrength":
            value = _enh(ds, "MRModifierSequence", kw)
        if value is not None:
            bids[key] = value
    software = _text(ds.get("SoftwareVersions"))
    if software:
        bids["SoftwareVersions"] = software.replace("_", " ") if vendor != "GE" else software
    itype = list(image_type(ds) or first.extra.get("frame_type") or ())
    if itype:
        bids["ImageType"] = itype
    series_number = _int(ds.get("SeriesNumber"))
    if series_number is not None:
        bids["SeriesNumber"] = series_number
    acq_num = _int(ds.get("AcquisitionNumber"))
    if acq_num is not None:
        bids["AcquisitionNumber"] = acq_num
    acq_times = [sl.acq_time for row in vol.grid for sl in row if sl.acq_time is not None]
    top = tm_seconds(ds.get("AcquisitionTime"))
    if top is None and ds.get("AcquisitionDateTime"):
        top = tm_seconds(str(ds.get("AcquisitionDateTime"))[8:].split("+")[0].split("-")[0])
    if first.frame is not None and top is not None:
        # Enhanced: the file's acquisition time, not its first frame's (as dcm2niix).
        bids["AcquisitionTime"] = _hhmmss(top)
    elif acq_times:
        bids["AcquisitionTime"] = _hhmmss(min(acq_times))
    thickness = first.thickness
    if thickness is not None:
        bids["SliceThickness"] = thickness
    if first.between is not None:
        bids["SpacingBetweenSlices"] = first.between
    # Times: ms in DICOM, seconds in BIDS and Meta.
    te = first.echo_time
    tr = first.extra.get("tr") or fnum(ds, "RepetitionTime")
    if tr is None:
        tr = _enh(ds, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
    ti = fnum(ds, "InversionTime")
    flip = first.extra.get("flip") or fnum(ds, "FlipAngle")
    if flip is None:
        flip = _enh(ds, "MRTimingAndRelatedParametersSequence", "FlipAngle")
    echo_number = first.echo_number
    if echo_number is not None and (multi_echo or echo_number > 1):
        bids["EchoNumber"] = echo_number
    if te is not None:
        bids["EchoTime"] = te / 1000.0
    if tr is not None:
        bids["RepetitionTime"] = tr / 1000.0
    if ti is not None:
        bids["InversionTime"] = ti / 1000.0
    if flip is not None:
        bids["FlipAngle"] = flip
    iop = first.iop
    if iop is not None:
        bids["ImageOrientationPatientDICOM"] = [float(v) for v in iop]
    # Phase encoding.
    ped = _text(ds.get("InPlanePhaseEncodingDirection"))
    if ped is None:
        item = _shared(ds, "MRFOVGeometrySequence") or _first_frame(ds, "MRFOVGeometrySequence")
        if item is not None:
            ped = _text(item.get("InPlanePhaseEncodingDirection"))
    phase_axis = None
    if ped in ("ROW", "COL", "COLUMN"):
        bids["InPlanePhaseEncodingDirectionDICOM"] = "COL" if ped.startswith("COL") else "ROW"
        phase_axis = 0 if ped == "ROW" else 1
    positive = _siemens_pe_positive(ds) if vendor == "Siemens" else None
    if phase_axis is not None and positive is not None:
        # dcm2niix flips rows, so a positive column direction becomes j-.
        flip_sign = positive == 1 if phase_axis == 1 else positive != 1
        bids["PhaseEncodingDirection"] = "ij"[phase_axis] + ("-" if flip_sign else "")
    elif phase_axis is not None and vendor == "GE" and _ge_view_order(ds) in (1, 2):
        # VIEWORDER 1 = bottom-up k-space traversal: along +j once rows are flipped.
        bids["PhaseEncodingDirection"] = "ij"[phase_axis] + ("" if _ge_view_order(ds) == 1 else "-")
    elif phase_axis is not None:
        bids["PhaseEncodingAxis"] = "ij"[phase_axis]
    # Echo spacing and readout (Siemens: bandwidth per pixel in the phase direction).
    bwpp = None
    if vendor == "Siemens":
        bwpp = csa_float(csa_image(ds), "BandwidthPerPixelPhaseEncode")
        if bwpp is None:
            value = private(ds, 0x0019, "SIEMENS MR HEADER", 0x28)
            if value is None:
                value = find_private(ds, 0x0021, "SIEMENS MR SDI", 0x53)  # XA
            try:
                bwpp = float(value) if value is not None else None
            except (TypeError, ValueError):
                bwpp = None
    if bwpp is None:
        bwpp = _enh(ds, "MRFOVGeometrySequence", "BandwidthPerPixelPhaseEncode") or fnum(
            ds, "BandwidthPerPixelPhaseEncode"
        )
    if vendor == "GE" and phase_axis is not None:
        _ge_readout(ds, bids, shape[phase_axis])
    if bwpp and phase_axis is not None:
        recon_pe = shape[phase_axis]
        bids["BandwidthPerPixelPhaseEncode"] = bwpp
        bids["ReconMatrixPE"] = recon_pe
        ees = 1.0 / (bwpp * recon_pe)
        bids["EffectiveEchoSpacing"] = ees
        bids["TotalReadoutTime"] = ees * (recon_pe - 1)
    # Slice timing.
    timing = _slice_timing(vol, tr)
    if timing is not None:
        bids["SliceTiming"] = timing
    coil = private(ds, 0x0051, "SIEMENS MR HEADER", 0x0F) if vendor == "Siemens" else None
    receive = _text(ds.get("ReceiveCoilName")) or _enh_text(
        ds, "MRReceiveCoilSequence", "ReceiveCoilName"
    )
    if coil is None:
        coil = receive
    if coil:
        bids["CoilString"] = _text(coil)
    if receive and vendor == "Siemens":
        bids["ReceiveCoilName"] = receive
    if "SequenceName" not in bids and _text(ds.get("PulseSequenceName")):
        bids["SequenceName"] = _text(ds.get("PulseSequenceName"))
    _acquisition_fields(ds, vol, bids, vendor, phase_axis, shape)
    meta = Meta(
        modality=bids.get("Modality"),
        manufacturer=vendor,
        model_name=bids.get("ManufacturersModelName"),
        series_number=series_number,
        series_description=bids.get("SeriesDescription"),
        protocol_name=bids.get("ProtocolName"),
        repetition_time=bids.get("RepetitionTime"),
        echo_time=bids.get("EchoTime"),
        inversion_time=bids.get("InversionTime"),
        flip_angle=bids.get("FlipAngle"),
        slice_timing=timing,
        slice_axis=2,
        phase_axis=phase_axis,
        frequency_axis=None if phase_axis is None else 1 - phase_axis,
        phase_encoding_direction=bids.get("PhaseEncodingDirection"),
        description=bids.get("SeriesDescription"),
    )
    bvals, bvecs = _diffusion(vol)
    if bvals is not None:
        meta.bvals = bvals
        meta.bvecs = bvecs
    # Identity under the keys every plugin shares (the anonymizer and --name use them).
    meta.patient = {
        key: _text(ds.get(kw))
        for key, kw in (
            ("name", "PatientName"),
            ("id", "PatientID"),
            ("birth_date", "PatientBirthDate"),
            ("sex", "PatientSex"),
            ("age", "PatientAge"),
        )
        if _text(ds.get(kw)) is not None
    }
    meta.study = {
        key: _text(ds.get(kw))
        for key, kw in (
            ("uid", "StudyInstanceUID"),
            ("date", "StudyDate"),
            ("time", "StudyTime"),
            ("id", "StudyID"),
            ("accession_number", "AccessionNumber"),
            ("description", "StudyDescription"),
            ("institution", "InstitutionName"),
            ("timezone", "TimezoneOffsetFromUTC"),  # "+0100": makes StudyTime an instant
        )
        if _text(ds.get(kw)) is not None
    }
    meta.bids = bids
    del affine
    return meta


def _enh_text(ds: Dataset, macro: str, keyword: str) -> str | None:
    for item in (_shared(ds, macro), _first_frame(ds, macro)):
        if item is not None and _text(item.get(keyword)) is not None:
            return _text(item.get(keyword))
    return None


def _number(ds: Dataset, keyword: str, *macros: str) -> float | None:
    """A numeric element from the top level or the first enhanced macro that has it."""
    value = fnum(ds, keyword)
    for macro in macros:
        if value is not None:
            break
        value = _enh(ds, macro, keyword)
    return value


def _acquisition_fields(
    ds: Dataset,
    vol: Volume,
    bids: dict[str, Any],
    vendor: str,
    phase_axis: int | None,
    shape: tuple[int, ...],
) -> None:
    """Sequence and k-space fields dcm2niix writes, from standard tags and vendor headers."""
    simple = (
        ("SAR", "SAR", ()),
        ("EchoTrainLength", "EchoTrainLength", ("MRTimingAndRelatedParametersSequence",)),
        ("PercentPhaseFOV", "PercentPhaseFieldOfView", ("MRFOVGeometrySequence",)),
        ("PercentSampling", "PercentSampling", ("MRFOVGeometrySequence",)),
        ("PhaseEncodingSteps", "NumberOfPhaseEncodingSteps", ()),
        ("PixelBandwidth", "PixelBandwidth", ("MRImagingModifierSequence",)),
        ("ImagingFrequency", "ImagingFrequency", ()),
    )
    for key, kw, macros in simple:
        if key in bids:
            continue
        value = _number(ds, kw, *macros)
        if value is not None:
            bids[key] = value
    if "ImagingFrequency" not in bids:
        value = _enh(ds, "MRImagingModifierSequence", "TransmitterFrequency")
        if value is not None:
            bids["ImagingFrequency"] = value
    acq = ds.get("AcquisitionMatrix")
    try:
        acq_pe = int(acq[2] or acq[3]) if acq is not None else 0
    except (TypeError, ValueError, IndexError):
        acq_pe = 0
    if not acq_pe:
        value = _enh(ds, "MRFOVGeometrySequence", "MRAcquisitionPhaseEncodingStepsInPlane")
        acq_pe = int(value) if value else 0
    if acq_pe:
        bids["AcquisitionMatrixPE"] = acq_pe
    if phase_axis is not None:
        bids["ReconMatrixPE"] = shape[phase_axis]
    mt = _enh_text(ds, "MRImagingModifierSequence", "MagnetizationTransfer") or _enh_text(
        ds, "MRModifierSequence", "MagnetizationTransfer"
    )
    if mt is not None:
        bids["MTState"] = mt.upper() not in ("NONE", "OFF")
    par = _enh(ds, "MRModifierSequence", "ParallelReductionFactorInPlane")
    if vendor == "Siemens":
        _siemens_fields(ds, bids)
    elif vendor == "GE":
        asset = private(ds, 0x0043, "GEMS_PARM_01", 0x83)
        try:
            factor = float(asset[0]) if asset is not None else 0.0
        except (TypeError, ValueError, IndexError):
            factor = 0.0
        if 0 < factor < 1:
            par = 1.0 / factor
    elif vendor == "Philips":
        display = vol.first.extra.get("philips_display")
        if display is not None:
            bids["PhilipsRescaleSlope"], bids["PhilipsRescaleIntercept"] = display
            bids["PhilipsScaleSlope"] = 1.0 / vol.first.slope if vol.first.slope else None
            bids["UsePhilipsFloatNotDisplayScaling"] = 1
    if par is not None and "ParallelReductionFactorInPlane" not in bids and par >= 1:
        bids["ParallelReductionFactorInPlane"] = par
    if "PhaseEncodingSteps" not in bids:
        steps = _enh(ds, "MRFOVGeometrySequence", "MRAcquisitionPhaseEncodingStepsInPlane")
        if steps:
            bids["PhaseEncodingSteps"] = int(steps)
    technique = _enh_text(ds, "MRModifierSequence", "ParallelAcquisitionTechnique")
    if technique is not None:
        bids["ParallelAcquisitionTechnique"] = technique
    pf_dir = _enh_text(ds, "MRModifierSequence", "PartialFourierDirection")
    if pf_dir is not None:
        bids["PartialFourierDirection"] = pf_dir
    if "EffectiveEchoSpacing" in bids and "ParallelReductionFactorInPlane" in bids:
        bids["DerivedVendorReportedEchoSpacing"] = (
            bids["EffectiveEchoSpacing"] * bids["ParallelReductionFactorInPlane"]
        )


def _siemens_fields(ds: Dataset, bids: dict[str, Any]) -> None:
    """Siemens: ASCCONV protocol (base resolution, acceleration), dwell time, coil."""
    from .csa import parse_ascconv
    from .scan import csa_series

    dwell = private(ds, 0x0019, "SIEMENS MR HEADER", 0x18)
    try:
        if dwell is not None:
            bids["DwellTime"] = float(dwell) * 1e-9
    except (TypeError, ValueError):
        pass
    proto = parse_ascconv(csa_series(ds))
    if not proto:
        return
    for key, name in (
        ("sKSpace.lBaseResolution", "BaseResolution"),
        ("sPat.lAccelFactPE", "ParallelReductionFactorInPlane"),
        ("sSliceAcceleration.lMultiBandFactor", "MultibandAccelerationFactor"),
        ("sPat.lRefLinesPE", "RefLinesPE"),
        ("sTXSPEC.asNucleusInfo[0].flReferenceAmplitude", "TxRefAmp"),
    ):
        value = proto.get(key)
        if isinstance(value, (int, float)) and value > 0:
            if name == "ParallelReductionFactorInPlane" and value <= 1:
                continue
            bids[name] = value


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def _siemens_pe_positive(ds: Dataset) -> int | None:
    value = csa_float(csa_image(ds), "PhaseEncodingDirectionPositive")
    if value is None:
        raw = find_private(ds, 0x0021, "SIEMENS MR SDI", 0x1C)  # XA enhanced
        try:
            value = float(raw) if raw is not None else None
        except (TypeError, ValueError):
            value = None
    return None if value is None else int(value)


def _ge_view_order(ds: Dataset) -> int | None:
    """VIEWORDER of GE's gzipped protocol data block (0025,101B), as dcm2niix reads it."""
    import gzip
    import re

    raw = private(ds, 0x0025, "GEMS_SERS_01", 0x1B)
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    start = raw.find(b"\x1f\x8b")
    try:
        text = gzip.decompress(raw[start:]).decode("latin-1") if start >= 0 else ""
    except (OSError, EOFError):
        return None
    match = re.search(r'^VIEWORDER\s+"?(\d+)', text, re.M)
    return int(match.group(1)) if match else None


def _ge_readout(ds: Dataset, bids: dict[str, Any], recon_pe: int) -> None:
    """GE effective echo spacing: (0043,102C) in us, ASSET factor, acquired PE lines."""
    esp = private(ds, 0x0043, "GEMS_PARM_01", 0x2C)
    acq = ds.get("AcquisitionMatrix")
    try:
        esp = float(esp) * 1e-6
        acq_pe = int(acq[2] or acq[3])  # phase-encoding lines: [freq r, freq c, phase r, phase c]
    except (TypeError, ValueError, IndexError):
        return
    asset = private(ds, 0x0043, "GEMS_PARM_01", 0x83)
    try:
        factor = float(asset[0]) if asset is not None else 1.0
    except (TypeError, ValueError, IndexError):
        factor = 1.0
    lines = round(acq_pe * factor) if 0 < factor <= 1 else acq_pe
    if esp <= 0 or lines < 2 or recon_pe < 2:
        return
    total = esp * (lines - 1)
    bids["TotalReadoutTime"] = total
    bids["EffectiveEchoSpacing"] = total / (recon_pe - 1)
    bids["ReconMatrixPE"] = recon_pe


def _slice_timing(vol: Volume, tr_ms: float | None) -> list[float] | None:
    """Seconds from the start of each volume to each slice, in k order.

    Siemens mosaics carry per-volume times (CSA MosaicRefAcqTimes) rounded down to 2.5 ms
    ticks, differently in each volume, and the first volume of a multiband run can be
    wrong (times beyond TR). So volumes with a time at or beyond TR are dropped and each
    slice takes its largest time over the rest, which agrees with dcm2niix on the corpus.
    """
    per_volume = []
    for row in vol.grid:
        times = [sl.slice_time for sl in row]
        if all(t is not None for t in times):
            per_volume.append(np.asarray(times, dtype=np.float64))
    if per_volume:
        good = [t for t in per_volume if tr_ms is None or t.max() < tr_ms / 1000.0]
        best = np.max(np.stack(good or per_volume), axis=0)
        if best.min() < 0:  # some sequences report negative times: shift to start at 0
            best = best - best.min()
        return [round(float(t), 6) for t in best]
    row = vol.grid[0]
    head = vol.first.ds
    scanning = str(head.get("ScanningSequence", "")).upper()
    epi = (
        "EP" in scanning
        or "EPI" in image_type(head)
        or str(head.get("EchoPlanarPulseSequence", "")).upper() == "YES"
    )
    if vol.nz < 2 or manufacturer(vol.first.ds) != "Siemens" or not epi:
        return None
    acq = [sl.acq_time for sl in row]
    if any(a is None for a in acq):
        return None
    t0 = min(acq)  # type: ignore[type-var]
    rel = [float(a - t0) for a in acq]  # type: ignore[operator]
    if max(rel) <= 0 or (tr_ms is not None and max(rel) >= tr_ms / 1000.0):
        return None
    return [round(r, 6) for r in rel]


def _diffusion(vol: Volume) -> tuple[list[float] | None, list[list[float]] | None]:
    """b-values and unit gradient directions in RAS+ world space, one per volume."""
    firsts = [row[0] for row in vol.grid]
    if not any(sl.bval for sl in firsts):
        # Vendors fill b=0 into every MR header (GE, Philips): only a b>0 makes it DWI.
        return None, None
    bvals: list[float] = []
    bvecs: list[list[float]] = []
    for sl in firsts:
        b = float(sl.bval or 0.0)
        vec = np.zeros(3) if sl.bvec is None else np.asarray(sl.bvec, dtype=np.float64)
        if sl.extra.get("ge_bvec"):
            vec = _ge_to_lps(vec, sl)
        norm = float(np.linalg.norm(vec))
        if norm > 0 and math.isfinite(norm):
            vec = vec / norm
            ras = geometry.LPS_TO_RAS[:3, :3] @ vec
        else:
            ras = np.zeros(3)
        bvals.append(b)
        bvecs.append([float(v) + 0.0 for v in ras])
    return bvals, bvecs


def _ge_to_lps(vec: np.ndarray, sl: Any) -> np.ndarray:
    """GE stores gradients in its logical frame (-row, -column, normal), as dcm2niix reads it."""
    iop = sl.iop
    if iop is None:
        return vec
    rowcos, colcos = iop[:3], iop[3:]
    normal = np.cross(rowcos, colcos)
    return -vec[0] * rowcos - vec[1] * colcos + vec[2] * normal
