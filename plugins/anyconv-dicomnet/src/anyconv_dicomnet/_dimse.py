"""DIMSE with pynetdicom: C-ECHO, C-FIND, C-GET / C-MOVE retrieve into a folder, C-STORE.

Received instances are written to disk as they arrive (pynetdicom's chunked receive), without
being decoded, so memory stays bounded whatever the study's size. A retrieve first lists the
instances with C-FIND, so an incomplete transfer is noticed, retried for what is missing, and
otherwise refused.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from anyconv.errors import AnyconvError, ReadError, UsageError, WriteError
from anyconv.specs import ReadOptions, WriteOptions
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, _config, build_context, build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from ._config import DimseAddress, our_aet, timeout

log = logging.getLogger("anyconv.dicomnet")

#: what we accept when receiving: uncompressed first, then what the DICOM reader decodes
RECEIVE_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGLosslessSV1,
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    JPEGLSLossless,
    JPEG2000Lossless,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEG2000,
]
#: offered when the PACS does not say which classes a study holds (one context each, <= 126)
_COMMON_CLASSES = {cx.abstract_syntax for cx in StoragePresentationContexts[:126]}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PENDING = (0xFF00, 0xFF01)
#: a PACS rarely needs more than this for one association
_MAX_CONTEXTS = 127


class FindRefusedError(ReadError):
    """The PACS answered a C-FIND with a failure status (the association itself worked)."""


def _where(address: DimseAddress) -> str:
    return f"{address.aet}@{address.host}:{address.port}"


def make_ae(options: Mapping[str, str] | None) -> AE:
    """Our application entity, with the configured AE title and timeouts everywhere."""
    ae = AE(ae_title=our_aet(options))
    seconds = timeout(options)
    ae.acse_timeout = seconds
    ae.dimse_timeout = seconds
    ae.network_timeout = seconds
    ae.connection_timeout = seconds
    return ae


@contextlib.contextmanager
def associate(
    ae: AE, address: DimseAddress, error: type[AnyconvError], **kwargs: Any
) -> Iterator[Any]:
    """An established association, released on exit; a one-line error when refused."""
    assoc = ae.associate(address.host, address.port, ae_title=address.aet, **kwargs)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise error(
                f"{_where(address)} rejected the association from {ae.ae_title} (is the called "
                "AE title right, and our AE title known to the PACS?)"
            )
        raise error(f"cannot reach {_where(address)} (no DICOM service answered there)")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status_text(status: Dataset | None) -> str:
    if status is None or "Status" not in status:
        return "no answer (timeout or aborted association)"
    text = f"status 0x{int(status.Status):04X}"
    comment = status.get("ErrorComment")
    return f"{text} ({comment})" if comment else text


def echo(address: DimseAddress, options: Mapping[str, str]) -> None:
    """C-ECHO: raise ReadError unless the PACS answers with Success."""
    ae = make_ae(options)
    ae.add_requested_context(Verification)
    with associate(ae, address, ReadError) as assoc:
        status = assoc.send_c_echo()
    if status is None or int(status.get("Status", -1)) != 0:
        raise ReadError(f"C-ECHO to {_where(address)} failed: {_status_text(status)}")


def find(
    address: DimseAddress, level: str, keys: Mapping[str, str], options: Mapping[str, str]
) -> list[Dataset]:
    """C-FIND (Study Root) at ``level``; ``keys`` are matching and return keys (``""``)."""
    ae = make_ae(options)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, wanted in keys.items():
        setattr(query, keyword, wanted)
    found: list[Dataset] = []
    with associate(ae, address, ReadError) as assoc:
        last = None
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            last = status
            if status is not None and int(status.get("Status", -1)) in _PENDING and identifier:
                found.append(identifier)
    if last is None or int(last.get("Status", -1)) != 0:
        raise FindRefusedError(f"C-FIND at {_where(address)} failed: {_status_text(last)}")
    return found


def _instances(address: DimseAddress, options: Mapping[str, str]) -> dict[str, str]:
    """SOPInstanceUID -> SOPClassUID of every instance the address names."""
    keys = {"StudyInstanceUID": address.study or "", "SOPInstanceUID": "", "SOPClassUID": ""}
    keys["SeriesInstanceUID"] = address.series or ""
    found = find(address, "IMAGE", keys, options)
    return {
        str(ds.SOPInstanceUID): str(ds.get("SOPClassUID", ""))
        for ds in found
        if ds.get("SOPInstanceUID")
    }


class _Receiver:
    """C-STORE handler writing each expected instance to ``dest/<SOPInstanceUID>.dcm``.

    ``expected`` ``None`` (the PACS would not list the instances) accepts any instance.
    """

    def __init__(self, dest: Path, expected: set[str] | None) -> None:
        self.dest = dest
        self.expected = expected
        self.received: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID or "")
        chunked = getattr(event.request, "_dataset_path", None) is not None
        wanted = self.expected is None or uid in self.expected
        if not wanted or not _UID.match(uid):
            if chunked:
                Path(event.dataset_path).unlink(missing_ok=True)
            return 0xA900  # not asked for: "dataset does not match SOP class" is the closest
        target = self.dest / f"{uid}.dcm"
        try:
            if chunked:
                shutil.move(str(event.dataset_path), target)
            else:
                target.write_bytes(event.encoded_dataset())
        except OSError:
            target.unlink(missing_ok=True)
            return 0xA700  # out of resources
        with self.lock:
            self.received.add(uid)
        return 0x0000


@contextlib.contextmanager
def _chunked_receive(dest: Path) -> Iterator[None]:
    """Let pynetdicom write incoming data sets to disk instead of memory, for this call.

    Its temporary files go to a folder inside ``dest`` (removed at the end), so a data set
    cut off mid-way by an aborted association leaves nothing in the system's temp folder.
    """
    from pynetdicom import dimse_messages

    incoming = dest / ".incoming"
    incoming.mkdir(exist_ok=True)
    before = _config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile
    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = functools.partial(tempfile.NamedTemporaryFile, dir=incoming)
    try:
        yield
    finally:
        _config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile = before
        shutil.rmtree(incoming, ignore_errors=True)


def _identifier(address: DimseAddress, uids: list[str] | None = None) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = address.study
    if uids is not None:
        ds.QueryRetrieveLevel = "IMAGE"
        ds.SeriesInstanceUID = address.series or ""
        ds.SOPInstanceUID = uids if len(uids) > 1 else uids[0]
    elif address.series:
        ds.QueryRetrieveLevel = "SERIES"
        ds.SeriesInstanceUID = address.series
    else:
        ds.QueryRetrieveLevel = "STUDY"
    return ds


def _storage_contexts(classes: set[str]) -> list:
    if len(classes) > _MAX_CONTEXTS - 1:
        raise ReadError(f"the study holds {len(classes)} SOP classes; one association takes 126")
    return [build_context(c, RECEIVE_SYNTAXES) for c in sorted(classes)]


def _final_status(responses: Iterator[tuple[Dataset | None, Any]]) -> Dataset | None:
    """The last response of a C-GET/C-MOVE (pending ones only report progress)."""
    last = None
    for status, _ in responses:
        last = status
    return last


def _get(
    address: DimseAddress, receiver: _Receiver, classes: set[str], opts: Mapping
) -> Dataset | None:
    ae = make_ae(opts)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    contexts = _storage_contexts(classes)
    for cx in contexts:
        ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
    roles = [build_role(c, scp_role=True) for c in sorted(classes)]
    identifier = _identifier(address, _missing(receiver))
    handlers = [(evt.EVT_C_STORE, receiver)]
    with associate(ae, address, ReadError, ext_neg=roles, evt_handlers=handlers) as assoc:
        return _final_status(
            assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        )


def _move(
    address: DimseAddress, receiver: _Receiver, classes: set[str], opts: Mapping
) -> Dataset | None:
    ae = make_ae(opts)
    host = opts.get("scp_host") or _env("ANYCONV_SCP_HOST") or ""
    port_text = opts.get("scp_port") or _env("ANYCONV_SCP_PORT") or "11112"
    try:
        port = int(port_text)
    except ValueError as exc:
        raise UsageError(f"scp_port {port_text!r}: give a port number") from exc
    contexts = _storage_contexts(classes)
    try:
        server = ae.start_server(
            (host, port), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver)],
            contexts=contexts,
        )  # fmt: skip
    except OSError as exc:
        raise ReadError(
            f"cannot listen on port {port} for C-MOVE ({exc.strerror or exc}); "
            "set -O scp_port= / ANYCONV_SCP_PORT to the port the PACS sends to"
        ) from exc
    try:
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        identifier = _identifier(address, _missing(receiver))
        with associate(ae, address, ReadError) as assoc:
            return _final_status(
                assoc.send_c_move(
                    identifier, ae.ae_title, StudyRootQueryRetrieveInformationModelMove
                )
            )
    finally:
        server.shutdown()


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name)


def retrieve(address: DimseAddress, dest: Path, options: Mapping[str, str]) -> int:
    """C-GET (or C-MOVE with ``move=yes``) every instance of the study/series into ``dest``."""
    if address.study is None:
        raise UsageError(
            f"dicom://{_where(address)}: name a study to fetch",
            hint="dicom://AET@HOST:PORT/<StudyUID>[/<SeriesUID>]",
        )
    move = str(options.get("move", "no")).lower() in ("1", "yes", "true")
    op = "C-MOVE" if move else "C-GET"
    what = address.study + (f"/{address.series}" if address.series else "")
    try:
        expected: dict[str, str] | None = _instances(address, options)
    except FindRefusedError as exc:
        # Some PACS answer C-FIND only down to SERIES level: retrieve without a list, offering
        # the common storage classes, and trust the final status.
        log.warning("%s: no instance list (%s); retrieving without one", _where(address), exc)
        expected = None
    if expected is not None and not expected:
        raise ReadError(f"dicom://{_where(address)}/{what}: no such study/series on the PACS")
    classes = _classes_to_offer(expected)
    receiver = _Receiver(dest, set(expected) if expected is not None else None)
    run: Callable = _move if move else _get
    status = None
    with _chunked_receive(dest):
        for _attempt in range(3):
            before = len(receiver.received)
            status = run(address, receiver, classes, options)
            code = int(status.get("Status", -1)) if status is not None else -1
            # Success, or a warning (0xB000: some sub-operations failed), or a failure after
            # which some instances did arrive (Orthanc's C-MOVE fails whole on one refusal):
            # what is still missing is asked for again. A failure with no progress is final.
            if code not in (0x0000, 0xB000) and len(receiver.received) == before:
                raise ReadError(f"{op} from {_where(address)} failed: {_status_text(status)}")
            if receiver.expected is None or receiver.received >= receiver.expected:
                break
            log.warning(
                "%s: %d of %d instances received; asking again for the rest",
                _where(address),
                len(receiver.received),
                len(receiver.expected),
            )
    if receiver.expected is None:
        if not receiver.received:
            raise ReadError(f"{op} from {_where(address)}/{what} delivered no instances")
    elif receiver.expected - receiver.received:
        raise ReadError(
            f"{op} from {_where(address)} delivered "
            f"{len(receiver.received)} of {len(receiver.expected)} instances"
        )
    return len(receiver.received)


def _classes_to_offer(expected: dict[str, str] | None) -> set[str]:
    """The SOP classes C-FIND named, topped up with common ones where it named none."""
    known = {c for c in (expected or {}).values() if c}
    if expected and all(expected.values()):
        return known
    extra = sorted(_COMMON_CLASSES - known)
    return known | set(extra[: max(0, _MAX_CONTEXTS - 1 - len(known))])


def _missing(receiver: _Receiver) -> list[str] | None:
    """Instances still to ask for at IMAGE level; ``None`` for the whole study/series."""
    if not receiver.received or receiver.expected is None:
        return None
    return sorted(receiver.expected - receiver.received)


def store(files: list[Path], address: DimseAddress, options: Mapping[str, str]) -> list[str]:
    """C-STORE each file (sent from disk, not decoded); the SOPInstanceUIDs stored."""
    from pydicom import dcmread

    headers = []
    for path in files:
        try:
            meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        except Exception as exc:
            raise WriteError(f"{path}: not a DICOM file to send: {exc}") from exc
        fm = meta.file_meta
        headers.append(
            (path, str(fm.MediaStorageSOPClassUID), str(fm.MediaStorageSOPInstanceUID),
             str(fm.TransferSyntaxUID))
        )  # fmt: skip
    pairs = sorted({(h[1], h[3]) for h in headers})
    if len(pairs) > _MAX_CONTEXTS:
        raise WriteError(f"{len(pairs)} SOP class/transfer syntax pairs; one association takes 128")
    ae = make_ae(options)
    for sop_class, syntax in pairs:
        ae.add_requested_context(sop_class, [syntax])
    stored: list[str] = []
    before = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        with associate(ae, address, WriteError) as assoc:
            for path, _sop_class, uid, _syntax in headers:
                status = assoc.send_c_store(path)
                code = int(status.get("Status", -1)) if status is not None else -1
                if code == -1 and not assoc.is_established:
                    raise WriteError(
                        f"{_where(address)} aborted the association during C-STORE of "
                        f"{path.name} (does it accept C-STORE from AE title {ae.ae_title}?)"
                    )
                if code != 0 and not 0xB000 <= code <= 0xB00F:
                    raise WriteError(
                        f"C-STORE of {path.name} to {_where(address)} failed: "
                        f"{_status_text(status)}"
                    )
                stored.append(uid)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = before
    return stored


def fetch_url(url: str, dest: Path, options: ReadOptions) -> Path:
    """Transport ``fetch`` for ``dicom://AET@HOST:PORT/<StudyUID>[/<SeriesUID>]``."""
    from ._config import parse_dimse

    retrieve(parse_dimse(url), dest, options.extra)
    return dest


def store_url(files: list[Path], url: str, options: WriteOptions) -> list[str]:
    """Transport ``store`` for ``dicom://AET@HOST:PORT``: C-STORE of the written series."""
    from ._config import parse_dimse

    return store(files, parse_dimse(url), options.extra)
