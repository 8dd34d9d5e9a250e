"""anyconv plugin for the MRtrix image format (native reader and writer)."""

__version__ = "0.1.0"
