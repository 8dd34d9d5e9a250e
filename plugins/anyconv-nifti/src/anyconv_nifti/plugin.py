"""Capabilities of the NIfTI plugin, as data: importing this loads no nibabel."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, ReaderSpec, WriterSpec

__version__ = "0.1.0"

# Every numeric type NIfTI-1/2 defines (RGB arrives as uint8 with a trailing axis of 3).
NIFTI_DTYPES = (
    "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "complex64", "complex128",
)  # fmt: skip
# Analyze 7.5 knows fewer (int8 goes to int16, uint16 to int32 without loss).
ANALYZE_DTYPES = ("uint8", "int16", "int32", "float32", "float64", "complex64")
_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".hdr.gz")


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """NIfTI-1, NIfTI-2 (single file or pair) and Analyze 7.5 pairs."""
    return [
        ReaderSpec(
            format="nifti1",
            load="anyconv_nifti.reader:read_nifti",
            extensions=_SUFFIXES,
            magic=(Magic(344, b"n+1\x00"), Magic(344, b"ni1\x00")),
            companions=(".img", ".img.gz"),
            priority=10,
            description="NIfTI-1 (.nii, .nii.gz, .hdr/.img)",
        ),
        ReaderSpec(
            format="nifti2",
            load="anyconv_nifti.reader:read_nifti",
            extensions=_SUFFIXES,
            magic=(Magic(4, b"n+2\x00\r\n\x1a\n"), Magic(4, b"ni2\x00\r\n\x1a\n")),
            companions=(".img", ".img.gz"),
            description="NIfTI-2 (.nii, .nii.gz, .hdr/.img)",
        ),
        ReaderSpec(
            format="analyze",
            load="anyconv_nifti.reader:read_nifti",
            extensions=(".hdr", ".hdr.gz"),
            # sizeof_hdr = 348, little or big endian; NIfTI-1 shares it, so Analyze ranks lower.
            magic=(Magic(0, b"\x5c\x01\x00\x00"), Magic(0, b"\x00\x00\x01\x5c")),
            companions=(".img", ".img.gz"),
            priority=-10,
            description="Analyze 7.5 (.hdr/.img; written with --to analyze)",
        ),
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """NIfTI-1 by default for .nii/.nii.gz/.hdr; NIfTI-2 or Analyze with ``--to``."""
    return [
        WriterSpec(
            format="nifti1",
            load="anyconv_nifti.writer:write_nifti1",
            extensions=(".nii.gz", ".nii", ".hdr"),
            dtypes=NIFTI_DTYPES,
            max_ndim=7,
            priority=10,
            description="NIfTI-1",
        ),
        WriterSpec(
            format="nifti2",
            load="anyconv_nifti.writer:write_nifti2",
            extensions=(".nii.gz", ".nii", ".hdr"),
            dtypes=NIFTI_DTYPES,
            max_ndim=7,
            description="NIfTI-2 (64-bit sizes)",
        ),
        WriterSpec(
            format="analyze",
            load="anyconv_nifti.writer:write_analyze",
            extensions=(".hdr",),
            dtypes=ANALYZE_DTYPES,
            max_ndim=7,
            # Analyze stores no orientation: voxels are written in SPM's LAS order, so an
            # oblique (or sheared) affine cannot be kept.
            oblique=False,
            shear=False,
            companions=(".img",),
            priority=-10,
            description="Analyze 7.5 .hdr/.img (SPM2: LAS voxel order, SPM origin; no orientation)",
        ),
    ]
