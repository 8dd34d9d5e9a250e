"""pytest fixtures of the conformance kit (``pytest_plugins = ["anyconv.testing.fixtures"]``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .data import TESTDATA_ENV, find_testdata


@pytest.fixture(scope="session")
def testdata(request: pytest.FixtureRequest) -> Path:
    """The shared corpus; missing is a failure in CI (``$CI`` set), a skip elsewhere."""
    path = find_testdata(Path(str(request.config.rootpath)))
    if path is None:
        msg = f"shared test corpus not found (../shared/testdata or ${TESTDATA_ENV})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path
