import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyconv_minc.plugin as plugin
import h5py
import nibabel as nib
import numpy as np
import pytest
from anyconv import geometry
from anyconv.errors import FormatNotFoundError, ReadError
from anyconv.model import Image, Meta
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import (
    ReaderConformance,
    WriterConformance,
    assert_same_world,
    manifest_cases,
    synthetic_affine,
    synthetic_image,
)

# Oblique, anisotropic, with voxel axes running against the world axes (negative MINC steps)
# and permuted (i is mostly A-P, so the file's dimorder is not zspace,yspace,xspace).
OBLIQUE_NEG = synthetic_affine(perm=(1, 0, 2), flips=(-1, 1, -1))


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


def tool(name):
    """A minc-tools program; missing is a failure in CI, a skip elsewhere."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} (minc-tools) is not installed")
        pytest.skip(f"{name} (minc-tools) is not installed")
    return found


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, check=True)


def nib_canonical(path):
    """nibabel's reading (file order, time first) in our axis order: spatial fastest first,
    then time. Values scaled by nibabel, affine columns reordered to match."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    with h5py.File(path, "r") if _is_hdf5(path) else NetCDF(path) as fh:
        names = _dimorder(fh)
    spatial = [i for i, n in enumerate(names) if n.endswith("space")]
    time = [i for i, n in enumerate(names) if n == "time"]
    data = data.transpose(spatial[::-1] + time)
    affine = img.affine.copy()
    affine[:3, :3] = affine[:3, :3][:, ::-1]
    return data, affine


def _is_hdf5(path):
    return Path(path).read_bytes()[:4] == b"\x89HDF"


class NetCDF:
    def __init__(self, path):
        from nibabel.externals.netcdf import netcdf_file

        self.f = netcdf_file(str(path), "r", mmap=False)

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        self.f.close()


def _dimorder(fh):
    if isinstance(fh, h5py.File):
        return fh["minc-2.0/image/0/image"].attrs["dimorder"].decode().split(",")
    return list(fh.variables["image"].dimensions)


class TestMinc(ReaderConformance, WriterConformance):
    plugin = "anyconv_minc.plugin"
    read_formats = ("minc2", "minc1")
    write_format = "minc2"
    suffix = ".mnc"
    dtypes = ("int16", "uint8", "float32", "float64", "int32", "uint16")

    def independent_read(self, path):
        return nib_canonical(path)


def _corpus(testdata):
    cases = manifest_cases(testdata, "minc2") + manifest_cases(testdata, "minc1")
    return [testdata / c["path"] for c in cases]


def test_corpus_matches_nibabel(reg, testdata):
    """Every MINC corpus case: scaled voxels as nibabel's (float32 tolerance), and voxel
    corners at the same world points (1e-5 mm)."""
    paths = _corpus(testdata)
    assert len(paths) >= 6
    for path in paths:
        img = reg.read(path)[0]
        ref, ref_affine = nib_canonical(path)
        values = img.values()
        assert values.shape == ref.shape, path
        tol = 1e-6 * max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(values, ref, rtol=1e-6, atol=tol, err_msg=str(path))
        assert_same_world(img.affine, ref_affine, img.shape, atol=1e-5)


def test_corpus_converts_to_nifti_with_cli(testdata, tmp_path):
    """Acceptance 1: ``anyconv case.mnc out.nii.gz`` keeps nibabel's voxels and geometry."""
    pytest.importorskip("anyconv_nifti")
    exe = Path(sys.executable).with_name("anyconv")
    for index, path in enumerate(_corpus(testdata)):
        out = tmp_path / f"out{index}.nii.gz"
        subprocess.run([str(exe), str(path), str(out)], check=True, capture_output=True)
        ref, ref_affine = nib_canonical(path)
        got = nib.load(str(out))
        values = got.get_fdata().reshape(ref.shape)
        tol = 1e-6 * max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(values, ref, rtol=1e-6, atol=tol, err_msg=str(path))
        assert_same_world(got.affine, ref_affine, ref.shape, atol=1e-5)


