"""anyconv plugin for MetaImage (ITK MetaIO): ``.mha`` and ``.mhd`` + ``.raw``/``.zraw``."""

__version__ = "0.1.0"
