"""Against a real Orthanc: C-ECHO, C-STORE, C-FIND/QIDO, C-GET/C-MOVE/WADO retrieve, STOW."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from anyconv import get_registry
from anyconv.errors import ReadError, WriteError
from anyconv.pipeline import ConvertRequest, convert
from anyconv.specs import ReadOptions, WriteOptions
from anyconv.testing import assert_same_world, synthetic_image
from pydicom import dcmread

from .conftest import CASES, OUR_AET, PASSWORD, USER


def _datasets(paths) -> dict[str, object]:
    """SOPInstanceUID -> data set, compared element by element.

    The file meta is left out (each receiver writes its own), and so are encoding choices a
    PACS may make (undefined-length sequences stored as defined-length).
    """
    out = {}
    for path in paths:
        ds = dcmread(path)
        del ds.file_meta
        ds.preamble = None
        if 0xFFFCFFFC in ds:  # Data Set Trailing Padding: a receiver may drop it (PS3.10 7.2)
            del ds[0xFFFCFFFC]
        out[str(ds.SOPInstanceUID)] = ds
    return out


def _same_instances(folder: Path, files) -> None:
    got, want = _datasets(folder.iterdir()), _datasets(files)
    assert sorted(got) == sorted(want)
    for uid, ds in want.items():
        assert got[uid] == ds, uid


def _in_grid_of(data: np.ndarray, affine: np.ndarray, like: np.ndarray):
    """``data``/``affine`` with voxel axes permuted/flipped into the order ``like`` has."""
    from nibabel import orientations as o

    change = o.ornt_transform(o.io_orientation(affine), o.io_orientation(like))
    return o.apply_orientation(data, change), affine @ o.inv_ornt_aff(change, data.shape)


def _nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


@pytest.fixture(scope="module")
def local_conversions(stored, tmp_path_factory):
    """Each stored case converted from its local files: what every retrieval must equal."""
    out = {}
    folder = tmp_path_factory.mktemp("local")
    for case, info in stored.items():
        (written,) = convert(
            get_registry(), ConvertRequest(src=info["files"][0].parent, dst=folder / f"{case}.nii")
        )
        out[case] = _nifti(written.files[0])
    return out


def test_echo(orthanc, run_cli):
    code, out, err = run_cli("echo", orthanc.dimse)
    assert code == 0, err
    assert out.strip() == f"C-ECHO {orthanc.dimse[len('dicom://') :]}: success"
    code, out, err = run_cli("echo", orthanc.web)
    assert code == 0, err


def test_store_then_find_by_cfind_and_qido(stored, orthanc, run_cli):
    for case, info in stored.items():
        assert len(info["uids"]) == len(info["files"])
        for url in (orthanc.dimse, orthanc.web):
            code, out, err = run_cli("query", url, "--patient-id", info["patient"], "--json")
            assert code == 0, err
            studies = json.loads(out)
            assert [s["StudyInstanceUID"] for s in studies] == [info["study"]], case
            (series,) = studies[0]["series"]
            assert series["SeriesInstanceUID"] == info["series"]
            assert series["Modality"] == "MR"
            assert series["NumberOfSeriesRelatedInstances"] == len(info["files"])
    # both protocols list the same thing, and a filter that matches nothing finds nothing
    answers = []
    for url in (orthanc.dimse, orthanc.web):
        code, out, err = run_cli("query", url, "--modality", "MR", "--json")
        assert code == 0, err
        answers.append(sorted(json.loads(out), key=lambda s: s["StudyInstanceUID"]))
        assert {s["StudyInstanceUID"] for s in answers[-1]} >= {i["study"] for i in stored.values()}
        code, out, _ = run_cli("query", url, "--modality", "CT")
        assert (code, out.strip()) == (0, "no matching studies")
    assert answers[0] == answers[1]
    code, out, _ = run_cli("query", orthanc.web, "--study", stored[CASES[0]]["study"])
    assert out.splitlines()[0].startswith(f"study {stored[CASES[0]]['study']}")
    assert stored[CASES[0]]["series"] in out.splitlines()[1]


@pytest.mark.parametrize("how", ["wado", "c-get", "c-move"])
@pytest.mark.parametrize("case", CASES)
def test_retrieve_then_convert_equals_local(
    how, case, stored, orthanc, local_conversions, tmp_path
):
    info = stored[case]
    extra: dict[str, str] = {}
    if how == "wado":
        url = f"{orthanc.web}/studies/{info['study']}/series/{info['series']}"
    else:
        url = f"{orthanc.dimse}/{info['study']}/{info['series']}"
        if how == "c-move":
            extra = {"move": "yes", "scp_port": str(orthanc.scp_port)}
    registry = get_registry()
    # the data sets arrive byte for byte as they were sent
    with registry.fetched(url, ReadOptions(extra=extra)) as local:
        _same_instances(local, info["files"])
    assert not local.exists()  # the download is removed after use
    (written,) = convert(
        registry,
        ConvertRequest(src=url, dst=tmp_path / "net.nii", read_options=ReadOptions(extra=extra)),
    )
    data, affine = _nifti(written.files[0])
    want_data, want_affine = local_conversions[case]
    np.testing.assert_array_equal(data, want_data)
    np.testing.assert_array_equal(affine, want_affine)


def test_whole_study_by_wado_and_cget(stored, orthanc, local_conversions, tmp_path):
    info = stored[CASES[1]]
    for n, url in enumerate(
        (f"{orthanc.web}/studies/{info['study']}", f"{orthanc.dimse}/{info['study']}")
    ):
        (written,) = convert(get_registry(), ConvertRequest(src=url, dst=tmp_path / f"{n}.nii"))
        data, affine = _nifti(written.files[0])
        np.testing.assert_array_equal(data, local_conversions[CASES[1]][0])
        np.testing.assert_array_equal(affine, local_conversions[CASES[1]][1])


@pytest.mark.parametrize("sink", ["stow", "c-store"])
def test_converted_nifti_stored_then_retrieved_keeps_geometry(sink, orthanc, tmp_path, run_cli):
    image = synthetic_image(shape=(9, 7, 5), dtype=np.int16)  # oblique, anisotropic
    voxels = np.random.default_rng(5).integers(-900, 3000, size=image.shape, dtype=np.int16)
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(voxels, image.affine), src)
    sink_url = f"{orthanc.web}/" if sink == "stow" else orthanc.dimse
    code, out, store_err = run_cli(
        src, sink_url, "-v", "-O", f"series_description=anyconv {sink} test"
    )
    assert code == 0, store_err
    assert out.strip() == f"{sink_url} (5 stored)"
    # find it again by its description, fetch it back by the other protocol
    code, out, err = run_cli("query", orthanc.web, "--json")
    series = [
        (st["StudyInstanceUID"], se["SeriesInstanceUID"])
        for st in json.loads(out)
        for se in st["series"]
        if se["SeriesDescription"] == f"anyconv {sink} test"
    ]
    assert len(series) == 1
    study, uid = series[0]
    if sink == "stow":
        assert f"stored in {orthanc.web}/studies/{study}/series/{uid}" in store_err
        back_url = f"{orthanc.dimse}/{study}/{uid}"
    else:
        back_url = f"{orthanc.web}/studies/{study}/series/{uid}"
    code, out, err = run_cli(back_url, tmp_path / "back.nii.gz")
    assert code == 0, err
    data, affine = _in_grid_of(*_nifti(tmp_path / "back.nii.gz"), image.affine)
    assert data.shape == image.shape
    np.testing.assert_array_equal(data, voxels)
    assert_same_world(affine, image.affine, image.shape, atol=1e-3)


def test_stow_through_the_library_returns_instance_addresses(orthanc, tmp_path):
    image = synthetic_image(shape=(4, 5, 3))
    src = tmp_path / "in.nii"
    nib.save(nib.Nifti1Image(np.asarray(image.data), image.affine), src)
    (written,) = convert(get_registry(), ConvertRequest(src=src, dst=f"{orthanc.web}/"))
    assert len(written.stored) == 3
    assert all(
        s.startswith(f"{orthanc.web}/studies/") and "/instances/" in s for s in written.stored
    )
    # one instance address fetches that one slice
    (img,) = get_registry().read(written.stored[1])
    assert img.shape[:2] == (4, 5)


def test_bad_credentials_give_one_line(orthanc, run_cli, tmp_path):
    env = {"ANYCONV_DICOMWEB_PASSWORD": "wrong"}
    code, _, err = run_cli("query", orthanc.web, env=env)
    assert code == 4
    assert len(err.strip().splitlines()) == 1
    assert "401" in err and "refused" in err and "wrong" not in err
    code, _, err = run_cli(f"{orthanc.web}/studies/1.2.3", tmp_path / "x.nii", env=env)
    assert code == 4 and len(err.strip().splitlines()) == 1 and "401" in err
    assert not (tmp_path / "x.nii").exists()
    env = {"ANYCONV_DICOMWEB_USER": "", "ANYCONV_DICOMWEB_PASSWORD": ""}
    code, _out, err = run_cli(tmp_path / "none.nii", f"{orthanc.web}/", env=env)
    assert code != 0
    # a token is sent as a bearer token (Orthanc's basic auth refuses it: still one line)
    code, _, err = run_cli(
        "echo", orthanc.web, env={"ANYCONV_DICOMWEB_USER": "", "ANYCONV_DICOMWEB_TOKEN": "t0k"}
    )
    assert code == 4 and "credentials from environment were refused" in err


def test_credentials_from_the_config_file(orthanc, monkeypatch, tmp_path, run_cli):
    config = tmp_path / "dicomweb.toml"
    config.write_text(
        f'[hosts."127.0.0.1:{orthanc.http_port}"]\nuser = "{USER}"\npassword = "{PASSWORD}"\n'
    )
    config.chmod(0o600)
    env = {
        "ANYCONV_DICOMWEB_USER": "",
        "ANYCONV_DICOMWEB_PASSWORD": "",
        "ANYCONV_DICOMWEB_CONFIG": str(config),
    }
    code, _, err = run_cli("echo", orthanc.web, env=env)
    assert code == 0, err


def test_unknown_study_and_unreachable_server_are_one_line_errors(orthanc, run_cli, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    cases = [
        (f"{orthanc.web}/studies/1.2.3.4.5", "404"),
        (f"{orthanc.dimse}/1.2.3.4.5", "no such study"),
        (f"dicomweb+http://127.0.0.1:{port}/dicom-web/studies/1.2.3", "cannot reach"),
        (f"dicom://PACS@127.0.0.1:{port}/1.2.3", "cannot reach"),
    ]
    for url, words in cases:
        code, _out, err = run_cli(url, tmp_path / "x.nii")
        assert code == 4, (url, err)
        assert len(err.strip().splitlines()) == 1 and words in err, (url, err)
    code, _, err = run_cli("echo", f"dicom://PACS@127.0.0.1:{port}")
    assert code == 4 and len(err.strip().splitlines()) == 1 and "cannot reach" in err
    assert not (tmp_path / "x.nii").exists()


def test_unknown_calling_aet_is_rejected(orthanc, stored, tmp_path):
    info = stored[CASES[1]]
    with pytest.raises(ReadError, match=r"rejected|failed"):
        get_registry().read(
            f"{orthanc.dimse}/{info['study']}", options=ReadOptions(extra={"aet": "STRANGER"})
        )


class _CuttingProxy:
    """TCP proxy to Orthanc that cuts the first ``cuts`` answers after ``limit`` bytes.

    With ``tls``, it serves HTTPS in front of Orthanc's HTTP.
    """

    def __init__(self, port: int, limit: int, cuts: int, tls: ssl.SSLContext | None = None) -> None:
        self.target = port
        self.limit = limit
        self.cuts = cuts
        self.tls = tls
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    client.settimeout(10)
                    client = self.tls.wrap_socket(client, server_side=True)
                    client.settimeout(None)
                except OSError:  # the client refused our certificate
                    client.close()
                    continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            limit = self.limit if self.connections < self.cuts else None
            self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, limit), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[: limit - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize("limit", [20_000, 700_000])  # inside the first instance, or later
def test_cut_wado_stream_resumes_instance_by_instance(limit, stored, orthanc, caplog):
    info = stored[CASES[0]]  # 14 instances, ~2 MB
    proxy = _CuttingProxy(orthanc.http_port, limit=limit, cuts=1)
    try:
        url = (
            f"dicomweb+http://127.0.0.1:{proxy.port}/dicom-web/studies/{info['study']}"
            f"/series/{info['series']}"
        )
        with get_registry().fetched(url) as local:
            _same_instances(local, info["files"])
        # the cut stream, then QIDO and the missing instances on a new (kept-alive) connection
        assert proxy.connections == 2
        assert "transfer interrupted after" in caplog.text
    finally:
        proxy.close()


def test_failed_transfer_leaves_nothing(stored, orthanc, tmp_path, monkeypatch):
    info = stored[CASES[0]]
    # every answer over 50 kB is cut: the stream and each instance asked for again
    proxy = _CuttingProxy(orthanc.http_port, limit=50_000, cuts=1000)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        url = f"dicomweb+http://127.0.0.1:{proxy.port}/dicom-web/studies/{info['study']}"
        with pytest.raises(ReadError, match=r"interrupted|cannot reach|ended"):
            convert(get_registry(), ConvertRequest(src=url, dst=tmp_path / "out.nii"))
    finally:
        proxy.close()
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "out.nii").exists()


def test_store_refused_by_the_pacs_is_a_write_error(orthanc, stored):
    files = stored[CASES[1]]["files"]
    with pytest.raises(
        WriteError,
        match=r"rejected the association from STRANGER|aborted the association during C-STORE",
    ):
        get_registry().store(files, orthanc.dimse, WriteOptions(extra={"aet": "STRANGER"}))
    assert get_registry().store(files, orthanc.dimse, WriteOptions(extra={"aet": OUR_AET}))


@pytest.fixture(scope="module")
def https_proxy(orthanc, tmp_path_factory):
    """HTTPS in front of Orthanc with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl missing in CI")
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    proxy = _CuttingProxy(orthanc.http_port, limit=0, cuts=0, tls=context)
    yield proxy, cert
    proxy.close()


