"""DICOMweb: WADO-RS retrieve streamed to files, STOW-RS store, QIDO-RS search.

WADO-RS answers are parsed as they arrive and each instance's bytes go straight to its own
file, so memory stays at one chunk whatever the study's size. A stream cut mid-way is resumed
instance by instance (QIDO lists what the series holds, WADO fetches what is missing).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from anyconv.errors import AnyconvError, ReadError, UsageError, WriteError
from requests.adapters import HTTPAdapter

from ._config import WebAddress, credentials, parse_web, timeout

if TYPE_CHECKING:
    from anyconv.specs import ReadOptions, WriteOptions
    from dicomweb_client import DICOMwebClient

log = logging.getLogger("anyconv.dicomnet")

CHUNK = 1 << 20
#: instance bytes per STOW-RS request (dicomweb-client builds each request body in memory)
STOW_BATCH_BYTES = 64 << 20
_ACCEPT = (
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    'multipart/related; type="application/dicom"',
)
_RESUME_ATTEMPTS = 3


class TransferCutError(ReadError):
    """The answer stopped before its closing boundary: a transfer cut mid-way."""


class _TimeoutAdapter(HTTPAdapter):
    """Every request gets a timeout: ``requests`` has none by default and would wait forever."""

    def __init__(self, seconds: float) -> None:
        super().__init__(max_retries=0)
        self.seconds = seconds

    def send(self, request: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.seconds
        return super().send(request, **kwargs)


class _Session(requests.Session):
    """A session whose configured CA bundle (or ``verify = false``) is not overridden.

    ``requests`` lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace a session's ``verify``
    on every request; a CA named for this host in our settings must win over them.
    """

    pinned_verify: bool | str | None = None

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(*args, **kwargs)
        if self.pinned_verify is not None:
            settings["verify"] = self.pinned_verify
        return settings


def make_session(address: WebAddress, options: Mapping[str, str] | None = None) -> requests.Session:
    """A session with the host's credentials, TLS verification and timeouts."""
    creds = credentials(address)
    session = _Session()
    if creds.verify is not True:
        session.pinned_verify = creds.verify
    if creds.user:
        session.auth = (creds.user, creds.password or "")
    elif creds.token:
        session.headers["Authorization"] = f"Bearer {creds.token}"
    session.verify = creds.verify
    if creds.verify is False:
        log.warning(
            "%s: TLS certificate verification is off (config 'verify = false')", address.host
        )
    local = address.host in ("localhost", "127.0.0.1", "::1")
    if (creds.user or creds.token) and address.base.startswith("http://") and not local:
        log.warning("%s: credentials sent over plain http; use dicomweb+https", address.host)
    adapter = _TimeoutAdapter(timeout(options))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "anyconv-dicomnet"
    return session


def describe(exc: BaseException, address: WebAddress) -> str:
    """One line saying what went wrong talking to the server and what to do."""
    where = address.host + (f":{address.port}" if address.port else "")
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS verification of {where} failed (set ANYCONV_DICOMWEB_CA or 'ca' in "
            "~/.config/anyconv/dicomweb.toml to the server's CA bundle)"
        )
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"transfer from {where} interrupted (connection broken mid-answer)"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{where} did not answer in time (raise -O timeout=SECONDS or ANYCONV_NET_TIMEOUT)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot reach {where} (is the server running and the address right?)"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        reason = exc.response.reason or ""
        if code in (401, 403):
            creds = credentials(address)
            given = (
                f"credentials from {creds.source} were refused"
                if creds.source != "none"
                else "no credentials given: set ANYCONV_DICOMWEB_USER/_PASSWORD or _TOKEN"
            )
            return f"HTTP {code} {reason} from {where}: {given}"
        if code == 404:
            return f"HTTP 404 Not Found: {exc.response.url} (no such study/series, or wrong root)"
        return f"HTTP {code} {reason} from {exc.response.url}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _boundary(content_type: str) -> bytes:
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not content_type.lower().startswith("multipart/related") or not match:
        raise ReadError(f"expected a multipart/related answer, got {content_type or 'nothing'}")
    return match.group(1).strip().encode("latin-1")