def test_reading_is_lazy(reg, testdata):
    path = testdata / "minc2/nitest_minc2/mincex_diff-FA.mnc"
    img = reg.read(path)[0]
    assert not isinstance(img.data, np.ndarray)
    assert img.shape == (256, 256, 19)


def test_corpus_scaling_and_meta(reg, testdata):
    small = reg.read(testdata / "minc2/nibabel/small.mnc")[0]
    # image-min/max vary by slice there: float values, no global scaling.
    assert small.dtype == np.float32 and not small.is_scaled
    four = reg.read(testdata / "minc2/nibabel/minc2_4d.mnc")[0]
    assert four.shape == (20, 20, 10, 2)
    assert four.meta.repetition_time == 1.0
    assert four.meta.modality == "MR"
    assert "mincconcat" in four.extras["minc2"]["history"]


# -- writes checked by minc-tools ---------------------------------------------------------------


def _minc_affine_from_mincinfo(path):
    """Our affine (i fastest) rebuilt from what mincinfo reports: world = sum cos*(start+step*i)."""
    mincinfo = tool("mincinfo")
    names = run(mincinfo, "-vardims", "image", path).stdout.decode().split()
    spatial = [n for n in names if n.endswith("space")][::-1]
    affine = np.eye(4)
    for col, name in enumerate(spatial):
        step = float(run(mincinfo, "-attvalue", f"{name}:step", path).stdout)
        start = float(run(mincinfo, "-attvalue", f"{name}:start", path).stdout)
        cos = np.array(
            run(mincinfo, "-attvalue", f"{name}:direction_cosines", path).stdout.split(),
            dtype=float,
        )
        affine[:3, col] = cos * step
        affine[:3, 3] += cos * start
    return names, affine


def test_write_checked_by_minc_tools(reg, tmp_path):
    """Acceptance 2 on oblique data with negative steps: mincinfo geometry, voxeltoworld
    corners, minctoraw stored and normalised values, mincstats range, nibabel."""
    img = synthetic_image((11, 7, 5), "int16", affine=OBLIQUE_NEG, slope=0.5, inter=-3.0)
    out = tmp_path / "oblique.mnc"
    reg.write(img, out)
    names, affine = _minc_affine_from_mincinfo(out)
    assert names == ["zspace", "xspace", "yspace"]  # i is mostly A-P, j mostly R-L
    # Expected: each axis along its closest world axis, cosine pointing to + of that axis.
    cols = OBLIQUE_NEG[:3, :3]
    cosines = []
    for axis, name in ((2, "zspace"), (0, "yspace"), (1, "xspace")):
        world = "xyz".index(name[0])
        step = np.sign(cols[world, axis]) * np.linalg.norm(cols[:, axis])
        got = float(run("mincinfo", "-attvalue", f"{name}:step", out).stdout)
        assert got == pytest.approx(step, abs=1e-9), name
        cos = np.array(
            run("mincinfo", "-attvalue", f"{name}:direction_cosines", out).stdout.split(), float
        )
        np.testing.assert_allclose(cos, cols[:, axis] / step, atol=1e-9)
        cosines.append((axis, cos))
    assert float(run("mincinfo", "-attvalue", "zspace:step", out).stdout) < 0
    assert float(run("mincinfo", "-attvalue", "yspace:step", out).stdout) < 0
    starts_expected = np.linalg.solve(
        np.column_stack([c for _, c in sorted(cosines, key=lambda t: t[0])]), OBLIQUE_NEG[:3, 3]
    )
    for axis, name in ((0, "yspace"), (1, "xspace"), (2, "zspace")):
        got = float(run("mincinfo", "-attvalue", f"{name}:start", out).stdout)
        assert got == pytest.approx(starts_expected[axis], abs=1e-6), name
    assert_same_world(affine, img.affine, img.shape)
    voxeltoworld = tool("voxeltoworld")
    for ijk in geometry.corner_indices(img.shape):
        file_index = [str(int(v)) for v in ijk[::-1]]
        world = np.array(run(voxeltoworld, out, *file_index).stdout.split(), dtype=float)
        np.testing.assert_allclose(world, geometry.voxel_to_world(img.affine, ijk)[0], atol=1e-5)
    minctoraw = tool("minctoraw")
    raw = run(minctoraw, "-short", "-signed", "-nonormalize", out).stdout
    stored = np.frombuffer(raw, dtype=np.int16).reshape(img.shape[::-1]).T
    np.testing.assert_array_equal(stored, img.stored())
    raw = run(minctoraw, "-float", "-normalize", out).stdout
    real = np.frombuffer(raw, dtype=np.float32).reshape(img.shape[::-1]).T
    np.testing.assert_allclose(real, img.values(), rtol=1e-6, atol=1e-5)
    stats = subprocess.run(
        [tool("mincstats"), "-min", "-max", str(out)], capture_output=True, text=True, check=True
    )
    assert "doesn't equal header" not in stats.stderr + stats.stdout
    got = [float(line.split()[-1]) for line in stats.stdout.strip().splitlines()]
    np.testing.assert_allclose(got, [img.values().min(), img.values().max()], atol=1e-4)
    values, nib_affine = nib_canonical(out)
    np.testing.assert_allclose(values, img.values(), rtol=1e-6)
    assert_same_world(nib_affine, img.affine, img.shape)


