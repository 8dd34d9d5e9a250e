"""Batch conversion of whole archives: discover, convert in parallel, journal, resume.

A *unit* is one input the readers understand on their own: a file, or the files of one
folder that a folder reader (DICOM) takes together. Units are converted in worker processes
(or on a Dask cluster); each finished unit is appended to a journal in OUT_DIR, so a batch
killed at any moment resumes where it stopped and never leaves a partial file under a final
name (every output is written to a staging folder and renamed, see ``io.staged_output``).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import AnyconvError, FormatNotFoundError, ReadError, UsageError
from .io import STAGING_PREFIX
from .registry import Registry, log

JOURNAL_NAME = ".anyconv-batch.jsonl"


@dataclass(frozen=True)
class Unit:
    """One conversion task: a file, or a folder's own files for a folder reader."""

    key: str
    source: str
    reader: str
    files: tuple[str, ...] = ()
    out_folder: str = ""
    stem: str = ""
    error: str = ""


@dataclass(frozen=True)
class BatchSettings:
    """What every unit is converted with (picklable: it travels to workers)."""

    out_dir: str
    to_fmt: str | None = None
    name_template: str = "{auto}"
    transforms: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    lossy: bool = False
    compress_level: int | None = None
    sidecar: bool = True
    extra: tuple[tuple[str, str], ...] = ()
    #: a labelled PNG beside each output
    preview: bool = False
    #: a base64 PNG thumbnail per series in ``UnitResult.series`` (for the QC report; taken
    #: out before the journal and the JSON report)
    thumbnail: bool = False
    #: a provenance record per series in ``UnitResult.series`` (checksums taken in the
    #: worker; taken out and written to the index by the parent)
    provenance: bool = False

    def recorded_options(self) -> dict[str, Any]:
        """The settings as the provenance index records them."""
        keep = asdict(self)
        for key in ("transforms", "thumbnail", "provenance"):
            keep.pop(key)
        keep["extra"] = dict(self.extra)
        return {"command": "batch", **keep}


@dataclass
class UnitResult:
    """A journal / report line."""

    key: str
    source: str
    status: str
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0
    series: list[dict[str, Any]] = field(default_factory=list)

    def report_lines(self) -> list[dict[str, Any]]:
        """One line per output series (a failed input: one line with its error)."""
        base = {k: v for k, v in asdict(self).items() if k != "series"}
        if self.status != "ok" or not self.series:
            return [base]
        return [{**base, **s, "series_index": i} for i, s in enumerate(self.series)]


