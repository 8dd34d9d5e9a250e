"""The reorient transform, declared as data."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import OptionSpec, TransformSpec

__version__ = "0.1.0"


@hookimpl
def anyconv_transforms() -> list[TransformSpec]:
    """``reorient``: permute and flip voxel axes to the asked axis codes."""
    return [
        TransformSpec(
            name="reorient",
            load="anyconv_reorient.transform:reorient",
            description="Reorder voxel axes to AXCODES (RAS, LPS, PIR, ... or canonical)",
            options=(
                OptionSpec(
                    "axcodes",
                    "three letters, one of L/R, P/A, I/S each; 'canonical' is RAS",
                    "canonical",
                ),
            ),
        )
    ]
