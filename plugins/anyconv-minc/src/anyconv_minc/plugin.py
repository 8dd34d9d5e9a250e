"""Capabilities of the MINC plugin, as data: importing this loads no h5py or nibabel."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, OptionSpec, ReaderSpec, WriterSpec

__version__ = "0.1.0"

#: Every numeric type MINC2 stores that minc-tools and nibabel read back.
MINC2_DTYPES = ("uint8", "int8", "int16", "uint16", "int32", "uint32", "float32", "float64")

#: Default gzip level: what minc-tools use, a good size/speed balance.
DEFAULT_COMPRESS_LEVEL = 4


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """MINC2 (HDF5) and MINC1 (NetCDF classic or 64-bit offset), both ``.mnc``."""
    return [
        ReaderSpec(
            format="minc2",
            load="anyconv_minc.reader:read_minc2",
            extensions=(".mnc", ".mnc.gz"),
            magic=(Magic(0, b"\x89HDF\r\n\x1a\n"),),
            priority=10,
            description="MINC2 (.mnc on HDF5)",
        ),
        ReaderSpec(
            format="minc1",
            load="anyconv_minc.reader:read_minc1",
            extensions=(".mnc", ".mnc.gz"),
            magic=(Magic(0, b"CDF\x01"), Magic(0, b"CDF\x02")),
            description="MINC1 (.mnc on NetCDF classic; read only)",
        ),
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """MINC2 for every ``.mnc`` output; MINC1 is deliberately not written."""
    return [
        WriterSpec(
            format="minc2",
            load="anyconv_minc.writer:write_minc2",
            extensions=(".mnc",),
            dtypes=MINC2_DTYPES,
            max_ndim=5,
            priority=10,
            description="MINC2 (HDF5, gzip-compressed)",
            options=(
                OptionSpec(
                    "history",
                    "command line appended to the MINC history (default: this process's)",
                ),
            ),
        ),
    ]
