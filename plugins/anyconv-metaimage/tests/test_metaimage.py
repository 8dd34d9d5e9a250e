import subprocess
import sys
import zlib
from pathlib import Path

import anyconv_metaimage.plugin as plugin
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv import geometry
from anyconv.errors import ReadError
from anyconv.pipeline import load_data
from anyconv.registry import Registry
from anyconv.specs import ReadOptions, WriteOptions
from anyconv.testing import (
    ReaderConformance,
    WriterConformance,
    assert_same_world,
    manifest_cases,
    synthetic_affine,
    synthetic_image,
)


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


def sitk_read(path):
    """Values (i, j, k[, c]) and RAS affine as SimpleITK reads them, converted by hand."""
    s = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(s)
    nd = s.GetDimension()
    # z, y, x[, c] -> i, j, k[, c]
    values = np.moveaxis(arr, -1, 0).T if s.GetNumberOfComponentsPerPixel() > 1 else arr.T
    k = min(nd, 3)
    direction = np.asarray(s.GetDirection()).reshape(nd, nd)[:k, :k]
    lps = np.eye(4)
    lps[:k, :k] = direction * np.asarray(s.GetSpacing()[:k])[None, :]
    lps[:k, 3] = s.GetOrigin()[:k]
    return values, geometry.lps_to_ras(lps)


class TestMetaImage(ReaderConformance, WriterConformance):
    plugin = "anyconv_metaimage.plugin"
    read_formats = ("metaimage",)
    write_format = "metaimage"
    suffix = ".mha"
    dtypes = ("int16", "float32", "uint8", "float64", "int32")

    def independent_read(self, path):
        return sitk_read(path)


class TestMetaImageDetached(WriterConformance):
    plugin = "anyconv_metaimage.plugin"
    write_format = "metaimage"
    suffix = ".mhd"
    dtypes = ("int16", "float32")

    def independent_read(self, path):
        assert path.with_suffix(".zraw").exists()
        return sitk_read(path)


def _corpus(testdata):
    return [testdata / c["path"] for c in manifest_cases(testdata, "metaimage")]


def test_corpus_matches_simpleitk(reg, testdata, tmp_path):
    """Every corpus case: voxels and corner world coordinates as SimpleITK reads them; written
    back (.mha and .mhd) and re-read by SimpleITK the same."""
    paths = _corpus(testdata)
    assert len(paths) >= 3
    for path in paths:
        values, affine = sitk_read(path)
        img = reg.read(path)[0]
        np.testing.assert_array_equal(img.stored(), values, str(path))
        assert img.dtype == values.dtype
        assert_same_world(img.affine, affine, img.shape)
        for suffix in (".mha", ".mhd"):
            out = tmp_path / (path.stem + suffix)
            reg.write(img.load(), out)
            back_values, back_affine = sitk_read(out)
            np.testing.assert_array_equal(back_values, values)
            assert_same_world(back_affine, affine, img.shape)
            s_in, s_out = sitk.ReadImage(str(path)), sitk.ReadImage(str(out))
            np.testing.assert_allclose(s_out.GetSpacing(), s_in.GetSpacing(), atol=1e-12)
            np.testing.assert_allclose(s_out.GetOrigin(), s_in.GetOrigin(), atol=1e-9)
            np.testing.assert_allclose(s_out.GetDirection(), s_in.GetDirection(), atol=1e-12)


def _sitk_nrrd_world(testdata):
    return sitk_read(testdata / "nrrd/i2nii/nrrd.nhdr")


def values_at_same_world(values_a, affine_a, values_b, affine_b):
    """Compare two grids voxel by voxel at the same world points (grids related by a
    signed axis permutation and shift)."""
    t = np.linalg.inv(affine_b) @ affine_a  # voxel of a -> voxel of b
    rounded = np.round(t)
    assert np.abs(t - rounded).max() < 1e-4, t
    perm = np.abs(rounded[:3, :3])
    assert np.allclose(perm.sum(0), 1) and np.allclose(perm.sum(1), 1), t
    idx = np.indices(values_a.shape[:3]).reshape(3, -1)
    mapped = (rounded[:3, :3] @ idx + rounded[:3, 3:4]).astype(int)
    got = values_b[tuple(mapped)]
    np.testing.assert_array_equal(values_a[tuple(idx)], got)


