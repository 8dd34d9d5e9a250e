"""Acceptance: the plugin installs from its folder next to an installed core, as a third
party's would, and leaves without a trace."""

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from anyconv.testing import assert_same_world, manifest_cases
from nibabel import parrec

EXAMPLE = Path(__file__).resolve().parents[1]
REPO = EXAMPLE.parents[1]

READ_IN_VENV = """
import sys, numpy as np, anyconv
img = anyconv.read(sys.argv[1])
np.savez(sys.argv[2], values=img.values(np.float64), affine=img.affine)
for name in ("anyconv_nifti", "anyconv_dicom"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(name + " is installed: the venv is not core + parrec only")
"""


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        msg = "uv is needed to build a fresh virtual environment"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def _run(*args, check=True):
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    if check:
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc


def _nib(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = parrec.load(str(path), strict_sort=True)
        return img.affine, np.asarray(img.dataobj, dtype=np.float64)


@pytest.mark.slow
def test_fresh_venv_install_convert_uninstall(testdata, tmp_path):
    uv = _uv()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    exe = venv / "bin" / "anyconv"
    pars = []
    for case in manifest_cases(testdata, "parrec"):
        try:
            _nib(testdata / case["path"])
        except parrec.PARRECError:
            continue  # the survey nibabel refuses: compared elsewhere
        pars.append(testdata / case["path"])
    assert pars

    _run(uv, "venv", "-q", "--python", sys.executable, venv)
    _run(uv, "pip", "install", "-q", "--python", python, REPO / "core", EXAMPLE)

    # core + this plugin: listed, and reads through the public Python API
    formats = _run(exe, "formats").stdout
    assert any(line.split()[0] == "parrec" for line in formats.splitlines() if line.strip())
    for par in pars:
        out = tmp_path / f"{par.stem}.npz"
        _run(python, "-c", READ_IN_VENV, par, out)
        got = np.load(out)
        affine, values = _nib(par)
        np.testing.assert_allclose(got["values"], values, rtol=1e-6)
        assert_same_world(got["affine"], affine, values.shape)
    # core writes no format itself: .nii.gz needs a writer plugin (exit 3 until there is one)
    proc = _run(exe, pars[0], tmp_path / "none.nii.gz", check=False)
    assert proc.returncode == 3, proc.stderr

    # with a NIfTI writer beside it, the CLI conversion equals nibabel's reading
    _run(uv, "pip", "install", "-q", "--python", python, REPO / "plugins" / "anyconv-nifti")
    for par in pars:
        out = tmp_path / f"{par.stem}.nii.gz"
        proc = _run(exe, par, out)
        nii = nib.load(str(out))
        affine, values = _nib(par)
        np.testing.assert_allclose(nii.get_fdata(), values, rtol=1e-6)
        assert_same_world(nii.affine, affine, values.shape)

    # uninstalled: gone from the listing, and PAR files are no longer recognised
    _run(uv, "pip", "uninstall", "-q", "--python", python, "anyconv-parrec")
    formats = _run(exe, "formats").stdout
    assert "parrec" not in formats
    proc = _run(exe, pars[0], tmp_path / "after.nii.gz", check=False)
    assert proc.returncode == 3, proc.stderr
