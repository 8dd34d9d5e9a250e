"""Addresses, our AE title, credentials, TLS and timeouts: the settings every transfer shares.

Credentials come from the environment or a per-host config file, never from the command line
(where they would land in shell history and ``ps``). Standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from anyconv.errors import UsageError

log = logging.getLogger("anyconv.dicomnet")

DEFAULT_AET = "ANYCONV"
DEFAULT_TIMEOUT = 30.0
WEB_SCHEMES = ("dicomweb+http", "dicomweb+https")
DIMSE_SCHEME = "dicom"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_AET = re.compile(r"^[ -~]{1,16}$")


def _check_uid(uid: str, url: str) -> str:
    if not _UID.match(uid) or len(uid) > 64:
        raise UsageError(f"{url}: {uid!r} is not a DICOM UID")
    return uid


def _check_aet(aet: str, where: str) -> str:
    if not _AET.match(aet) or "\\" in aet or not aet.strip():
        raise UsageError(f"{where}: AE title {aet!r} must be 1 to 16 printable ASCII characters")
    return aet.strip()


def our_aet(options: Mapping[str, str] | None = None) -> str:
    """Our own AE title: ``-O aet=``, else ``ANYCONV_AET``, else ``ANYCONV``."""
    aet = (options or {}).get("aet") or os.environ.get("ANYCONV_AET") or DEFAULT_AET
    return _check_aet(aet, "our AE title")


def timeout(options: Mapping[str, str] | None = None) -> float:
    """Seconds to wait for a connection or for the next bytes: ``-O timeout=``, env, 30."""
    text = (options or {}).get("timeout") or os.environ.get("ANYCONV_NET_TIMEOUT")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"timeout {text!r}: give a positive number of seconds")
    return value


@dataclass(frozen=True)
class WebAddress:
    """A parsed ``dicomweb+http(s)://`` address."""

    #: ``http(s)://host:port/prefix`` without a trailing slash: the DICOMweb service root
    base: str
    host: str
    port: int | None
    study: str | None = None
    series: str | None = None
    instance: str | None = None
    #: the address as given, scheme and all (``dicomweb+http://...``)
    url: str = ""


@dataclass(frozen=True)
class DimseAddress:
    """A parsed ``dicom://AET@HOST:PORT/[StudyUID[/SeriesUID]]`` address."""

    aet: str
    host: str
    port: int
    study: str | None = None
    series: str | None = None


def parse_web(url: str) -> WebAddress:
    """Split a DICOMweb address into the service root and the study/series asked for."""
    parts = urlsplit(url)
    if parts.scheme not in WEB_SCHEMES:
        raise UsageError(f"{url}: not a dicomweb+http(s):// address")
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"{url}: credentials in the address are refused (they end up in shell history)",
            hint="set ANYCONV_DICOMWEB_USER/ANYCONV_DICOMWEB_PASSWORD or ANYCONV_DICOMWEB_TOKEN, "
            "or ~/.config/anyconv/dicomweb.toml",
        )
    if not parts.hostname:
        raise UsageError(f"{url}: no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{url}: bad port") from exc
    if parts.query or parts.fragment:
        raise UsageError(f"{url}: no query or fragment expected in a DICOMweb address")
    segments = [s for s in parts.path.split("/") if s]
    study = series = instance = None
    if "studies" in segments:
        at = segments.index("studies")
        rest = segments[at + 1 :]
        prefix = segments[:at]
        if not rest:
            raise UsageError(f"{url}: 'studies/' needs a StudyInstanceUID")
        study = _check_uid(rest[0], url)
        shape = ["series", None, "instances", None]
        if len(rest) - 1 not in (0, 2, 4) or any(
            want is not None and got != want for got, want in zip(rest[1:], shape, strict=False)
        ):
            raise UsageError(
                f"{url}: expected .../studies/<StudyUID>[/series/<SeriesUID>[/instances/<UID>]]"
            )
        series = _check_uid(rest[2], url) if len(rest) > 2 else None
        instance = _check_uid(rest[4], url) if len(rest) > 4 else None
    else:
        prefix = segments
    scheme = parts.scheme.split("+", 1)[1]
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    base = f"{scheme}://{netloc}" + ("/" + "/".join(prefix) if prefix else "")
    return WebAddress(
        base=base,
        host=parts.hostname,
        port=port,
        study=study,
        series=series,
        instance=instance,
        url=f"{parts.scheme}://{parts.netloc}" + ("/" + "/".join(prefix) if prefix else ""),
    )


