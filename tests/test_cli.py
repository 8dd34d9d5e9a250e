"""The CLI contract, through typer's runner and through the installed executable."""

import json

import nibabel as nib
import numpy as np
import pytest
from anyconv.cli import app
from anyconv.testing import assert_same_world, manifest_cases, synthetic_affine
from typer.testing import CliRunner

runner = CliRunner()


def nifti_cases(testdata):
    cases = [c for f in ("nifti1", "nifti2", "analyze") for c in manifest_cases(testdata, f)]
    return [testdata / c["path"] for c in cases]


def one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("anyconv: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def small_nii(tmp_path):
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(5, 4, 3), synthetic_affine())
    path = tmp_path / "small.nii.gz"
    nib.save(img, str(path))
    return path


def test_every_corpus_nifti_converts_exactly(testdata, tmp_path, run_cli):
    """Acceptance 3: `anyconv IN out.nii` then nibabel gives identical voxels and affine."""
    for i, src in enumerate(nifti_cases(testdata)):
        out = tmp_path / f"out{i}.nii"
        code, stdout, stderr = run_cli(src, out)
        assert code == 0, stderr
        assert stdout.strip() == str(out)
        ref, got = nib.load(str(src)), nib.load(str(out))
        np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(ref.dataobj))
        assert np.abs(got.affine - ref.affine).max() < 1e-5, src
        code, stdout, _ = run_cli("info", "--json", src)
        assert code == 0
        info = json.loads(stdout)
        assert np.abs(np.asarray(info["affine"]) - ref.affine).max() < 1e-5
        assert tuple(info["shape"]) == ref.shape
        assert info["dtype"] == str(ref.get_data_dtype().newbyteorder("="))
        np.testing.assert_allclose(info["zooms"], ref.header.get_zooms()[:3], atol=1e-5)
        assert info["axcodes"] == "".join(nib.aff2axcodes(ref.affine))
        assert info["format"] in ("nifti1", "nifti2", "analyze")


def test_missing_input_is_exit_4(tmp_path, run_cli):
    code, _, stderr = run_cli(tmp_path / "nope.nii", tmp_path / "out.nii")
    assert code == 4
    assert "no such file" in one_error_line(stderr)
    assert list(tmp_path.iterdir()) == []