def _closest_canonical(nimg):
    can = nib.as_closest_canonical(nimg)
    return can.get_fdata(), can.affine


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint8"])
def test_mnc2nii_matches_our_nifti(reg, tmp_path, dtype):
    """mnc2nii's NIfTI of our MINC has our NIfTI's voxels and geometry (it flips negative
    steps, so both are compared in the closest-canonical orientation)."""
    mnc2nii = tool("mnc2nii")
    img = synthetic_image((9, 8, 6), dtype, affine=OBLIQUE_NEG)
    out = tmp_path / "x.mnc"
    reg.write(img, out)
    nii = tmp_path / "x.nii"
    run(mnc2nii, "-nii", "-float", out, nii)
    theirs, their_affine = _closest_canonical(nib.load(str(nii)))
    ours, our_affine = _closest_canonical(img.to_nibabel())
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-4)
    assert_same_world(their_affine, our_affine, ours.shape, atol=1e-4)


def test_all_minc_types_round_trip(reg, tmp_path):
    minctoraw = tool("minctoraw")
    flags = {
        "int8": ["-byte", "-signed"],
        "uint8": ["-byte", "-unsigned"],
        "int16": ["-short", "-signed"],
        "uint16": ["-short", "-unsigned"],
        "int32": ["-int", "-signed"],
        "uint32": ["-int", "-unsigned"],
        "float32": ["-float"],
        "float64": ["-double"],
    }
    for dtype, flag in flags.items():
        img = synthetic_image((7, 6, 5), dtype, affine=OBLIQUE_NEG)
        out = tmp_path / f"t_{dtype}.mnc"
        reg.write(img, out)
        back = reg.read(out)[0]
        assert back.dtype == np.dtype(dtype), dtype
        np.testing.assert_array_equal(back.values(), img.values())
        raw = run(minctoraw, *flag, "-nonormalize", out).stdout
        stored = np.frombuffer(raw, dtype=dtype).reshape(img.shape[::-1]).T
        np.testing.assert_array_equal(stored, img.stored(), err_msg=dtype)


def test_sheared_affine_kept(reg, tmp_path):
    affine = OBLIQUE_NEG.copy()
    affine[:3, 1] += 0.2 * affine[:3, 0]
    img = synthetic_image((6, 5, 4), "int16", affine=affine)
    out = tmp_path / "shear.mnc"
    reg.write(img, out)
    assert_same_world(reg.read(out)[0].affine, affine, img.shape)
    _, mi_affine = _minc_affine_from_mincinfo(out)
    assert_same_world(mi_affine, affine, img.shape)


# -- slice-wise scaling -------------------------------------------------------------------------


