"""PS3.15 Table E.1-1 applied to a pydicom data set, every attribute, nested sequences too.

Used by the ``anonymize`` transform (on the series header carried as DICOM JSON) and by the
``anyconv anonymize`` command (on whole files). Pixel data is never touched.

Rules beyond the table (the table lists the standard attributes known to carry identity):

- private attributes are removed unless *Retain Safe Private* is on and their creator and
  element are in the safe list; those kept are scrubbed (``C``);
- curves (50xx groups) go; overlays (60xx) go whole with their data and comments unless
  *Clean Graphics*; group lengths go;
- a standard attribute the table does not list is kept, except as a safety net: person names
  are emptied, dates and times follow the date option, and UIDs that are not registered DICOM
  UIDs (class, transfer syntax ...) are replaced;
- inside a sequence the table says ``D`` for (content, verifying observer ...), free text and
  names are replaced by dummies too.

*Scrubbing* collects every value the profile removes or replaces (names and their parts, IDs,
dates in several spellings, addresses ...) before anything changes, and blanks each occurrence
out (same length, ``X``) in what is kept but may repeat them: cleaned descriptors, safe private
text and binary blobs such as Siemens CSA headers (same length keeps their layout readable).
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from . import profile
from .policy import Policy, date_shift, new_uid, pseudonym, shift_date, shift_date_time_pair

METHOD = "anyconv: PS3.15 Annex E Basic Profile"
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "AE", "CS", "UR"})
_FREE_TEXT = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_BYTES_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_SCRUBBED_VRS = _TEXT_VRS | _DATE_VRS | frozenset({"OB", "OW", "UN", "UT"})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})
_DUMMY_TEXT = {
    "PN": "ANONYMIZED^",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "CS": "ANONYMIZED",
    "AE": "ANONYMIZED",
}
_PER_FRAME = 0x52009230
_NEEDLE_MIN = 4


@dataclass
class Context:
    """Per-patient state: the key, the date shift, and what must not appear anywhere."""

    policy: Policy
    shift: dt.timedelta
    anchor: str
    needles: set[str] = field(default_factory=set)
    _text: re.Pattern[str] | None = None
    _bytes: re.Pattern[bytes] | None = None

    def text_pattern(self) -> re.Pattern[str] | None:
        """One case-insensitive alternation of every needle, longest first."""
        if self._text is None and self.needles:
            ordered = sorted(self.needles, key=len, reverse=True)
            self._text = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)
        return self._text

    def bytes_pattern(self) -> re.Pattern[bytes] | None:
        """The same for binary values (Latin-1 bytes)."""
        if self._bytes is None and self.needles:
            ordered = sorted(self.needles, key=len, reverse=True)
            encoded = [n.encode("latin-1", "ignore") for n in ordered]
            self._bytes = re.compile(b"|".join(map(re.escape, encoded)), re.IGNORECASE)
        return self._bytes

    def scrub(self, value: Any) -> Any:
        """Blank every needle out of a string or bytes value (same length)."""
        if isinstance(value, str):
            pattern = self.text_pattern()
            return pattern.sub(lambda m: "X" * len(m.group()), value) if pattern else value
        if isinstance(value, (bytes, bytearray)):
            bpattern = self.bytes_pattern()
            if bpattern is None:
                return value
            return bpattern.sub(lambda m: b"X" * len(m.group()), bytes(value))
        return value


def add_needles(needles: set[str], value: Any, vr: str) -> None:
    """Identifying strings a value holds, in the spellings other places may use."""
    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    for item in values:
        if item is None or isinstance(item, (bytes, bytearray, Dataset)):
            continue
        text = str(item).strip()
        if not text:
            continue
        parts = {text}
        if vr == "PN" or "^" in text:
            parts |= {p.strip() for p in re.split(r"[\^=]", text)}
            parts.add(" ".join(p for p in re.split(r"[\^=]", text) if p).strip())
        if vr == "DA" and re.fullmatch(r"\d{8}", text):
            parts |= {f"{text[:4]}-{text[4:6]}-{text[6:]}", f"{text[6:]}.{text[4:6]}.{text[:4]}"}
        if vr == "TM" and re.fullmatch(r"\d{6}(\.\d+)?", text):
            parts |= {f"{text[:2]}:{text[2:4]}:{text[4:6]}"}
        if vr == "DT" and re.fullmatch(r"\d{8,14}(\.\d+)?([+-]\d{4})?", text):
            parts |= {text[:8], f"{text[:4]}-{text[4:6]}-{text[6:8]}"}
        for part in parts:
            if _is_needle(part):
                needles.add(part)


def _is_needle(text: str) -> bool:
    """Long enough not to blank out ordinary technical values (numbers, short codes)."""
    if any(c.isalpha() for c in text):
        return len(text) >= _NEEDLE_MIN and text.upper() not in _DUMMY_TEXT.values()
    return len(text) >= 8


class Deidentifier:
    """Applies one ``Policy`` to data sets; remembers per-tag decisions for speed."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._actions: dict[int, str | None] = {}

    # -- context --------------------------------------------------------------------------
    def context(self, ds: Dataset, anchor: str | None = None) -> Context:
        """The patient's context: date shift from the patient ID, needles from the data set."""
        if anchor is None:
            anchor = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "unknown patient")
        ctx = Context(self.policy, date_shift(self.policy.key, anchor), anchor)
        self.collect(ds, ctx.needles)
        return ctx

    def collect(self, ds: Dataset, needles: set[str], depth: int = 0) -> None:
        """Every value this profile removes or replaces (private ones with letters only)."""
        for elem in _elements(ds):
            tag = int(elem.tag)
            if tag == _PER_FRAME or (elem.tag.is_private and elem.tag.element < 0x100):
                continue
            if elem.VR == "SQ":
                for item in elem.value or ():
                    self.collect(item, needles, depth + 1)
                continue
            if elem.tag.is_private:
                if self._private_action(ds, elem) != "C" and elem.VR in _TEXT_VRS:
                    add_needles(needles, elem.value, elem.VR)
                continue
            action = self.action(elem)
            if elem.VR == "UI" and action in ("U", "D"):
                add_needles(needles, elem.value, "UI")  # old UIDs hidden in vendor text
                continue
            if action in ("K", "C") or elem.VR in ("CS", "AS", "UI") or elem.VR in _NUMERIC_VRS:
                continue
            if elem.VR in _TEXT_VRS or elem.VR in _DATE_VRS:
                add_needles(needles, elem.value, elem.VR)

    # -- actions --------------------------------------------------------------------------
    def action(self, elem: DataElement, strict: bool = False) -> str:
        """The action for a public attribute: recipe, table, else the safety net."""
        tag = int(elem.tag)
        if tag not in self._actions:
            self._actions[tag] = self.policy.table_action(tag, elem.keyword)
        found = self._actions[tag]
        if found is not None:
            return found
        return self._default(elem, strict)

    def _default(self, elem: DataElement, strict: bool) -> str:
        vr = elem.VR
        if elem.tag.element == 0 and elem.tag.group != 0x0002:
            return "X"  # group length
        if vr == "PN":
            return "D" if strict else "Z"
        if vr in _DATE_VRS:
            return {"shift": "S", "keep": "K", "remove": "D"}[self.policy.dates]
        if vr == "UI":
            return "K" if self.policy.uids or _registered(elem) else "U"
        if strict and vr in _FREE_TEXT:
            return "D"
        if elem.tag.group & 0xFF01 == 0x6000:
            return "K" if self.policy.graphics else "X"  # the rest of an overlay goes with it
        return "K"

    def _private_action(self, ds: Dataset, elem: DataElement) -> str:
        block = (elem.tag.element >> 8) & 0xFF
        creator_elem = ds.get((elem.tag.group, block))
        creator = str(creator_elem.value).strip() if creator_elem is not None else ""
        return self.policy.private_action(creator, int(elem.tag))

    # -- applying ---------------------------------------------------------------------------
    def apply(self, ds: Dataset, ctx: Context, *, top: bool = True) -> Dataset:
        """De-identify ``ds`` in place (and return it); ``top`` adds the de-identification marks."""
        self._dataset(ds, ctx, mode="normal")
        if top:
            self._mark(ds, ctx)
        return ds

    def _dataset(self, ds: Dataset, ctx: Context, mode: str) -> None:
        strict = mode == "strict"
        shifted_pairs: set[int] = set()
        for elem in list(_elements(ds)):
            tag = elem.tag
            if tag.is_private:
                if tag.element < 0x100:
                    continue  # creators: kept while their block has something left
                action = self._private_action(ds, elem)
            else:
                action = self.action(elem, strict)
                if mode == "scrub" and action == "K":
                    action = "C"
            if action == "S" and int(tag) in shifted_pairs:
                continue
            self._apply(ds, elem, action, ctx, mode, shifted_pairs)
        _drop_empty_private_blocks(ds)

    def _apply(
        self,
        ds: Dataset,
        elem: DataElement,
        action: str,
        ctx: Context,
        mode: str,
        shifted_pairs: set[int],
    ) -> None:
        tag = elem.tag
        if action == "X":
            del ds[tag]
        elif elem.VR == "SQ":
            if action == "Z":
                elem.value = Sequence()
            else:
                sub = {"D": "strict", "C": "scrub"}.get(action, mode)
                for item in elem.value or ():
                    self._dataset(item, ctx, sub)
        elif action == "Z":
            elem.value = _empty(elem.VR)
        elif action == "D":
            elem.value = _dummy(elem, ctx)
        elif action == "U":
            elem.value = _map_values(elem.value, lambda v: new_uid(ctx.policy.key, v))
        elif action == "S":
            self._shift(ds, elem, ctx, shifted_pairs)
        elif action == "C" and elem.VR in _SCRUBBED_VRS:
            elem.value = _map_values(elem.value, ctx.scrub)
        # K: kept as is

    def _shift(self, ds: Dataset, elem: DataElement, ctx: Context, done: set[int]) -> None:
        """Shift a date, time or date-time; a Date with its sibling Time moves as one instant."""
        keyword = elem.keyword or ""
        if elem.VR == "DA" and keyword.endswith("Date"):
            sibling = keyword[:-4] + "Time"
            time_elem = ds.data_element(sibling) if sibling in ds else None
            if time_elem is not None and time_elem.VR == "TM" and time_elem.value:
                pair = shift_date_time_pair(str(elem.value), str(time_elem.value), ctx.shift)
                if pair is not None:
                    elem.value, time_elem.value = pair
                    done.add(int(time_elem.tag))
                    return
        if elem.VR not in _DATE_VRS:
            elem.value = _empty(elem.VR)
            return
        elem.value = _map_values(
            elem.value,
            lambda v: shift_date(v, ctx.shift, elem.VR) or _DUMMY_TEXT.get(elem.VR, ""),
        )

    def _mark(self, ds: Dataset, ctx: Context) -> None:
        """PatientIdentityRemoved, the method (text and CID 7050 codes), pseudonyms."""
        policy = ctx.policy
        alias = pseudonym(policy.key, ctx.anchor)
        if policy.table_action(0x00100020, "PatientID") == "Z":
            ds.PatientID = alias
        if policy.table_action(0x00100010, "PatientName") == "Z":
            ds.PatientName = alias.replace("-", "^", 1)  # family^given: ANON^<hex>
        if ds.get("StudyID") == "" and ds.get("StudyInstanceUID"):
            # Z allows a dummy: a short keyed one keeps studies told apart (DICOMDIR needs it)
            ds.StudyID = new_uid(policy.key, str(ds.StudyInstanceUID))[-8:]
        ds.PatientIdentityRemoved = "YES"
        names = [profile.CID_7050["basic"][1]] + [
            profile.CID_7050[c][1].removesuffix(" Option") for c in policy.used_options()
        ]
        ds.DeidentificationMethod = [METHOD, *[n[:64] for n in names[1:]]]
        items = []
        for column in ["basic", *policy.used_options()]:
            code, meaning = profile.CID_7050[column]
            item = Dataset()
            item.CodeValue = code
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = {
            "shift": "MODIFIED",
            "remove": "REMOVED",
            "keep": "UNMODIFIED",
        }[policy.dates]


