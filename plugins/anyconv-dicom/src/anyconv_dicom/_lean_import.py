"""Import pydicom without ``requests``: about 50 ms less start-up for every DICOM job.

pydicom imports ``requests`` (and with it urllib3, ssl, http, email, charset_normalizer) at
start-up only to download its own test files, and falls back to ``urllib`` when
``requests`` is missing. The reader and writer import this module before pydicom, so
``requests`` looks missing while pydicom loads and importable again afterwards. Nothing is
hidden when pydicom or requests is already loaded, or when other threads could be importing.
"""

from __future__ import annotations

import sys
import threading


def import_pydicom() -> None:
    """Load pydicom, with ``requests`` hidden when that is safe."""
    if "pydicom" in sys.modules:
        return
    hide = "requests" not in sys.modules and threading.active_count() == 1
    if hide:
        sys.modules["requests"] = None  # type: ignore[assignment] - import then raises
    try:
        import pydicom  # noqa: F401 - the reason for this module
    finally:
        if hide and sys.modules.get("requests", False) is None:
            del sys.modules["requests"]


import_pydicom()
