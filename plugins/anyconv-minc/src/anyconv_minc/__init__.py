"""anyconv plugin for MINC: MINC2 (HDF5) read and write with h5py, MINC1 read."""

__version__ = "0.1.0"