def test_truncated_gz_is_exit_4_and_leaves_nothing(tmp_path, run_cli):
    data = np.random.default_rng(1).integers(0, 3000, (40, 40, 40)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "full.nii.gz"))
    raw = (tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "out" / "cut.nii"
    code, _, stderr = run_cli(tmp_path / "cut.nii.gz", out)
    assert code == 4
    one_error_line(stderr)
    assert not (tmp_path / "out").exists()


def test_unknown_output_extension_is_exit_3(small_nii, tmp_path, run_cli):
    code, _, stderr = run_cli(small_nii, tmp_path / "out.xyz")
    assert code == 3
    assert "out.xyz" in one_error_line(stderr)
    assert not (tmp_path / "out.xyz").exists()


def test_unknown_input_format_is_exit_3(tmp_path, run_cli):
    (tmp_path / "notes.txt").write_text("hello, not an image\n" * 10)
    code, _, stderr = run_cli(tmp_path / "notes.txt", tmp_path / "x.nii")
    assert code == 3
    one_error_line(stderr)


def test_existing_output_needs_force(small_nii, tmp_path, run_cli):
    out = tmp_path / "exists.nii"
    out.write_bytes(b"precious")
    code, _, stderr = run_cli(small_nii, out)
    assert code == 5
    assert "--force" in one_error_line(stderr)
    assert out.read_bytes() == b"precious"
    code, _, stderr = run_cli(small_nii, out, "--force")
    assert code == 0, stderr
    np.testing.assert_array_equal(nib.load(str(out)).dataobj, nib.load(str(small_nii)).dataobj)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.nii", "small.nii.gz"]


def test_empty_file_is_exit_4(tmp_path, run_cli):
    (tmp_path / "empty.nii").write_bytes(b"")
    code, _, stderr = run_cli(tmp_path / "empty.nii", tmp_path / "o.nii")
    assert code == 4
    one_error_line(stderr)


def test_garbage_with_nifti_suffix_is_not_a_traceback(tmp_path, run_cli):
    (tmp_path / "bad.nii").write_bytes(b"\x5c\x01\x00\x00" + b"\xff" * 400)
    code, _, stderr = run_cli(tmp_path / "bad.nii", tmp_path / "o.nii")
    assert code in (3, 4)
    one_error_line(stderr)
    assert not (tmp_path / "o.nii").exists()


def test_lossy_is_exit_6_then_recorded_with_flag(tmp_path, run_cli):
    """NIfTI-1 holds no dimension over 32767: exit 6, and --to nifti2 works."""
    big = tmp_path / "long.nii"
    nib.save(nib.Nifti2Image(np.zeros((40000, 2, 1), np.uint8), np.eye(4)), str(big))
    code, _, stderr = run_cli(big, tmp_path / "o.nii")
    assert code == 6
    assert "nifti2" in one_error_line(stderr)
    code, _, stderr = run_cli(big, tmp_path / "o.nii", "--to", "nifti2")
    assert code == 0, stderr
    assert nib.load(str(tmp_path / "o.nii")).shape == (40000, 2, 1)


def test_usage_error_is_exit_2(run_cli):
    code, _, _ = run_cli("convert")
    assert code == 2
    code, _, _ = run_cli("info", "--no-such-option", "x")
    assert code == 2


def test_help_and_version(run_cli):
    code, stdout, _ = run_cli("--help")
    assert code == 0
    assert "convert" in stdout
    code, stdout, _ = run_cli("--version")
    assert code == 0
    assert stdout.startswith("anyconv ")


def test_explain_names_candidates(small_nii, tmp_path, run_cli):
    code, _, stderr = run_cli(small_nii, tmp_path / "o.hdr", "--explain")
    assert code == 0, stderr
    assert "reader chose nifti1" in stderr
    assert "magic" in stderr
    assert "writer chose nifti1" in stderr
    assert (tmp_path / "o.img").exists()


def test_folder_output_names_files(testdata, tmp_path, run_cli):
    out = tmp_path / "outdir"
    code, _, stderr = run_cli(testdata / "nifti/niivue_nifti_space", f"{out}/")
    assert code == 0, stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["LPS.nii.gz", "PIR.nii.gz", "RAS.nii.gz"]
    a, b = nib.load(str(out / "LPS.nii.gz")), nib.load(str(out / "RAS.nii.gz"))
    # The same brain stored in two voxel orders: same world coordinates per voxel.
    ornt = nib.orientations
    t = ornt.ornt_transform(ornt.io_orientation(a.affine), ornt.io_orientation(b.affine))
    np.testing.assert_allclose(a.as_reoriented(t).affine, b.affine, atol=1e-4)
    np.testing.assert_allclose(a.as_reoriented(t).get_fdata(), b.get_fdata())


def test_name_template(testdata, tmp_path, run_cli):
    out = tmp_path / "o"
    code, _, stderr = run_cli(
        testdata / "nifti/niivue_nifti_space", out, "--name", "img_{index}_{stem}", "--to", "nifti1"
    )
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir())[0] == "img_1_LPS.nii.gz"
    code, _, stderr = run_cli(
        testdata / "nifti/niivue_nifti_space", tmp_path / "p", "--name", "{bad"
    )
    assert code == 2
    one_error_line(stderr)


def test_formats_json_lists_nifti(run_cli):
    code, stdout, _ = run_cli("formats", "--json")
    assert code == 0
    entries = {e["format"]: e for e in json.loads(stdout)}
    assert entries["nifti1"]["read"] and entries["nifti1"]["write"]
    assert ".nii.gz" in entries["nifti1"]["extensions"]
    assert entries["analyze"]["read"]
    assert entries["analyze"]["write"]


