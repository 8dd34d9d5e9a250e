"""anyconv transform plugin: de-identify an image's metadata for any output format."""

__version__ = "0.1.0"
