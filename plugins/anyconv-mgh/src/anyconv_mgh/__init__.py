"""anyconv plugin for FreeSurfer MGH (``.mgh``) and gzipped MGH (``.mgz``)."""

__version__ = "0.1.0"
