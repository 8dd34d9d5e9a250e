"""PAR/REC reader: conformance kit, corpus against nibabel, synthetic RECs for the variants."""

import os
import shutil
import subprocess
import warnings
from pathlib import Path

import anyconv_parrec.plugin as plugin
import nibabel as nib
import numpy as np
import pytest
from anyconv import geometry
from anyconv.errors import FormatNotFoundError, ReadError, UsageError
from anyconv.registry import Registry
from anyconv.specs import ReadOptions
from anyconv.testing import ReaderConformance, assert_same_world, manifest_cases
from anyconv_parrec.reader import read_parrec, slice_position_error
from nibabel import parrec

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
# nibabel's test headers whose per-slice offcentres disagree with their midslice fields
# (anonymized or oddly numbered): the reader keeps nibabel's affine and says so in a note.
ODD_POSITIONS = {"R11_T2W_TSE.PAR", "ASL_3D_Multiecho.PAR", "umass_anonymized.PAR"}


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


def corpus_pars(testdata):
    return [testdata / c["path"] for c in manifest_cases(testdata, "parrec")]


def nib_load(path, scaling="dv"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = parrec.load(str(path), strict_sort=True, scaling=scaling)
        return img, np.asarray(img.dataobj, dtype=np.float64)


def nib_readable(path):
    try:
        nib_load(path)
    except parrec.PARRECError:
        return False
    return True


def group_of(nib_img, image):
    """nibabel's volumes holding the same image type and echo as ``image``, in order."""
    hdr = nib_img.header
    order = hdr.get_sorted_slice_indices()
    defs = hdr.image_defs[order]
    nz = nib_img.shape[2]
    vols = defs.reshape((nz, -1), order="F")[0] if len(nib_img.shape) > 3 else defs[:1]
    code = image.meta.bids["ImageType"][2]
    codes = {"M": 0, "R": 1, "I": 2, "P": 3}
    want = codes.get(code, int(code[4:]) if code.startswith("TYPE") else -1)
    echo = image.meta.bids.get("EchoNumber", vols["echo number"][0])
    return np.flatnonzero((vols["image_type_mr"] == want) & (vols["echo number"] == echo))


def synthetic_pair(name, folder, seed=0):
    """A copy of one of nibabel's test PAR headers with a REC of random stored values."""
    par = folder / name
    shutil.copyfile(NIB_DATA / name, par)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with par.open() as fh:
            hdr = parrec.PARRECHeader.from_fileobj(fh, permit_truncated=True)
    nx, ny, n = hdr.get_rec_shape()
    bits = hdr.get_data_dtype().itemsize * 8
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**bits - 1, size=(nx, ny, n), dtype=f"uint{bits}")
    # Fortran order like Philips: x fastest, then y, then image.
    par.with_suffix(".REC").write_bytes(values.astype(f"<u{bits // 8}").tobytes(order="F"))
    return par


def assert_like_nibabel(path, images, scaling="dv"):
    nib_img, nib_values = nib_load(path, scaling)
    if nib_values.ndim == 3:
        nib_values = nib_values[..., None]
    covered = []
    for image in images:
        vols = group_of(nib_img, image)
        covered += list(vols)
        ours = image.values(np.float64)
        if ours.ndim == 3:
            ours = ours[..., None]
        assert ours.shape == nib_values[..., vols].shape, path
        np.testing.assert_allclose(ours, nib_values[..., vols], rtol=1e-6, atol=1e-9)
        assert_same_world(image.affine, nib_img.affine, image.shape)
        np.testing.assert_allclose(image.affine, nib_img.affine, atol=1e-9)
    assert sorted(covered) == list(range(nib_values.shape[3])), "every volume in one image"


class TestParrec(ReaderConformance):
    plugin = "anyconv_parrec.plugin"
    read_formats = ("parrec",)
    corpus_formats = ("parrec",)


# -- the corpus -----------------------------------------------------------------------------
def test_corpus_matches_nibabel(testdata, reg):
    checked = 0
    for par in corpus_pars(testdata):
        if not nib_readable(par):
            continue
        images = reg.read(par)
        assert len(images) == 1, par
        assert_like_nibabel(par, images)
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("scaling", ["dv", "fp"])
def test_corpus_scaling_choice(testdata, scaling):
    par = testdata / "parrec/nitest_balls1/T1.PAR"
    images = read_parrec(par, ReadOptions(extra={"scaling": scaling}))
    assert_like_nibabel(par, images, scaling)
    assert images[0].dtype == np.uint16  # one slope for all slices: stored values kept
    assert images[0].extras["parrec"]["scaling"] == scaling