def split_multipart(chunks: Iterator[bytes], boundary: bytes) -> Iterator[Iterator[bytes]]:
    """Yield each part's body as an iterator of byte chunks, holding at most one chunk.

    Each part must be consumed before the next is requested (as ``for part in ...: for b in
    part`` does). Part headers are skipped: every part of a WADO-RS instance answer is one
    ``application/dicom`` instance.
    """
    delim = b"\r\n--" + boundary
    buf = bytearray(b"\r\n")  # the first delimiter has no CRLF before it
    source = iter(chunks)
    done = False

    def more() -> bool:
        nonlocal done
        if done:
            return False
        for chunk in source:
            if chunk:
                buf.extend(chunk)
                return True
        done = True
        return False

    # preamble: up to the first delimiter
    while (at := buf.find(delim)) < 0:
        if len(buf) > len(delim):
            del buf[: len(buf) - len(delim)]
        if not more():
            return
    del buf[: at + len(delim)]
    while True:
        while len(buf) < 2 and more():
            pass
        if buf[:2] == b"--":
            return  # closing delimiter
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > 64 << 10:
                raise ReadError("multipart part headers over 64 KiB")
            if not more():
                raise TransferCutError(
                    "answer ended inside a part's headers (transfer interrupted)"
                )
        del buf[: end + 4]
        closed = False

        def body() -> Iterator[bytes]:
            nonlocal closed
            while True:
                at = buf.find(delim)
                if at >= 0:
                    if at:
                        yield bytes(buf[:at])
                    del buf[: at + len(delim)]
                    closed = True
                    return
                keep = len(delim) - 1
                if len(buf) > keep:
                    out = bytes(buf[: len(buf) - keep])
                    del buf[: len(buf) - keep]
                    yield out
                if not more():
                    raise TransferCutError("answer ended inside an instance (transfer interrupted)")

        yield body()
        if not closed:
            for _ in body():
                pass


def _get_multipart(session: requests.Session, url: str) -> requests.Response:
    """GET a WADO-RS resource as multipart DICOM, preferring the stored transfer syntax."""
    for accept in _ACCEPT:
        response = session.get(url, headers={"Accept": accept}, stream=True)
        if response.status_code in (406, 400) and accept != _ACCEPT[-1]:
            response.close()
            continue  # this server transcodes only: take its default transfer syntax
        response.raise_for_status()
        return response
    raise AssertionError("unreachable")


def _stream_instances(
    session: requests.Session,
    url: str,
    dest: Path,
    start: int,
    received: dict[str, Path],
    answered: list[bool] | None = None,
) -> int:
    """Write each instance of ``url``'s answer to ``dest/NNNNNN.dcm``; return how many.

    ``answered`` gets ``True`` once the server has answered, so a failure after it is a cut
    transfer (worth resuming) rather than a server that cannot be reached.
    """
    from pydicom import dcmread

    count = 0
    with contextlib.closing(_get_multipart(session, url)) as response:
        if answered is not None:
            answered.append(True)
        boundary = _boundary(response.headers.get("Content-Type", ""))
        for part in split_multipart(response.iter_content(CHUNK), boundary):
            path = dest / f"{start + count:06d}.dcm"
            try:
                with path.open("wb") as fh:
                    for piece in part:
                        fh.write(piece)
            except BaseException:
                path.unlink(missing_ok=True)  # a half-written instance is not kept
                raise
            header = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            uid = str(header.get("SOPInstanceUID", "")) or path.name
            if uid in received:
                path.unlink()
            else:
                received[uid] = path
                count += 1
    return count


PAGE = 500


def search_all(method: Any, key: str, **kwargs: Any) -> list[dict]:
    """Every QIDO-RS result, page by page.

    dicomweb-client's ``get_remaining`` loops forever on servers that ignore ``offset`` (as
    Orthanc's plugin does with some filters); here a page that is short or brings nothing new
    ends the search.
    """
    tag = _tag(key)
    results: list[dict] = []
    seen: set[str] = set()
    offset = 0
    while True:
        page = method(limit=PAGE, offset=offset, **kwargs)
        fresh = [item for item in page if str(item.get(tag, {}).get("Value")) not in seen]
        results.extend(fresh)
        seen.update(str(item.get(tag, {}).get("Value")) for item in fresh)
        if len(page) < PAGE or not fresh:
            return results
        offset += len(page)