def test_tls_is_verified_by_default_and_a_ca_bundle_is_honoured(
    https_proxy, stored, run_cli, tmp_path, local_conversions
):
    proxy, cert = https_proxy
    root = f"dicomweb+https://127.0.0.1:{proxy.port}/dicom-web"
    code, _, err = run_cli("echo", root)
    assert code == 4 and len(err.strip().splitlines()) == 1, err
    assert "TLS verification of 127.0.0.1" in err and "ANYCONV_DICOMWEB_CA" in err
    code, _, err = run_cli("echo", root, env={"ANYCONV_DICOMWEB_CA": str(cert)})
    assert code == 0, err
    info = stored[CASES[1]]
    code, _, err = run_cli(
        f"{root}/studies/{info['study']}",
        tmp_path / "tls.nii",
        env={"ANYCONV_DICOMWEB_CA": str(cert)},
    )
    assert code == 0, err
    data, affine = _nifti(tmp_path / "tls.nii")
    np.testing.assert_array_equal(data, local_conversions[CASES[1]][0])
    np.testing.assert_array_equal(affine, local_conversions[CASES[1]][1])
    # verification turned off only by the config file, for that host alone, with a warning
    config = tmp_path / "dicomweb.toml"
    config.write_text(f'[hosts."127.0.0.1:{proxy.port}"]\nverify = false\n')
    code, _, err = run_cli("echo", root, env={"ANYCONV_DICOMWEB_CONFIG": str(config)})
    assert code == 0 and "verification is off" in err


