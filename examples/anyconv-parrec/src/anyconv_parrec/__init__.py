"""anyconv plugin for Philips PAR/REC, an example of a third-party format plugin."""

__version__ = "0.1.0"
