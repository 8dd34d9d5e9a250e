"""anyconv plugin for ECAT 7 PET images (through nibabel)."""

__version__ = "0.1.0"
