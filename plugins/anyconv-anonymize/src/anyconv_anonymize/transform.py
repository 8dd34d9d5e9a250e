"""De-identify an image's metadata, whatever format it came from and goes to.

What it does (see docs/anonymize.md):

- the DICOM series header (``extras["dicom"]["header"]``, DICOM JSON) goes through PS3.15 Table
  E.1-1 attribute by attribute, nested sequences included, and is kept: a DICOM writer that
  carries it over writes de-identified instances;
- identity in ``meta.patient``/``meta.study`` and every BIDS key (``meta.bids``) follows the
  same table (keys are DICOM keywords; other keys go by their names); UIDs become keyed
  ``2.25`` UIDs and the patient a keyed pseudonym, the same across a batch and across runs
  that share the key; dates move by one keyed offset per patient;
- ``image.sources`` (slice-to-instance map) gets the same new UIDs; the original path and UIDs
  move into each entry's ``linkage`` dict (written only to a separate linkage table);
- every other format's header (``extras``) is dropped: NIfTI descrip/aux_file/extensions, NRRD
  key/values, MINC history and attributes, MetaImage keys may all carry identity;
- the source path is forgotten (it often holds a name), so output names come from the series;
- images likely to carry burned-in text are refused unless ``allow_burned_in=1``.
"""

from __future__ import annotations

import warnings
from typing import Any

from anyconv.errors import LossyConversionError, ReadError
from anyconv.model import Image
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from . import profile
from ._engine import Context, Deidentifier, add_needles
from .policy import Policy, new_uid, pseudonym, shift_date

_CHARACTERISTICS = ("sex", "age", "weight", "size")
#: Non-identifying facts about the DICOM series the reader records beside its header.
_DICOM_FACTS = ("files", "frame_type", "tilt_deg", "tilt_mm", "uneven_spacing")
_SOURCE_IDS = (("uid", "uid"), ("series_uid", "series_uid"), ("study_uid", "study_uid"))


def anonymize(image: Image, options: dict[str, str]) -> Image:
    """Return a de-identified copy of ``image`` (voxels and geometry untouched)."""
    policy = Policy.from_options(dict(options))
    header_json = (image.extras.get("dicom") or {}).get("header") or {}
    header = _from_json(header_json, image)
    refuse_burned_in(image, header, policy)
    engine = Deidentifier(policy)
    patient = dict(image.meta.patient)
    anchor = str(
        header.get("PatientID", "")
        or header.get("PatientName", "")
        or patient.get("id")
        or patient.get("name")
        or "unknown patient"
    )
    ctx = engine.context(header, anchor=anchor)
    for value, vr in (
        (patient.get("name"), "PN"),
        (patient.get("id"), "LO"),
        (patient.get("birth_date"), "DA"),
        (image.meta.study.get("date"), "DA"),
        (image.meta.study.get("time"), "TM"),
    ):
        if value:
            add_needles(ctx.needles, value, vr)
    if image.source:
        add_needles(ctx.needles, image.source, "LO")

    out = image.replace(extras={}, source=None)
    if header_json:
        engine.apply(header, ctx)
        dicom = image.extras.get("dicom") or {}
        facts = {k: dicom[k] for k in _DICOM_FACTS if k in dicom}
        out.extras["dicom"] = {"header": _to_json(header), **facts}
        if dicom.get("SeriesInstanceUID"):
            out.extras["dicom"]["SeriesInstanceUID"] = _uid(policy, dicom["SeriesInstanceUID"])
    out.sources = [_source(entry, policy) for entry in image.sources]
    _meta(out, image, policy, ctx, anchor)
    out.notes.append(
        "anonymized (PS3.15 Basic Profile): identity removed, DICOM header de-identified, "
        "other per-format headers dropped"
    )
    return out


def refuse_burned_in(image: Image, header: Dataset, policy: Policy) -> None:
    """Refuse pixels that may show identity, unless the user said they checked them."""
    if policy.allow_burned_in:
        return
    bids = image.meta.bids
    why = profile.burned_in_reason(
        header.get("BurnedInAnnotation") or bids.get("BurnedInAnnotation"),
        header.get("SOPClassUID") or bids.get("SOPClassUID"),
        image.meta.modality or header.get("Modality") or bids.get("Modality"),
    )
    if why:
        raise LossyConversionError(
            f"{image.source or 'input'}: may carry burned-in identifying text ({why})",
            hint="check the pixels, then pass -t anonymize:allow_burned_in=1",
        )


def _uid(policy: Policy, value: Any) -> Any:
    if policy.uids or not value:
        return value
    return new_uid(policy.key, str(value))


