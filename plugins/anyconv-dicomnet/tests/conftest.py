"""A real Orthanc (with its DICOMweb plugin) on loopback for the whole test session.

Started from a generated configuration in a temporary folder: storage there, free ports for
HTTP, DICOM and our C-MOVE storage SCP, HTTP authentication on, remote access off. Missing
Orthanc skips the server tests on a developer's machine and fails them in CI.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ORTHANC_BINARIES = ("Orthanc", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "tester", "s3cret-pw"
PACS_AET, OUR_AET = "TESTPACS", "ANYCONVTEST"
CASES = ("ge_pioneer_dwi_oblique", "siemens_trio_mosaic_ax_asc35")


@dataclass
class Server:
    http_port: int
    dicom_port: int
    scp_port: int
    folder: Path
    process: subprocess.Popen
    stored: dict[str, dict] = field(default_factory=dict)

    @property
    def web(self) -> str:
        return f"dicomweb+http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dicom://{PACS_AET}@127.0.0.1:{self.dicom_port}"


def _free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _binary() -> str | None:
    for name in ORTHANC_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _die_with_parent() -> None:
    """Linux: Orthanc gets SIGTERM if pytest is killed before its fixture can stop it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _answers(port: int) -> bool:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/system")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    binary = _binary()
    if binary is None or not DICOMWEB_PLUGIN.is_file():
        if os.environ.get("CI"):
            pytest.fail("Orthanc or its DICOMweb plugin missing in CI (orthanc, orthanc-dicomweb)")
        pytest.skip("Orthanc with the DICOMweb plugin is not installed")
    folder = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port, scp_port = _free_ports(3)
    config = {
        "Name": "anyconv-test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": PACS_AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        # Our AE, so C-FIND/C-GET are allowed and C-MOVE knows where to send.
        "DicomModalities": {"anyconv": [OUR_AET, "127.0.0.1", scp_port]},
        # Orthanc 1.10 cannot bind its DICOM port to loopback alone: it answers nobody but
        # our AE title from 127.0.0.1, and only when called by its own AE title.
        "DicomCheckModalityHost": True,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "HttpServerThreads": 4,
        "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen(
        [binary, str(folder / "orthanc.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=folder,
        preexec_fn=_die_with_parent,
    )
    server = Server(http_port, dicom_port, scp_port, folder, process)
    try:
        deadline = time.monotonic() + 30
        while not _answers(http_port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "Orthanc did not start:\n" + (folder / "orthanc.log").read_text()[-3000:]
                )
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(autouse=True)
def net_env(monkeypatch, tmp_path):
    """Our AE title and the test user's credentials, and no stray user config."""
    monkeypatch.setenv("ANYCONV_AET", OUR_AET)
    monkeypatch.setenv("ANYCONV_DICOMWEB_USER", USER)
    monkeypatch.setenv("ANYCONV_DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.setenv("ANYCONV_SCP_HOST", "127.0.0.1")
    monkeypatch.setenv("ANYCONV_DICOMWEB_CONFIG", str(tmp_path / "no-config.toml"))
    for name in ("ANYCONV_DICOMWEB_TOKEN", "ANYCONV_DICOMWEB_CA", "ANYCONV_NET_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def stored(orthanc, testdata):
    """The corpus cases sent with C-STORE once: case -> study, series, files."""
    from anyconv import get_registry
    from pydicom import dcmread

    registry = get_registry()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANYCONV_AET", OUR_AET)
        for case in CASES:
            files = sorted(p for p in (testdata / "dicom" / case).iterdir() if p.is_file())
            head = dcmread(files[0], stop_before_pixels=True)
            uids = registry.store(files, orthanc.dimse)
            orthanc.stored[case] = {
                "study": str(head.StudyInstanceUID),
                "series": str(head.SeriesInstanceUID),
                "patient": str(head.PatientID),
                "files": files,
                "uids": uids,
            }
    return orthanc.stored
