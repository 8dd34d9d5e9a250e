"""Plugin subcommands, URL transports and --set reach the plugins that declare them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from anyconv import hookimpl
from anyconv.errors import UsageError
from anyconv.pipeline import ConvertRequest, convert
from anyconv.registry import Registry, url_scheme
from anyconv.specs import CommandSpec, TransportSpec, WriteOptions
from anyconv.testing import synthetic_image

CALLS: dict[str, list] = {"stored": [], "args": []}


def fetch(url: str, dest: Path, options) -> Path:
    """Pretend download: write one NIfTI named after the URL's last part."""
    import nibabel as nib

    img = synthetic_image(shape=(5, 6, 7))
    out = dest / (url.rsplit("/", 1)[-1] + ".nii")
    nib.save(nib.Nifti1Image(np.asarray(img.data), img.affine), out)
    return dest


def store(files: list[Path], url: str, options) -> list[str]:
    assert all(f.is_file() for f in files)
    CALLS["stored"].append((url, [f.name for f in files]))
    return [f"{url}/{f.name}" for f in files]


def hello(args: list[str]) -> int:
    CALLS["args"].append(args)
    return 7


class ToyTransport:
    @hookimpl
    def anyconv_transports(self):
        return [
            TransportSpec(
                schemes=("toy+http",),
                fetch=f"{__name__}:fetch",
                store=f"{__name__}:store",
                format="nifti1",
            )
        ]

    @hookimpl
    def anyconv_commands(self):
        return [CommandSpec("toyhello", f"{__name__}:hello", help="say hello")]


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register(ToyTransport(), "toy")
    sys.modules.setdefault(__name__, sys.modules[__name__])
    return reg


def test_url_scheme_is_not_a_windows_drive_or_a_path():
    assert url_scheme("dicomweb+http://h:8042/dicom-web/studies/1.2") == "dicomweb+http"
    assert url_scheme("c://x") is None
    assert url_scheme("out/x.nii") is None
    assert url_scheme("/tmp/a://b") is None


def test_fetched_input_is_read_and_the_download_removed(registry, tmp_path):
    req = ConvertRequest(src="toy+http://server/studies/abc", dst=tmp_path / "o.nii.gz")
    (written,) = convert(registry, req)
    assert written.files == [tmp_path / "o.nii.gz"]
    import nibabel as nib

    assert nib.load(written.files[0]).shape == (5, 6, 7)
    images = registry.read("toy+http://server/x")
    assert images[0].shape == (5, 6, 7)
    assert isinstance(images[0].data, np.ndarray)  # loaded before the download went away


def test_output_url_is_written_in_the_transport_format_then_stored(registry, tmp_path):
    src = tmp_path / "in.nii"
    import nibabel as nib

    img = synthetic_image(shape=(4, 5, 6))
    nib.save(nib.Nifti1Image(np.asarray(img.data), img.affine), src)
    CALLS["stored"].clear()
    (written,) = convert(registry, ConvertRequest(src=src, dst="toy+http://server/store"))
    (url, names), *_ = CALLS["stored"]
    assert url == "toy+http://server/store" and names[0].endswith(".nii.gz")
    assert written.stored == [f"{url}/{names[0]}"]
    assert not written.files[0].exists()  # staged in a temporary folder, gone after the store


def test_unknown_scheme_is_a_usage_error(registry, tmp_path):
    with pytest.raises(UsageError, match="no installed plugin handles nope://"):
        registry.read("nope://x/y")


def test_set_is_refused_by_writers_without_named_fields(registry, tmp_path):
    img = synthetic_image(shape=(3, 4, 5))
    with pytest.raises(UsageError, match="takes no --set"):
        registry.write(img, tmp_path / "x.nii", options=WriteOptions(set_values={"a": "b"}))
    assert not (tmp_path / "x.nii").exists()


def test_plugin_command_runs_with_its_arguments(registry, monkeypatch):
    from anyconv import cli

    monkeypatch.setattr("anyconv.get_registry", lambda: registry)
    CALLS["args"].clear()
    assert cli._plugin_command(["toyhello", "--x", "1"]) == 7
    assert CALLS["args"] == [["--x", "1"]]
    assert cli._plugin_command(["convert", "a", "b"]) is None
    assert cli._plugin_command(["no-such-thing"]) is None


def test_option_pairs_reach_a_transform_that_declares_them(testdata, tmp_path, run_cli):
    """`-O key=K` keys the anonymizer like `-t anonymize:key=K` does."""
    import pydicom

    src = testdata / "dicom" / "ge_pioneer_dwi_oblique"

    def study_uid(*args: str) -> str:
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        code, _, err = run_cli(str(src), f"{out}/", "--to", "dicom", *args)
        assert code == 0, err
        first = sorted(out.rglob("*.dcm"))[0]
        return str(pydicom.dcmread(first).StudyInstanceUID)

    by_option = study_uid("--anonymize", "-O", "key=k1")
    assert by_option == study_uid("-t", "anonymize:key=k1")
    assert by_option != study_uid("--anonymize", "-O", "key=k2")


def test_info_describes_a_fetched_address_and_batch_refuses_one(registry, monkeypatch):
    from anyconv import cli
    from typer.testing import CliRunner

    monkeypatch.setattr("anyconv.get_registry", lambda: registry)
    result = CliRunner().invoke(cli.app, ["info", "toy+http://server/studies/abc", "--json"])
    assert result.exit_code == 0, result.output
    import json

    tree = json.loads(result.output)
    image = tree["patients"][0]["studies"][0]["series"][0]["images"][0]
    assert image["shape"] == [5, 6, 7]
    assert image["path"].startswith("toy+http://server/studies/abc/")
    result = CliRunner().invoke(cli.app, ["batch", "toy+http://server/x", "out/"])
    assert result.exit_code == 2 and "batch reads local files" in result.output
