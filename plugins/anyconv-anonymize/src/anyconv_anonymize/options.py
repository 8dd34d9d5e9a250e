"""The anonymizer's options and defaults, light enough to declare without loading it."""

from __future__ import annotations

#: Options, their defaults and what they mean (``-t anonymize:NAME=VALUE``, recipe ``[options]``).
OPTIONS: dict[str, tuple[str, str]] = {
    "dates": ("shift", "shift (Modified Dates option), remove, or keep (Full Dates option)"),
    "patient_characteristics": ("1", "Retain Patient Characteristics: sex, age, size, weight"),
    "device_identity": ("0", "Retain Device Identity: station name, serial numbers"),
    "institution_identity": ("0", "Retain Institution Identity: institution name, address"),
    "uids": ("0", "Retain UIDs: keep the original UIDs"),
    "safe_private": ("1", "Retain Safe Private: the private tags conversion needs, scrubbed"),
    "descriptors": ("remove", "keep = Clean Descriptors: descriptions kept, scrubbed"),
    "structured_content": ("remove", "keep = Clean Structured Content (scrubbed)"),
    "graphics": ("remove", "keep = Clean Graphics: curves and overlays kept"),
    "allow_burned_in": ("0", "convert images that may show identifying text in their pixels"),
}
