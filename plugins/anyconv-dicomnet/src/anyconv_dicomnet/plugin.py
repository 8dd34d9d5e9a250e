"""Capabilities of the network plugin, as data: importing this loads no network library."""

from __future__ import annotations

from anyconv import hookimpl
from anyconv.specs import CommandSpec, TransportSpec

__version__ = "0.1.0"


@hookimpl
def anyconv_transports() -> list[TransportSpec]:
    """DICOMweb (WADO-RS in, STOW-RS out) and DIMSE (C-GET/C-MOVE in, C-STORE out)."""
    return [
        TransportSpec(
            schemes=("dicomweb+http", "dicomweb+https"),
            fetch="anyconv_dicomnet._web:fetch",
            store="anyconv_dicomnet._web:store",
            format="dicom",
            description="DICOMweb: .../studies/<uid>[/series/<uid>] by WADO-RS; store by STOW-RS",
        ),
        TransportSpec(
            schemes=("dicom",),
            fetch="anyconv_dicomnet._dimse:fetch_url",
            store="anyconv_dicomnet._dimse:store_url",
            format="dicom",
            description="DIMSE: dicom://AET@HOST:PORT/<StudyUID>[/<SeriesUID>] by C-GET "
            "(-O move=yes: C-MOVE to our SCP); store by C-STORE",
        ),
    ]


@hookimpl
def anyconv_commands() -> list[CommandSpec]:
    """``anyconv echo``, ``anyconv query`` and ``anyconv send`` against a PACS."""
    return [
        CommandSpec(
            "echo",
            "anyconv_dicomnet.commands:echo",
            help="C-ECHO a DICOM node (dicom://AET@HOST:PORT) or ping a DICOMweb root",
        ),
        CommandSpec(
            "query",
            "anyconv_dicomnet.commands:query",
            help="list studies/series on a PACS by C-FIND or QIDO-RS (--patient-id, --modality, "
            "--study, --json)",
        ),
        CommandSpec(
            "send",
            "anyconv_dicomnet.commands:send",
            help="store DICOM files unchanged on a PACS (C-STORE to dicom://, STOW-RS to "
            "dicomweb+http(s)://)",
        ),
    ]
