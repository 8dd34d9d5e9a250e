"""anyconv DICOM plugin: series to volumes with dcm2niix-grade geometry."""

__version__ = "0.1.0"