def test_i2nii_mha_agrees_with_nrrd_reference(reg, testdata):
    """The Slicer .mha of dicom/ge_signa_hdx_epi and dcm2niix's .nhdr (read by SimpleITK)
    put every voxel value at the same world point."""
    img = reg.read(testdata / "metaimage/i2nii/mha.mha")[0]
    ref_values, ref_affine = _sitk_nrrd_world(testdata)
    assert_same_world(img.affine, ref_affine, img.shape, atol=1e-3)
    values_at_same_world(img.stored(), img.affine, ref_values, ref_affine)


def test_transform_matrix_rows_are_axis_directions(reg, tmp_path):
    """An oblique, permuted, anisotropic volume written by SimpleITK reads with its exact
    world coordinates, and ours reads back in SimpleITK the same (TransformMatrix order)."""
    for perm, flips in [((0, 1, 2), (1, 1, 1)), ((2, 0, 1), (-1, 1, -1)), ((1, 2, 0), (1, -1, 1))]:
        affine = synthetic_affine(perm=perm, flips=flips)
        img = synthetic_image((9, 6, 4), "int16", affine=affine)
        s = img.to_sitk()
        sitk.WriteImage(s, str(tmp_path / "itk.mha"))
        back = reg.read(tmp_path / "itk.mha")[0]
        np.testing.assert_array_equal(back.stored(), img.stored())
        assert_same_world(back.affine, affine, img.shape)
        reg.write(img, tmp_path / "ours.mha", force=True)
        values, ras = sitk_read(tmp_path / "ours.mha")
        np.testing.assert_array_equal(values, img.stored())
        assert_same_world(ras, affine, img.shape)


def test_anisotropic_4d_and_2d(reg, tmp_path):
    img = synthetic_image((7, 6, 5, 3), "float32")
    img.meta.repetition_time = 2.5
    reg.write(img, tmp_path / "f.mha")
    s = sitk.ReadImage(str(tmp_path / "f.mha"))
    assert s.GetDimension() == 4 and s.GetSpacing()[3] == 2.5
    back = reg.read(tmp_path / "f.mha")[0]
    assert back.meta.repetition_time == 2.5
    np.testing.assert_array_equal(back.stored(), img.stored())
    flat = synthetic_image((8, 5), "uint8", affine=np.diag([0.7, 1.9, 1.0, 1.0]))
    flat.affine[:2, 3] = (4.0, -3.0)
    reg.write(flat, tmp_path / "flat.mha")
    s = sitk.ReadImage(str(tmp_path / "flat.mha"))
    assert s.GetDimension() == 2
    values, ras = sitk_read(tmp_path / "flat.mha")
    np.testing.assert_array_equal(values, flat.stored())
    assert_same_world(ras, flat.affine, flat.shape)
    # a 2-D image lying obliquely in 3-D becomes a one-slice 3-D MetaImage
    tilted = synthetic_image((8, 5), "uint8")
    reg.write(tilted, tmp_path / "tilted.mha")
    s = sitk.ReadImage(str(tmp_path / "tilted.mha"))
    assert s.GetSize() == (8, 5, 1)
    values, ras = sitk_read(tmp_path / "tilted.mha")
    assert_same_world(ras, tilted.affine, (8, 5, 1))


def test_vector_and_rgb_components(reg, tmp_path):
    rng = np.random.default_rng(1)
    vec = rng.normal(size=(5, 4, 3, 3)).astype(np.float32)
    s = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(vec, -1, 0).T), isVector=True)
    s.SetSpacing((1.5, 2.0, 2.5))
    sitk.WriteImage(s, str(tmp_path / "vec.mha"))
    img = reg.read(tmp_path / "vec.mha")[0]
    assert img.shape == (5, 4, 3, 3) and img.meta.intent == "vector"
    np.testing.assert_array_equal(img.stored(), vec)
    reg.write(img, tmp_path / "vec2.mha")
    s2 = sitk.ReadImage(str(tmp_path / "vec2.mha"))
    assert s2.GetNumberOfComponentsPerPixel() == 3 and s2.GetSize() == (5, 4, 3)
    np.testing.assert_array_equal(np.moveaxis(sitk.GetArrayFromImage(s2).T, 0, -1), vec)
    rgb = rng.integers(0, 255, size=(6, 5, 2, 3)).astype(np.uint8)
    img = synthetic_image((6, 5, 2)).replace(data=rgb)
    img.meta.intent = "rgb"
    reg.write(img, tmp_path / "rgb.mhd")
    back = reg.read(tmp_path / "rgb.mhd")[0]
    assert back.meta.intent == "rgb"
    np.testing.assert_array_equal(back.stored(), rgb)
    s3 = sitk.ReadImage(str(tmp_path / "rgb.mhd"))
    np.testing.assert_array_equal(np.moveaxis(sitk.GetArrayFromImage(s3).T, 0, -1), rgb)


