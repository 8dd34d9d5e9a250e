"""Start-up stays light: no format library is imported to build the CLI or list formats."""

import subprocess
import sys

HEAVY = ("pydicom", "SimpleITK", "h5py", "nibabel", "nrrd")


def imported_after(code):
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.splitlines()[-1].split() if out.stdout.strip() else []


def test_import_and_cli_build_are_light():
    assert imported_after("import anyconv, anyconv.cli as c; c.app") == []


def test_help_imports_no_numpy():
    code = (
        "import sys\nfrom anyconv.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print()\n"
    )
    assert imported_after(code + "assert 'numpy' not in sys.modules, 'numpy loaded'") == []


def test_listing_formats_and_detection_are_light(tmp_path):
    f = tmp_path / "x.nii"
    f.write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 340 + b"n+1\x00" + b"\x00" * 100)
    code = (
        "from anyconv import get_registry\nr = get_registry()\nr.formats()\nr.plugins()\n"
        f"r.choose_reader({str(f)!r})\nr.choose_writer('o.nii.gz')"
    )
    assert imported_after(code) == []


def test_non_dicom_conversions_do_not_load_pydicom(tmp_path):
    """nibabel imports pydicom for a class we never use: 0.2-0.4 s of every NIfTI conversion."""
    import anyconv
    import numpy as np
    from anyconv.testing import synthetic_image

    src = tmp_path / "in.mgz"
    anyconv.write(synthetic_image((6, 7, 8)), src)
    nii, mnc = str(tmp_path / "o.nii.gz"), str(tmp_path / "o.mnc")
    code = (
        "import anyconv\n"
        f"anyconv.convert({str(src)!r}, {nii!r}, force=True)\n"
        f"anyconv.convert({nii!r}, {mnc!r}, force=True)\n"
    )
    loaded = imported_after(code)
    assert "nibabel" in loaded and "pydicom" not in loaded
    # and pydicom still imports afterwards, in the same process, for a DICOM output
    code += (
        f"anyconv.convert({str(tmp_path / 'o.nii.gz')!r}, {str(tmp_path / 'dcm')!r} + '/', "
        "to_fmt='dicom')\n"
    )
    assert "pydicom" in imported_after(code)
    assert np.asarray(anyconv.read(tmp_path / "o.mnc").data).shape == (6, 7, 8)