@pytest.mark.parametrize("how", ["c-get", "c-move"])
def test_retrieve_without_an_instance_list(
    how, stored, orthanc, local_conversions, tmp_path, monkeypatch
):
    """A PACS that answers C-FIND only down to SERIES level still gives the whole series."""
    from anyconv_dicomnet import _dimse

    def refuse(address, options):
        raise _dimse.FindRefusedError("C-FIND at IMAGE level failed: status 0xA900")

    monkeypatch.setattr(_dimse, "_instances", refuse)
    info = stored[CASES[0]]
    extra = {"move": "yes", "scp_port": str(orthanc.scp_port)} if how == "c-move" else {}
    url = f"{orthanc.dimse}/{info['study']}/{info['series']}"
    (written,) = convert(
        get_registry(),
        ConvertRequest(src=url, dst=tmp_path / "x.nii", read_options=ReadOptions(extra=extra)),
    )
    data, affine = _nifti(written.files[0])
    np.testing.assert_array_equal(data, local_conversions[CASES[0]][0])
    np.testing.assert_array_equal(affine, local_conversions[CASES[0]][1])


def test_send_stores_files_unchanged_by_stow_and_cstore(orthanc, testdata, run_cli, tmp_path):
    ct = testdata / "dicom" / "pydicom" / "CT_small.dcm"
    code, out, err = run_cli("send", ct, orthanc.web)
    assert (code, out.strip()) == (0, f"{orthanc.web}: 1 instance(s) stored"), err
    code, out, err = run_cli("query", orthanc.dimse, "--modality", "CT", "--json")
    (study,) = json.loads(out)
    uid = str(dcmread(ct).StudyInstanceUID)
    assert study["StudyInstanceUID"] == uid
    with get_registry().fetched(f"{orthanc.dimse}/{uid}") as local:
        _same_instances(local, [ct])
    # C-STORE of a folder sends its DICOM files, skipping others
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "a.dcm").write_bytes(ct.read_bytes())
    code, out, err = run_cli("send", folder, orthanc.dimse)
    assert (code, out.strip()) == (0, f"{orthanc.dimse}: 1 instance(s) stored"), err
    code, out, err = run_cli("send", folder / "notes.txt", orthanc.dimse)
    assert code == 2 and "not a DICOM file" in err