def test_corpus_through_cli(testdata, tmp_path, run_cli):
    for par in corpus_pars(testdata):
        if not nib_readable(par):
            continue
        out = tmp_path / f"{par.stem}.nii.gz"
        code, _, err = run_cli(par, out)
        assert code == 0, err
        nii = nib.load(str(out))
        nib_img, values = nib_load(par)
        np.testing.assert_allclose(nii.get_fdata(), values, rtol=1e-6)
        assert_same_world(nii.affine, nib_img.affine, nii.shape)
        sidecar = out.with_name(f"{par.stem}.json")
        assert sidecar.exists()


def test_survey_is_split_into_stacks(testdata, tmp_path, run_cli):
    """NA.PAR holds three stacks of three orientations: nibabel refuses it, we split it."""
    par = testdata / "parrec/nitest_balls1/NA.PAR"
    with pytest.raises(parrec.PARRECError):
        nib_load(par)
    images = read_parrec(par, ReadOptions())
    assert [img.meta.series_description.rsplit("_", 1)[1] for img in images] == [
        "tra",
        "sag",
        "cor",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, defs = parrec.parse_PAR_header(par.open(encoding="latin-1"))
    rec = np.fromfile(par.with_suffix(".REC"), "<u2").reshape((256, 256, 9), order="F")
    codes = {"tra": 1, "sag": 2, "cor": 3}
    for img in images:
        code = codes[img.meta.series_description.rsplit("_", 1)[1]]
        rows = np.flatnonzero(defs["slice orientation"] == code)
        rows = rows[np.argsort(defs["slice number"][rows])]
        np.testing.assert_array_equal(img.stored(), rec[..., rows])
        # every slice centre lands on the offcentre its own image line gives
        lines = defs[rows].copy()
        lines["slice number"] = np.arange(1, len(rows) + 1)
        assert slice_position_error(lines, img.shape, img.affine) < 0.01
        assert geometry.axcodes(img.affine)[2] in {1: "SI", 2: "LR", 3: "AP"}[code]
    out = tmp_path / "survey"
    code, _, err = run_cli(par, f"{out}/")
    assert code == 0, err
    assert len(list(out.glob("*.nii.gz"))) == 3


def test_corpus_slice_positions_agree_with_affine(testdata, reg):
    """An independent check of slice ordering: per-line offcentres against the affine."""
    for par in corpus_pars(testdata):
        for img in reg.read(par):
            assert not any("offcentres" in n for n in img.notes), (par, img.notes)


# -- nibabel's test headers with synthetic REC data -----------------------------------------
SMALL_HEADERS = [
    "phantom_fake_v4.PAR",  # V4
    "phantom_fake_v4_1.PAR",  # V4.1
    "variant_v4_2_header.PAR",  # V4.2 with variant general-info spellings
    "T2-interleaved.PAR",  # slices stored interleaved in the REC
    "T2_-interleaved.PAR",  # interleaved, two dynamics
    "DTI.PAR",  # diffusion V4.2
    "DTIv40.PAR",  # diffusion V4: b-values, no directions
    "fieldmap.PAR",  # magnitude and phase
    "T1_3echo_mag_real_imag_phase.PAR",  # 3 echoes x 4 image types
    "ASL_3D_Multiecho.PAR",  # ASL labels, dynamics, echoes
    "umass_anonymized.PAR",  # two derived map types
    "Phantom_EPI_3mm_tra_-30AP_10RL_20FH_SENSE_14_1.PAR",  # triple oblique
    "Phantom_EPI_3mm_cor_20APtrans_15RLrot_SENSE_15_1.PAR",
    "Phantom_EPI_3mm_sag_15AP_SENSE_13_1.PAR",
]


@pytest.mark.parametrize("name", SMALL_HEADERS)
def test_variants_match_nibabel(name, tmp_path):
    par = synthetic_pair(name, tmp_path)
    images = read_parrec(par, ReadOptions())
    assert_like_nibabel(par, images)
    odd = any("offcentres" in n for n in images[0].notes)
    assert odd == (name in ODD_POSITIONS)


def test_multi_echo_and_types_split_with_names(tmp_path):
    par = synthetic_pair("T1_3echo_mag_real_imag_phase.PAR", tmp_path)
    images = read_parrec(par, ReadOptions())
    assert len(images) == 12
    names = {(img.meta.series_description, img.meta.bids["EchoNumber"]) for img in images}
    assert len(names) == 12
    suffixes = {img.meta.series_description.rsplit("_", 1)[-1] for img in images}
    assert {"ph", "real", "imaginary"} <= suffixes
    echo_times = sorted({img.meta.echo_time for img in images})
    assert len(echo_times) == 3
    assert all(img.shape == (80, 80, 30) for img in images)


def test_dynamics_on_fourth_axis(tmp_path):
    par = synthetic_pair("T2_-interleaved.PAR", tmp_path)
    (img,) = read_parrec(par, ReadOptions())
    assert img.shape == (80, 80, 10, 2)
    assert img.meta.repetition_time is not None


def test_diffusion_vectors_in_ras_world(tmp_path):
    par = synthetic_pair("DTI.PAR", tmp_path)
    (img,) = read_parrec(par, ReadOptions())
    nib_img, _ = nib_load(par)
    bvals, bvecs_nib = nib_img.header.get_bvals_bvecs()
    np.testing.assert_allclose(img.meta.bvals, bvals)
    # the PAR's own (ap, fh, rl) column, first slice of each volume, as RAS (-rl, -ap, fh)
    hdr = nib_img.header
    defs = hdr.image_defs[hdr.get_sorted_slice_indices()]
    ap, fh, rl = defs["diffusion"].reshape((10, -1, 3), order="F")[0].T
    ras = np.stack([-rl, -ap, fh], axis=1)
    norm = np.linalg.norm(ras, axis=1)
    ras[norm > 0] /= norm[norm > 0, None]
    np.testing.assert_allclose(img.meta.bvecs, ras, atol=1e-6)
    # nibabel's frame is the voxel frame up to the angulation (2 degrees here), so our world
    # vectors along the affine's voxel axes give nibabel's vectors back within sin(2 deg)
    assert np.abs(hdr.general_info["angulation"]).max() < 2.5
    cos = geometry.direction_cosines(img.affine)
    np.testing.assert_allclose(np.asarray(img.meta.bvecs) @ cos, bvecs_nib, atol=0.05)


def test_v4_diffusion_has_bvals_only(tmp_path):
    par = synthetic_pair("DTIv40.PAR", tmp_path)
    (img,) = read_parrec(par, ReadOptions())
    assert img.meta.bvals is not None
    assert img.meta.bvecs is None


def test_varying_scaling_is_applied_per_slice():
    """phantom_varscale ships its REC: each slice has its own slope."""
    par = NIB_DATA / "phantom_varscale.PAR"
    for scaling in ("dv", "fp"):
        (img,) = read_parrec(par, ReadOptions(extra={"scaling": scaling}))
        assert img.dtype == np.float64
        assert not img.is_scaled
        _, values = nib_load(par, scaling)
        np.testing.assert_allclose(img.stored(), values, rtol=1e-12)


def test_rec_index_column_is_followed(tmp_path):
    par = synthetic_pair("T2.PAR", tmp_path)
    (before,) = read_parrec(par, ReadOptions())
    expected = before.stored()
    # store the REC images in reverse and say so in 'index in REC file'
    lines = par.read_text(encoding="latin-1").splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.strip() and line.strip()[0].isdigit()]
    for row in rows:
        cols = lines[row].split(" ")
        fields = [c for c in cols if c]
        idx_pos = [i for i, c in enumerate(cols) if c][6]
        cols[idx_pos] = str(len(rows) - 1 - int(fields[6]))
        lines[row] = " ".join(cols)
    par.write_text("".join(lines), encoding="latin-1")
    rec = np.fromfile(par.with_suffix(".REC"), "<u2").reshape((80, 80, 10), order="F")
    par.with_suffix(".REC").write_bytes(rec[..., ::-1].tobytes(order="F"))
    (after,) = read_parrec(par, ReadOptions())
    np.testing.assert_array_equal(after.stored(), expected)


