"""The 256-byte big-endian GIPL header as a numpy record, shared by the reader and writer.

Field offsets and the type codes are those of ITK's GiplImageIO (itkGiplImageIO.cxx), which
is what SimpleITK, 3D Slicer and most tools that still meet GIPL files use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HEADER = 256
#: ITK writes GIPL_MAGIC_NUMBER; it also reads GIPL_MAGIC_NUMBER2 (719555000, older files).
MAGIC = 0xEFFFE9B0
MAGICS = (MAGIC, 0x2AE389B8)
#: image_type code -> big-endian voxel dtype, as ITK's GiplImageIO reads them: binary (1)
#: comes back as one unsigned byte per voxel.
TYPES = {
    1: ">u1", 7: ">i1", 8: ">u1", 15: ">i2", 16: ">u2", 31: ">u4", 32: ">i4", 64: ">f4",
    65: ">f8",
}  # fmt: skip
#: native dtype name -> the code ITK writes for it.
CODES = {
    "int8": 7, "uint8": 8, "int16": 15, "uint16": 16, "uint32": 31, "int32": 32,
    "float32": 64, "float64": 65,
}  # fmt: skip
#: complex types of the GIPL specification, which ITK (and so this plugin) does not decode.
COMPLEX = {144: "complex short", 160: "complex int", 192: "complex float", 193: "complex double"}

HEADER_DTYPE = np.dtype(
    {
        "names": [
            "dims", "image_type", "pixdim", "line1", "matrix", "flag1", "flag2", "min",
            "max", "origin", "pixval_offset", "pixval_cal", "user_def1", "user_def2", "magic",
        ],
        "formats": [
            (">u2", 4), ">u2", (">f4", 4), "S80", (">f4", 20), "u1", "u1", ">f8", ">f8",
            (">f8", 4), ">f4", ">f4", ">f4", ">f4", ">u4",
        ],
        "offsets": [0, 8, 10, 26, 106, 186, 187, 188, 196, 204, 236, 240, 244, 248, 252],
        "itemsize": HEADER,
    }
)  # fmt: skip


def parse(head: bytes) -> np.void:
    """The header's fields (``head`` holds at least 256 bytes)."""
    return np.frombuffer(head, HEADER_DTYPE, count=1)[0]


def pack(
    shape: Sequence[int], code: int, spacing: Sequence[float], origin: Sequence[float]
) -> bytes:
    """A header as ITK's GiplImageIO::Write makes it, byte for byte.

    Axes past ``len(shape)`` get size 1, voxel size 1 and origin 0; the text field says
    "No Patient Information"; matrix, flags, min/max and calibration are zero.
    """
    nd = len(shape)
    h = np.zeros((), HEADER_DTYPE)
    h["dims"] = [*shape, 1, 1, 1, 1][:4]
    h["image_type"] = code
    h["pixdim"] = [*spacing[:nd], 1.0, 1.0, 1.0, 1.0][:4]
    h["line1"] = b"No Patient Information"
    h["origin"] = [*origin[:nd], 0.0, 0.0, 0.0, 0.0][:4]
    h["magic"] = MAGIC
    return h.tobytes()
