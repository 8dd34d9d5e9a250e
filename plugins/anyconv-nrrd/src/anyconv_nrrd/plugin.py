"""Capabilities of the NRRD plugin, as data: importing this loads neither pynrrd nor numpy work."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, OptionSpec, ReaderSpec, WriterSpec

__version__ = "0.1.0"

# Every scalar type NRRD defines, plus complex (stored as a leading "complex" axis of 2 floats).
NRRD_DTYPES = (
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "complex64", "complex128",
)  # fmt: skip

_READ_OPTIONS = (
    OptionSpec(
        "allow_outside",
        "1 to read detached data files outside the header's own folder tree",
        default="0",
    ),
)
_WRITE_OPTIONS = (
    OptionSpec("encoding", "raw, gzip, bzip2 or ascii", default="gzip for .nrrd, raw for .nhdr"),
)


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """Attached (.nrrd) and detached (.nhdr + data files) NRRD, versions 1 to 5."""
    return [
        ReaderSpec(
            format="nrrd",
            load="anyconv_nrrd.reader:read_nrrd",
            extensions=(".nrrd", ".nhdr"),
            magic=(Magic(0, b"NRRD000"),),
            companions=(".raw", ".raw.gz", ".raw.bz2"),
            options=_READ_OPTIONS,
            description="NRRD (.nrrd, .nhdr + data files)",
        )
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """``.nrrd`` (gzip by default) and ``.nhdr`` with a ``.raw`` companion, in LPS space.

    The ``.raw`` companion is not declared: ``companions`` would apply to ``.nrrd`` too. The
    staging folder still refuses to replace an existing ``.raw`` without ``force``.
    """
    return [
        WriterSpec(
            format="nrrd",
            load="anyconv_nrrd.writer:write_nrrd",
            extensions=(".nrrd", ".nhdr"),
            dtypes=NRRD_DTYPES,
            max_ndim=15,
            scaling=False,
            options=_WRITE_OPTIONS,
            priority=10,
            description="NRRD: .nrrd attached (gzip), .nhdr + .raw detached",
        )
    ]
