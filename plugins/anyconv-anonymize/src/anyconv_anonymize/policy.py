"""What to do: options, recipe file, the secret key, and the keyed replacements.

One ``Policy`` drives the transform (``--anonymize``) and the file command (``anyconv
anonymize``), so both give the same new UIDs, pseudonyms and date shifts for the same key.
Standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyconv.errors import UsageError

from . import profile
from .options import OPTIONS

KEY_ENV = "ANYCONV_ANON_KEY"
KEY_FILE = Path("~/.config/anyconv/anonymize.key")
_MAX_SHIFT_DAYS = 3650

_TRUE = ("1", "true", "yes", "keep", "on")
_FALSE = ("0", "false", "no", "remove", "off", "")
_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


def load_key(given: str | None = None) -> bytes:
    """The secret: ``given``, ``$ANYCONV_ANON_KEY``, else a per-user key file made on first use.

    A shared key keeps pseudonyms, UIDs and date shifts the same across a batch's workers and
    across runs; keep the file private (it is created mode 0600).
    """
    given = given or os.environ.get(KEY_ENV)
    if given:
        return given.encode()
    path = KEY_FILE.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole under a temporary name, then linked in: parallel workers that start
        # together all read the one complete key
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def _digest(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()


def new_uid(key: bytes, uid: str) -> str:
    """A UID under the UUID-derived root 2.25 (PS3.5 B.2), the same for the same input."""
    return "2.25." + str(int.from_bytes(_digest(key, "uid", uid.strip())[:16], "big"))


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


_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y.%m.%d")
_TIME_FORMATS = ("%H%M%S.%f", "%H%M%S", "%H%M", "%H", "%H:%M:%S.%f", "%H:%M:%S", "%H:%M")
_DATETIME_FORMATS = (
    "%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d%H", "%Y%m%d", "%Y%m", "%Y",
)  # fmt: skip


def _fraction_digits(text: str) -> int:
    return len(text.rsplit(".", 1)[1]) if "." in text else 0


def shift_date(value: Any, shift: dt.timedelta, vr: str | None = None) -> Any:
    """Shift a date (DA), time (TM) or date-time (DT); unparseable or out of range: ``None``.

    Without a VR (sidecar values) the form decides: ISO date-times, ``HH:MM:SS`` times, eight
    digits a date, other digits a time. Times of day wrap around midnight (their date is not
    known); a DICOM date-time's time-zone suffix and the number of fraction digits are kept.
    """
    text = str(value).strip()
    if vr is None:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", text):
            vr = "ISO"
        elif ":" in text:
            vr = "TM"
        else:
            vr = "DA" if re.fullmatch(r"\d{8}", text) else "TM" if len(text) <= 13 else "DT"
    try:
        return _shift_date(text, shift, vr)
    except (OverflowError, ValueError):
        return None


def _shift_date(text: str, shift: dt.timedelta, vr: str) -> str | None:
    if vr == "ISO":
        if len(text) == 10:
            return (dt.datetime.strptime(text, "%Y-%m-%d") + shift).strftime("%Y-%m-%d")
        return (dt.datetime.fromisoformat(text) + shift).isoformat()
    if vr == "DA":
        for fmt in _DATE_FORMATS:
            with contextlib.suppress(ValueError):
                return _year4((dt.datetime.strptime(text, fmt) + shift).strftime(fmt))
        return None
    if vr == "TM":
        for fmt in _TIME_FORMATS:
            try:
                parsed = dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
            moment = dt.datetime(2000, 1, 1) + (parsed - dt.datetime(1900, 1, 1)) + shift
            return _keep_fraction(moment.strftime(fmt), text)
        return None
    zone = ""
    match = re.match(r"^(\d{4,14}(?:\.\d{1,6})?)([+-]\d{4})$", text)
    if match:
        text, zone = match.groups()
    for fmt in _DATETIME_FORMATS:
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return _year4(_keep_fraction((parsed + shift).strftime(fmt), text)) + zone
    return None


def _year4(text: str) -> str:
    """Some C libraries print years below 1000 without leading zeros: refuse those."""
    if not re.match(r"^\d{4}", text):
        raise ValueError(text)
    return text


def _keep_fraction(shifted: str, original: str) -> str:
    """Strftime's %f gives 6 digits; keep as many as the original had."""
    digits = _fraction_digits(original)
    if "." not in shifted:
        return shifted
    head, frac = shifted.rsplit(".", 1)
    return f"{head}.{frac[:digits]}" if digits else head


