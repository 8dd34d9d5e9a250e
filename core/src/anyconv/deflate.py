"""zlib/gzip streams through ISA-L (python-isal): 3-5x faster than zlib, same format.

Shared by plugins that compress inside their own container (MetaImage, MGZ) and cannot use
``io.open_output``. ISA-L knows levels 1 to 3; higher levels, asked for size over speed, go to
the standard zlib.
"""

from __future__ import annotations

import zlib
from typing import Any

try:
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - isal is a dependency; the stdlib still works
    _isal = None

#: what a corrupt stream raises, from either library.
ERRORS: tuple[type[BaseException], ...] = (zlib.error,) + (
    (_isal.error,) if _isal is not None else ()
)


def decompressobj(wbits: int) -> Any:
    """A zlib-API decompressor (``wbits`` as in ``zlib``: 15 zlib, 31 gzip, 47 either)."""
    return (_isal or zlib).decompressobj(wbits)


def compressobj(level: int, wbits: int = zlib.MAX_WBITS) -> Any:
    """A zlib-API compressor; ISA-L for levels 1-3, the standard zlib otherwise."""
    if _isal is not None and 1 <= level <= 3:
        return _isal.compressobj(level, zlib.DEFLATED, wbits)
    return zlib.compressobj(level, zlib.DEFLATED, wbits)
