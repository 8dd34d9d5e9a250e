"""A short deterministic fuzz run per reader (fuzz.py, derandomized) and the saved regressions.

The longer run is by hand: ``python -m tests.hostile.fuzz --seconds 600 --strict --save``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hostile_cases  # noqa: E402
import hostile_known  # noqa: E402
from anyconv import Registry  # noqa: E402
from anyconv.testing import find_testdata  # noqa: E402

EXAMPLES = os.environ.get("HOSTILE_FUZZ_EXAMPLES", "40")
TESTDATA = find_testdata(HERE)


def _targets() -> list[tuple[str, str]]:
    if TESTDATA is None:
        return []
    import fuzz

    formats = {r.format for r in Registry().readers()}
    return [(t.fmt, t.ext) for t in fuzz.targets(TESTDATA, formats)]


def _run(*args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def fuzz_results(testdata) -> dict[tuple[str, str], dict]:
    results = _run("--examples", EXAMPLES, "--derandomize", "--timeout", "10")
    return {(r["format"], r["ext"]): r for r in results}


def test_every_installed_reader_has_a_fuzz_target(testdata):
    import fuzz

    readers = {r.format for r in Registry().readers()}
    covered = {t.fmt for t in fuzz.targets(testdata, readers)}
    writable = {w.format for w in Registry().writers()}
    in_corpus = {u.fmt for u in hostile_cases.units(testdata, readers)}
    assert covered >= readers & (writable | in_corpus)


@pytest.mark.parametrize(("fmt", "ext"), _targets())
def test_fuzz_header_parser(fmt, ext, fuzz_results):
    res = fuzz_results[(fmt, ext)]
    assert res["examples"] >= int(EXAMPLES)
    known = [f for f in res["findings"] if hostile_known.fuzz_known(fmt, f["why"])]
    for f in known:
        print(f"known bug found again: {f['why']}")
    unknown = [f for f in res["findings"] if f not in known]
    assert not unknown, json.dumps(unknown, indent=1)


def _regressions() -> list[object]:
    params = []
    for path in sorted((HERE / "regressions").glob("*/*.bin")):
        key = f"{path.parent.name}/{path.name}"
        reason = hostile_known.reason_for(f"regression:{key}")
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(key, marks=marks, id=key))
    return params


@pytest.fixture(scope="module")
def replayed(testdata) -> dict[str, dict]:
    return {f"{r['format']}/{r['file']}": r for r in _run("--replay")}


@pytest.mark.parametrize("key", _regressions())
def test_saved_regression(key, replayed):
    """Every input a fuzz run saved (regressions/<format>/) is refused cleanly now."""
    if key.split("/")[0] not in {r.format for r in Registry().readers()}:
        pytest.skip("its reader is not installed")
    assert not replayed[key]["findings"], replayed[key]
