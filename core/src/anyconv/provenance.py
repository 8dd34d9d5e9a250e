"""The provenance index: which output came from which inputs, how, and with what checksum.

One SQLite file (the standard library's embedded store, no server) that ``convert`` and
``batch`` fill with ``--index FILE.sqlite`` and ``anyconv index query`` reads. Per output
conversion it keeps the files written (path, size, SHA-256), the input files and instance,
series and study UIDs, the slice-to-instance map (``Image.sources``), the software and
plugin versions, the options and transforms, and what was lost or noted.

Entries are added only after their outputs are complete under their final names, each in
one transaction, so the index never lists a file that was not written. Writing an output
path again replaces its earlier entry. Concurrent writers (several ``anyconv convert`` runs
sharing an index) are serialised by SQLite's file lock (``BEGIN IMMEDIATE``, with a wait).

De-identified outputs: when the slice map carries ``linkage`` (the original identifiers a
de-identifying transform replaced), only the new identifiers are kept; input paths, which
lead straight back to the identified files, count as linkage too. The linkage goes to its
own table only when asked (``--index-linkage``), so the index can be shared without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ReadError, WriteError

if TYPE_CHECKING:
    from .pipeline import Written
    from .registry import Registry

SCHEMA_VERSION = 1
#: what replaces an input path inside notes and warnings of a de-identified entry
REDACTED = "<input>"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    software TEXT NOT NULL,
    command TEXT
);
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    created TEXT NOT NULL,
    source TEXT,
    reader TEXT,
    writer TEXT,
    study_uid TEXT,
    series_uid TEXT,
    deidentified INTEGER NOT NULL DEFAULT 0,
    software TEXT,
    options TEXT,
    transforms TEXT,
    losses TEXT,
    notes TEXT,
    geometry TEXT,
    stored TEXT
);
CREATE TABLE IF NOT EXISTS outputs (
    id INTEGER PRIMARY KEY,
    conversion_id INTEGER NOT NULL REFERENCES conversions(id) ON DELETE CASCADE,
    path TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT
);
CREATE TABLE IF NOT EXISTS inputs (
    conversion_id INTEGER NOT NULL REFERENCES conversions(id) ON DELETE CASCADE,
    path TEXT,
    instance_uid TEXT,
    class_uid TEXT,
    series_uid TEXT,
    study_uid TEXT,
    instance_number INTEGER,
    slices INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS slices (
    conversion_id INTEGER NOT NULL REFERENCES conversions(id) ON DELETE CASCADE,
    axis INTEGER,
    idx INTEGER,
    volume INTEGER,
    instance_uid TEXT,
    frame INTEGER,
    tile INTEGER,
    path TEXT
);
CREATE TABLE IF NOT EXISTS linkage (
    conversion_id INTEGER NOT NULL REFERENCES conversions(id) ON DELETE CASCADE,
    instance_uid TEXT,
    field TEXT NOT NULL,
    value TEXT,
    original TEXT
);
CREATE INDEX IF NOT EXISTS inputs_series ON inputs(series_uid);
CREATE INDEX IF NOT EXISTS inputs_study ON inputs(study_uid);
CREATE INDEX IF NOT EXISTS inputs_instance ON inputs(instance_uid);
CREATE INDEX IF NOT EXISTS inputs_conversion ON inputs(conversion_id);
CREATE INDEX IF NOT EXISTS slices_conversion ON slices(conversion_id);
CREATE INDEX IF NOT EXISTS outputs_conversion ON outputs(conversion_id);
CREATE INDEX IF NOT EXISTS linkage_conversion ON linkage(conversion_id);
CREATE INDEX IF NOT EXISTS conversions_series ON conversions(series_uid);
CREATE INDEX IF NOT EXISTS conversions_study ON conversions(study_uid);
"""


#: option names whose values are secrets (an anonymizer's key, a server's password): the index
#: records that they were given, never their values
_SECRET = re.compile(
    r"(^|[_.-])(key|secret|password|passwd|token|auth|credentials?)($|[_.-])", re.I
)
SECRET_VALUE = "<secret>"


