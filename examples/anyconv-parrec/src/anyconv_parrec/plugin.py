"""Capabilities of the PAR/REC plugin, as data: importing this loads neither nibabel nor numpy.

This is the module the ``anyconv`` entry point names; anyconv reads the specs below to list
the format and to detect files, and imports ``anyconv_parrec.reader`` only to read one.
"""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, OptionSpec, ReaderSpec

# Every PAR header written by Philips' export tool (V3 to V4.2) opens with this comment line.
PAR_MAGIC = b"# === DATA DESCRIPTION FILE"


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """Philips PAR/REC: a text header (.PAR) naming nothing, with its data in the same-stem .REC."""
    return [
        ReaderSpec(
            format="parrec",
            load="anyconv_parrec.reader:read_parrec",
            extensions=(".par",),
            magic=(Magic(0, PAR_MAGIC),),
            companions=(".rec",),
            description="Philips PAR/REC V4, V4.1, V4.2 (read only; one image per type and echo)",
            options=(
                OptionSpec(
                    "scaling",
                    "dv: values as shown on the console (nibabel's default); "
                    "fp: Philips floating point values, DV / (RS * SS)",
                    default="dv",
                ),
                OptionSpec(
                    "permit_truncated",
                    "1: read an interrupted recording, dropping incomplete volumes (as nibabel)",
                    default="0",
                ),
            ),
        )
    ]