# -- bad input --------------------------------------------------------------------------------
def _edit(par, old, new):
    text = par.read_text(encoding="latin-1")
    assert old in text
    par.write_text(text.replace(old, new, 1), encoding="latin-1")


def test_unsupported_version_is_exit_4(tmp_path, run_cli):
    par = synthetic_pair("T2.PAR", tmp_path)
    _edit(par, "Research image export tool     V4.2", "Research image export tool     V3")
    with pytest.raises(ReadError, match="version V3 is not supported"):
        read_parrec(par, ReadOptions())
    code, _, err = run_cli(par, tmp_path / "x.nii.gz")
    assert code == 4
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_inconsistent_dimensions_is_exit_4(tmp_path, run_cli):
    par = synthetic_pair("T2.PAR", tmp_path)
    lines = par.read_text(encoding="latin-1").splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.strip().startswith("2 "))
    lines[row] = lines[row].replace("  80   80 ", "  64   80 ", 1)
    par.write_text("".join(lines), encoding="latin-1")
    with pytest.raises(ReadError, match=r"[Vv]arying recon resolution"):
        read_parrec(par, ReadOptions())
    code, _, err = run_cli(par, tmp_path / "x.nii.gz")
    assert code == 4
    assert len(err.strip().splitlines()) == 1, err


