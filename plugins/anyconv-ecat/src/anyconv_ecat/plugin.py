"""Capabilities of the ECAT plugin, as data: importing this loads no nibabel."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import Magic, OptionSpec, ReaderSpec

__version__ = "0.1.0"


@hookimpl
def anyconv_readers() -> list[ReaderSpec]:
    """ECAT 7 image files (main header magic ``MATRIX7...``)."""
    return [
        ReaderSpec(
            format="ecat",
            load="anyconv_ecat.reader:read_ecat",
            extensions=(".v",),
            magic=(Magic(0, b"MATRIX7"),),
            description="ECAT 7 PET image (.v, read only)",
            options=(
                OptionSpec(
                    "calibration",
                    "ecat_calibration_factor: 'always' applied (as nibabel), 'units' only when "
                    "calibration_units says uncalibrated (0), or 'never'",
                    "always",
                ),
            ),
        )
    ]