def shift_date_time_pair(date: str, time: str, shift: dt.timedelta) -> tuple[str, str] | None:
    """Shift a DA and its TM together, so that the pair moves as one instant."""
    date, time = date.strip(), time.strip()
    try:
        day = dt.datetime.strptime(date, "%Y%m%d")
    except ValueError:
        return None
    for fmt in ("%H%M%S.%f", "%H%M%S", "%H%M", "%H"):
        try:
            clock = dt.datetime.strptime(time, fmt)
        except ValueError:
            continue
        try:
            moment = day + (clock - dt.datetime(1900, 1, 1)) + shift
        except OverflowError:
            return None
        if moment.year < 1000:
            return None
        return moment.strftime("%Y%m%d"), _keep_fraction(moment.strftime(fmt), time)
    return None


def _flag(value: Any, name: str) -> bool:
    text = str(value).strip().lower()
    if isinstance(value, bool):
        return value
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"anonymize option {name}={value!r}", hint="use 1/0, yes/no, keep/remove")


def normalize_key(key: str) -> str:
    """A recipe key as looked up: ``GGGGEEEE`` for a tag in any spelling, else as given."""
    match = _TAG.match(key.strip())
    return (match.group(1) + match.group(2)).upper() if match else key.strip()


@dataclass
class Policy:
    """The effective options, per-attribute overrides and safe private list."""

    dates: str = "shift"
    patient_characteristics: bool = True
    device_identity: bool = False
    institution_identity: bool = False
    uids: bool = False
    safe_private: bool = True
    descriptors: bool = False
    structured_content: bool = False
    graphics: bool = False
    allow_burned_in: bool = False
    key: bytes = b""
    actions: dict[str, str] = field(default_factory=dict)
    private: dict[str, tuple[int, ...] | None] = field(
        default_factory=lambda: dict(profile.SAFE_PRIVATE)
    )

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, need_key: bool = True) -> Policy:
        """Options from a recipe file (``recipe=``) and then ``options`` over it."""
        merged: dict[str, Any] = {}
        actions: dict[str, str] = {}
        private = dict(profile.SAFE_PRIVATE)
        recipe = options.get("recipe")
        if recipe:
            data = read_recipe(Path(str(recipe)))
            merged.update(data.get("options", {}))
            for k, v in data.get("actions", {}).items():
                actions[normalize_key(str(k))] = str(v).strip().upper()
            for creator, elements in data.get("safe_private", {}).items():
                private[str(creator)] = _private_elements(creator, elements)
        merged.update({k: v for k, v in options.items() if k != "recipe" and v is not None})
        unknown = sorted(set(merged) - set(OPTIONS) - {"key"})
        if unknown:
            raise UsageError(
                f"unknown anonymize options {unknown}", hint="known: " + ", ".join(OPTIONS)
            )
        bad = {k: v for k, v in actions.items() if v not in profile.ACTIONS}
        if bad:
            raise UsageError(
                f"unknown anonymization actions {bad}", hint="use X, Z, D, K, U, C or S"
            )
        dates = str(merged.get("dates", "shift")).strip().lower()
        if dates not in ("shift", "remove", "keep"):
            raise UsageError(f"dates={dates!r}", hint="use shift, remove or keep")
        flags = {
            name: _flag(merged.get(name, OPTIONS[name][0]), name)
            for name in OPTIONS
            if name != "dates"
        }
        key = load_key(str(merged["key"]) if merged.get("key") else None) if need_key else b""
        return cls(dates=dates, key=key, actions=actions, private=private, **flags)

    def enabled(self) -> frozenset[str]:
        """The Table E.1-1 option columns in force."""
        on = {
            "rtn_safe_private": self.safe_private,
            "rtn_uids": self.uids,
            "rtn_device": self.device_identity,
            "rtn_institution": self.institution_identity,
            "rtn_patient_chars": self.patient_characteristics,
            "rtn_long_full_dates": self.dates == "keep",
            "rtn_long_modified_dates": self.dates == "shift",
            "clean_desc": self.descriptors,
            "clean_struct": self.structured_content,
            "clean_graph": self.graphics,
        }
        return frozenset(k for k, v in on.items() if v)

    def used_options(self) -> list[str]:
        """Option columns in force, in CID 7050 order (for DeidentificationMethodCodeSequence)."""
        enabled = self.enabled()
        return [c for c in profile.CID_7050 if c in enabled]

    def table_action(self, tag: int, keyword: str = "") -> str | None:
        """The recipe's or the table's action for a public tag; ``None`` if neither lists it."""
        row = profile.row_for(tag)
        for name in (f"{tag:08X}", keyword, row.tag if row else ""):
            if name and name in self.actions:
                return self.actions[name]
        return profile.row_action(row, self.enabled()) if row else None

    def private_action(self, creator: str, tag: int) -> str:
        """``C`` for a safe-listed private attribute under *Retain Safe Private*, else ``X``.

        The recipe may name ``"GGGG,CREATOR,EE"`` (hex) in ``[actions]``, or ``private``
        for every private attribute not safe-listed.
        """
        specific = f"{tag >> 16:04X},{creator.strip()},{tag & 0xFF:02X}"
        if specific in self.actions:
            return self.actions[specific]
        allowed = self.private.get(creator.strip(), ()) if self.safe_private else ()
        if allowed is None or (allowed and (tag & 0xFF) in allowed):
            return "C"
        return self.actions.get("private", "X")

    def to_toml(self) -> str:
        """The effective recipe: options, the resolved action of every table row, safe list."""
        lines = [
            "# anyconv anonymize: effective recipe (DICOM PS3.15 Annex E, Table E.1-1)",
            "# Actions: X remove, Z empty, D dummy, K keep, U new keyed UID, C keep and scrub,",
            "# S shift date/time (the Modified Dates option's way of cleaning).",
            "# The key is never printed: give it with key=..., $ANYCONV_ANON_KEY or the key file.",
            "",
            "[options]",
        ]
        for name in OPTIONS:
            value = self.dates if name == "dates" else getattr(self, name)
            if name in ("descriptors", "structured_content", "graphics"):
                value = "keep" if value else "remove"
            elif isinstance(value, bool):
                value = int(value)
            lines.append(f"{name} = {_toml_value(value)}  # {OPTIONS[name][1]}")
        lines += ["", "[actions]"]
        names = keywords_of_table()
        enabled = self.enabled()
        done = set()
        for tag, row in profile.table().items():
            name = names.get(tag, tag)
            action = self.actions.get(tag) or self.actions.get(name)
            action = action or profile.row_action(row, enabled)
            if row.tag == "private":
                action = self.actions.get("private", "X")
                name = "private"
            lines.append(f"{_toml_key(name)} = {_toml_value(action)}  # {row.basic}: {row.name}")
            done |= {tag, name}
        extra = [(k, v) for k, v in self.actions.items() if k not in done]
        for k, v in extra:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}  # recipe")
        lines += ["", "[safe_private]  # creator = element offsets (hex), or '*' for the block"]
        for creator, elements in self.private.items():
            value = "*" if elements is None else [f"{e:02X}" for e in elements]
            lines.append(f"{_toml_key(creator)} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def keywords_of_table() -> dict[str, str]:
    """``GGGGEEEE`` -> DICOM keyword for the table rows pydicom knows (empty without it)."""
    try:
        from pydicom.datadict import keyword_for_tag
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return {}
    out = {}
    for tag in profile.table():
        if "x" in tag or tag == "private":
            continue
        keyword = keyword_for_tag(int(tag, 16))
        if keyword:
            out[tag] = keyword
    return out


def _private_elements(creator: str, value: Any) -> tuple[int, ...] | None:
    if value == "*":
        return None
    try:
        return tuple(int(str(v), 16) & 0xFF for v in value)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"safe_private {creator!r}: {value!r}", hint="a list of hex offsets or '*'"
        ) from exc


def read_recipe(path: Path) -> dict[str, Any]:
    """Parse a recipe file; a bad one is a usage error naming it."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the anonymization recipe: {exc}") from exc


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
