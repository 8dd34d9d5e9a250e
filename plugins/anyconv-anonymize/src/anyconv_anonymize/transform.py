"""De-identify an image's metadata, whatever format it came from and goes to.

What it does (see docs/anonymize.md):

- identity in ``meta.patient``/``meta.study`` and in the BIDS keys (``meta.bids``) follows the
  PS3.15 Basic Profile table in ``profile.py``; UIDs are replaced by ``2.25.<n>`` UIDs and
  patient IDs by pseudonyms, both derived from a secret key (HMAC-SHA256), so the same input
  gives the same output across a batch and across runs that share the key; dates move by one
  offset per patient (``dates=shift``), so intervals within a patient survive;
- every format's own header (``image.extras``) is dropped: NIfTI descrip/aux_file/extensions,
  NRRD key/values, MINC history and attributes, MetaImage keys and DICOM private data may all
  carry identity, and no writer then puts them back;
- the source path is forgotten (it often holds a name), so output names come from the series;
- images likely to carry burned-in text (``BurnedInAnnotation = YES``, secondary capture,
  ultrasound ...) are refused unless ``allow_burned_in=1``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any

from anyconv.errors import LossyConversionError, UsageError
from anyconv.model import Image

from .profile import BURNED_IN_MODALITIES, SECONDARY_CAPTURE_PREFIX, action_for

KEY_ENV = "ANYCONV_ANON_KEY"
KEY_FILE = Path("~/.config/anyconv/anonymize.key")
METHOD = "anyconv: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
_CHARACTERISTICS = ("sex", "age", "weight", "size")
_MAX_SHIFT_DAYS = 3650


def load_key(options: dict[str, str]) -> bytes:
    """The secret: ``key=``, ``$ANYCONV_ANON_KEY``, else a per-user key file made on first use.

    A shared key keeps pseudonyms, UIDs and date shifts the same across a batch's workers and
    across runs; keep the file private (it is created mode 0600).
    """
    given = options.get("key") or os.environ.get(KEY_ENV)
    if given:
        return given.encode()
    path = KEY_FILE.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _digest(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()


def new_uid(key: bytes, uid: str) -> str:
    """A UID under the UUID-derived root 2.25 (PS3.5 B.2), the same for the same input."""
    return "2.25." + str(int.from_bytes(_digest(key, "uid", uid)[:16], "big"))


def pseudonym(key: bytes, value: str) -> str:
    """``ANON-`` and 12 hex digits, the same for the same input."""
    return "ANON-" + _digest(key, "id", value).hex()[:12].upper()


def date_shift(key: bytes, patient: str) -> dt.timedelta:
    """One backwards shift per patient: 1 to 3650 days and up to a day of seconds.

    Dates, times and date-times of one patient all move by it, so intervals survive while the
    original values do not.
    """
    digest = _digest(key, "date", patient)
    days = int.from_bytes(digest[:4], "big") % _MAX_SHIFT_DAYS + 1
    seconds = int.from_bytes(digest[4:8], "big") % 86400
    return -dt.timedelta(days=days, seconds=seconds)


def shift_date(value: Any, shift: dt.timedelta) -> Any:
    """Shift a DICOM/ISO date, time or date-time; anything unparseable is removed (None).

    Times of day wrap around midnight (their date is not known).
    """
    text = str(value).strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return (dt.datetime.strptime(text, fmt) + shift).strftime(fmt)
        except ValueError:
            pass
    for fmt in ("%H%M%S.%f", "%H%M%S", "%H:%M:%S.%f", "%H:%M:%S"):
        try:
            moment = dt.datetime.combine(dt.date(2000, 1, 1), dt.time()) + (
                dt.datetime.strptime(text, fmt) - dt.datetime(1900, 1, 1)
            )
            return (moment + shift).strftime(fmt)
        except ValueError:
            pass
    for fmt in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S"):
        try:
            return (dt.datetime.strptime(text, fmt) + shift).strftime(fmt)
        except ValueError:
            pass
    try:
        return (dt.datetime.fromisoformat(text) + shift).isoformat()
    except ValueError:
        return None


def _options(options: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Options and per-key action overrides, from the recipe file and then ``-O`` pairs."""
    merged: dict[str, str] = {}
    actions: dict[str, str] = {}
    recipe = options.get("recipe")
    if recipe:
        try:
            data = tomllib.loads(Path(recipe).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{recipe}: cannot read the anonymization recipe: {exc}") from exc
        merged.update({k: str(v) for k, v in data.get("options", {}).items()})
        actions.update({k: str(v).upper() for k, v in data.get("actions", {}).items()})
    merged.update({k: v for k, v in options.items() if k != "recipe"})
    bad = {k: v for k, v in actions.items() if v not in {"X", "Z", "D", "K", "U", "C", "S"}}
    if bad:
        raise UsageError(f"unknown anonymization actions {bad}", hint="use X, Z, D, K, U, C, S")
    return merged, actions


def _flag(options: dict[str, str], name: str, default: str) -> bool:
    return str(options.get(name, default)).lower() in ("1", "true", "yes", "keep")


def _refuse_burned_in(image: Image, options: dict[str, str]) -> None:
    if _flag(options, "allow_burned_in", "0"):
        return
    bids = image.meta.bids
    sop = str(bids.get("SOPClassUID") or image.extras.get("dicom", {}).get("SOPClassUID") or "")
    burned = str(bids.get("BurnedInAnnotation", "")).upper() == "YES"
    risky = (image.meta.modality or "").upper() in BURNED_IN_MODALITIES
    if burned or risky or sop.startswith(SECONDARY_CAPTURE_PREFIX):
        why = "BurnedInAnnotation = YES" if burned else f"modality {image.meta.modality or sop}"
        raise LossyConversionError(
            f"{image.source}: may carry burned-in identifying text ({why})",
            hint="check the pixels, then pass -O allow_burned_in=1",
        )


def anonymize(image: Image, options: dict[str, str]) -> Image:
    """Return a de-identified copy of ``image`` (voxels and geometry untouched)."""
    opts, overrides = _options(dict(options))
    _refuse_burned_in(image, opts)
    key = load_key(opts)
    dates = str(opts.get("dates", "shift")).lower()
    if dates not in ("shift", "remove", "keep"):
        raise UsageError(f"dates={dates!r}", hint="use shift, remove or keep")
    keep_chars = _flag(opts, "patient_characteristics", "1")
    keep_device = _flag(opts, "device_identity", "0")
    keep_desc = _flag(opts, "descriptors", "remove")
    out = image.replace(extras={}, source=None)
    meta = out.meta
    patient = dict(image.meta.patient)
    anchor = str(patient.get("id") or patient.get("name") or "unknown patient")
    shift = date_shift(key, anchor)

    new_patient: dict[str, Any] = {"id": pseudonym(key, anchor), "name": ""}
    if keep_chars:
        new_patient.update({k: patient[k] for k in _CHARACTERISTICS if k in patient})
    meta.patient = new_patient

    study = dict(image.meta.study)
    new_study: dict[str, Any] = {}
    if study.get("uid"):
        new_study["uid"] = new_uid(key, str(study["uid"]))
    if study.get("date") and dates != "remove":
        shifted = study["date"] if dates == "keep" else shift_date(study["date"], shift)
        if shifted:
            new_study["date"] = shifted
    if study.get("time") and dates != "remove":
        shifted = study["time"] if dates == "keep" else shift_date(study["time"], shift)
        if shifted:
            new_study["time"] = shifted
    if keep_desc and study.get("description"):
        new_study["description"] = study["description"]
    meta.study = new_study

    bids: dict[str, Any] = {}
    for name, value in image.meta.bids.items():
        action = action_for(name, overrides)
        if action == "P":
            action = "K" if keep_chars else "X"
        elif action == "V":
            action = "K" if keep_device else "X"
        elif action == "C":
            action = "K" if keep_desc else "X"
        elif action == "S":
            action = {"shift": "S", "remove": "X", "keep": "K"}[dates]
        if action == "K":
            bids[name] = value
        elif action == "U" and value:
            bids[name] = new_uid(key, str(value))
        elif action == "S":
            shifted = shift_date(value, shift)
            if shifted is not None:
                bids[name] = shifted
        elif action in ("Z", "D"):
            bids[name] = ""
    used = [
        "Basic Profile",
        {"shift": "Retain Longitudinal Temporal Information with Modified Dates",
         "keep": "Retain Longitudinal Temporal Information with Full Dates",
         "remove": ""}[dates],
        "Retain Patient Characteristics" if keep_chars else "",
        "Retain Device Identity" if keep_device else "",
        "Clean Descriptors" if keep_desc else "",
    ]  # fmt: skip
    bids["PatientIdentityRemoved"] = "YES"
    bids["DeidentificationMethod"] = f"{METHOD}; options: " + ", ".join(u for u in used if u)
    meta.bids = bids
    if not keep_desc:
        meta.series_description = None
        meta.protocol_name = None
    meta.description = None
    out.notes.append("anonymized: identity removed, per-format headers (extras) dropped")
    return out
