"""anyconv plugin for GIPL images: the 256-byte header and voxels handled with numpy."""

__version__ = "0.1.0"
