"""Capabilities of the DICOM plugin, as data: importing this loads no pydicom."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, OptionSpec, ReaderSpec, WriterSpec

__version__ = "0.1.0"

# Part 10 files: 128-byte preamble then "DICM". Files without the preamble start with a
# data element; these tags (group 0002 meta or group 0008 identity, little endian, implicit
# or explicit VR) open almost every such file, and their first 4 or 6 bytes are unlikely in
# any other format's first bytes.
_MAGIC = (
    Magic(128, b"DICM"),
    Magic(0, b"\x02\x00\x00\x00UL"),  # (0002,0000) meta group length, explicit VR
    Magic(0, b"\x02\x00\x01\x00OB"),  # (0002,0001) meta version
    Magic(0, b"\x02\x00\x02\x00UI"),  # (0002,0002) SOP class, no group length
    Magic(0, b"\x08\x00\x00\x00\x04\x00\x00\x00"),  # (0008,0000) group length, implicit VR
    Magic(0, b"\x08\x00\x00\x00UL\x04\x00"),  # (0008,0000) explicit VR
    Magic(0, b"\x08\x00\x05\x00CS"),  # (0008,0005) SpecificCharacterSet, explicit VR
    Magic(0, b"\x08\x00\x05\x00"),  # implicit VR
    Magic(0, b"\x08\x00\x08\x00CS"),  # (0008,0008) ImageType, explicit VR
    Magic(0, b"\x08\x00\x08\x00"),  # implicit VR
    Magic(0, b"\x08\x00\x12\x00DA"),  # (0008,0012) InstanceCreationDate
    Magic(0, b"\x08\x00\x16\x00UI"),  # (0008,0016) SOPClassUID, explicit VR
    Magic(0, b"\x08\x00\x16\x00"),  # implicit VR
)


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """DICOM files and folders; a folder is scanned recursively and grouped into series."""
    return [
        ReaderSpec(
            format="dicom",
            load="anyconv_dicom.reader:read_dicom",
            extensions=(".dcm", ".dicom", ".dic", ".ima"),
            magic=_MAGIC,
            directory=True,
            priority=5,
            description="DICOM (files or series folders; classic, mosaic, enhanced)",
            options=(
                OptionSpec(
                    "tilt",
                    "gantry tilt / sheared stacks: correct (resample), keep (sheared affine), "
                    "error (refuse)",
                    default="correct",
                ),
                OptionSpec(
                    "rotate3d",
                    "store 3D acquisitions with axes in the closest RAS order, as dcm2niix does "
                    "(yes/no)",
                    default="yes",
                ),
            ),
        )
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """A classic single-frame series (``<stem>_0001.dcm``...) or one enhanced instance."""
    return [
        WriterSpec(
            format="dicom",
            load="anyconv_dicom.writer:write_dicom",
            extensions=(".dcm",),
            # Any dtype: integers are stored losslessly in 16 bits, values on an even grid
            # through RescaleSlope/Intercept; anything else is refused (exit 6) unless --lossy.
            dtypes=None,
            max_ndim=4,
            shear=False,
            sidecar=False,  # the series carries its metadata; no BIDS JSON beside it
            # The series' first file: core refuses an existing one before anything is written
            # (the whole series is checked again when the staged files are moved in).
            companions=("_0001.dcm",),
            settable=True,  # --set KEY=VALUE: DICOM keyword or tag, checked against its VR
            description="DICOM (MR/CT series, one file per slice; Enhanced MR/CT; Parametric Map)",
            options=(
                OptionSpec("patient_name", "PatientName (default: source's, else ANONYMOUS)"),
                OptionSpec("patient_id", "PatientID (default: source's, else ANON)"),
                OptionSpec("study_description", "StudyDescription"),
                OptionSpec("series_description", "SeriesDescription"),
                OptionSpec("series_number", "SeriesNumber (integer)"),
                OptionSpec(
                    "layout",
                    "classic (one file per slice), enhanced (one Enhanced MR/CT multi-frame "
                    "file, 3D or 4D) or parametric (one Parametric Map with float pixel data: "
                    "any real values, no --lossy needed)",
                    default="classic",
                ),
                OptionSpec(
                    "ts",
                    "transfer syntax: explicit, deflate, rle, jpeg2000 (lossless)",
                    default="explicit",
                ),
                OptionSpec(
                    "new_study",
                    "yes: new StudyInstanceUID and FrameOfReferenceUID even from a DICOM source",
                    default="no",
                ),
            ),
        )
    ]
