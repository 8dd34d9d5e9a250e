"""``anyconv echo``, ``query`` and ``send``: is the PACS there, what does it hold, load it.

Parsed with argparse here; the network libraries are imported only inside the commands, and
errors are raised as ``AnyconvError`` so core prints them as one line with their exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from anyconv.errors import AnyconvError, ReadError, UsageError

from ._config import DIMSE_SCHEME, WEB_SCHEMES, parse_dimse, parse_web

_SCHEMES = "dicom://AET@HOST:PORT or dicomweb+http(s)://HOST:PORT/ROOT"


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"anyconv {self.prog.split()[-1]}: {message}", hint="see --help")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--aet", help="our AE title (default: $ANYCONV_AET, else ANYCONV); DIMSE only"
    )
    parser.add_argument("--timeout", type=float, help="seconds to wait for the server (default 30)")


def _options(ns: argparse.Namespace) -> dict[str, str]:
    out = {}
    if ns.aet:
        out["aet"] = ns.aet
    if ns.timeout is not None:
        out["timeout"] = str(ns.timeout)
    return out


def _scheme(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme != DIMSE_SCHEME and scheme not in WEB_SCHEMES:
        raise UsageError(f"{url}: expected {_SCHEMES}")
    return scheme


def _guarded(url: str, func: Any, *args: Any) -> Any:
    """Run a network call; anything that is not already one line becomes a ReadError."""
    try:
        return func(*args)
    except AnyconvError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ReadError(f"{url}: {type(exc).__name__}" + (f": {first}" if first else "")) from exc


def echo(args: list[str]) -> int:
    """``anyconv echo URL``: C-ECHO a DICOM node, or QIDO-RS ping a DICOMweb service."""
    parser = _Parser(prog="anyconv echo", description=echo.__doc__)
    parser.add_argument("url", help=_SCHEMES)
    _common(parser)
    ns = parser.parse_args(args)
    options = _options(ns)
    if _scheme(ns.url) == DIMSE_SCHEME:
        from . import _dimse

        address = parse_dimse(ns.url)
        _guarded(ns.url, _dimse.echo, address, options)
        print(f"C-ECHO {address.aet}@{address.host}:{address.port}: success")
        return 0
    from . import _web

    _guarded(ns.url, _web.ping, ns.url, options)
    print(f"{parse_web(ns.url).base}: DICOMweb (QIDO-RS) answers")
    return 0


def _dimse_query(url: str, filters: Mapping[str, str], options: Mapping[str, str]) -> list[dict]:
    """C-FIND studies then their series, as the same dicts QIDO gives."""
    from . import _dimse, _web

    address = parse_dimse(url)
    keys = {k: "" for k in _web.STUDY_FIELDS}
    keys.update({k: v for k, v in filters.items() if k != "Modality"})
    if address.study:
        keys["StudyInstanceUID"] = address.study
    if filters.get("Modality"):
        keys["ModalitiesInStudy"] = filters["Modality"]
    out = []
    for ds in _dimse.find(address, "STUDY", keys, options):
        study = {k: _text(ds, k) for k in _web.STUDY_FIELDS}
        series_keys = {k: "" for k in _web.SERIES_FIELDS}
        series_keys["StudyInstanceUID"] = study["StudyInstanceUID"]
        if filters.get("Modality"):
            series_keys["Modality"] = filters["Modality"]
        if address.series:
            series_keys["SeriesInstanceUID"] = address.series
        found = _dimse.find(address, "SERIES", series_keys, options)
        study["series"] = [{k: _text(s, k) for k in _web.SERIES_FIELDS} for s in found]
        if (filters.get("Modality") or address.series) and not study["series"]:
            continue
        out.append(study)
    return out


def _text(ds: Any, keyword: str) -> Any:
    """A C-FIND answer's value as QIDO's JSON gives it: text, numbers, joined lists."""
    element = ds.data_element(keyword) if keyword in ds else None
    if element is None or element.value in (None, ""):
        return None
    value = element.value
    if element.VR in ("IS", "US", "UL", "SL", "SS"):
        return int(value)
    if element.VM > 1:
        return "\\".join(str(v) for v in value)
    return str(value)


def _table(studies: Sequence[Mapping[str, Any]]) -> str:
    """One line per study, one indented line per series under it."""
    if not studies:
        return "no matching studies"
    lines = []
    for st in studies:
        date = st.get("StudyDate") or ""
        if len(date) == 8 and date.isdigit():
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        lines.append(
            f"study {st.get('StudyInstanceUID')}  patient {st.get('PatientID') or '-'}"
            f" ({st.get('PatientName') or '-'})  {date or '-'}  "
            f"{st.get('ModalitiesInStudy') or '-'}  {st.get('StudyDescription') or ''}".rstrip()
        )
        for se in sorted(st["series"], key=lambda s: int(s.get("SeriesNumber") or 0)):
            count = se.get("NumberOfSeriesRelatedInstances")
            lines.append(
                f"  series {se.get('SeriesNumber') or '-':>4}  {se.get('Modality') or '-':<3}"
                f"  {count if count is not None else '?':>5} inst  "
                f"{se.get('SeriesInstanceUID')}  {se.get('SeriesDescription') or ''}".rstrip()
            )
    return "\n".join(lines)


def query(args: list[str]) -> int:
    """``anyconv query URL``: list matching studies and series (QIDO-RS or C-FIND)."""
    parser = _Parser(prog="anyconv query", description=query.__doc__)
    parser.add_argument("url", help=_SCHEMES)
    parser.add_argument("--patient-id", help="PatientID (wildcards * and ? allowed)")
    parser.add_argument("--patient-name", help="PatientName (wildcards allowed)")
    parser.add_argument("--modality", help="Modality of the series, e.g. MR")
    parser.add_argument("--study", help="StudyInstanceUID")
    parser.add_argument("--date", help="StudyDate, YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    parser.add_argument("--json", action="store_true", help="JSON: studies, each with series")
    _common(parser)
    ns = parser.parse_args(args)
    filters = {
        key: value
        for key, value in (
            ("PatientID", ns.patient_id),
            ("PatientName", ns.patient_name),
            ("Modality", ns.modality),
            ("StudyInstanceUID", ns.study),
            ("StudyDate", ns.date),
        )
        if value
    }
    options = _options(ns)
    if _scheme(ns.url) == DIMSE_SCHEME:
        studies = _guarded(ns.url, _dimse_query, ns.url, filters, options)
    else:
        from . import _web

        studies = _guarded(ns.url, _web.query, ns.url, filters, options)
    if ns.json:
        sys.stdout.write(json.dumps(studies, indent=2) + "\n")
    else:
        print(_table(studies))
    return 0


def _dicom_files(paths: Sequence[str]) -> list[Path]:
    """Files given, and files inside folders given, that are DICOM Part 10 files."""
    out: list[Path] = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            with candidate.open("rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM":
                out.append(candidate)
            elif not path.is_dir():
                raise UsageError(f"{candidate}: not a DICOM file (no DICM marker)")
    if not out:
        raise UsageError("no DICOM files to send")
    return out


def send(args: list[str]) -> int:
    """``anyconv send FILE|FOLDER... URL``: store DICOM files unchanged (C-STORE or STOW-RS)."""
    parser = _Parser(prog="anyconv send", description=send.__doc__)
    parser.add_argument("paths", nargs="+", metavar="FILE|FOLDER", help="DICOM files or folders")
    parser.add_argument("url", help=_SCHEMES)
    _common(parser)
    ns = parser.parse_args(args)
    _scheme(ns.url)
    files = _dicom_files(ns.paths)
    from anyconv import get_registry
    from anyconv.specs import WriteOptions

    stored = get_registry().store(files, ns.url, WriteOptions(extra=_options(ns)))
    print(f"{ns.url}: {len(stored)} instance(s) stored")
    return 0
