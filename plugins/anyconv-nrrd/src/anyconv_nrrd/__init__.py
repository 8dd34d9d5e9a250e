"""anyconv plugin for NRRD (attached .nrrd and detached .nhdr headers)."""

__version__ = "0.1.0"