# -- discovery ------------------------------------------------------------------------------
def _walk(source: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Folders and their own files, sorted, not following symlinked folders (no loops)."""
    for root, dirs, files in os.walk(source, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(root), sorted(Path(root) / f for f in files if not f.startswith("."))


def discover(registry: Registry, sources: Sequence[Path]) -> list[Unit]:
    """Every unit under ``sources``, by content (first KiB of each file), no pixel read."""
    units: list[Unit] = []
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise ReadError(f"{source}: no such file or folder")
        if source.is_file():
            units.extend(_file_units(registry, source.parent, [source], source.parent))
            continue
        for folder, files in _walk(source):
            units.extend(_file_units(registry, folder, files, source))
    return units


def _file_units(registry: Registry, folder: Path, files: list[Path], base: Path) -> list[Unit]:
    rel_folder = folder.relative_to(base).as_posix() if folder != base else ""
    prefix = f"{base.name}/{rel_folder}".rstrip("/") if rel_folder else base.name
    grouped: dict[str, list[str]] = {}
    singles: list[tuple[Path, str]] = []
    units: list[Unit] = []
    companions: set[Path] = set()
    for f in files:
        try:
            spec = registry.choose_reader(f).spec
        except (FormatNotFoundError, ReadError) as exc:
            if _has_known_suffix(registry, f):  # looks like an image but is not: report it
                units.append(Unit(f"{prefix}/{f.name}", str(f), "", error=str(exc)))
            continue
        if spec.directory:
            grouped.setdefault(spec.format, []).append(str(f))
        else:
            singles.append((f, spec.format))
            for suffix in spec.companions:
                stem = f.name[: -len(f.suffix)] if f.suffix else f.name
                companions.add(f.with_name(stem + suffix))
    units += [
        Unit(
            key=f"{prefix}/ [{fmt}]",
            source=str(folder),
            reader=fmt,
            files=tuple(paths),
            out_folder=rel_folder,
        )
        for fmt, paths in grouped.items()
    ]
    stems: dict[str, int] = {}
    for f, _ in singles:
        if f in companions:
            continue
        stem = _stem(f)
        stems[stem] = stems.get(stem, 0) + 1
    for f, fmt in singles:
        if f in companions:
            continue
        stem = _stem(f) if stems[_stem(f)] == 1 else f.name.replace(".", "_")
        units.append(
            Unit(
                key=f"{prefix}/{f.name}",
                source=str(f),
                reader=fmt,
                out_folder=rel_folder,
                stem=stem,
            )
        )
    return units


def _has_known_suffix(registry: Registry, path: Path) -> bool:
    from .detect import matching_suffix

    return any(matching_suffix(path.name, r.extensions) for r in registry.readers())


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".bz2"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name.rsplit(".", 1)[0] if "." in name else name


# -- one unit (runs in a worker) --------------------------------------------------------------
_WORKER_REGISTRY: Registry | None = None


def _registry() -> Registry:
    global _WORKER_REGISTRY  # one registry per worker process
    if _WORKER_REGISTRY is None:
        _WORKER_REGISTRY = Registry()
    return _WORKER_REGISTRY


def convert_unit(unit: Unit, settings: BatchSettings, overwrite: bool) -> UnitResult:
    """Convert one unit; never raises for bad input (it becomes a failed result)."""
    from .pipeline import ConvertRequest, convert
    from .specs import ReadOptions, WriteOptions

    start = time.monotonic()
    result = UnitResult(unit.key, unit.source, "ok")
    if unit.error:
        result.status, result.error, result.exit_code = "failed", unit.error, 4
        return result
    extra = dict(settings.extra)
    out = Path(settings.out_dir) / unit.out_folder
    req = ConvertRequest(
        src=Path(unit.source),
        dst=out,
        from_fmt=unit.reader or None,
        to_fmt=settings.to_fmt,
        force=overwrite,
        name_template=settings.name_template if unit.files else unit.stem,
        read_options=ReadOptions(extra=extra, files=unit.files),
        write_options=WriteOptions(
            lossy=settings.lossy,
            compress_level=settings.compress_level,
            sidecar=settings.sidecar,
            extra=extra,
        ),
        transforms=[(name, dict(opts)) for name, opts in settings.transforms],
        dst_is_folder=True,
        preview=settings.preview,
        thumbnail=settings.thumbnail,
        checksums=settings.provenance,
    )
    try:
        for written in convert(_registry(), req):
            files = [str(f) for f in written.files]
            warnings = [f"lost: {loss}" for loss in written.losses]
            result.outputs.extend(files)
            result.warnings.extend(warnings)
            series: dict[str, Any] = {
                "outputs": files,
                "warnings": warnings,
                "notes": list(written.notes),
                "geometry": written.geometry,
            }
            if written.preview is not None:
                series["preview"] = str(written.preview)
            if written.thumbnail is not None:
                series["thumbnail"] = base64.b64encode(written.thumbnail).decode("ascii")
            if settings.provenance:
                from .provenance import describe

                series["provenance"] = describe(
                    written,
                    _registry(),
                    options=settings.recorded_options(),
                    transforms=req.transforms,
                )
            result.series.append(series)
    except AnyconvError as exc:
        result.status, result.error, result.exit_code = "failed", str(exc), exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one bad unit must not stop the batch
        result.status, result.exit_code = "failed", 1
        result.error = f"internal error: {type(exc).__name__}: {exc}"
    result.seconds = round(time.monotonic() - start, 3)
    return result


# -- journal --------------------------------------------------------------------------------
def read_journal(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Last record per unit; a torn last line (killed mid-write) is ignored."""
    path = out_dir / JOURNAL_NAME
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            done[record["key"]] = record
    return done


class Journal:
    """Append-only JSON lines, flushed and fsynced per record."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably."""
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def remove_stale_staging(out_dir: Path) -> int:
    """Delete staging folders a killed run left behind; return how many."""
    count = 0
    for root, dirs, _ in os.walk(out_dir):
        for d in list(dirs):
            if d.startswith(STAGING_PREFIX):
                shutil.rmtree(Path(root) / d, ignore_errors=True)
                dirs.remove(d)
                count += 1
    return count


# -- the run --------------------------------------------------------------------------------
@dataclass
class BatchSummary:
    """Totals for the summary line."""

    units: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    outputs: int = 0
    seconds: float = 0.0
    first_exit_code: int = 0

    def line(self) -> str:
        """The one summary line."""
        return (
            f"{self.units} inputs: {self.converted} converted, {self.skipped} already done, "
            f"{self.failed} failed; {self.outputs} files written in {self.seconds:.1f} s"
        )


def run_batch(
    registry: Registry,
    sources: Sequence[Path],
    settings: BatchSettings,
    *,
    jobs: int = 0,
    resume: bool = False,
    force: bool = False,
    report: Path | None = None,
    scheduler: str | None = None,
    on_progress: Callable[[int, int, UnitResult | None], None] | None = None,
    qc_report: Path | None = None,
    index: Path | None = None,
    index_linkage: bool = False,
) -> BatchSummary:
    """Convert every unit under ``sources`` into ``settings.out_dir``.

    ``jobs`` worker processes (0: one per core); ``scheduler`` a Dask scheduler address, or
    ``"local"`` for a local Dask cluster. With ``resume``, units the journal lists as done (and
    whose outputs exist) are skipped, and the others are redone, replacing what an
    interrupted run may have left. ``qc_report``: a self-contained HTML page with one row per
    output series (see ``anyconv.qc``). ``index``: a provenance index (SQLite) that gets one
    entry per output of each converted unit (``anyconv.provenance``); written by this
    process only, as results arrive, so workers (or remote Dask workers) never contend for
    the file and an entry exists only for outputs a worker finished writing. With
    ``resume``, units done by the earlier run are not recorded again.
    """
    start = time.monotonic()
    out_dir = Path(settings.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    journal_path = out_dir / JOURNAL_NAME
    if journal_path.exists() and not (resume or force):
        raise UsageError(
            f"{out_dir}: holds a batch journal from an earlier run",
            hint="use --resume to continue it or --force to start again",
        )
    if force and not resume and journal_path.exists():
        journal_path.unlink()
    done = read_journal(out_dir) if resume else {}
    if resume:
        removed = remove_stale_staging(out_dir)
        if removed:
            log.info("removed %d staging folders of an interrupted run", removed)
    units = discover(registry, sources)
    summary = BatchSummary(units=len(units))
    todo = []
    for unit in units:
        record = done.get(unit.key)
        if (
            record
            and record.get("status") == "ok"
            and all(Path(p).exists() for p in record.get("outputs", []))
        ):
            summary.skipped += 1
        else:
            todo.append(unit)
    overwrite = force or resume
    provenance = None
    if index is not None:
        from .provenance import ProvenanceIndex

        provenance = ProvenanceIndex(index, linkage=index_linkage, command=["batch"])
        settings = dataclasses.replace(settings, provenance=True)
    journal = Journal(journal_path)
    qc = None
    if qc_report is not None:
        from .qc import QCReport

        settings = dataclasses.replace(settings, thumbnail=True)
        qc = QCReport(Path(qc_report), title=f"anyconv batch: {out_dir}")
        todo_keys = {u.key for u in todo}
        for unit in units:
            if unit.key not in todo_keys:
                qc.add_record(done[unit.key], registry=registry, skipped=True)
    report_fh = report.open("w", encoding="utf-8") if report is not None else None
    finished = summary.skipped
    if on_progress:
        on_progress(finished, len(units), None)
    try:
        for result in _execute(todo, settings, overwrite, jobs, scheduler):
            thumbnails = [s.pop("thumbnail", None) for s in result.series]
            records = [s.pop("provenance", None) for s in result.series]
            if provenance is not None and result.status == "ok":
                for entry in records:
                    if entry is not None:
                        provenance.add(entry)
            record = asdict(result)
            journal.append(record)
            if qc is not None:
                qc.add_record(record, thumbnails=thumbnails)
            if report_fh:
                for line in result.report_lines():
                    report_fh.write(json.dumps(line) + "\n")
            finished += 1
            if result.status == "ok":
                summary.converted += 1
                summary.outputs += len(result.outputs)
            else:
                summary.failed += 1
                summary.first_exit_code = summary.first_exit_code or result.exit_code
            if on_progress:
                on_progress(finished, len(units), result)
    finally:
        journal.close()
        if provenance is not None:
            provenance.close()
        summary.seconds = time.monotonic() - start
        if report_fh:
            report_fh.write(json.dumps({"summary": asdict(summary)}) + "\n")
            report_fh.close()
        if qc is not None:
            qc.close(asdict(summary))
    return summary


def _execute(
    units: list[Unit], settings: BatchSettings, overwrite: bool, jobs: int, scheduler: str | None
) -> Iterator[UnitResult]:
    if not units:
        return
    if scheduler is not None:
        yield from _execute_dask(units, settings, overwrite, jobs, scheduler)
        return
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        for unit in units:
            yield convert_unit(unit, settings, overwrite)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    window = 2 * jobs  # bounded in-flight work: memory does not grow with the archive
    pool = ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context(method), initializer=_one_core_each
    )
    with pool:
        queue = iter(units)
        pending = {
            pool.submit(convert_unit, unit, settings, overwrite)
            for unit in itertools.islice(queue, window)
        }
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(convert_unit, nxt, settings, overwrite))


def _one_core_each() -> None:
    """One core per worker of a parallel batch: no extra gzip threads or decoding processes.

    The other workers already use the cores; both pay off only for one conversion alone.
    """
    os.environ.setdefault("ANYCONV_GZIP_THREADS", "1")
    os.environ.setdefault("ANYCONV_DECODE_WORKERS", "1")


def _execute_dask(
    units: list[Unit], settings: BatchSettings, overwrite: bool, jobs: int, scheduler: str
) -> Iterator[UnitResult]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise UsageError("Dask is not installed", hint="pip install 'anyconv-core[dask]'") from exc
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=jobs or os.cpu_count() or 1, threads_per_worker=1)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        window = 4 * max(1, len(client.scheduler_info().get("workers", {})) or 1)
        queue = iter(units)
        futures = [
            client.submit(convert_unit, u, settings, overwrite, pure=False)
            for u in itertools.islice(queue, window)
        ]
        pool = as_completed(futures)
        for fut in pool:
            yield fut.result()
            nxt = next(queue, None)
            if nxt is not None:
                pool.add(client.submit(convert_unit, nxt, settings, overwrite, pure=False))
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
