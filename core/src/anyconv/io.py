"""Atomic output: everything is written in a staging folder beside the target, then renamed.

A reader of the output folder sees every file of an output (``.hdr`` + ``.img``, image + JSON
sidecar) or none of them, and an interrupted conversion leaves no half-written file under
the final name.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputExistsError, WriteError

STAGING_PREFIX = ".anyconv-staging-"


def _created_parents(folder: Path) -> list[Path]:
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    return missing


@contextlib.contextmanager
def staged_output(target: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a path to write ``target`` (and its companions) to; rename all into place on exit.

    On an exception nothing is left: not the staged files, nor folders made for them.
    Existing outputs are replaced only with ``force``.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path()
    new_folders = _created_parents(folder.resolve())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    except OSError as exc:
        raise WriteError(f"{folder}: cannot write here: {exc.strerror or exc}") from exc
    try:
        yield staging / target.name
        commit_staged(staging, folder, force=force)
    except BaseException:
        for made in new_folders:
            with contextlib.suppress(OSError):
                made.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def commit_staged(staging: Path, folder: Path, *, force: bool) -> list[Path]:
    """Rename every file in ``staging`` into ``folder``; undo all if one rename fails."""
    staged = sorted(p for p in staging.iterdir() if p.is_file())
    if not staged:
        raise WriteError(f"{folder}: the writer produced no file")
    finals = [folder / p.name for p in staged]
    if not force:
        existing = [f for f in finals if f.exists() or f.is_symlink()]
        if existing:
            raise OutputExistsError(
                f"{existing[0]}: output exists", hint="use --force to overwrite it"
            )
    done: list[Path] = []
    try:
        for src, dst in zip(staged, finals, strict=True):
            if dst.is_dir():
                raise WriteError(f"{dst}: a folder is in the way")
            src.replace(dst)
            done.append(dst)
    except OSError as exc:
        for path in done:
            with contextlib.suppress(OSError):
                path.unlink()
        raise WriteError(f"{folder}: cannot move output into place: {exc}") from exc
    return finals


def check_writable(paths: list[Path], *, force: bool) -> None:
    """Fail before any work when an output exists and ``force`` is off."""
    if force:
        return
    for path in paths:
        if path.exists() or path.is_symlink():
            raise OutputExistsError(f"{path}: output exists", hint="use --force to overwrite it")