def _elements(ds: Dataset) -> Iterable[DataElement]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield from ds


def _registered(elem: DataElement) -> bool:
    keyword = elem.keyword or ""
    if keyword.endswith(("ClassUID", "TransferSyntaxUID", "SyntaxUID")):
        return True
    values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
    return all(str(v) in UID_dictionary for v in values if v)


def _map_values(value: Any, fn: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple, MultiValue)):
        return [fn(str(v)) if not isinstance(v, (bytes, bytearray)) else fn(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return fn(value)
    return fn(str(value))


def _empty(vr: str) -> Any:
    if vr in _BYTES_VRS:
        return b""
    if vr in _NUMERIC_VRS or vr in ("DS", "IS"):
        return None
    return ""


def _dummy(elem: DataElement, ctx: Context) -> Any:
    vr = elem.VR
    if vr == "UI":
        return _map_values(elem.value, lambda v: new_uid(ctx.policy.key, v))
    if vr in _DUMMY_TEXT:
        return _DUMMY_TEXT[vr]
    if vr in _NUMERIC_VRS:
        return 0
    if vr in _BYTES_VRS:
        return b""
    if vr == "SH":
        return "ANONYMIZED"
    return "ANONYMIZED" if vr in _FREE_TEXT or vr in _TEXT_VRS else _empty(vr)


def _drop_empty_private_blocks(ds: Dataset) -> None:
    """Private creators whose blocks are now empty go too."""
    creators = [e.tag for e in _elements(ds) if e.tag.is_private and 0x10 <= e.tag.element < 0x100]
    if not creators:
        return
    used = {(e.tag.group, e.tag.element >> 8) for e in _elements(ds) if e.tag.element >= 0x1000}
    for tag in creators:
        if tag.group % 2 and (tag.group, tag.element) not in used:
            del ds[tag]
