"""``anyconv anonymize IN OUT``: a de-identified copy of DICOM files, attribute by attribute.

Every attribute of every file goes through PS3.15 Table E.1-1 (nested sequences too, private
tags by the safe list); pixel data is copied untouched, in the file's own transfer syntax.
Each output is written under a temporary name and renamed; an existing output is refused
unless ``--force``. Outputs are named from the new UIDs, never from input names (which often
hold a patient's name): ``OUT/S<series number>_<series>/<new SOP Instance UID>.dcm``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import warnings
from pathlib import Path

from anyconv.errors import OutputExistsError, ReadError, UsageError, WriteError
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from . import profile
from ._engine import Deidentifier
from .policy import OPTIONS, Policy, new_uid

_FLAGS = {
    "patient_characteristics": "--patient-characteristics",
    "device_identity": "--device-identity",
    "institution_identity": "--institution-identity",
    "uids": "--keep-uids",
    "safe_private": "--safe-private",
    "allow_burned_in": "--allow-burned-in",
}
_KEEPS = {
    "descriptors": "--clean-descriptors",
    "structured_content": "--clean-structured-content",
    "graphics": "--clean-graphics",
}


def parser() -> argparse.ArgumentParser:
    """The command's arguments (options mirror the transform's, see ``policy.OPTIONS``)."""
    p = argparse.ArgumentParser(
        prog="anyconv anonymize",
        description="Write a de-identified copy of DICOM files or folders "
        "(DICOM PS3.15 Annex E Basic Profile and options).",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="IN (file or folder), then OUT")
    p.add_argument("--recipe", type=Path, help="TOML recipe: [options], [actions], [safe_private]")
    p.add_argument("--print-recipe", action="store_true", help="print the effective recipe, exit")
    p.add_argument("--key", help="secret for UIDs, pseudonyms and date shifts")
    p.add_argument("--force", "-f", action="store_true", help="overwrite existing outputs")
    p.add_argument("--dates", choices=("shift", "remove", "keep"), help=OPTIONS["dates"][1])
    for name, flag in _FLAGS.items():
        p.add_argument(
            flag, dest=name, action=argparse.BooleanOptionalAction, help=OPTIONS[name][1]
        )
    for name, flag in _KEEPS.items():
        p.add_argument(
            flag, dest=name, action=argparse.BooleanOptionalAction, help=OPTIONS[name][1]
        )
    return p


def main(args: list[str]) -> int:
    """Run the command; errors are raised as anyconv errors (one line, their exit code)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every odd value it meets
        return _main(parser().parse_args(args))


def _main(ns: argparse.Namespace) -> int:
    options: dict[str, str] = {}
    if ns.recipe is not None:
        options["recipe"] = str(ns.recipe)
    if ns.key:
        options["key"] = ns.key
    if ns.dates:
        options["dates"] = ns.dates
    for name in _FLAGS:
        if getattr(ns, name) is not None:
            options[name] = "1" if getattr(ns, name) else "0"
    for name in _KEEPS:
        if getattr(ns, name) is not None:
            options[name] = "keep" if getattr(ns, name) else "remove"
    if ns.print_recipe:
        sys.stdout.write(Policy.from_options(options, need_key=False).to_toml())
        return 0
    if len(ns.paths) != 2:
        raise UsageError("give IN and OUT", hint="anyconv anonymize IN OUT, or --print-recipe")
    policy = Policy.from_options(options)
    written = anonymize_tree(Path(ns.paths[0]), Path(ns.paths[1]), policy, force=ns.force)
    sys.stderr.write(f"anonymized {len(written)} file(s) into {ns.paths[1]}\n")
    return 0


