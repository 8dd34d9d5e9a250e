"""Plugin conformance kit: fixtures, synthetic images and checks every format plugin reuses.

Enable the fixtures in a root ``conftest.py`` with
``pytest_plugins = ["anyconv.testing.fixtures"]`` and subclass ``ReaderConformance`` /
``WriterConformance`` in a plugin's tests. Needs ``anyconv-core[testing]``.
"""

from __future__ import annotations

from .conformance import ReaderConformance, WriterConformance
from .data import (
    TESTDATA_ENV,
    assert_same_world,
    find_testdata,
    manifest_cases,
    synthetic_affine,
    synthetic_image,
    truncated_copy,
)

__all__ = [
    "TESTDATA_ENV",
    "ReaderConformance",
    "WriterConformance",
    "assert_same_world",
    "find_testdata",
    "manifest_cases",
    "synthetic_affine",
    "synthetic_image",
    "truncated_copy",
]
