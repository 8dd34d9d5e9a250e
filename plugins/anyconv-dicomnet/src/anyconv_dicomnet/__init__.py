"""anyconv plugin: DICOM images fetched from and stored to a PACS (DICOMweb and DIMSE)."""
