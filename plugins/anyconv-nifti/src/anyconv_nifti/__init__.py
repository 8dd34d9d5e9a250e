"""anyconv plugin for NIfTI-1, NIfTI-2 and Analyze 7.5 (through nibabel)."""

__version__ = "0.1.0"