def _tag(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def _list_instances(client: DICOMwebClient, study: str, series: str | None) -> list[tuple]:
    found = search_all(
        client.search_for_instances,
        "SOPInstanceUID",
        study_instance_uid=study,
        series_instance_uid=series,
        fields=["SOPInstanceUID", "SeriesInstanceUID"],
    )
    return [
        (value(item, "SeriesInstanceUID") or series, value(item, "SOPInstanceUID"))
        for item in found
    ]


def fetch(url: str, dest: Path, options: ReadOptions) -> Path:
    """WADO-RS: fetch ``.../studies/<uid>[/series/<uid>]`` into ``dest``, one file per instance."""
    address = parse_web(url)
    if address.study is None:
        raise UsageError(
            f"{url}: name a study to fetch", hint=".../dicom-web/studies/<StudyUID>[/series/<UID>]"
        )
    session = make_session(address, options.extra)
    target = f"{address.base}/studies/{address.study}"
    if address.series:
        target += f"/series/{address.series}"
    if address.instance:
        target += f"/instances/{address.instance}"
    received: dict[str, Path] = {}
    answered: list[bool] = []
    try:
        try:
            _stream_instances(session, target, dest, 1, received, answered)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                TransferCutError):  # fmt: skip
            if not answered:
                raise  # never reached the server: nothing to resume
            log.warning("%s: transfer interrupted after %d instances; resuming", url, len(received))
            _resume(session, address, dest, received)
    except AnyconvError as exc:
        raise ReadError(f"{url}: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise ReadError(f"{url}: {describe(exc, address)}") from exc
    finally:
        session.close()
    if not received:
        raise ReadError(f"{url}: the server returned no instances")
    return dest


def _resume(
    session: requests.Session, address: WebAddress, dest: Path, received: dict[str, Path]
) -> None:
    """Fetch, one by one, the instances QIDO lists that the cut stream did not deliver."""
    from dicomweb_client import DICOMwebClient

    client = DICOMwebClient(address.base, session=session)
    assert address.study is not None
    if address.instance:
        listed = [(address.series, address.instance)]
    else:
        listed = _list_instances(client, address.study, address.series)
    missing = [(series, uid) for series, uid in listed if uid not in received]
    for series, uid in missing:
        target = f"{address.base}/studies/{address.study}/series/{series}/instances/{uid}"
        for attempt in range(_RESUME_ATTEMPTS):
            try:
                _stream_instances(session, target, dest, len(received) + 1, received)
                break
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ConnectionError, TransferCutError):  # fmt: skip
                if attempt == _RESUME_ATTEMPTS - 1:
                    raise
        if uid not in received:
            raise ReadError(f"instance {uid} listed by QIDO-RS but not delivered by WADO-RS")


