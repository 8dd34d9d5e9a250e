"""The anonymize transform and the ``anyconv anonymize`` command, declared as data."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import CommandSpec, OptionSpec, TransformSpec

from .options import OPTIONS

__version__ = "0.1.0"


@hookimpl
def anyconv_transforms() -> list[TransformSpec]:
    """``anonymize``: PS3.15 Annex E Basic Profile on the metadata and the DICOM header."""
    return [
        TransformSpec(
            name="anonymize",
            load="anyconv_anonymize.transform:anonymize",
            description="De-identify (DICOM PS3.15 Annex E Basic Profile, options below)",
            options=(
                OptionSpec("recipe", "TOML file: [options], [actions], [safe_private]"),
                OptionSpec("key", "secret for pseudonyms, UIDs and date shifts", None),
                *(OptionSpec(name, text, default) for name, (default, text) in OPTIONS.items()),
            ),
        )
    ]


@hookimpl
def anyconv_commands() -> list[CommandSpec]:
    """``anyconv anonymize IN OUT``: a de-identified copy of DICOM files."""
    return [
        CommandSpec(
            name="anonymize",
            load="anyconv_anonymize._command:main",
            help="De-identified copy of DICOM files (PS3.15 Annex E); --print-recipe",
        )
    ]
