"""Capabilities of the GIPL plugin, as data: importing this loads no SimpleITK."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, ReaderSpec, WriterSpec

__version__ = "0.1.0"

# ITK's GiplImageIO writes and reads these; it refuses int32/uint32 ("Pixel Type Unknown")
# and complex, so they are not offered: int32 becomes float64, which ITK reads.
GIPL_DTYPES = ("int8", "uint8", "int16", "uint16", "float32", "float64")
# The 256-byte header ends with a big-endian magic number (two variants in ITK).
_MAGIC = (Magic(252, b"\xef\xff\xe9\xb0"), Magic(252, b"\x2a\xe3\x89\xb8"))


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """``.gipl`` and gzipped ``.gipl.gz``."""
    return [
        ReaderSpec(
            format="gipl",
            load="anyconv_gipl.reader:read_gipl",
            extensions=(".gipl", ".gipl.gz"),
            magic=_MAGIC,
            description="GIPL (.gipl, .gipl.gz)",
        )
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """GIPL keeps voxel sizes and origin but no direction: axis-aligned images only."""
    return [
        WriterSpec(
            format="gipl",
            load="anyconv_gipl.writer:write_gipl",
            extensions=(".gipl", ".gipl.gz"),
            dtypes=GIPL_DTYPES,
            max_ndim=4,
            oblique=False,
            shear=False,
            scaling=False,
            description="GIPL (.gipl, .gipl.gz; no direction: voxels reordered to LPS)",
        )
    ]