def _batches(files: list[Path]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in files:
        nbytes = path.stat().st_size
        if batch and size + nbytes > STOW_BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += nbytes
    if batch:
        yield batch


def store(files: list[Path], url: str, options: WriteOptions) -> list[str]:
    """STOW-RS the written files to the service root; the stored instances' addresses.

    Each line is a ``dicomweb+http(s)://.../studies/S/series/SE/instances/I`` that anyconv can
    fetch back (the series address is logged, shown with ``-v``).
    """
    from dicomweb_client import DICOMwebClient
    from pydicom import dcmread

    address = parse_web(url)
    if address.series:
        raise UsageError(f"{url}: store to the service root or a study, not a series")
    dicom = [f for f in files if f.is_file()]
    if not dicom:
        raise WriteError(f"{url}: nothing to store")
    session = make_session(address, options.extra)
    client = DICOMwebClient(address.base, session=session, timeout=timeout(options.extra))
    client.set_http_retry_params(retry=False)
    stored: list[str] = []
    try:
        for batch in _batches(dicom):
            datasets = [dcmread(f) for f in batch]
            answer = client.store_instances(datasets, study_instance_uid=address.study)
            failed = list(getattr(answer, "FailedSOPSequence", []) or [])
            if failed:
                first = failed[0]
                raise WriteError(
                    f"{url}: the server refused {len(failed)} instance(s), e.g. "
                    f"{first.get('ReferencedSOPInstanceUID', '?')} "
                    f"(failure reason {first.get('FailureReason', '?')})"
                )
            refs = list(getattr(answer, "ReferencedSOPSequence", []) or [])
            sent = {str(ds.SOPInstanceUID) for ds in datasets}
            done = {str(r.get("ReferencedSOPInstanceUID", "")) for r in refs}
            if refs and not sent <= done:
                raise WriteError(
                    f"{url}: the server acknowledged {len(done & sent)} of {len(sent)} instances"
                )
            stored.extend(
                f"{address.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}"
                for ds in datasets
            )
    except requests.exceptions.RequestException as exc:
        raise WriteError(f"{url}: {describe(exc, address)}") from exc
    finally:
        session.close()
    for series in sorted({line.rsplit("/instances/", 1)[0] for line in stored}):
        log.info("stored in %s", series)
    return stored


def value(item: Mapping[str, Any], keyword: str) -> Any:
    """First value of ``keyword`` in a DICOM JSON object (person names as text)."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    values = item.get(f"{tag:08X}", {}).get("Value") or []
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):  # PN
        return first.get("Alphabetic") or first.get("Ideographic") or ""
    if keyword in ("ModalitiesInStudy",):
        return "\\".join(str(v) for v in values)
    return first


STUDY_FIELDS = (
    "StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyDescription",
    "AccessionNumber", "ModalitiesInStudy",
)  # fmt: skip
SERIES_FIELDS = (
    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)  # fmt: skip


def query(url: str, filters: Mapping[str, str], options: Mapping[str, str]) -> list[dict]:
    """QIDO-RS: studies matching ``filters`` with their series; plain dicts of text."""
    from dicomweb_client import DICOMwebClient

    address = parse_web(url)
    session = make_session(address, options)
    client = DICOMwebClient(address.base, session=session, timeout=timeout(options))
    client.set_http_retry_params(retry=False)
    study_filters = {k: v for k, v in filters.items() if k != "Modality"}
    if address.study:
        study_filters["StudyInstanceUID"] = address.study
    if filters.get("Modality"):
        study_filters["ModalitiesInStudy"] = filters["Modality"]
    series_filters = {"Modality": filters["Modality"]} if filters.get("Modality") else {}
    if address.series:
        series_filters["SeriesInstanceUID"] = address.series
    try:
        studies = search_all(
            client.search_for_studies,
            "StudyInstanceUID",
            search_filters=study_filters,
            fields=list(STUDY_FIELDS),
        )
        out = []
        for item in studies:
            study = {k: value(item, k) for k in STUDY_FIELDS}
            found = search_all(
                client.search_for_series,
                "SeriesInstanceUID",
                study_instance_uid=study["StudyInstanceUID"],
                search_filters=series_filters,
                fields=list(SERIES_FIELDS),
            )
            study["series"] = [{k: value(s, k) for k in SERIES_FIELDS} for s in found]
            if series_filters and not study["series"]:
                continue
            out.append(study)
    except requests.exceptions.RequestException as exc:
        raise ReadError(f"{url}: {describe(exc, address)}") from exc
    finally:
        session.close()
    return out


def ping(url: str, options: Mapping[str, str]) -> None:
    """Ask the QIDO-RS root for one study: proves the address, the service and the credentials."""
    address = parse_web(url)
    session = make_session(address, options)
    try:
        response = session.get(
            f"{address.base}/studies",
            params={"limit": "1"},
            headers={"Accept": "application/dicom+json"},
        )
        response.raise_for_status()
        if response.status_code != 204:
            response.json()
    except requests.exceptions.RequestException as exc:
        raise ReadError(f"{url}: {describe(exc, address)}") from exc
    except ValueError as exc:
        raise ReadError(f"{url}: the answer is not DICOM JSON (is this a DICOMweb root?)") from exc
    finally:
        session.close()
