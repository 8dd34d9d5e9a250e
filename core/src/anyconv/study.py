"""Patient -> Study -> Series: what a folder holds, as a tree and as FHIR ImagingStudy.

Built from what readers already give, never from a format's own header: ``Image.sources``
(the slice-to-instance map: instance, series and study UIDs, files) and ``Image.meta``
(``patient``, ``study``, series number, description, modality). A reader whose images carry
no UIDs still gets a tree: each image is its own series under an unnamed study.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Image

#: FHIR: DICOM UIDs as identifiers, DICOM modality codes, SOP classes as URIs.
UID_SYSTEM = "urn:dicom:uid"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
URI_SYSTEM = "urn:ietf:rfc:3986"
SNOMED_SYSTEM = "http://snomed.info/sct"

#: Body Part Examined defined terms and their SNOMED CT concepts (DICOM PS3.16 Annex L).
#: The common ones only; an unlisted term becomes a Coding with a display and no code.
BODY_PARTS: dict[str, tuple[str, str]] = {
    "ABDOMEN": ("818981001", "Abdomen"),
    "ABDOMENPELVIS": ("818982008", "Abdomen and Pelvis"),
    "ANKLE": ("70258002", "Ankle joint"),
    "BLADDER": ("89837001", "Bladder"),
    "BRAIN": ("12738006", "Brain"),
    "BREAST": ("76752008", "Breast"),
    "CHEST": ("816094009", "Chest"),
    "CHESTABDOMEN": ("416550000", "Chest and Abdomen"),
    "CHESTABDPELVIS": ("416775004", "Chest, Abdomen and Pelvis"),
    "CSPINE": ("122494005", "Cervical spine"),
    "ELBOW": ("16953009", "Elbow joint"),
    "EXTREMITY": ("66019005", "Extremity"),
    "FEMUR": ("71341001", "Femur"),
    "FOOT": ("56459004", "Foot"),
    "FOREARM": ("14975008", "Forearm"),
    "HAND": ("85562004", "Hand"),
    "HEAD": ("69536005", "Head"),
    "HEADNECK": ("774007", "Head and Neck"),
    "HEART": ("80891009", "Heart"),
    "HIP": ("29836001", "Hip"),
    "KNEE": ("72696002", "Knee"),
    "LARYNX": ("4596009", "Larynx"),
    "LEG": ("30021000", "Lower leg"),
    "LSPINE": ("122496007", "Lumbar spine"),
    "MEDIASTINUM": ("72410000", "Mediastinum"),
    "NECK": ("45048000", "Neck"),
    "PANCREAS": ("15776009", "Pancreas"),
    "PELVIS": ("816092008", "Pelvis"),
    "PROSTATE": ("41216001", "Prostate"),
    "SACRUM": ("54735007", "Sacrum"),
    "SHOULDER": ("16982005", "Shoulder"),
    "SKULL": ("89546000", "Skull"),
    "SPINE": ("421060004", "Spine"),
    "THIGH": ("68367000", "Thigh"),
    "TSPINE": ("122495006", "Thoracic spine"),
    "WHOLEBODY": ("38266002", "Entire body"),
}

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_UID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


@dataclass
class Instance:
    """One source instance (file, or multi-frame object) that fed a series' images."""

    uid: str
    class_uid: str | None = None
    number: int | None = None
    path: str | None = None
    #: slices of the images that came from this instance (frames, mosaic tiles)
    slices: int = 0


@dataclass
class Series:
    """A series and the images (outputs) made from it."""

    key: str
    uid: str | None = None
    number: int | None = None
    description: str | None = None
    modality: str | None = None
    body_part: str | None = None
    instances: dict[str, Instance] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)
    images: list[int] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def instance_count(self) -> int | None:
        """Distinct instance UIDs; ``None`` when the reader gave no UIDs."""
        return len(self.instances) if self.instances else None

    @property
    def size(self) -> int:
        """Bytes on disk of the files the series' images were read from."""
        total = 0
        for f in self.files:
            path = Path(f)
            if path.is_file():
                total += path.stat().st_size
        return total


@dataclass
class Study:
    """A study: its identity fields from ``meta.study`` and its series."""

    key: str
    uid: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)


@dataclass
class Patient:
    """A patient: ``meta.patient`` and the studies."""

    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    studies: dict[str, Study] = field(default_factory=dict)


def _first(values: Sequence[Any]) -> Any:
    for v in values:
        if v:
            return v
    return None