def test_user_keys_survive(reg, tmp_path):
    s = sitk.GetImageFromArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    s.SetMetaData("PatientPosition", "HFS")
    s.SetMetaData("Custom_Key", "a value with spaces")
    sitk.WriteImage(s, str(tmp_path / "keys.mha"))
    img = reg.read(tmp_path / "keys.mha")[0]
    user = img.extras["metaimage"]["user"]
    assert user["PatientPosition"] == "HFS"
    assert user["Custom_Key"] == "a value with spaces"
    reg.write(img, tmp_path / "keys2.mhd")
    back = sitk.ReadImage(str(tmp_path / "keys2.mhd"))
    assert back.GetMetaData("Custom_Key") == "a value with spaces"
    assert back.GetMetaData("PatientPosition") == "HFS"


def _write(folder, name, text, data=b""):
    path = folder / name
    path.write_bytes(text.encode() + data)
    return path


HEAD = "ObjectType = Image\nNDims = 3\nDimSize = 4 3 2\nElementType = MET_SHORT\n"


def test_header_variants_match_simpleitk(reg, tmp_path):
    """Origin/Position, Rotation/Orientation, ElementSize, big endian, HeaderSize, LIST,
    patterns and ASCII data: each read as SimpleITK reads it."""
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # z, y, x
    rot = "0 1 0 -1 0 0 0 0 1"
    packed = zlib.compress(arr.tobytes())
    cases = {
        "origin.mha": (
            "Origin = 1 2 3\nOrientation = " + rot + "\nElementSize = 0.5 2 3\n",
            arr.tobytes(),
        ),
        "position.mha": (
            "Position = -1 -2 -3\nRotation = " + rot + "\nElementSpacing = 1 1 4\n",
            arr.tobytes(),
        ),
        "msb.mha": ("BinaryDataByteOrderMSB = True\n", arr.astype(">i2").tobytes()),
        "synonyms.mha": (
            "Position = 1 1 1\nOffset = 3 4 5\nOrigin = -2 7 9\nOrientation = 1 0 0 0 0 1 0 -1 0\n"
            f"Rotation = {rot}\nTransformMatrix = 0 0 1 0 1 0 -1 0 0\nElementSpacing = -1 2 3\n",
            arr.tobytes(),
        ),
        "gz.mha": (f"CompressedData = True\nCompressedDataSize = {len(packed)}\n", packed),
    }
    for name, (extra, data) in cases.items():
        _write(tmp_path, name, HEAD + extra + "ElementDataFile = LOCAL\n", data)
    (tmp_path / "skip.raw").write_bytes(b"\x07" * 10 + arr.tobytes())
    _write(tmp_path, "skip.mhd", HEAD + "HeaderSize = 10\nElementDataFile = skip.raw\n")
    (tmp_path / "tail.raw").write_bytes(b"\x09" * 6 + arr.tobytes())
    _write(tmp_path, "tail.mhd", HEAD + "HeaderSize = -1\nElementDataFile = tail.raw\n")
    for z in range(2):
        (tmp_path / f"slice{z:03d}.raw").write_bytes(arr[z].tobytes())
    _write(tmp_path, "list.mhd", HEAD + "ElementDataFile = LIST\nslice000.raw\nslice001.raw\n")
    _write(tmp_path, "pattern.mhd", HEAD + "ElementDataFile = slice%03d.raw 0 1 1\n")
    _write(tmp_path, "ascii.mhd", HEAD + "BinaryData = False\nElementDataFile = ascii.txt\n")
    (tmp_path / "ascii.txt").write_text(" ".join(str(v) for v in arr.ravel()) + "\n")
    for path in sorted(tmp_path.glob("*.mh[ad]")):
        values, affine = sitk_read(path)
        img = reg.read(path)[0]
        np.testing.assert_array_equal(img.stored(), values, str(path))
        np.testing.assert_array_equal(img.stored(), arr.T, str(path))
        assert_same_world(img.affine, affine, img.shape)
    # Without CompressedDataSize ITK prints "Uncompress failed" and returns garbage; we read
    # to the end of the file.
    path = _write(
        tmp_path, "nosize.mha", HEAD + "CompressedData = True\nElementDataFile = LOCAL\n", packed
    )
    np.testing.assert_array_equal(reg.read(path)[0].stored(), arr.T)


