"""Capabilities of the MRtrix plugin, as data: importing this loads nothing heavy."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, ReaderSpec, WriterSpec

__version__ = "0.1.0"

#: Every type MRtrix stores except Bit, which is read but never written.
MRTRIX_DTYPES = (
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "complex64", "complex128",
)  # fmt: skip


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """``.mif`` (header and data in one file, maybe gzipped) and ``.mih`` (detached data)."""
    return [
        ReaderSpec(
            format="mrtrix",
            load="anyconv_mrtrix.reader:read_mrtrix",
            extensions=(".mif", ".mif.gz", ".mih"),
            magic=(Magic(0, b"mrtrix image\n"), Magic(0, b"mrtrix image\r\n")),
            companions=(".dat",),
            description="MRtrix image (.mif, .mif.gz, .mih + data)",
        )
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """``.mif`` or ``.mif.gz``: scanner RAS transform, scaling, dw_scheme."""
    return [
        WriterSpec(
            format="mrtrix",
            load="anyconv_mrtrix.writer:write_mrtrix",
            extensions=(".mif", ".mif.gz"),
            dtypes=MRTRIX_DTYPES,
            max_ndim=16,
            # The transform is a rotation plus voxel sizes: MRtrix cannot hold shear.
            shear=False,
            description="MRtrix image (.mif, .mif.gz)",
        )
    ]
