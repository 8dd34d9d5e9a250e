"""anyconv plugin for AFNI BRIK/HEAD datasets (through nibabel)."""

__version__ = "0.1.0"