def parse_dimse(url: str, *, need_port: bool = True) -> DimseAddress:
    """Split ``dicom://AET@HOST:PORT/StudyUID/SeriesUID``; the AE title is the PACS's own."""
    parts = urlsplit(url)
    if parts.scheme != DIMSE_SCHEME:
        raise UsageError(f"{url}: not a dicom:// address")
    if parts.password is not None:
        raise UsageError(f"{url}: DIMSE addresses take no password")
    if not parts.username:
        raise UsageError(
            f"{url}: name the PACS's AE title", hint="dicom://AET@HOST:PORT/StudyUID[/SeriesUID]"
        )
    if not parts.hostname:
        raise UsageError(f"{url}: no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{url}: bad port") from exc
    if port is None:
        if need_port:
            raise UsageError(f"{url}: give the port (dicom://AET@HOST:PORT/...)")
        port = 104
    if parts.query or parts.fragment:
        raise UsageError(f"{url}: no query or fragment expected in a dicom:// address")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) > 2:
        raise UsageError(f"{url}: expected dicom://AET@HOST:PORT/<StudyUID>[/<SeriesUID>]")
    uids = [_check_uid(s, url) for s in segments]
    from urllib.parse import unquote

    return DimseAddress(
        aet=_check_aet(unquote(parts.username), url),
        host=parts.hostname,
        port=port,
        study=uids[0] if uids else None,
        series=uids[1] if len(uids) > 1 else None,
    )


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to one DICOMweb host and which CA bundle verifies it."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    #: ``True`` (system CAs), ``False`` (no verification: only when configured so), or a path
    verify: bool | str = True
    source: str = "none"


def config_path() -> Path:
    """``$ANYCONV_DICOMWEB_CONFIG``, else ``$XDG_CONFIG_HOME/anyconv/dicomweb.toml``."""
    explicit = os.environ.get("ANYCONV_DICOMWEB_CONFIG")
    if explicit:
        return Path(explicit)
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root) / "anyconv" / "dicomweb.toml"


def _host_section(config: Mapping[str, object], host: str, port: int | None) -> dict:
    hosts = config.get("hosts", {})
    if not isinstance(hosts, dict):
        raise UsageError(f"{config_path()}: [hosts] must be a table of host names")
    for key in ([f"{host}:{port}"] if port is not None else []) + [host]:
        section = hosts.get(key)
        if isinstance(section, dict):
            return section
    default = config.get("default", {})
    return default if isinstance(default, dict) else {}


def _load_config() -> dict:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("%s: readable by other users; chmod 600 it (it holds passwords)", path)
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read DICOMweb config: {exc}") from exc


def credentials(address: WebAddress) -> Credentials:
    """Credentials for ``address``: environment first, then the config file's host section.

    Environment: ``ANYCONV_DICOMWEB_USER`` + ``ANYCONV_DICOMWEB_PASSWORD`` (HTTP basic) or
    ``ANYCONV_DICOMWEB_TOKEN`` (bearer), ``ANYCONV_DICOMWEB_CA`` (a CA bundle). The file's
    ``[hosts."HOST:PORT"]`` or ``[hosts.HOST]`` (else ``[default]``) section holds ``user``,
    ``password``, ``token``, ``ca`` and ``verify`` (``false`` only to turn checks off).
    """
    section = _host_section(_load_config(), address.host, address.port)
    env = os.environ
    user, password, token = (
        env.get("ANYCONV_DICOMWEB_USER"),
        env.get("ANYCONV_DICOMWEB_PASSWORD"),
        env.get("ANYCONV_DICOMWEB_TOKEN"),
    )
    source = "environment" if (user or token) else "none"
    if not (user or token):
        user, password, token = section.get("user"), section.get("password"), section.get("token")
        source = str(config_path()) if (user or token) else "none"
    if user and token:
        raise UsageError(f"{address.base}: give a user/password or a token, not both")
    if user and password is None:
        raise UsageError(
            f"{address.base}: user {user!r} has no password",
            hint="set ANYCONV_DICOMWEB_PASSWORD or 'password' in the config file",
        )
    verify: bool | str = True
    ca = env.get("ANYCONV_DICOMWEB_CA") or section.get("ca")
    if ca:
        if not Path(str(ca)).expanduser().exists():
            raise UsageError(f"CA bundle {ca}: no such file")
        verify = str(Path(str(ca)).expanduser())
    elif section.get("verify") is False:
        verify = False
    return Credentials(
        user=str(user) if user else None,
        password=str(password) if password is not None else None,
        token=str(token) if token else None,
        verify=verify,
        source=source,
    )