@pytest.mark.parametrize(
    ("name", "header", "data", "match"),
    [
        ("nosize.mha", "NDims = 3\nElementType = MET_SHORT\n", b"", "missing DimSize"),
        ("nondims.mha", "DimSize = 4 3 2\nElementType = MET_SHORT\n", b"", "missing NDims"),
        ("ndims.mha", "NDims = 2\nDimSize = 4 3 2\nElementType = MET_SHORT\n", b"", "NDims"),
        ("type.mha", "NDims = 1\nDimSize = 4\nElementType = MET_HALF\n", b"", "ElementType"),
        ("short.mha", HEAD, b"\x00" * 47, "truncated"),
        ("long.mha", HEAD, b"\x00" * 49, "too long"),
        ("zshort.mha", HEAD + "CompressedData = True\n", zlib.compress(b"\x01" * 40), "truncated"),
        ("zlong.mha", HEAD + "CompressedData = True\n", zlib.compress(b"\x01" * 60), "more than"),
        ("zbad.mha", HEAD + "CompressedData = True\n", b"not zlib at all", "corrupt"),
        ("zcut.mha", HEAD + "CompressedData = True\n", zlib.compress(b"\x01" * 48)[:-5], "trunc"),
        (
            "bomb.mha",
            "NDims = 3\nDimSize = 5000 5000 5000\nElementType = MET_FLOAT\nCompressedData = True\n",
            zlib.compress(b"\x00" * 1000),
            "cannot hold",
        ),
        ("abs.mhd", HEAD, b"", "absolute path"),
        ("up.mhd", HEAD, b"", "outside the header's folder"),
        ("missing.mhd", HEAD, b"", "not found"),
        ("listn.mhd", HEAD, b"", "data files listed"),
        ("junk.mha", HEAD + "this line has no equals sign\n", b"", "malformed"),
        ("noend.mha", HEAD, None, "no ElementDataFile"),
        ("singular.mha", HEAD + "TransformMatrix = 0 0 0 0 0 0 0 0 0\n", b"\x00" * 48, "singular"),
    ],
)
def test_bad_headers_are_read_errors(reg, tmp_path, name, header, data, match):
    folder = tmp_path / "inner"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(b"\x00" * 48)
    target = {
        "abs.mhd": str(tmp_path / "outside.raw"),
        "up.mhd": "../outside.raw",
        "missing.mhd": "nothere.raw",
        "listn.mhd": "LIST\na.raw",
    }.get(name, "LOCAL")
    (folder / "a.raw").write_bytes(b"\x00" * 24)
    text = header if data is None else header + f"ElementDataFile = {target}\n"
    path = _write(folder, name, text, data or b"")
    with pytest.raises(ReadError, match=match) as info:
        for img in reg.read(path):
            load_data(img)
    assert "\n" not in str(info.value)


def test_allow_outside_option(reg, tmp_path):
    folder = tmp_path / "hdr"
    folder.mkdir()
    arr = np.arange(24, dtype=np.int16)
    (tmp_path / "data.raw").write_bytes(arr.tobytes())
    for target in ("../data.raw", str(tmp_path / "data.raw")):
        path = _write(folder, "x.mhd", HEAD + f"ElementDataFile = {target}\n")
        with pytest.raises(ReadError):
            reg.read(path)
        for opts in (ReadOptions(allow_outside=True), ReadOptions(extra={"allow_outside": "1"})):
            img = reg.read(path, options=opts)[0]
            np.testing.assert_array_equal(img.stored().ravel(order="F"), arr)