def scrub(value: Any) -> Any:
    """Options as recorded: values of secret-named keys replaced, nested dicts and lists too."""
    if isinstance(value, dict):
        return {
            k: SECRET_VALUE if _SECRET.search(str(k)) and v not in (None, "") else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Size and SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def software(registry: Registry, reader: str | None, writer: str | None) -> dict[str, Any]:
    """Versions: anyconv's, Python's, and the reader's and writer's plugin."""
    versions = {p.name: p.version for p in registry.plugins()}
    out: dict[str, Any] = {"anyconv": __version__, "python": sys.version.split()[0]}
    for role, fmt, specs in (
        ("reader", reader, registry.readers()),
        ("writer", writer, registry.writers()),
    ):
        spec = next((s for s in specs if s.format == fmt), None)
        if fmt:
            plugin = spec.plugin if spec is not None else None
            out[role] = {"format": fmt, "plugin": plugin, "version": versions.get(plugin or "")}
    return out


def describe(
    written: Written,
    registry: Registry,
    *,
    options: dict[str, Any],
    transforms: Sequence[tuple[str, dict[str, str]]],
    destination: str | None = None,
) -> dict[str, Any]:
    """A JSON-ready index record for one written image (picklable: batch workers send it).

    ``destination``: the ``scheme://`` address the files were stored to, which then names
    them (their local copies are gone).
    """
    outputs = []
    for i, f in enumerate(written.files):
        digest = written.checksums.get(str(f))
        if digest is None:
            digest = file_digest(f) if Path(f).is_file() else (None, None)
        size, sha = digest
        if destination:
            where = f"{destination.rstrip('/')}/{Path(f).name}"
        else:
            where = str(Path(f).absolute())
        outputs.append(
            {"path": where, "role": "image" if i == 0 else "companion", "size": size, "sha256": sha}
        )
    return {
        "created": _now(),
        "source": str(Path(written.source).absolute()) if written.source else None,
        "reader": written.reader,
        "writer": written.writer,
        "outputs": outputs,
        "sources": [dict(s) for s in written.sources],
        "losses": list(written.losses),
        "notes": list(written.notes),
        "geometry": dict(written.geometry),
        "stored": list(written.stored),
        "options": scrub(options),
        "transforms": [[name, scrub(dict(opts))] for name, opts in transforms],
        "software": software(registry, written.reader, written.writer),
    }


def _most_common(values: list[Any]) -> Any:
    counts: dict[Any, int] = {}
    for v in values:
        if v:
            counts[v] = counts.get(v, 0) + 1
    return max(counts, key=lambda v: counts[v]) if counts else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _redact(texts: list[str], paths: set[str]) -> list[str]:
    """Input paths (longest first, so a folder does not leave its file names) become REDACTED."""
    out = []
    ordered = sorted((p for p in paths if p), key=len, reverse=True)
    for text in texts:
        for p in ordered:
            text = text.replace(p, REDACTED)
        out.append(text)
    return out


class ProvenanceIndex:
    """An open index: ``add`` one record per written image, from one process.

    Parameters
    ----------
    path
        The SQLite file; created with its tables when missing.
    linkage
        Keep the original identifiers of de-identified inputs in the ``linkage`` table.
    command
        The command line, recorded with the run.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        linkage: bool = False,
        command: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.linkage = linkage
        try:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys = ON")
            # executescript commits what is pending first: the transaction is in the script.
            self._db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}INSERT OR IGNORE INTO info "
                f"VALUES ('schema_version', '{SCHEMA_VERSION}');COMMIT;"
            )
            (version,) = self._db.execute(
                "SELECT value FROM info WHERE key = 'schema_version'"
            ).fetchone()
            if int(version) != SCHEMA_VERSION:
                raise WriteError(
                    f"{self.path}: index schema version {version}, this anyconv writes "
                    f"{SCHEMA_VERSION}",
                    hint="use a new index file",
                )
            with self._transaction():
                cur = self._db.execute(
                    "INSERT INTO runs (started, software, command) VALUES (?, ?, ?)",
                    (_now(), __version__, json.dumps(command or [])),
                )
            self.run_id = cur.lastrowid
        except sqlite3.Error as exc:
            raise WriteError(f"{self.path}: cannot open the provenance index: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __enter__(self) -> ProvenanceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Mark the run finished and close the file."""
        with contextlib.suppress(sqlite3.Error):
            with self._transaction():
                self._db.execute("UPDATE runs SET finished = ? WHERE id = ?", (_now(), self.run_id))
            self._db.close()

    def add(self, record: dict[str, Any]) -> int:
        """Store one record from ``describe``; replaces entries for the same output paths."""
        try:
            with self._transaction():
                return self._add(record)
        except sqlite3.Error as exc:
            raise WriteError(f"{self.path}: cannot record provenance: {exc}") from exc

    def _add(self, record: dict[str, Any]) -> int:
        db = self._db
        sources = [dict(s) for s in record.get("sources") or []]
        deidentified = bool(record.get("deidentified")) or any("linkage" in s for s in sources)
        source = record.get("source")
        paths = {str(s["path"]) for s in sources if s.get("path")}
        paths |= {
            str(s["linkage"]["path"])
            for s in sources
            if isinstance(s.get("linkage"), dict) and s["linkage"].get("path")
        }
        linkage_rows: set[tuple[str | None, str, str | None, str | None]] = set()
        losses, notes = list(record.get("losses") or []), list(record.get("notes") or [])
        if deidentified:
            if source:
                paths.add(source)
                linkage_rows.add((None, "source", None, source))
            folders = {str(Path(p).parent) for p in paths if str(Path(p).parent) not in ("", ".")}
            for entry in sources:
                uid = entry.get("uid")
                for key, original in (entry.pop("linkage", None) or {}).items():
                    value = entry.get(key)
                    linkage_rows.add((uid, str(key), _str(value), _str(original)))
                if entry.get("path"):
                    linkage_rows.add((uid, "path", None, str(entry.pop("path"))))
            losses = _redact(losses, paths | folders)
            notes = _redact(notes, paths | folders)
            source = None
        outputs = record.get("outputs") or []
        for out in outputs:
            db.execute(
                "DELETE FROM conversions WHERE id IN "
                "(SELECT conversion_id FROM outputs WHERE path = ?)",
                (out["path"],),
            )
        study_uid = _most_common([s.get("study_uid") for s in sources])
        series_uid = _most_common([s.get("series_uid") for s in sources])
        cur = db.execute(
            "INSERT INTO conversions (run_id, created, source, reader, writer, study_uid, "
            "series_uid, deidentified, software, options, transforms, losses, notes, geometry, "
            "stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.run_id,
                record.get("created") or _now(),
                source,
                record.get("reader"),
                record.get("writer"),
                study_uid,
                series_uid,
                int(deidentified),
                json.dumps(record.get("software") or {}),
                json.dumps(record.get("options") or {}, default=str),
                json.dumps(record.get("transforms") or []),
                json.dumps(losses),
                json.dumps(notes),
                json.dumps(record.get("geometry") or {}),
                json.dumps(record.get("stored") or []),
            ),
        )
        cid = int(cur.lastrowid or 0)
        db.executemany(
            "INSERT INTO outputs (conversion_id, path, role, size, sha256) VALUES (?, ?, ?, ?, ?)",
            [
                (cid, o["path"], o.get("role", "image"), o.get("size"), o.get("sha256"))
                for o in outputs
            ],
        )
        db.executemany(
            "INSERT INTO inputs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _inputs(cid, sources, source)
        )
        db.executemany(
            "INSERT INTO slices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    cid,
                    _int(s.get("axis")),
                    _int(s.get("index")),
                    _int(s.get("volume")),
                    _str(s.get("uid")),
                    _int(s.get("frame")),
                    _int(s.get("tile")),
                    _str(s.get("path")),
                )
                for s in sources
            ],
        )
        if self.linkage and linkage_rows:
            db.executemany(
                "INSERT INTO linkage VALUES (?, ?, ?, ?, ?)",
                [(cid, *row) for row in sorted(linkage_rows, key=lambda r: tuple(map(str, r)))],
            )
        return cid


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _inputs(cid: int, sources: list[dict[str, Any]], source: str | None) -> list[tuple[Any, ...]]:
    """One row per input instance (or file, without UIDs); a bare file without a slice map."""
    rows: dict[tuple[Any, Any], list[Any]] = {}
    for s in sources:
        key = (s.get("uid"), s.get("path")) if s.get("uid") else (None, s.get("path"))
        row = rows.get(key)
        if row is None:
            rows[key] = [
                cid,
                _str(s.get("path")),
                _str(s.get("uid")),
                _str(s.get("class_uid")),
                _str(s.get("series_uid")),
                _str(s.get("study_uid")),
                _int(s.get("number")),
                1,
            ]
        else:
            row[7] += 1
    if not rows and source:
        rows[(None, source)] = [cid, source, None, None, None, None, None, 0]
    return [tuple(r) for r in rows.values()]


