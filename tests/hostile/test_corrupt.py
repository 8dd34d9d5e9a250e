"""The corrupt-input suite: every hostile case must be refused cleanly (exit 3/4), fast,
within 1 GiB, leaving nothing in the output folder; see hostile_cases.py for the recipes.

All cases run in one child process (address space capped at 3 GiB) driven by
hostile_runner.drive; each case is then its own test so a known bug is one visible xfail.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hostile_cases  # noqa: E402
import hostile_known  # noqa: E402
import hostile_runner  # noqa: E402
from anyconv import Registry  # noqa: E402
from anyconv.testing import find_testdata  # noqa: E402

TESTDATA = find_testdata(HERE)
READERS = Registry().readers()
CASES = hostile_cases.all_cases(TESTDATA, READERS) if TESTDATA else []
MIN_CASES = 500


def _param(case: hostile_cases.Case) -> object:
    reason = hostile_known.reason_for(case.id)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(case.id, marks=marks, id=case.id)


@pytest.fixture(scope="session")
def results(testdata, tmp_path_factory, request) -> dict[str, dict]:
    """Run the cases this session selected (all, or those ``-k`` kept) in one child."""
    selected = {
        item.callspec.params["case_id"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_hostile_input_is_refused_cleanly"
    }
    work = tmp_path_factory.mktemp("hostile")
    out = hostile_runner.drive(testdata, [c.id for c in CASES if c.id in selected], work)
    dump = os.environ.get("HOSTILE_RESULTS")  # every verdict as JSON, for the issue note
    if dump:
        Path(dump).write_text(json.dumps(out, indent=1))
    return out


def test_enough_cases_for_every_installed_reader(testdata):
    counts = collections.Counter(c.fmt for c in CASES)
    assert sum(counts.values()) >= MIN_CASES, counts
    for spec in READERS:
        assert counts[spec.format] >= 10, f"only {counts[spec.format]} cases for {spec.format}"


def test_cases_are_reproducible(testdata, tmp_path):
    """Same seed, same bytes: two builds of a few cases are identical."""
    picks = [c for c in CASES if c.kind in ("flip", "truncate", "extreme")][::97]
    assert picks
    for case in picks:
        a, b = (
            tmp_path / "a" / case.id.replace("/", "_"),
            tmp_path / "b" / case.id.replace("/", "_"),
        )
        a.mkdir(parents=True)
        b.mkdir(parents=True)
        ia, ib = case.build(a), case.build(b)
        assert ia.src.name == ib.src.name
        if ia.src.is_file():
            assert ia.src.read_bytes() == ib.src.read_bytes(), case.id


@pytest.mark.parametrize("case_id", [_param(c) for c in CASES])
def test_hostile_input_is_refused_cleanly(case_id, results):
    res = results[case_id]
    assert res["verdict"] == "pass", f"{case_id}: {res['why']}"


def test_known_bugs_name_existing_cases():
    """A stale id in hostile_known.py (a renamed case) must not hide silently."""
    ids = {c.id for c in CASES}
    installed = {r.format for r in READERS}
    missing = [i for i, _ in hostile_known.entries(installed) if i not in ids]
    assert not missing, missing


# -- a sample through the installed executable: one line, exit 3/4, no traceback ------------
def _cli_sample() -> list[hostile_cases.Case]:
    """One refused case per format (seeded by the format, so a new plugin changes no pick)."""
    picks = []
    for fmt in sorted({c.fmt for c in CASES}):
        pool = [
            c
            for c in CASES
            if c.fmt == fmt
            and c.expect == "reject"
            and c.kind not in ("bomb", "device")
            and hostile_known.reason_for(c.id) is None
        ]
        if pool:
            picks.append(hostile_cases.rng_for("cli-sample", fmt).choice(pool))
    return picks


def _cli_param(case: hostile_cases.Case) -> object:
    reason = hostile_known.reason_for(f"cli:{case.id}")
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(case.id, marks=marks, id=case.id)


@pytest.mark.parametrize("case_id", [_cli_param(c) for c in _cli_sample()])
def test_cli_one_line_exit_3_or_4(case_id, run_cli, tmp_path):
    case = {c.id: c for c in CASES}[case_id]
    inp_dir, out_dir = tmp_path / "in", tmp_path / "out"
    inp_dir.mkdir()
    out_dir.mkdir()
    inp = case.build(inp_dir)
    args = [inp.src, f"{out_dir}/", "--to", "nifti1"]
    if inp.from_fmt:
        args += ["--from", inp.from_fmt]
    code, out, err = run_cli(*args)
    assert code in (3, 4), (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("anyconv: error: "), err
    assert "Traceback" not in err + out
    assert not list(out_dir.iterdir())