def test_cli_bad_header_is_exit_4_one_line(tmp_path):
    path = _write(
        tmp_path, "bad.mha", "NDims = 3\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from anyconv.cli import main; main()",
            str(path),
            str(tmp_path / "out.nii"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 4, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing DimSize" in lines[0], proc.stderr


def test_anatomical_orientation_is_ignored_like_itk(reg, tmp_path):
    arr = np.arange(24, dtype=np.int16)
    path = _write(
        tmp_path,
        "ao.mha",
        HEAD + "AnatomicalOrientation = LPS\nElementDataFile = LOCAL\n",
        arr.tobytes(),
    )
    img = reg.read(path)[0]
    _values, affine = sitk_read(path)
    assert_same_world(img.affine, affine, img.shape)
    assert any("AnatomicalOrientation LPS" in n for n in img.notes)
    assert img.extras["metaimage"]["anatomical_orientation"] == "LPS"
    reg.write(img, tmp_path / "ao2.mha")
    text = (tmp_path / "ao2.mha").read_bytes().split(b"ElementDataFile")[0].decode()
    assert "AnatomicalOrientation = RAI" in text  # recomputed from the matrix, as ITK writes


def test_compress_option_and_file_names(reg, tmp_path):
    img = synthetic_image((20, 10, 6), "int16")
    reg.write(img, tmp_path / "a.mhd", options=WriteOptions(extra={"compress": "0"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mhd", "a.raw"]
    assert (tmp_path / "a.raw").stat().st_size == 20 * 10 * 6 * 2
    reg.write(img, tmp_path / "b.mhd")
    assert (tmp_path / "b.zraw").exists()
    reg.write(img, tmp_path / "c.mha", options=WriteOptions(compress_level=0))
    assert b"CompressedData = False" in (tmp_path / "c.mha").read_bytes()[:400]
    for name in ("a.mhd", "b.mhd", "c.mha"):
        values, affine = sitk_read(tmp_path / name)
        np.testing.assert_array_equal(values, img.stored())
        assert_same_world(affine, img.affine, img.shape)


def test_detached_pair_is_atomic(reg, tmp_path):
    img = synthetic_image()
    (tmp_path / "q.zraw").write_bytes(b"x")
    with pytest.raises(Exception, match="exists"):
        reg.write(img, tmp_path / "q.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.zraw"]


def test_lazy_read_and_detection(reg, testdata, tmp_path):
    img = reg.read(testdata / "metaimage/panimg/image10x10x10.mhd")[0]
    assert not isinstance(img.data, np.ndarray)
    renamed = tmp_path / "notes.txt"
    renamed.write_bytes((testdata / "metaimage/i2nii/mha.mha").read_bytes())
    assert reg.choose_reader(renamed).spec.format == "metaimage"
    hand = _write(
        tmp_path,
        "hand.bin",
        "NDims=3\nDimSize=4 3 2\nElementType=MET_SHORT\nElementDataFile=LOCAL\n",
        bytes(48),
    )
    assert reg.choose_reader(hand).spec.format == "metaimage"
    assert reg.read(hand)[0].shape == (4, 3, 2)


def test_sheared_and_big_values_written_exactly(reg, tmp_path):
    affine = synthetic_affine(origin=(-12345.678901, 0.000123, 98765.4321))
    affine[:3, 1] += affine[:3, 0] * 0.2
    img = synthetic_image((6, 5, 4), "float64", affine=affine)
    reg.write(img, tmp_path / "s.mha")
    back = reg.read(tmp_path / "s.mha")[0]
    np.testing.assert_allclose(back.affine, affine, rtol=0, atol=1e-9)
    _values, ras = sitk_read(tmp_path / "s.mha")
    assert_same_world(ras, affine, img.shape)


def test_path_is_pathlike(reg, testdata):
    assert reg.read(str(Path(testdata) / "metaimage/panimg/image10x11x12x13.mha"))[0].ndim == 4


def test_complex_and_scaled(reg, tmp_path):
    from anyconv.errors import LossyConversionError

    img = synthetic_image((5, 4, 3), "complex64")
    with pytest.raises(LossyConversionError):
        reg.write(img, tmp_path / "c.mha")
    assert list(tmp_path.iterdir()) == []
    scaled = synthetic_image((5, 4, 3), "int16", slope=0.5, inter=10.0)
    reg.write(scaled, tmp_path / "s.mha")
    values, _ = sitk_read(tmp_path / "s.mha")
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, scaled.values(), rtol=1e-6)
    assert any("scaling" in n for n in scaled.notes)