def test_interrupted_recording_is_read_error_unless_permitted(tmp_path):
    par = synthetic_pair("phantom_truncated.PAR", tmp_path)
    with pytest.raises(ReadError, match="inconsistency") as info:
        read_parrec(par, ReadOptions())
    assert "permit_truncated" in str(info.value)
    (img,) = read_parrec(par, ReadOptions(extra={"permit_truncated": "1"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nib_img = parrec.load(str(par), strict_sort=True, permit_truncated=True)
        values = np.asarray(nib_img.dataobj, dtype=np.float64)
    assert img.shape == nib_img.shape
    assert any("expected 4" in n for n in img.notes), img.notes
    np.testing.assert_allclose(img.values(np.float64), values, rtol=1e-6)
    np.testing.assert_allclose(img.affine, nib_img.affine, atol=1e-9)


def test_short_rec_missing_rec_and_bad_option(tmp_path):
    par = synthetic_pair("T2.PAR", tmp_path)
    rec = par.with_suffix(".REC")
    rec.write_bytes(rec.read_bytes()[:1000])
    with pytest.raises(ReadError, match="truncated"):
        read_parrec(par, ReadOptions())
    rec.unlink()
    with pytest.raises(ReadError, match="missing"):
        read_parrec(par, ReadOptions())
    with pytest.raises(UsageError):
        read_parrec(par, ReadOptions(extra={"scaling": "raw"}))


def test_lowercase_names_and_detection(tmp_path, reg):
    par = synthetic_pair("T2.PAR", tmp_path)
    low = tmp_path / "scan.par"
    par.rename(low)
    par.with_suffix(".REC").rename(tmp_path / "scan.rec")
    (img,) = reg.read(low)
    assert img.format == "parrec"
    text = tmp_path / "notes.par"
    text.write_text("hello\n")
    with pytest.raises(FormatNotFoundError):  # a .par without the PAR signature is not ours
        reg.read(text)


def _fsl_world(nii_path, bvec_path):
    """FSL .bvec rows (voxel frame, x negated for a positive determinant) as world vectors."""
    affine = nib.load(str(nii_path)).affine
    vox = np.loadtxt(bvec_path).T.copy()
    if np.linalg.det(affine[:3, :3]) > 0:
        vox[:, 0] *= -1
    return vox @ geometry.direction_cosines(affine).T


def test_diffusion_vectors_match_dcm2niix(tmp_path, run_cli):
    """dcm2niix, an independent PAR reader, puts the gradients in the same world directions.

    DTI.PAR is angulated by 2 degrees: a frame error would show as ~0.035 differences.
    """
    exe = shutil.which("dcm2niix")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("dcm2niix is not installed")
        pytest.skip("dcm2niix is not installed")
    par = synthetic_pair("DTI.PAR", tmp_path)
    ref = tmp_path / "ref"
    ref.mkdir()
    subprocess.run([exe, "-f", "ref", "-o", str(ref), str(par)], check=True, capture_output=True)
    code, _, err = run_cli(par, tmp_path / "ours.nii.gz")
    assert code == 0, err
    theirs = _fsl_world(ref / "ref.nii", ref / "ref.bvec")
    ours = _fsl_world(tmp_path / "ours.nii.gz", tmp_path / "ours.bvec")
    bvals = np.loadtxt(tmp_path / "ours.bval")
    # dcm2niix drops the isotropic trace volume (b > 0, no direction); we keep it
    trace = (bvals > 0) & (np.abs(ours).sum(axis=1) == 0)
    assert trace.sum() == 1
    np.testing.assert_allclose(ours[~trace], theirs, atol=2e-4)
    np.testing.assert_allclose(bvals[~trace], np.loadtxt(ref / "ref.bval"))


def test_corpus_metadata(testdata):
    (img,) = read_parrec(testdata / "parrec/nitest_balls1/T1.PAR", ReadOptions())
    meta = img.meta
    assert meta.series_number == 6
    assert meta.protocol_name == "T1 SENSE"
    assert meta.repetition_time == pytest.approx(0.004364)
    assert meta.manufacturer == "Philips"
    assert meta.bids["MRAcquisitionType"] == "3D"
    assert meta.bids["ImageType"] == ["ORIGINAL", "PRIMARY", "M"]
    assert meta.patient["name"] == "05aug14test"
    assert "patient_name" not in img.extras["parrec"]["general_info"]
    assert meta.bvals is None
    assert meta.slice_axis == 2


def test_derived_maps_are_marked(tmp_path):
    par = synthetic_pair("umass_anonymized.PAR", tmp_path)
    images = read_parrec(par, ReadOptions())
    assert [img.meta.bids["ImageType"][0] for img in images] == ["DERIVED", "DERIVED"]
    assert len({img.meta.series_description for img in images}) == 2


@pytest.mark.parametrize(
    "case",
    [
        "parrec/nitest_balls1/T1.PAR",
        "parrec/parrec_oblique/T1W_trans_5_15_30_SENSE_10_1.PAR",
    ],
)
def test_scanner_nifti_export_agrees_but_half_a_voxel(testdata, case):
    """The console's own NIfTI export: same voxels and axes; nibabel's origin (which we keep)
    sits half an in-plane voxel from Philips' (nibabel PR #420), and no more than that."""
    par = testdata / case
    (img,) = read_parrec(par, ReadOptions())
    ref = nib.load(
        str(par.with_suffix(".nii"))
        if par.with_suffix(".nii").exists()
        else str(par.with_suffix(".nii.gz"))
    )
    np.testing.assert_allclose(img.values(np.float64), ref.get_fdata(), rtol=1e-5, atol=0.01)
    shift = np.linalg.inv(img.affine) @ ref.affine  # reference voxel -> our voxel
    np.testing.assert_allclose(shift[:3, :3], np.eye(3), atol=2e-3)  # PAR prints 3 decimals
    # at the centre, where the rounding of the printed spacing does not add up
    centre = np.append((np.asarray(img.shape[:3]) - 1) / 2.0, 1.0)
    np.testing.assert_allclose((shift @ centre)[:3] - centre[:3], [-0.5, -0.5, 0.0], atol=0.01)


def test_partial_last_volume(tmp_path):
    par = synthetic_pair("T2_.PAR", tmp_path)
    lines = par.read_text(encoding="latin-1").splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.strip() and line.strip()[0].isdigit()]
    assert len(rows) == 20
    for i in reversed(rows[-3:]):  # the scan stopped 3 slices before the end
        del lines[i]
    par.write_text("".join(lines), encoding="latin-1")
    with pytest.raises(ReadError, match="partial volume") as info:
        read_parrec(par, ReadOptions())
    assert "permit_truncated" in str(info.value)
    (img,) = read_parrec(par, ReadOptions(extra={"permit_truncated": "yes"}))
    assert img.shape == (80, 80, 10)
    assert any("7 image(s) of incomplete volumes left out" in n for n in img.notes), img.notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nib_img = parrec.load(str(par), strict_sort=True, permit_truncated=True)
    np.testing.assert_array_equal(img.stored(), np.asarray(nib_img.dataobj.get_unscaled()))
