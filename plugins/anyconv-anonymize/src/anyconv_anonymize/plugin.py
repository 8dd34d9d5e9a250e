"""The anonymize transform, declared as data."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import OptionSpec, TransformSpec

__version__ = "0.1.0"


@hookimpl
def anyconv_transforms() -> list[TransformSpec]:
    """``anonymize``: PS3.15 Basic Profile on the canonical metadata, per-format headers dropped."""
    return [
        TransformSpec(
            name="anonymize",
            load="anyconv_anonymize.transform:anonymize",
            description="De-identify (DICOM PS3.15 Annex E Basic Profile, options below)",
            options=(
                OptionSpec("recipe", "TOML file overriding options and per-key actions"),
                OptionSpec("key", "secret for pseudonyms, UIDs and date shifts", None),
                OptionSpec("dates", "shift (per patient), remove, or keep", "shift"),
                OptionSpec("patient_characteristics", "keep sex/age/size/weight: 1 or 0", "1"),
                OptionSpec("device_identity", "keep station/serial number: 1 or 0", "0"),
                OptionSpec("descriptors", "series/protocol descriptions: keep or remove", "remove"),
                OptionSpec("allow_burned_in", "convert images with burned-in text: 1", "0"),
            ),
        )
    ]
