"""Capabilities of the MetaImage plugin, as data: importing this loads neither numpy nor ITK."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, OptionSpec, ReaderSpec, WriterSpec

__version__ = "0.1.0"

# MetaIO headers are "Key = Value" text; ITK, Slicer and MeVisLab start with ObjectType or
# NDims, hand-written ones sometimes with a Comment or the sizes. Longest first.
_MAGIC = tuple(
    Magic(0, key)
    for key in (
        b"ObjectType = Image",
        b"ObjectType=Image",
        b"ObjectSubType",
        b"ObjectType",
        b"Comment =",
        b"NDims",
        b"DimSize",
    )
)

# Every MetaIO element type numpy has (MET_CHAR ... MET_DOUBLE); no complex, no float16.
METAIMAGE_DTYPES = (
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float32", "float64",
)  # fmt: skip


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """MetaImage with local data (.mha) or detached data (.mhd + .raw/.zraw, LIST, pattern)."""
    return [
        ReaderSpec(
            format="metaimage",
            load="anyconv_metaimage.reader:read_metaimage",
            extensions=(".mha", ".mhd"),
            magic=_MAGIC,
            companions=(".raw", ".zraw"),
            description="MetaImage (.mha, .mhd + .raw/.zraw)",
            options=(
                OptionSpec(
                    "allow_outside",
                    "read data files named outside the header's folder (absolute or ..)",
                    "0",
                ),
            ),
        )
    ]


@hookimpl
def anyconv_writers() -> list[WriterSpec]:
    """``.mha`` (one file) or ``.mhd`` + ``.zraw``/``.raw``; zlib-compressed by default."""
    return [
        WriterSpec(
            format="metaimage",
            load="anyconv_metaimage.writer:write_metaimage",
            extensions=(".mha", ".mhd"),
            dtypes=METAIMAGE_DTYPES,
            # 4-D scalar, or 4-D plus a trailing component axis (vector/RGB images).
            max_ndim=5,
            scaling=False,
            companions=(".zraw", ".raw"),
            description="MetaImage (.mha, .mhd + .zraw/.raw)",
            options=(OptionSpec("compress", "zlib-compress the voxel data (0 or 1)", "1"),),
        )
    ]