def build_tree(images: Sequence[Image], outputs: Sequence[str] | None = None) -> list[Patient]:
    """Group images into patients, studies and series.

    Parameters
    ----------
    images
        What a reader returned for a file or folder.
    outputs
        The output file name of each image (same order), e.g. from
        ``pipeline.plan_outputs``; shown beside its series.
    """
    patients: dict[str, Patient] = {}
    for index, image in enumerate(images):
        meta = image.meta
        sources = image.sources or []
        pfields = {k: v for k, v in (meta.patient or {}).items() if v}
        pkey = "\x00".join(str(pfields.get(k, "")) for k in ("id", "name"))
        patient = patients.setdefault(pkey, Patient(pkey, pfields))
        study_uid = (meta.study or {}).get("uid") or _first([s.get("study_uid") for s in sources])
        skey = study_uid or ""
        study = patient.studies.get(skey)
        if study is None:
            sfields = {k: v for k, v in (meta.study or {}).items() if v and k != "uid"}
            study = patient.studies[skey] = Study(skey, study_uid, sfields)
        series_uid = _most_common([s.get("series_uid") for s in sources if s.get("series_uid")])
        key = series_uid or f"#{index}"
        series = study.series.get(key)
        if series is None:
            series = study.series[key] = Series(
                key,
                series_uid,
                meta.series_number,
                meta.series_description,
                meta.modality,
                (meta.bids or {}).get("BodyPart"),
            )
        series.images.append(index)
        if outputs is not None:
            series.outputs.append(str(outputs[index]))
        for entry in sources:
            path = entry.get("path")
            if path:
                series.files.add(str(path))
            uid = entry.get("uid")
            if not uid:
                continue
            inst = series.instances.get(uid)
            if inst is None:
                number = entry.get("number")
                inst = series.instances[uid] = Instance(
                    str(uid),
                    entry.get("class_uid"),
                    int(number) if isinstance(number, int) else None,
                    str(path) if path else None,
                )
            inst.slices += 1
        if not sources and image.source and Path(image.source).is_file():
            series.files.add(image.source)
    return sorted(
        patients.values(),
        key=lambda p: (str(p.fields.get("name", "")), str(p.fields.get("id", ""))),
    )


def _most_common(values: list[str]) -> str | None:
    if not values:
        return None
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=lambda v: counts[v])


def _sorted_series(study: Study) -> list[Series]:
    return sorted(
        study.series.values(),
        key=lambda s: (s.number is None, s.number or 0, s.description or "", s.key),
    )


def _sorted_studies(patient: Patient) -> list[Study]:
    return sorted(
        patient.studies.values(),
        key=lambda s: (str(s.fields.get("date", "")), str(s.fields.get("time", "")), s.key),
    )