@pytest.mark.parametrize("how", ["c-get", "c-move"])
def test_instances_lost_on_the_way_are_asked_for_again(how, stored, orthanc, monkeypatch, caplog):
    from anyconv_dicomnet import _dimse

    info = stored[CASES[0]]
    lost = sorted(info["uids"])[3:5]
    refusals: dict[str, int] = {}
    real = _dimse._Receiver.__call__

    def flaky(self, event):
        uid = str(event.request.AffectedSOPInstanceUID)
        if uid in lost and refusals.get(uid, 0) < 1:
            refusals[uid] = refusals.get(uid, 0) + 1
            return 0xA700  # out of resources, this time
        return real(self, event)

    monkeypatch.setattr(_dimse._Receiver, "__call__", flaky)
    extra = {"move": "yes", "scp_port": str(orthanc.scp_port)} if how == "c-move" else {}
    url = f"{orthanc.dimse}/{info['study']}/{info['series']}"
    with get_registry().fetched(url, ReadOptions(extra=extra)) as local:
        _same_instances(local, info["files"])
    assert refusals == dict.fromkeys(lost, 1)
    assert "12 of 14 instances received; asking again for the rest" in caplog.text

    def broken(self, event):
        if str(event.request.AffectedSOPInstanceUID) == lost[0]:
            return 0xA700
        return real(self, event)

    monkeypatch.setattr(_dimse._Receiver, "__call__", broken)
    # every round brings nothing new: the PACS's failure status is the one line
    with pytest.raises(ReadError, match=r"failed: status 0x[AC]"):
        get_registry().read(url, options=ReadOptions(extra=extra))
