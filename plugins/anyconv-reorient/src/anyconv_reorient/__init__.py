"""anyconv transform plugin: reorient voxel axes, keeping every voxel's world coordinate."""

__version__ = "0.1.0"