# -- reading ------------------------------------------------------------------------------------
def _connect_ro(path: str | os.PathLike[str]) -> sqlite3.Connection:
    path = Path(path)
    if not path.is_file():
        raise ReadError(f"{path}: no such provenance index")
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=60.0)
        db.row_factory = sqlite3.Row
        db.execute("SELECT value FROM info WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error as exc:
        raise ReadError(f"{path}: not a provenance index: {exc}") from exc
    return db


def query(
    path: str | os.PathLike[str],
    *,
    series: str | None = None,
    study: str | None = None,
    instance: str | None = None,
    output: str | None = None,
    slices: bool = False,
    linkage: bool = False,
) -> list[dict[str, Any]]:
    """Conversions matching every filter given (none: all), oldest first.

    ``output`` matches the absolute path of an output file, or failing that any output path
    ending in it (``801_T1.nii.gz`` or ``sub/801_T1.nii.gz``).
    """
    db = _connect_ro(path)
    try:
        where, args = [], []
        if series:
            where.append(
                "(c.series_uid = ? OR c.id IN "
                "(SELECT conversion_id FROM inputs WHERE series_uid = ?))"
            )
            args += [series, series]
        if study:
            where.append(
                "(c.study_uid = ? OR c.id IN "
                "(SELECT conversion_id FROM inputs WHERE study_uid = ?))"
            )
            args += [study, study]
        if instance:
            where.append("c.id IN (SELECT conversion_id FROM inputs WHERE instance_uid = ?)")
            args.append(instance)
        if output:
            exact = str(Path(output).absolute())
            tail = "/" + output.lstrip("./").replace("\\", "/")
            where.append(
                "c.id IN (SELECT conversion_id FROM outputs WHERE path = ? OR path = ? OR "
                "substr(path, -length(?)) = ?)"
            )
            args += [exact, output, tail, tail]
        sql = "SELECT c.* FROM conversions c"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = db.execute(sql + " ORDER BY c.id", args).fetchall()
        return [_conversion(db, row, slices=slices, linkage=linkage) for row in rows]
    except sqlite3.Error as exc:
        raise ReadError(f"{path}: cannot query the provenance index: {exc}") from exc
    finally:
        db.close()


def _conversion(db: sqlite3.Connection, row: sqlite3.Row, *, slices: bool, linkage: bool) -> dict:
    cid = row["id"]
    out: dict[str, Any] = {k: row[k] for k in row.keys()}  # noqa: SIM118 - sqlite3.Row
    for key in ("software", "options", "transforms", "losses", "notes", "geometry", "stored"):
        out[key] = json.loads(out[key]) if out[key] else None
    out["deidentified"] = bool(out["deidentified"])
    out["outputs"] = [
        dict(r)
        for r in db.execute(
            "SELECT path, role, size, sha256 FROM outputs WHERE conversion_id = ? ORDER BY id",
            (cid,),
        )
    ]
    out["inputs"] = [
        dict(r)
        for r in db.execute(
            "SELECT path, instance_uid, class_uid, series_uid, study_uid, instance_number, slices "
            "FROM inputs WHERE conversion_id = ? ORDER BY rowid",
            (cid,),
        )
    ]
    if slices:
        out["slices"] = [
            dict(r)
            for r in db.execute(
                "SELECT axis, idx AS 'index', volume, instance_uid, frame, tile, path "
                "FROM slices WHERE conversion_id = ? ORDER BY rowid",
                (cid,),
            )
        ]
    if linkage:
        out["linkage"] = [
            dict(r)
            for r in db.execute(
                "SELECT instance_uid, field, value, original FROM linkage "
                "WHERE conversion_id = ? ORDER BY rowid",
                (cid,),
            )
        ]
    return out


def table_lines(conversions: list[dict[str, Any]]) -> list[str]:
    """One line per output file: path, checksum prefix, instances, series UID, input."""
    rows = []
    for c in conversions:
        uids = {i["instance_uid"] for i in c["inputs"] if i["instance_uid"]}
        count = str(len(uids)) if uids else "-"
        src = c["source"] or ("(de-identified)" if c["deidentified"] else "-")
        for o in c["outputs"]:
            rows.append((o["path"], (o["sha256"] or "")[:12], count, c["series_uid"] or "-", src))
    head = ("output", "sha256", "inst", "series uid", "source")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    w0, w1, w2, w3 = widths
    return [f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}  {d:<{w3}}  {e}" for a, b, c, d, e in [head, *rows]]
