"""Addresses, credentials and the streaming multipart parser, without a server."""

from __future__ import annotations

import sys

import pytest
from anyconv.errors import ReadError, UsageError
from anyconv_dicomnet import _config
from anyconv_dicomnet._web import split_multipart


def test_plugin_module_imports_nothing_heavy():
    import subprocess

    code = (
        "import sys, anyconv_dicomnet.plugin as p; p.anyconv_transports(); p.anyconv_commands();"
        "print(sorted(m for m in ('pydicom','pynetdicom','requests','dicomweb_client','numpy')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_web_address_splits_root_study_series_instance():
    a = _config.parse_web("dicomweb+https://pacs.example.org:8443/orthanc/dicom-web/studies/1.2.3")
    assert a.base == "https://pacs.example.org:8443/orthanc/dicom-web"
    assert (a.study, a.series, a.instance) == ("1.2.3", None, None)
    assert a.url == "dicomweb+https://pacs.example.org:8443/orthanc/dicom-web"
    b = _config.parse_web("dicomweb+http://h/dicom-web/studies/1.2/series/1.2.3/instances/4.5")
    assert (b.base, b.study, b.series, b.instance) == ("http://h/dicom-web", "1.2", "1.2.3", "4.5")
    c = _config.parse_web("dicomweb+http://h:8042/dicom-web/")
    assert (c.base, c.study, c.port) == ("http://h:8042/dicom-web", None, 8042)


@pytest.mark.parametrize(
    "url",
    [
        "dicomweb+http://user:pw@h/dicom-web",  # credentials never on the command line
        "dicomweb+http://h/dicom-web/studies/",
        "dicomweb+http://h/dicom-web/studies/1.2/series",
        "dicomweb+http://h/dicom-web/studies/1.2/frames/1",
        "dicomweb+http://h/dicom-web/studies/not-a-uid",
        "dicomweb+http://h/dicom-web?x=1",
        "dicomweb+http:///dicom-web",
    ],
)
def test_bad_web_addresses_are_usage_errors(url):
    with pytest.raises(UsageError):
        _config.parse_web(url)


def test_dimse_address():
    a = _config.parse_dimse("dicom://ORTHANC@127.0.0.1:4242/1.2.3/1.2.3.4")
    assert (a.aet, a.host, a.port, a.study, a.series) == (
        "ORTHANC",
        "127.0.0.1",
        4242,
        "1.2.3",
        "1.2.3.4",
    )
    assert _config.parse_dimse("dicom://MY%20PACS@h:104").aet == "MY PACS"
    for bad in (
        "dicom://h:104/1.2",  # no AE title
        "dicom://AET@h/1.2",  # no port
        "dicom://AET:pw@h:104",
        "dicom://AET@h:104/1.2/1.3/1.4",
        "dicom://WAYTOOLONGAETITLE17@h:104",
        "dicom://AET@h:104/x.y",
    ):
        with pytest.raises(UsageError):
            _config.parse_dimse(bad)


def test_our_aet_from_option_then_env(monkeypatch):
    monkeypatch.delenv("ANYCONV_AET", raising=False)
    assert _config.our_aet() == "ANYCONV"
    monkeypatch.setenv("ANYCONV_AET", "FROMENV")
    assert _config.our_aet() == "FROMENV"
    assert _config.our_aet({"aet": "OPT"}) == "OPT"
    with pytest.raises(UsageError):
        _config.our_aet({"aet": "x" * 17})


def _clear(monkeypatch, tmp_path, text=None):
    for name in ("USER", "PASSWORD", "TOKEN", "CA"):
        monkeypatch.delenv(f"ANYCONV_DICOMWEB_{name}", raising=False)
    config = tmp_path / "dicomweb.toml"
    if text is not None:
        config.write_text(text)
        config.chmod(0o600)
    monkeypatch.setenv("ANYCONV_DICOMWEB_CONFIG", str(config))


def test_credentials_from_config_per_host_then_default(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a CA, only needs to exist")
    _clear(
        monkeypatch,
        tmp_path,
        f"""
[default]
token = "default-token"

[hosts."pacs.example.org:8443"]
user = "alice"
password = "pw1"
ca = "{ca}"

[hosts."other.example.org"]
token = "tok2"
""",
    )
    a = _config.credentials(_config.parse_web("dicomweb+https://pacs.example.org:8443/dw"))
    assert (a.user, a.password, a.token, a.verify) == ("alice", "pw1", None, str(ca))
    b = _config.credentials(_config.parse_web("dicomweb+https://other.example.org:1/dw"))
    assert (b.user, b.token, b.verify) == (None, "tok2", True)
    c = _config.credentials(_config.parse_web("dicomweb+https://third.example.org/dw"))
    assert c.token == "default-token"
    # the environment wins over the file
    monkeypatch.setenv("ANYCONV_DICOMWEB_USER", "bob")
    monkeypatch.setenv("ANYCONV_DICOMWEB_PASSWORD", "pw2")
    d = _config.credentials(_config.parse_web("dicomweb+https://pacs.example.org:8443/dw"))
    assert (d.user, d.password, d.source) == ("bob", "pw2", "environment")


def test_tls_verification_is_on_unless_configured_off(monkeypatch, tmp_path):
    _clear(monkeypatch, tmp_path, "[hosts.lab]\nverify = false\n")
    assert _config.credentials(_config.parse_web("dicomweb+https://pacs/dw")).verify is True
    assert _config.credentials(_config.parse_web("dicomweb+https://lab/dw")).verify is False
    monkeypatch.setenv("ANYCONV_DICOMWEB_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(UsageError, match="no such file"):
        _config.credentials(_config.parse_web("dicomweb+https://pacs/dw"))


def test_user_without_password_is_refused(monkeypatch, tmp_path):
    _clear(monkeypatch, tmp_path)
    monkeypatch.setenv("ANYCONV_DICOMWEB_USER", "alice")
    with pytest.raises(UsageError, match="no password"):
        _config.credentials(_config.parse_web("dicomweb+https://pacs/dw"))


def _multipart(parts: list[bytes], boundary: bytes = b"b0und4ry") -> bytes:
    out = b"preamble text\r\n"
    for body in parts:
        out += b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + body + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 11, 64, 10_000])
def test_multipart_parts_survive_any_chunking(chunk):
    # bodies holding CRLFs, dashes and a near-delimiter must come out byte for byte
    bodies = [b"DICM" + bytes(range(256)) * 3, b"", b"a\r\n--b0und4r not yet\r\n--", b"x" * 1000]
    message = _multipart(bodies)
    chunks = (message[i : i + chunk] for i in range(0, len(message), chunk))
    got = [b"".join(part) for part in split_multipart(chunks, b"b0und4ry")]
    assert got == bodies


def test_multipart_parts_need_not_be_read():
    message = _multipart([b"one", b"two"])
    assert len(list(split_multipart(iter([message]), b"b0und4ry"))) == 2


def test_multipart_cut_inside_an_instance_is_an_error():
    message = _multipart([b"first" * 100, b"second" * 100])
    cut = message[: message.index(b"second") + 50]
    with pytest.raises(ReadError, match="interrupted"):
        for part in split_multipart(iter([cut[:40], cut[40:]]), b"b0und4ry"):
            for _ in part:
                pass


def test_multipart_memory_stays_at_one_chunk():
    import tracemalloc

    chunk = b"\x5a" * (1 << 20)
    head = b"--B\r\nContent-Type: application/dicom\r\n\r\n"

    def stream():
        yield head
        for _ in range(96):  # a 96 MiB instance
            yield chunk
        yield b"\r\n--B--\r\n"

    tracemalloc.start()
    total = 0
    for part in split_multipart(stream(), b"B"):
        for piece in part:
            total += len(piece)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == 96 << 20
    assert peak < 8 << 20, peak


def test_classes_offered_for_a_retrieve():
    from anyconv_dicomnet._dimse import _classes_to_offer

    mr, ct = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.2"
    assert _classes_to_offer({"1.1": mr, "1.2": ct}) == {mr, ct}
    # no list, or instances listed without their class: the common classes, at most 126
    for expected in (None, {"1.1": mr, "1.2": ""}):
        offered = _classes_to_offer(expected)
        assert mr in offered and ct in offered and len(offered) <= 126