def test_runner_convert_and_info(small_nii, tmp_path):
    out = tmp_path / "r.nii"
    result = runner.invoke(app, [str(small_nii), str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists()
    result = runner.invoke(app, ["info", str(out), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["shape"] == [5, 4, 3]
    result = runner.invoke(app, [str(small_nii), str(out)])
    assert result.exit_code == 5
    result = runner.invoke(app, ["info", str(tmp_path / "missing.nii")])
    assert result.exit_code == 4


def test_runner_info_text(small_nii):
    result = runner.invoke(app, ["info", str(small_nii)])
    assert result.exit_code == 0
    assert "axcodes" in result.stdout
    assert "(5, 4, 3)" in result.stdout


def test_geometry_survives_to_sitk_via_cli(testdata, tmp_path, run_cli):
    import SimpleITK as sitk
    from anyconv import geometry

    src = testdata / "nifti/nibabel/example4d.nii.gz"
    out = tmp_path / "e.nii.gz"
    assert run_cli(src, out)[0] == 0
    s = sitk.ReadImage(str(out))
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(s.GetDirection()).reshape(4, 4)[:3, :3] * np.asarray(
        s.GetSpacing()[:3]
    )
    lps[:3, 3] = s.GetOrigin()[:3]
    ref = nib.load(str(src))
    assert_same_world(geometry.lps_to_ras(lps), ref.affine, ref.shape[:3], atol=1e-4)


def test_python_api_read_write_convert(testdata, tmp_path):
    import anyconv

    img = anyconv.read(testdata / "nifti/nibabel/example4d.nii.gz")
    assert img.shape == (128, 96, 24, 2)
    assert img.format == "nifti1"
    files = anyconv.write(img, tmp_path / "a.nii")
    assert files == [tmp_path / "a.nii"]
    with pytest.raises(anyconv.errors.OutputExistsError):
        anyconv.write(img, tmp_path / "a.nii")
    files = anyconv.convert(testdata / "nifti/niivue_nifti_space", tmp_path / "many")
    assert sorted(f.name for f in files) == ["LPS.nii.gz", "PIR.nii.gz", "RAS.nii.gz"]
    with pytest.raises(anyconv.errors.UsageError):
        anyconv.read(testdata / "nifti/niivue_nifti_space")
    assert len(anyconv.read_all(testdata / "nifti/niivue_nifti_space")) == 3


def test_trailing_slash_or_suffixless_name_means_folder(testdata, tmp_path, run_cli):
    src = testdata / "nifti/niivue_nifti_space"
    code, _, stderr = run_cli(src, f"{tmp_path / 'a'}/", "--name", "{stem}")
    assert code == 0, stderr
    assert (tmp_path / "a" / "LPS.nii.gz").exists()
    single = tmp_path / "single"
    single.mkdir()
    (single / "x.nii").write_bytes((testdata / "nifti/nibabel/anatomical.nii").read_bytes())
    code, _, stderr = run_cli(single, f"{tmp_path / 'b'}/")
    assert code == 0, stderr
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["x.nii.gz"]
    code, _, stderr = run_cli(single, tmp_path / "c")
    assert code == 0, stderr
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["x.nii.gz"]


def test_library_warnings_do_not_reach_stderr(testdata, tmp_path, run_cli):
    """A truncated DICOM makes pydicom warn; the user sees anyconv's one line only."""
    src = testdata / "dicom/pydicom/MR_small_RLE.dcm"
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    code, _, stderr = run_cli(bad, tmp_path / "o.nii")
    assert code in (3, 4)
    one_error_line(stderr)


def test_info_lists_series_first_and_survives_a_closed_pipe(testdata):
    """A folder starts with its patient/study/series tree (docs/study.md)."""
    import subprocess

    from anyconv.testing.fixtures import anyconv_executable

    src = testdata / "dicom/philips_achieva_enhanced_fieldmap"
    proc = subprocess.run(
        f"'{anyconv_executable()}' info '{src}' | head -5",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Patient ROGERS_20180526")
    assert lines[1].split()[:2] == ["Study", "2018-05-26"]
    assert lines[3].split()[:3] == ["series", "modality", "instances"]
    assert lines[4].split()[:3] == ["801", "MR", "1"]
    assert "801_B0_NS.nii.gz, 801_B0_NS_fieldmaphz.nii.gz" in lines[4]
    assert "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr


def test_staging_left_by_a_dead_process_is_swept(small_nii, tmp_path, run_cli):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "o"
    out.mkdir()
    stale = out / f".anyconv-staging-{dead.pid}-abcd"
    stale.mkdir()
    (stale / "half.nii").write_bytes(b"partial")
    alive = out / f".anyconv-staging-{1}-live"  # pid 1 always runs
    alive.mkdir()
    code, _, stderr = run_cli(small_nii, out / "x.nii")
    assert code == 0, stderr
    assert not stale.exists()
    assert alive.exists()


def test_format_options_as_long_flags(tmp_path, run_cli):
    """`--dicom-layout enhanced` is `-O layout=enhanced`; an undeclared one is refused."""
    import anyconv
    import pydicom
    from anyconv.testing import synthetic_image

    src = tmp_path / "in.nii"
    anyconv.write(synthetic_image((6, 7, 8)), src)
    code, _, err = run_cli(src, f"{tmp_path / 'a'}/", "--to", "dicom", "--dicom-layout", "enhanced")
    assert code == 0, err
    code, _, err = run_cli(src, f"{tmp_path / 'b'}/", "--to", "dicom", "-O", "layout=enhanced")
    assert code == 0, err
    (a,), (b,) = (list((tmp_path / d).glob("*.dcm")) for d in "ab")
    assert pydicom.dcmread(a).SOPClassUID == pydicom.dcmread(b).SOPClassUID
    assert pydicom.dcmread(a).SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR
    code, _, err = run_cli(src, tmp_path / "c.nii", "--nifti-nonsense", "1")
    assert code == 2 and "No such option" in err
