"""Capabilities of the MGH plugin, as data: importing this loads no nibabel."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, ReaderSpec, WriterSpec

__version__ = "0.1.0"

# The four types every FreeSurfer version reads (MRI_UCHAR, MRI_SHORT, MRI_INT, MRI_FLOAT).
MGH_DTYPES = ("uint8", "int16", "int32", "float32")


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """MGH and MGZ: a big-endian version 1 header (magic seen through gzip for .mgz)."""
    return [
        ReaderSpec(
            format="mgh",
            load="anyconv_mgh.reader:read_mgh",
            extensions=(".mgh", ".mgz", ".mgh.gz"),
            magic=(Magic(0, b"\x00\x00\x00\x01"),),
            description="FreeSurfer MGH/MGZ",
        )
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """uchar, int16, int32 or float32; 3-D or 4-D (frames); no scaling."""
    return [
        WriterSpec(
            format="mgh",
            load="anyconv_mgh.writer:write_mgh",
            extensions=(".mgz", ".mgh", ".mgh.gz"),
            dtypes=MGH_DTYPES,
            max_ndim=4,
            scaling=False,
            description="FreeSurfer MGH/MGZ",
        )
    ]