@pytest.mark.parametrize("minc2", [True, False])
def test_slicewise_scaled_rawtominc(reg, tmp_path, minc2):
    """Acceptance 3: rawtominc normalises each slice of float input into shorts; the
    values we read are the input's, within one quantisation step of its slice."""
    rawtominc = tool("rawtominc")
    rng = np.random.default_rng(7)
    nz, ny, nx = 6, 5, 7
    scales = np.array([1, 10, 100, 1000, 0.01, 5])[:, None, None]
    real = (rng.standard_normal((nz, ny, nx)) * scales + scales).astype(np.float32)
    raw = tmp_path / "in.raw"
    real.tofile(raw)
    out = tmp_path / "slices.mnc"
    args = [rawtominc, "-clobber", "-float", "-oshort", "-scan_range"]
    args += ["-xstep", "-1.5", "-ystep", "2", "-zstep", "-3", "-xstart", "10", "-zstart", "-4"]
    args += ["-input", raw, out, nz, ny, nx]
    run(*(args[:1] + (["-2"] if minc2 else []) + args[1:]))
    img = reg.read(out)[0]
    assert img.format == ("minc2" if minc2 else "minc1")
    assert img.dtype == np.float32 and not img.is_scaled
    ours = img.values()
    expected = real.T
    quantum = (np.abs(real).max(axis=(1, 2)) * 2 / 65535)[None, None, :]
    assert np.all(np.abs(ours - expected) <= quantum * 1.01 + 1e-7)
    ref, ref_affine = nib_canonical(out)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    assert_same_world(img.affine, ref_affine, img.shape)
    minctoraw = tool("minctoraw")
    normalised = np.frombuffer(run(minctoraw, "-float", "-normalize", out).stdout, np.float32)
    np.testing.assert_allclose(ours, normalised.reshape(nz, ny, nx).T, rtol=1e-5, atol=1e-6)
    # ... and written back as MINC2 with the same values.
    again = tmp_path / "again.mnc"
    reg.write(img.load(), again)
    np.testing.assert_allclose(reg.read(again)[0].values(), ours, rtol=1e-6)


# -- formats, options, metadata -----------------------------------------------------------------


