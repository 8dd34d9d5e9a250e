"""Capabilities of the AFNI plugin, as data: importing this loads no nibabel."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, ReaderSpec

__version__ = "0.1.0"

# A HEAD file is a list of attributes, each opening with "type = ...-attribute" (AFNI pads
# float ones as "type  = "); AFNI puts a blank line before every one, hand-made files may not.
_MAGIC = tuple(
    Magic(0, prefix + b"type" + pad + b"= " + kind + b"-attribute")
    for prefix in (b"\n", b"")
    for pad in (b" ", b"  ")
    for kind in (b"string", b"integer", b"float")
)


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """``name+view.HEAD`` with its ``.BRIK`` or ``.BRIK.gz`` beside it."""
    return [
        ReaderSpec(
            format="afni",
            load="anyconv_afni.reader:read_afni",
            extensions=(".head",),
            magic=_MAGIC,
            companions=(".BRIK", ".BRIK.gz"),
            description="AFNI BRIK/HEAD (+orig/+tlrc .HEAD with .BRIK or .BRIK.gz, read only)",
        )
    ]
