"""Imports that would drag in more than they are used for."""

from __future__ import annotations

import sys
from types import ModuleType


def import_nibabel() -> ModuleType:
    """nibabel, imported without pydicom when pydicom is not loaded yet.

    ``nibabel.nifti1`` imports pydicom (0.2-0.4 s, most of a small conversion) only to offer
    a DICOM-extension class; NIfTI, MGH, MINC and ECAT reading and writing never need it.
    Hidden, nibabel keeps DICOM extensions as raw bytes, which is what anyconv stores anyway.
    pydicom stays importable afterwards for whoever needs it.
    """
    loaded = sys.modules.get("nibabel")
    if loaded is not None:
        return loaded
    hide = "pydicom" not in sys.modules
    if hide:
        sys.modules["pydicom"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import nibabel
    finally:
        if hide and sys.modules.get("pydicom", 0) is None:
            del sys.modules["pydicom"]
    return nibabel
