"""Output names built from metadata are safe: no separators, no '..', no control characters,
no reserved device names, not too long, and the output never leaves OUT_DIR.

Core builds the names (``anyconv.registry.default_output_name`` / ``sanitize``); these tests
check it from the outside, through ``plan_outputs``, a real conversion and the CLI.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hostile_known  # noqa: E402
from anyconv import Registry  # noqa: E402
from anyconv.pipeline import ConvertRequest, convert, plan_outputs  # noqa: E402
from anyconv.registry import default_output_name, sanitize  # noqa: E402
from anyconv.specs import WriteOptions  # noqa: E402
from anyconv.testing import synthetic_image  # noqa: E402

#: Windows device names: a file called CON, con.nii.gz or LPT1.json cannot be made there.
RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}

HOSTILE_NAMES = {
    "dotdot-etc": "../../etc/x",
    "abs-etc": "/etc/passwd",
    "slash": "a/b/c",
    "backslash": "..\\..\\windows\\system32",
    "dot": ".",
    "dotdot": "..",
    "dots": "....",
    "nul-byte": "T1\x00w",
    "controls": "T1\x01\x02\x1b[31m\n\r\tmprage\x7f",
    "newline-only": "\n",
    "bidi-override": "evil\u202egpj.exe",
    "unicode-slash": "a\u2215b\uff0fc",
    "con": "CON",
    "con-lower": "con",
    "nul": "NUL",
    "com1": "COM1",
    "lpt9": "lpt9",
    "con-ext": "CON.nii",
    "aux-space": "AUX ",
    "hidden": ".bashrc",
    "tilde": "~",
    "dash": "-rf",
    "shell": "$(rm -rf ~)`x`",
    "spaces": "   ",
    "empty": "",
    "long": "x" * 5000,
    "long-unicode": "é" * 300,
}


def name_problems(name: str, suffix: str = ".nii.gz") -> list[str]:
    """What is wrong with ``name`` as a file stem (empty list: safe on POSIX and Windows)."""
    problems = []
    if not name:
        problems.append("empty")
    if "/" in name or "\\" in name or "\x00" in name:
        problems.append("separator or NUL")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        problems.append("control/format character")
    if name in (".", "..") or name.startswith("."):
        problems.append("dot name or hidden")
    if name.startswith("-"):
        problems.append("starts with '-' (read as an option)")
    if re.match(r"^[^.]*", name).group(0).rstrip(" .").upper() in RESERVED:
        problems.append("Windows reserved device name")
    if len((name + suffix + ".json").encode()) > 255:
        problems.append(f"too long ({len(name.encode())} bytes)")
    return problems


def _xfail_if_known(request: pytest.FixtureRequest, key: str) -> None:
    reason = hostile_known.reason_for(f"paths:{key}")
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.mark.parametrize("key", sorted(HOSTILE_NAMES))
def test_sanitize_gives_a_safe_name(key, request):
    _xfail_if_known(request, f"sanitize:{key}")
    out = sanitize(HOSTILE_NAMES[key]) or "image1"
    assert not name_problems(out), (HOSTILE_NAMES[key][:40], out[:60], name_problems(out))


@pytest.mark.parametrize("field", ["series_description", "protocol_name"])
@pytest.mark.parametrize("key", sorted(HOSTILE_NAMES))
def test_output_stays_in_out_dir(key, field, tmp_path, request):
    """Plan the outputs of an image whose metadata is hostile, for the default and a template."""
    _xfail_if_known(request, f"plan:{key}")
    registry = Registry()
    img = synthetic_image()
    setattr(img.meta, field, HOSTILE_NAMES[key])
    img.meta.series_number = 7
    out_dir = tmp_path / "OUT"
    for template in ("{auto}", "{series_description}", "{protocol}", "{series_number}_{protocol}"):
        req = ConvertRequest(
            src=tmp_path / "in.nii", dst=out_dir, dst_is_folder=True, name_template=template
        )
        (target,) = plan_outputs(registry, [img], req)
        assert target.parent == out_dir, target
        assert target.resolve().parent == out_dir.resolve()
        stem = target.name[: -len(".nii.gz")]
        assert not name_problems(stem), (template, stem[:60], name_problems(stem))


def test_default_name_needs_no_identity():
    img = synthetic_image()
    img.meta.patient = {"name": "Doe^Jane", "id": "12345"}
    img.meta.series_description = "T1"
    assert "Doe" not in default_output_name(img, "{auto}", 0)
    assert "12345" not in default_output_name(img, "{auto}", 0)


def _dicom_with(tmp_path: Path, testdata: Path, description: str) -> Path:
    pydicom = pytest.importorskip("pydicom")
    if not any(r.format == "dicom" for r in Registry().readers()):
        pytest.skip("no DICOM reader installed")
    src = testdata / "dicom" / "pydicom" / "MR_small.dcm"
    ds = pydicom.dcmread(src)
    ds.SeriesDescription = description
    ds.ProtocolName = description
    folder = tmp_path / "series"
    folder.mkdir()
    ds.save_as(folder / "x.dcm", enforce_file_format=False)
    return folder


CONVERT_KEYS = ["dotdot-etc", "abs-etc", "slash", "controls", "dot", "dotdot", "con", "long"]


@pytest.mark.parametrize("key", CONVERT_KEYS)
def test_dicom_series_description_conversion(key, testdata, tmp_path, request):
    """A real DICOM conversion writes only inside OUT_DIR, under a safe name."""
    _xfail_if_known(request, f"convert:{key}")
    folder = _dicom_with(tmp_path, testdata, HOSTILE_NAMES[key])
    out_dir = tmp_path / "deep" / "OUT"
    out_dir.mkdir(parents=True)
    before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(out_dir))
    results = convert(
        Registry(),
        ConvertRequest(
            src=folder, dst=out_dir, dst_is_folder=True, write_options=WriteOptions(lossy=True)
        ),
    )
    after = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(out_dir))
    assert before == after, "something was written outside OUT_DIR"
    files = [f for r in results for f in r.files]
    assert files
    for f in files:
        assert f.resolve().parent == out_dir.resolve(), f
        stem = f.name.split(".")[0]
        assert not name_problems(stem, "".join(f.suffixes)), (f.name[:60], name_problems(stem))
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f.name for f in files)


def test_cli_dotdot_series_description(testdata, tmp_path, run_cli):
    """Acceptance 3: ``../../etc/x`` as a series description, through the executable."""
    folder = _dicom_with(tmp_path, testdata, "../../etc/x\x1b\x07")
    out_dir = tmp_path / "a" / "b" / "OUT"
    code, out, err = run_cli(folder, f"{out_dir}/", "--to", "nifti1", "--lossy")
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(folder)]
    assert written
    for p in written:
        assert p.parent == out_dir, p
        assert not name_problems(p.name.split(".")[0]), p.name
    assert not (tmp_path / "a" / "etc").exists()
    assert not any("\x1b" in line or "\x07" in line for line in out.splitlines())
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]