def _source(entry: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """New UIDs in the entry; the originals (and the path) in its ``linkage`` dict."""
    new = {k: v for k, v in entry.items() if k != "path"}
    linkage = {"path": entry["path"]} if "path" in entry else {}
    for key, _ in _SOURCE_IDS:
        if entry.get(key):
            linkage[key] = entry[key]
            new[key] = _uid(policy, entry[key])
    if linkage:
        new["linkage"] = linkage
    return new


def _meta(out: Image, image: Image, policy: Policy, ctx: Context, anchor: str) -> None:
    meta = out.meta
    patient = dict(image.meta.patient)
    new_patient: dict[str, Any] = {"id": pseudonym(policy.key, anchor), "name": ""}
    if policy.patient_characteristics:
        new_patient.update({k: patient[k] for k in _CHARACTERISTICS if k in patient})
    meta.patient = new_patient

    study = dict(image.meta.study)
    new_study: dict[str, Any] = {}
    if study.get("uid"):
        new_study["uid"] = _uid(policy, study["uid"])
    for field in ("date", "time"):
        if study.get(field) and policy.dates != "remove":
            value = study[field] if policy.dates == "keep" else shift_date(study[field], ctx.shift)
            if value:
                new_study[field] = value
    if policy.descriptors and study.get("description"):
        new_study["description"] = ctx.scrub(str(study["description"]))
    meta.study = new_study
    meta.bids = _bids(image.meta.bids, policy, ctx)
    if policy.descriptors:
        meta.series_description = _scrub_opt(ctx, image.meta.series_description)
        meta.protocol_name = _scrub_opt(ctx, image.meta.protocol_name)
    else:
        meta.series_description = None
        meta.protocol_name = None
    meta.description = None


def _scrub_opt(ctx: Context, value: str | None) -> str | None:
    return None if value is None else ctx.scrub(str(value))


def _bids(bids: dict[str, Any], policy: Policy, ctx: Context) -> dict[str, Any]:
    """Sidecar keys: DICOM keywords by Table E.1-1, others by name; kept text is scrubbed."""
    out: dict[str, Any] = {}
    for name, value in bids.items():
        action = _bids_action(name, policy)
        if action in ("K", "C"):
            out[name] = _scrub_tree(value, ctx)
        elif action == "U" and value:
            out[name] = (
                [_uid(policy, v) for v in value]
                if isinstance(value, list)
                else (_uid(policy, value))
            )
        elif action == "S":
            shifted = shift_date(value, ctx.shift) if not isinstance(value, list) else None
            if shifted is not None:
                out[name] = shifted
        # X, Z and D leave the key out: an empty or dummy sidecar value says nothing useful
    out["PatientIdentityRemoved"] = "YES"
    out["DeidentificationMethod"] = "; ".join(
        [profile.CID_7050["basic"][1]] + [profile.CID_7050[c][1] for c in policy.used_options()]
    )
    out["LongitudinalTemporalInformationModified"] = {
        "shift": "MODIFIED",
        "remove": "REMOVED",
        "keep": "UNMODIFIED",
    }[policy.dates]
    return out


def _bids_action(name: str, policy: Policy) -> str:
    """A sidecar key's action: recipe, then the table for DICOM keywords, else by its name."""
    if name in policy.actions:
        return policy.actions[name]
    tag = tag_for_keyword(name)
    if tag is None:
        action = profile.heuristic_action(name)
        if action == "S":
            return {"shift": "S", "keep": "K", "remove": "X"}[policy.dates]
        return "K" if action == "U" and policy.uids else action
    action = policy.table_action(tag, name)
    if action is not None:
        return action
    vr = dictionary_VR(tag)
    if vr == "PN":
        return "X"
    if vr in ("DA", "DT", "TM"):
        return {"shift": "S", "keep": "K", "remove": "X"}[policy.dates]
    if vr == "UI" and not policy.uids and not name.endswith("ClassUID"):
        return "U"
    return profile.heuristic_action(name) if profile.PERSONAL.search(name) else "K"


def _scrub_tree(value: Any, ctx: Context) -> Any:
    if isinstance(value, str):
        return ctx.scrub(value)
    if isinstance(value, list):
        return [_scrub_tree(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_tree(v, ctx) for k, v in value.items()}
    return value


def _from_json(header: dict[str, Any], image: Image) -> Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Dataset.from_json(header) if header else Dataset()
    except Exception as exc:
        raise ReadError(
            f"{image.source}: DICOM header unreadable for anonymization: {exc}"
        ) from exc


def _to_json(ds: Dataset) -> dict[str, Any]:
    """DICOM JSON of every attribute JSON can express (as the reader builds it)."""
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for elem in ds:
            try:
                out[f"{int(elem.tag):08X}"] = elem.to_json_dict(None, 1 << 20)
            except Exception:  # noqa: BLE001 - a value JSON cannot hold is not carried
                continue
    return out