def test_minc1_output_is_refused(reg, tmp_path):
    """``--to minc1`` is exit 3, saying MINC1 is read, not written."""
    img = synthetic_image()
    with pytest.raises(FormatNotFoundError) as err:
        reg.write(img, tmp_path / "x.mnc", fmt="minc1")
    assert err.value.exit_code == 3
    assert "minc1" in str(err.value) and "not written" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    # a .mnc output is always MINC2
    reg.write(img, tmp_path / "y.mnc")
    assert (tmp_path / "y.mnc").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def test_cli_to_minc1_exit_code(tmp_path):
    exe = Path(sys.executable).with_name("anyconv")
    src = tmp_path / "in.mnc"
    Registry(plugins=[plugin], entry_points=False).write(synthetic_image(), src)
    proc = subprocess.run(
        [str(exe), str(src), str(tmp_path / "out.mnc"), "--to", "minc1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr
    assert "minc1" in proc.stderr and "not written" in proc.stderr


@pytest.mark.parametrize(("level", "expected"), [(None, 4), (0, None), (9, 9)])
def test_compression_level(reg, tmp_path, level, expected):
    img = synthetic_image((20, 18, 16), "int16")
    out = tmp_path / "c.mnc"
    reg.write(img, out, options=WriteOptions(compress_level=level))
    with h5py.File(out, "r") as fh:
        ds = fh["minc-2.0/image/0/image"]
        assert ds.compression_opts == expected
        assert (ds.compression == "gzip") == (expected is not None)
    np.testing.assert_array_equal(reg.read(out)[0].stored(), img.stored())


def test_history_ident_and_version(reg, tmp_path, testdata):
    src = reg.read(testdata / "minc2/nibabel/small.mnc")[0].load()
    out = tmp_path / "h.mnc"
    reg.write(src, out, options=WriteOptions(extra={"history": "anyconv small.mnc h.mnc"}))
    history = run(tool("minchistory"), out).stdout.decode()
    assert "mincresample -step 7 8 9" in history  # the source's history is kept
    assert history.strip().splitlines()[-1].endswith(">>> anyconv small.mnc h.mnc")
    with h5py.File(out, "r") as fh:
        root = fh["minc-2.0"]
        assert root.attrs["ident"].decode().count(":") == 4
        assert root.attrs["minc_version"].decode().startswith("2.")
        assert fh["minc-2.0/dimensions/xspace"].attrs["units"] == b"mm"
        assert fh["minc-2.0/dimensions/xspace"].attrs["spacing"] == b"regular__"


def test_meta_round_trip(reg, tmp_path):
    meta = Meta(
        modality="MR",
        manufacturer="Siemens",
        model_name="Prisma",
        repetition_time=2.5,
        echo_time=0.03,
        flip_angle=90.0,
        protocol_name="bold",
        series_description="rest run 1",
        patient={"name": "Doe^Jane", "id": "P123", "sex": "F", "birth_date": "19800101"},
        study={"id": "S9", "institution": "MNI"},
    )
    img = synthetic_image((6, 5, 4, 3), "int16")
    img.meta = meta
    out = tmp_path / "m.mnc"
    reg.write(img, out)
    back = reg.read(out)[0]
    fields = ("modality", "manufacturer", "model_name", "repetition_time", "echo_time")
    fields += ("flip_angle", "protocol_name", "series_description", "patient", "study")
    for name in fields:
        assert getattr(back.meta, name) == getattr(meta, name), name
    mincinfo = tool("mincinfo")
    assert run(mincinfo, "-attvalue", "patient:full_name", out).stdout.strip() == b"Doe^Jane"
    assert run(mincinfo, "-attvalue", "patient:sex", out).stdout.strip() == b"female"
    assert run(mincinfo, "-attvalue", "study:modality", out).stdout.strip() == b"MRI__"
    assert float(run(mincinfo, "-attvalue", "acquisition:repetition_time", out).stdout) == 2.5
    assert float(run(mincinfo, "-attvalue", "time:step", out).stdout) == 2.5
    # An anonymised image keeps no identity, whatever the source's extras held.
    anon = back.load()
    anon.meta.patient = {}
    anon.meta.study = {}
    reg.write(anon, tmp_path / "anon.mnc")
    with h5py.File(tmp_path / "anon.mnc", "r") as fh:
        assert "patient" not in fh["minc-2.0/info"]
        assert "acquisition" in fh["minc-2.0/info"]


def test_irregular_time_round_trip(reg, tmp_path):
    img = synthetic_image((5, 4, 3, 4), "float32")
    img.meta.bids["FrameTimesStart"] = [0.0, 10.0, 30.0, 70.0]
    img.meta.bids["FrameDuration"] = [10.0, 20.0, 40.0, 80.0]
    out = tmp_path / "pet.mnc"
    reg.write(img, out)
    back = reg.read(out)[0]
    assert back.meta.bids["FrameTimesStart"] == [0.0, 10.0, 30.0, 70.0]
    assert back.meta.bids["FrameDuration"] == [10.0, 20.0, 40.0, 80.0]
    np.testing.assert_array_equal(back.values(), img.values())
    mincinfo = tool("mincinfo")
    assert run(mincinfo, "-attvalue", "time:spacing", out).stdout.strip() == b"irregular"
    minctoraw = tool("minctoraw")
    raw = np.frombuffer(run(minctoraw, "-float", "-normalize", out).stdout, np.float32)
    np.testing.assert_array_equal(raw.reshape(img.shape[::-1]).T, img.values())
    # laid out as minc-tools expect: no HDF5 errors, and mincreshape carries the widths.
    header = subprocess.run([tool("mincheader"), str(out)], capture_output=True, text=True)
    assert header.returncode == 0 and "HDF5-DIAG" not in header.stderr
    copy = tmp_path / "copy.mnc"
    run(tool("mincreshape"), "-quiet", out, copy)
    assert reg.read(copy)[0].meta.bids == img.meta.bids


def _small_minc(tmp_path, name="base.mnc"):
    """A 6x5x4 short MINC2 made by rawtominc, oblique with a negative step."""
    data = (np.arange(120, dtype=np.int16) * 10).reshape(4, 5, 6)
    raw = tmp_path / "base.raw"
    data.tofile(raw)
    out = tmp_path / name
    args = ["-2", "-clobber", "-short", "-range", "0", "1190", "-real_range", "-5", "5"]
    args += ["-xstep", "-2", "-ystep", "3", "-zstep", "4", "-xstart", "10", "-zstart", "30"]
    args += ["-xdircos", "0.96", "0.28", "0", "-ydircos", "-0.28", "0.96", "0"]
    run(tool("rawtominc"), *args, "-input", raw, out, 4, 5, 6)
    return out


@pytest.mark.parametrize("minc1", [False, True])
def test_minc_tools_irregular_time_is_read(reg, tmp_path, minc1):
    """Frames made by mincconcat (offsets and widths), as MINC2 and converted to MINC1."""
    base = _small_minc(tmp_path)
    out = tmp_path / "irr.mnc"
    args = ["-2", "-clobber", "-concat_dimension", "time"]
    args += ["-coordlist", "0,10,30", "-widthlist", "10,20,40"]
    run(tool("mincconcat"), *args, base, base, base, out)
    if minc1:
        run(tool("mincconvert"), "-clobber", out, tmp_path / "irr1.mnc")
        out = tmp_path / "irr1.mnc"
    img = reg.read(out)[0]
    assert img.format == ("minc1" if minc1 else "minc2")
    assert img.shape == (6, 5, 4, 3)
    assert img.meta.bids["FrameTimesStart"] == [0.0, 10.0, 30.0]
    assert img.meta.bids["FrameDuration"] == [10.0, 20.0, 40.0]
    raw = np.frombuffer(run(tool("minctoraw"), "-float", "-normalize", out).stdout, np.float32)
    np.testing.assert_allclose(img.values(), raw.reshape(3, 4, 5, 6).T, rtol=1e-6, atol=1e-5)
    single = reg.read(_small_minc(tmp_path, "again.mnc"))[0]
    assert_same_world(img.affine, single.affine, single.shape)
    for ijk in geometry.corner_indices(single.shape):
        args = [str(int(v)) for v in ijk[::-1]]
        world = np.array(run(tool("voxeltoworld"), out, *args).stdout.split(), dtype=float)
        np.testing.assert_allclose(world, geometry.voxel_to_world(img.affine, ijk)[0], atol=1e-5)


def test_minc_tools_vector_file_is_read(reg, tmp_path):
    base = _small_minc(tmp_path)
    out = tmp_path / "vec.mnc"
    run(tool("mincmakevector"), "-2", "-clobber", base, base, base, out)
    img = reg.read(out)[0]
    assert img.shape == (6, 5, 4, 3)
    raw = np.frombuffer(run(tool("minctoraw"), "-float", "-normalize", out).stdout, np.float32)
    np.testing.assert_allclose(
        img.values(), raw.reshape(4, 5, 6, 3).transpose(2, 1, 0, 3), rtol=1e-6, atol=1e-5
    )
    single = reg.read(base)[0]
    quantum = 10 / 1190  # mincmakevector requantises into the source's valid range
    for c in range(3):
        np.testing.assert_allclose(img.values()[..., c], single.values(), atol=quantum)


def test_vector_dimension_is_trailing_axis(reg, tmp_path):
    img = synthetic_image((6, 5, 4, 3), "uint8", affine=OBLIQUE_NEG)
    img.meta.intent = "rgb"
    out = tmp_path / "rgb.mnc"
    reg.write(img, out)
    names = run(tool("mincinfo"), "-vardims", "image", out).stdout.decode().split()
    assert names[-1] == "vector_dimension" and "time" not in names
    back = reg.read(out)[0]
    assert back.shape == img.shape
    np.testing.assert_array_equal(back.values(), img.values())
    assert_same_world(back.affine, img.affine, img.shape)


def test_two_dimensional_image(reg, tmp_path):
    img = Image(np.arange(12, dtype=np.int16).reshape(4, 3), OBLIQUE_NEG)
    out = tmp_path / "flat.mnc"
    reg.write(img, out)
    back = reg.read(out)[0]
    assert back.shape == (4, 3, 1)
    np.testing.assert_array_equal(back.values()[..., 0], img.values())
    assert_same_world(back.affine, img.affine, (4, 3, 1))


# -- bad input ----------------------------------------------------------------------------------


def test_hdf5_that_is_not_minc(reg, tmp_path):
    bad = tmp_path / "plain.mnc"
    with h5py.File(bad, "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(ReadError, match=r"minc-2\.0"):
        reg.read(bad)


@pytest.mark.parametrize("chunked", [True, False])
def test_lying_header_is_refused_before_allocating(reg, tmp_path, chunked):
    out = tmp_path / "big.mnc"
    reg.write(synthetic_image((8, 8, 8), "int16"), out)
    with h5py.File(out, "r+") as fh:
        image = fh["minc-2.0/image/0/image"]
        attrs = dict(image.attrs)
        del fh["minc-2.0/image/0/image"]
        kwargs = {"chunks": (1, 64, 64), "compression": "gzip"} if chunked else {}
        ds = fh.create_dataset(
            "minc-2.0/image/0/image", shape=(4096, 4096, 4096), dtype="int16", **kwargs
        )
        if chunked:
            ds[0, :64, :64] = 1
        for k, v in attrs.items():
            ds.attrs[k] = v
    with pytest.raises(ReadError, match="refused"):
        reg.read(out)


def test_garbage_minc1_is_read_error(reg, tmp_path):
    bad = tmp_path / "bad.mnc"
    bad.write_bytes(b"CDF\x01" + os.urandom(200))
    with pytest.raises(ReadError):
        reg.read(bad)


_RAWTOMINC_TYPES = {
    "int8": ["-byte", "-signed"],
    "uint8": ["-byte", "-unsigned"],
    "int16": ["-short", "-signed"],
    "uint16": ["-short", "-unsigned"],
    "int32": ["-int", "-signed"],
    "uint32": ["-int", "-unsigned"],
    "float32": ["-float"],
    "float64": ["-double"],
}


@pytest.mark.parametrize("minc2", [True, False])
def test_every_minc_type_written_by_rawtominc(reg, tmp_path, minc2):
    """Files of every MINC type, MINC1 and MINC2, from minc-tools: stored type kept with
    one scale when it is uniform; values equal minctoraw's and nibabel's."""
    rawtominc, minctoraw = tool("rawtominc"), tool("minctoraw")
    shape = (3, 4, 5)  # z, y, x as rawtominc takes them
    for dtype, flags in _RAWTOMINC_TYPES.items():
        dt = np.dtype(dtype)
        if dt.kind == "f":
            data = (np.arange(60).reshape(shape) * 0.37 - 5).astype(dt)
            scale = []
        else:
            lo = 0 if dt.kind == "u" else -20
            data = (np.arange(60).reshape(shape) + lo).astype(dt)
            scale = ["-range", str(lo), str(lo + 59), "-real_range", "-7", "9"]
        raw = tmp_path / f"{dtype}.raw"
        data.tofile(raw)
        out = tmp_path / f"{dtype}{'_2' if minc2 else '_1'}.mnc"
        args = (["-2"] if minc2 else []) + ["-clobber", *flags, *scale]
        args += ["-xstep", "-1.5", "-zstep", "2.5", "-ystart", "7"]
        run(rawtominc, *args, "-input", raw, out, *shape)
        img = reg.read(out)[0]
        assert img.dtype == dt, dtype
        assert img.format == ("minc2" if minc2 else "minc1")
        np.testing.assert_array_equal(img.stored(), data.T, err_msg=dtype)
        expected = np.frombuffer(run(minctoraw, "-double", "-normalize", out).stdout, np.float64)
        expected = expected.reshape(shape).T
        np.testing.assert_allclose(img.values(), expected, rtol=1e-6, atol=1e-6, err_msg=dtype)
        ref, ref_affine = nib_canonical(out)
        np.testing.assert_allclose(img.values(), ref, rtol=1e-6, atol=1e-6, err_msg=dtype)
        assert_same_world(img.affine, ref_affine, img.shape)


def test_cli_nifti_to_minc_on_oblique_negative_data(tmp_path):
    """Acceptance 2: ``anyconv x.nii.gz y.mnc`` on oblique data whose axes run against the
    world gives a MINC2 file minc-tools and nibabel place exactly where the NIfTI was."""
    pytest.importorskip("anyconv_nifti")
    src = synthetic_image((10, 8, 6), "int16", affine=OBLIQUE_NEG, slope=2.0, inter=5.0)
    nii = tmp_path / "x.nii.gz"
    nib.save(src.to_nibabel(), str(nii))
    out = tmp_path / "y.mnc"
    exe = Path(sys.executable).with_name("anyconv")
    subprocess.run([str(exe), str(nii), str(out)], check=True, capture_output=True)
    ref = nib.load(str(nii))
    values = ref.get_fdata()
    for ijk in geometry.corner_indices(ref.shape):
        args = [str(int(v)) for v in ijk[::-1]]
        world = np.array(run(tool("voxeltoworld"), out, *args).stdout.split(), dtype=float)
        np.testing.assert_allclose(world, geometry.voxel_to_world(ref.affine, ijk)[0], atol=1e-5)
    raw = np.frombuffer(run(tool("minctoraw"), "-double", "-normalize", out).stdout, np.float64)
    np.testing.assert_allclose(raw.reshape(ref.shape[::-1]).T, values, rtol=1e-9)
    got, got_affine = nib_canonical(out)
    np.testing.assert_allclose(got, values, rtol=1e-9)
    assert_same_world(got_affine, ref.affine, ref.shape)


def test_complex_compound_volume_is_read(reg, tmp_path):
    """libminc's complex types are HDF5 compounds of two floats."""
    out = tmp_path / "cplx.mnc"
    reg.write(synthetic_image((5, 4, 3), "float32"), out)
    expected = (np.arange(60).reshape(3, 4, 5) + 1j * np.arange(60).reshape(3, 4, 5)[::-1]).astype(
        np.complex64
    )
    compound = np.dtype([("real", "<f4"), ("imag", "<f4")])
    with h5py.File(out, "r+") as fh:
        attrs = dict(fh["minc-2.0/image/0/image"].attrs)
        del fh["minc-2.0/image/0/image"]
        stored = np.empty((3, 4, 5), compound)
        stored["real"], stored["imag"] = expected.real, expected.imag
        ds = fh.create_dataset("minc-2.0/image/0/image", data=stored)
        for k, v in attrs.items():
            ds.attrs[k] = v
    img = reg.read(out)[0]
    assert img.dtype == np.complex64
    np.testing.assert_array_equal(img.values(), expected.T)


@pytest.mark.parametrize("case", ["minc1/nibabel/minc1_4d.mnc", "minc2/nibabel/small.mnc"])
def test_gzipped_minc_is_read(reg, testdata, tmp_path, case):
    """``.mnc.gz`` (how MINC1 is often shipped) reads as the plain file does."""
    import gzip

    src = testdata / case
    gz = tmp_path / (src.name + ".gz")
    gz.write_bytes(gzip.compress(src.read_bytes()))
    plain, packed = reg.read(src)[0], reg.read(gz)[0]
    assert packed.format == plain.format
    np.testing.assert_array_equal(packed.values(), plain.values())
    np.testing.assert_array_equal(packed.affine, plain.affine)
    gz.write_bytes(gz.read_bytes()[:-200])
    with pytest.raises(ReadError):
        img = reg.read(gz)[0]
        img.load()