def tree_dict(
    patients: list[Patient], image_summaries: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The tree as nested JSON-ready dicts (``info --json`` on a folder).

    ``image_summaries`` (one per image) are nested under their series as ``images``.
    """
    out = []
    for patient in patients:
        studies = []
        for study in _sorted_studies(patient):
            series_list = []
            for s in _sorted_series(study):
                entry: dict[str, Any] = {
                    "uid": s.uid,
                    "number": s.number,
                    "description": s.description,
                    "modality": s.modality,
                    "body_part": s.body_part,
                    "instances": s.instance_count,
                    "files": len(s.files),
                    "size": s.size,
                    "outputs": list(s.outputs),
                }
                if image_summaries is not None:
                    entry["images"] = [image_summaries[i] for i in s.images]
                series_list.append(entry)
            studies.append(
                {
                    "uid": study.uid,
                    **study.fields,
                    "series_count": len(series_list),
                    "instances": sum(s["instances"] or 0 for s in series_list),
                    "series": series_list,
                }
            )
        out.append({**patient.fields, "studies": studies})
    return {"patients": out}


def _date(value: Any) -> str | None:
    text = str(value or "").strip()
    if re.fullmatch(r"\d{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None


def _time(value: Any) -> str | None:
    text = str(value or "").strip()
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?", text)
    if not m:
        return None
    hh, mm, ss, frac = m.group(1), m.group(2) or "00", m.group(3) or "00", m.group(4) or ""
    return f"{hh}:{mm}:{ss}{frac}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def tree_lines(patients: list[Patient]) -> list[str]:
    """The tree as text: one block per patient, study and a table of series."""
    lines: list[str] = []
    for patient in patients:
        f = patient.fields
        name = str(f.get("name") or "").strip("^ ") or f.get("id") or "(no patient identity)"
        extra = "  ".join(
            f"{label} {_date(f[key]) or f[key] if key == 'birth_date' else f[key]}"
            for key, label in (("id", "id"), ("sex", "sex"), ("birth_date", "born"))
            if f.get(key)
        )
        lines.append(f"Patient {name}" + (f"  {extra}" if extra else ""))
        for study in _sorted_studies(patient):
            sf = study.fields
            when = " ".join(x for x in (_date(sf.get("date")), _time(sf.get("time"))) if x)
            head = "  Study " + (when or "(no date)")
            for key, label in (("accession_number", "accession"), ("id", "id")):
                if sf.get(key):
                    head += f"  {label} {sf[key]}"
            if sf.get("description"):
                head += f"  {sf['description']!r}"
            lines.append(head)
            if study.uid:
                lines.append(f"    uid {study.uid}")
            lines.append(
                f"    {'series':>6}  {'modality':<8} {'instances':>9} {'size':>10}  "
                "description -> output"
            )
            for s in _sorted_series(study):
                number = "" if s.number is None else str(s.number)
                count = "" if s.instance_count is None else str(s.instance_count)
                target = ", ".join(Path(o).name for o in s.outputs)
                lines.append(
                    f"    {number:>6}  {s.modality or '':<8} {count:>9} {_size(s.size):>10}  "
                    f"{s.description or ''}" + (f" -> {target}" if target else "")
                )
    return lines


# -- FHIR R4 ImagingStudy ---------------------------------------------------------------------
def _body_site(term: str | None) -> dict[str, str] | None:
    if not term:
        return None
    key = re.sub(r"[^A-Z]", "", term.upper())
    if key in BODY_PARTS:
        code, display = BODY_PARTS[key]
        return {"system": SNOMED_SYSTEM, "code": code, "display": display}
    return {"display": term.strip()}


def _started(fields: dict[str, Any]) -> str | None:
    """FHIR dateTime: a time needs a zone, so without one only the date is given."""
    day = _date(fields.get("date"))
    if day is None:
        return None
    clock = _time(fields.get("time"))
    zone = str(fields.get("timezone") or "").strip()
    m = re.fullmatch(r"([+-])(\d{2})(\d{2})", zone)
    if clock is None or m is None:
        return day
    return f"{day}T{clock}{m.group(1)}{m.group(2)}:{m.group(3)}"


def _subject(fields: dict[str, Any]) -> dict[str, Any]:
    """A placeholder Patient reference: the patient ID as id when FHIR allows, else a UUID."""
    pid = str(fields.get("id") or "").strip()
    name = str(fields.get("name") or "").replace("^", " ").strip()
    if pid and _FHIR_ID.match(pid):
        ref = pid
    else:
        ref = str(uuid.uuid5(uuid.NAMESPACE_OID, pid or name or "unknown"))
    subject: dict[str, Any] = {"reference": f"Patient/{ref}", "type": "Patient"}
    if pid:
        subject["identifier"] = {"value": pid}
    if name:
        subject["display"] = name
    return subject


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def imaging_studies(patients: list[Patient]) -> list[dict[str, Any]]:
    """One FHIR R4 ImagingStudy per study that has a Study Instance UID.

    Series without a Series Instance UID and instances without a SOP Class are left out:
    FHIR requires both. Modality falls back to ``OT`` (other), as DICOM does.
    """
    resources = []
    for patient in patients:
        for study in _sorted_studies(patient):
            if not study.uid or not _UID.match(study.uid):
                continue
            series_out = []
            for s in _sorted_series(study):
                if not s.uid or not _UID.match(s.uid):
                    continue
                entry: dict[str, Any] = {"uid": s.uid}
                if s.number is not None and s.number >= 0:
                    entry["number"] = int(s.number)
                entry["modality"] = {"system": DCM_SYSTEM, "code": _text(s.modality) or "OT"}
                if _text(s.description):
                    entry["description"] = _text(s.description)
                instances = [
                    i
                    for i in sorted(
                        s.instances.values(), key=lambda i: (i.number is None, i.number, i.uid)
                    )
                    if i.class_uid and _UID.match(i.uid) and _UID.match(i.class_uid)
                ]
                entry["numberOfInstances"] = len(instances)
                site = _body_site(s.body_part)
                if site is not None:
                    entry["bodySite"] = site
                if instances:
                    entry["instance"] = [
                        {
                            "uid": i.uid,
                            "sopClass": {"system": URI_SYSTEM, "code": f"urn:oid:{i.class_uid}"},
                            **(
                                {"number": i.number}
                                if i.number is not None and i.number >= 0
                                else {}
                            ),
                        }
                        for i in instances
                    ]
                series_out.append(entry)
            resource: dict[str, Any] = {"resourceType": "ImagingStudy"}
            if _FHIR_ID.match(study.uid):
                resource["id"] = study.uid
            resource["identifier"] = [
                {"system": UID_SYSTEM, "value": f"urn:oid:{study.uid}"},
            ]
            accession = _text(study.fields.get("accession_number"))
            if accession:
                resource["identifier"].append(
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                    "code": "ACSN",
                                }
                            ]
                        },
                        "value": accession,
                    }
                )
            resource["status"] = "available"
            modalities = sorted({e["modality"]["code"] for e in series_out})
            if modalities:
                resource["modality"] = [{"system": DCM_SYSTEM, "code": m} for m in modalities]
            resource["subject"] = _subject(patient.fields)
            started = _started(study.fields)
            if started:
                resource["started"] = started
            resource["numberOfSeries"] = len(series_out)
            resource["numberOfInstances"] = sum(e["numberOfInstances"] for e in series_out)
            if _text(study.fields.get("description")):
                resource["description"] = _text(study.fields.get("description"))
            if series_out:
                resource["series"] = series_out
            resources.append(resource)
    return resources