def anonymize_tree(src: Path, dst: Path, policy: Policy, *, force: bool = False) -> list[Path]:
    """De-identify every DICOM file under ``src`` into ``dst``; return the files written."""
    if not src.exists():
        raise ReadError(f"{src}: no such file or folder")
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    single = src.is_file() and not (dst.is_dir() or str(dst).endswith(("/", os.sep)))
    plan: list[tuple[Path, Path]] = []
    skipped = []
    for path in files:
        header = _header(path)
        if header is None:
            skipped.append(path)
            continue
        _refuse_burned_in(path, header, policy)
        plan.append((path, dst if single else dst / _relative_name(header, policy)))
    if not plan:
        raise ReadError(f"{src}: no DICOM file found")
    outputs = [out for _, out in plan]
    if len(set(outputs)) != len(outputs):
        raise UsageError(f"{src}: two inputs share a SOP Instance UID", hint="remove duplicates")
    if not force:
        existing = [o for o in outputs if o.exists()]
        if existing:
            raise OutputExistsError(f"{existing[0]}: exists", hint="use --force to overwrite")
    for path in skipped:
        sys.stderr.write(f"anyconv anonymize: skipped {path.name}: not a DICOM image file\n")
    engine = Deidentifier(policy)
    done: list[Path] = []
    try:
        for path, out in plan:
            write_anonymized(path, out, engine)
            done.append(out)
    except BaseException:
        for out in done:  # all or nothing: a bad file stops the copy and takes it back
            with contextlib.suppress(OSError):
                out.unlink()
        raise
    return outputs


def _header(path: Path) -> Dataset | None:
    """The file's header, or ``None`` for a non-DICOM file or a DICOMDIR."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    except Exception:  # noqa: BLE001 - any unreadable file is skipped, not fatal
        return None
    if "SOPInstanceUID" not in ds or "DirectoryRecordSequence" in ds:
        return None
    return ds


def _refuse_burned_in(path: Path, ds: Dataset, policy: Policy) -> None:
    if policy.allow_burned_in:
        return
    why = profile.burned_in_reason(
        ds.get("BurnedInAnnotation"), ds.get("SOPClassUID"), ds.get("Modality")
    )
    if why:
        from anyconv.errors import LossyConversionError

        raise LossyConversionError(
            f"{path}: may carry burned-in identifying text ({why})",
            hint="check the pixels, then pass --allow-burned-in",
        )


def _relative_name(ds: Dataset, policy: Policy) -> Path:
    """``S<series number>_<8 hex of the new series UID>/<new SOP Instance UID>.dcm``."""

    def uid(keyword: str, tag: int) -> str:
        value = str(ds.get(keyword, "") or "")
        return new_uid(policy.key, value) if policy.table_action(tag, keyword) == "U" else value

    series = hashlib.sha256(uid("SeriesInstanceUID", 0x0020000E).encode()).hexdigest()[:8]
    try:
        number = int(ds.get("SeriesNumber"))
    except (TypeError, ValueError):
        number = 0
    return Path(f"S{number:03d}_{series}") / f"{uid('SOPInstanceUID', 0x00080018)}.dcm"


def _check_pixels(path: Path, ds: Dataset) -> None:
    """A truncated file is an input error, not something to copy on."""
    syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
    if "PixelData" not in ds or (syntax is not None and syntax.is_compressed):
        return
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        expected = (
            int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1)
            * int(ds.BitsAllocated) * frames + 7
        ) // 8  # fmt: skip
    except (AttributeError, TypeError, ValueError):
        return
    if len(ds.PixelData) < expected:
        raise ReadError(f"{path}: pixel data truncated ({len(ds.PixelData)} of {expected} bytes)")


def write_anonymized(path: Path, out: Path, engine: Deidentifier) -> None:
    """Read one file whole, de-identify it, write it under a temporary name, then rename."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path)
    except Exception as exc:
        raise ReadError(f"{path}: unreadable DICOM: {exc}") from exc
    _check_pixels(path, ds)
    ctx = engine.context(ds)
    engine.apply(ds, ctx)
    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:  # a bare data set without a file meta header
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if ds.is_implicit_VR
            else (ExplicitVRLittleEndian if ds.is_little_endian else ExplicitVRBigEndian)
        )
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                    "ReceivingApplicationEntityTitle", "PrivateInformation"):  # fmt: skip
        if keyword in meta:
            delattr(meta, keyword)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(tmp, enforce_file_format=True)
        tmp.replace(out)
    except Exception as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteError(f"{out}: cannot write: {exc}") from exc
