"""anyconv plugin for GIPL images (through SimpleITK)."""

__version__ = "0.1.0"
