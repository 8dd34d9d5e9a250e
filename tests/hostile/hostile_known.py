"""Known plugin/core bugs the hostile suite finds, kept as strict xfails.

Each group names the bug and where it is; its case ids are exact (ids depend on HOSTILE_SEED,
default 20261126). When a bug is fixed its cases XPASS and strict xfail fails the run: delete
the ids then. ``PATTERNS`` holds fnmatch patterns for ids of test_paths.py and test_fuzz.py.
"""

from __future__ import annotations

import fnmatch

#: group -> (format it needs installed, the bug and where it is)
REASONS: dict[str, tuple[str, str]] = {}

#: group -> exact case ids of test_corrupt.py
CASES: dict[str, list[str]] = {}


#: fnmatch pattern -> (format it needs installed, reason), for test_paths.py and test_fuzz.py
PATTERNS: dict[str, tuple[str, str]] = {}

#: format -> substrings of fuzz findings that are known bugs (the short CI run tolerates
#: them and prints them; their saved inputs under regressions/ are strict xfails)
FUZZ_KNOWN: dict[str, list[str]] = {}


def fuzz_known(fmt: str, why: str) -> bool:
    """Whether a fuzz finding is a known bug."""
    return any(s in why for s in FUZZ_KNOWN.get(fmt, []))


_BY_ID = {i: group for group, ids in CASES.items() for i in ids}


def reason_for(case_id: str) -> str | None:
    """The known bug a case shows, if any."""
    group = _BY_ID.get(case_id)
    if group is not None:
        return f"[{group}] {REASONS[group][1]}"
    for pattern, (_, reason) in PATTERNS.items():
        if fnmatch.fnmatchcase(case_id, pattern):
            return reason
    return None


def entries(installed: set[str]) -> list[tuple[str, str]]:
    """``(case id, group)`` of every known corrupt-input case whose format is installed."""
    return [(i, g) for g, ids in CASES.items() if REASONS[g][0] in installed for i in ids]
