"""NRRD plugin: corpus against pynrrd + the spec and SimpleITK, every header form, writer."""

import bz2
import gzip
from pathlib import Path

import anyconv_nrrd.plugin as plugin
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv.errors import ReadError, WriteError
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


class TestNrrd(ReaderConformance, WriterConformance):
    plugin = "anyconv_nrrd.plugin"
    read_formats = ("nrrd",)
    write_format = "nrrd"
    suffix = ".nrrd"
    dtypes = ("int16", "uint8", "float32", "float64", "int32")

    def independent_read(self, path):
        return sitk_reference(path)


class TestNhdrWriter(WriterConformance):
    plugin = "anyconv_nrrd.plugin"
    write_format = "nrrd"
    suffix = ".nhdr"

    def independent_read(self, path):
        assert path.with_suffix(".raw").is_file()
        data, _, affine, spatial = pynrrd_reference(path)
        assert spatial == [0, 1, 2]
        return data, affine


# RAS-from-space for the spaces the NRRD spec defines (scanner-xyz and 3D-* are taken as LPS
# by ITK, hence by Slicer's volume loader).
SPACE_TO_RAS = {
    "right-anterior-superior": np.diag([1.0, 1.0, 1.0]),
    "RAS": np.diag([1.0, 1.0, 1.0]),
    "left-anterior-superior": np.diag([-1.0, 1.0, 1.0]),
    "LAS": np.diag([-1.0, 1.0, 1.0]),
    "left-posterior-superior": np.diag([-1.0, -1.0, 1.0]),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "scanner-xyz": np.diag([-1.0, -1.0, 1.0]),
    "3D-right-handed": np.diag([-1.0, -1.0, 1.0]),
}


def pynrrd_reference(path: Path):
    """(data in NRRD axis order, header, RAS affine of the spatial axes, spatial axis list)
    computed from pynrrd's parsed header and the spec, independently of the plugin."""
    data, header = nrrd.read(str(path))
    flip = SPACE_TO_RAS.get(header.get("space", "left-posterior-superior"))
    affine = np.eye(4)
    spatial = []
    if "space directions" in header:
        dirs = np.asarray(header["space directions"], dtype=float)
        for axis, vec in enumerate(dirs):
            if np.all(np.isfinite(vec)):
                affine[:3, len(spatial)] = flip @ vec[:3]
                spatial.append(axis)
        if "space origin" in header:
            affine[:3, 3] = flip @ np.asarray(header["space origin"], dtype=float)[:3]
    else:
        spacings = header.get("spacings", [1.0] * data.ndim)
        for axis in range(min(data.ndim, 3)):
            step = spacings[axis] if np.isfinite(spacings[axis]) else 1.0
            affine[axis, axis] = step * (-1 if axis < 2 else 1)
            spatial.append(axis)
    return data, header, affine, spatial


def sitk_reference(path: Path):
    """(values in i, j, k[, components] order, RAS affine) as SimpleITK reads the file."""
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    nd = img.GetDimension()
    arr = np.moveaxis(arr, -1, 0).T if img.GetNumberOfComponentsPerPixel() > 1 else arr.T
    k = min(nd, 3)
    direction = np.asarray(img.GetDirection()).reshape(nd, nd)
    lps = np.eye(4)
    lps[:k, :k] = direction[:k, :k] * np.asarray(img.GetSpacing()[:k])[None, :]
    lps[:k, 3] = img.GetOrigin()[:k]
    return arr, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def write_nrrd_file(path: Path, header: str, payload: bytes = b"") -> Path:
    """A hand-made NRRD: ``header`` lines (without magic), blank line, ``payload``."""
    text = "NRRD0005\n" + header.strip("\n") + "\n"
    if path.suffix == ".nhdr":
        path.write_bytes(text.encode())
    else:
        path.write_bytes(text.encode() + b"\n" + payload)
    return path


# -- corpus --------------------------------------------------------------------------------
# Files SimpleITK (NrrdIO) cannot read, and why; each is still checked against pynrrd + spec.
SITK_CANNOT = {
    "BallBinary30x30x30_bz2.nrrd": "NrrdIO is built without bzip2",
    "test1d_ascii.nrrd": "ITK reads 2-D and up",
    "test_simple4d_raw.nrrd": "ITK wants as many domain axes as space dimensions",
}


def _corpus_files(testdata):
    out = []
    for case in manifest_cases(testdata, "nrrd"):
        root = testdata / case["path"]
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        out += [f for f in files if f.suffix in (".nrrd", ".nhdr")]
    return out


def test_corpus_matches_pynrrd_spec_and_sitk(reg, testdata):
    files = _corpus_files(testdata)
    names = {f.name for f in files}
    assert {"nrrd.nhdr", "FLAIR.nrrd", "BallBinary30x30x30.nhdr", "test1d_ascii.nrrd"} <= names
    compared_with_sitk = 0
    for path in files:
        img = reg.read(path)[0]
        data, _, affine, _ = pynrrd_reference(path)
        values = img.values()
        np.testing.assert_array_equal(values, data, err_msg=str(path))
        assert img.dtype == data.dtype.newbyteorder("=")
        assert_same_world(img.affine, affine, img.shape)
        try:
            s_values, s_affine = sitk_reference(path)
        except RuntimeError:
            assert path.name in SITK_CANNOT, f"SimpleITK failed on {path}"
            continue
        assert path.name not in SITK_CANNOT
        np.testing.assert_array_equal(values, s_values, err_msg=str(path))
        assert_same_world(img.affine, s_affine, img.shape)
        compared_with_sitk += 1
    assert compared_with_sitk >= 5


def test_corpus_bz2_equals_its_gzip_twin(reg, testdata):
    folder = testdata / "nrrd/pynrrd"
    a = reg.read(folder / "BallBinary30x30x30_bz2.nrrd")[0]
    s_values, s_affine = sitk_reference(folder / "BallBinary30x30x30_gz.nrrd")
    np.testing.assert_array_equal(a.values(), s_values)
    assert_same_world(a.affine, s_affine, a.shape)


def test_corpus_written_back_read_by_sitk_and_pynrrd(reg, testdata, tmp_path):
    for path in _corpus_files(testdata):
        img = reg.read(path)[0]
        for suffix in (".nrrd", ".nhdr"):
            out = tmp_path / (path.name.split(".")[0] + suffix)
            reg.write(img, out, force=True)
            data, _, affine, _ = pynrrd_reference(out)
            np.testing.assert_array_equal(data, img.values(), err_msg=str(out))
            assert_same_world(affine, img.affine, img.shape)
            if path.name in SITK_CANNOT and "bz2" not in path.name:
                continue
            s_values, s_affine = sitk_reference(out)
            np.testing.assert_array_equal(s_values, img.values())
            assert_same_world(s_affine, img.affine, img.shape)


def test_dcm2niix_header_fields_and_keys_carried_through(reg, testdata, tmp_path):
    src = testdata / "nrrd/i2nii/nrrd.nhdr"
    img = reg.read(src)[0]
    assert img.meta.repetition_time == pytest.approx(2.628)
    assert img.meta.echo_time == pytest.approx(0.040)
    assert img.meta.manufacturer == "GE MEDICAL SYSTEMS"
    assert img.meta.spatial_unit == "mm"
    reg.write(img, tmp_path / "copy.nrrd")
    _, header = nrrd.read(str(tmp_path / "copy.nrrd"))
    _, ref = nrrd.read(str(src))
    for key in ("space", "space units", "centerings", "kinds", "thicknesses"):
        assert str(header[key]) == str(ref[key]), key
    np.testing.assert_array_equal(header["space directions"], ref["space directions"])
    np.testing.assert_array_equal(header["space origin"], ref["space origin"])
    dicom_keys = [k for k in ref if k.startswith("DICOM_")]
    assert len(dicom_keys) == 11
    for key in dicom_keys:
        assert header[key] == ref[key]
    text = (tmp_path / "copy.nrrd").read_bytes().split(b"\n\n")[0].decode()
    assert "DICOM_0018_0080_RepetitionTime:=2628" in text
    # A changed geometry drops the source's fields: a fresh LPS header.
    moved = img.replace(affine=img.affine @ np.diag([1.0, 1.0, 1.0, 1.0]) + np.eye(4) * 0)
    moved.affine[:3, 3] += 5.0
    reg.write(moved, tmp_path / "moved.nrrd")
    _, header = nrrd.read(str(tmp_path / "moved.nrrd"))
    assert header["space"] == "left-posterior-superior"
    assert not any(k.startswith("DICOM_") for k in header)
    assert any("dropped" in n for n in moved.notes)
    _, s_affine = sitk_reference(tmp_path / "moved.nrrd")
    assert_same_world(s_affine, moved.affine, img.shape)


# -- hand-made headers: encodings, data files, skips ---------------------------------------
def _ramp(shape, dtype="int16"):
    return (np.arange(int(np.prod(shape))) % 251 - 100).astype(dtype).reshape(shape, order="F")


GEOM = (
    "space: left-posterior-superior\nspace directions: (0.9,0.1,0) (-0.2,1.3,0) (0,0,2.5)\n"
    "space origin: (-10,20.5,3)\n"
)
GEOM_RAS = np.array(
    [[-0.9, 0.2, 0, 10], [-0.1, -1.3, 0, -20.5], [0, 0, 2.5, 3], [0, 0, 0, 1]], dtype=float
)


@pytest.mark.parametrize("encoding", ["raw", "gzip", "gz", "bzip2", "ascii", "text", "hex"])
@pytest.mark.parametrize("endian", ["little", "big"])
def test_encodings_and_endian(reg, tmp_path, encoding, endian):
    arr = _ramp((5, 4, 3))
    raw = arr.astype(">i2" if endian == "big" else "<i2").tobytes(order="F")
    payload = {
        "raw": raw,
        "gzip": gzip.compress(raw),
        "gz": gzip.compress(raw),
        "bzip2": bz2.compress(raw),
        "hex": raw.hex().encode(),
    }.get(encoding, " ".join(str(v) for v in arr.ravel(order="F")).encode())
    path = write_nrrd_file(
        tmp_path / "e.nrrd",
        f"type: short\ndimension: 3\nsizes: 5 4 3\nendian: {endian}\nencoding: {encoding}\n" + GEOM,
        payload,
    )
    img = reg.read(path)[0]
    np.testing.assert_array_equal(img.values(), arr)
    np.testing.assert_allclose(img.affine, GEOM_RAS, atol=1e-12)
    if encoding != "hex":  # pynrrd has no hex encoding
        data, _, affine, _ = pynrrd_reference(path)
        np.testing.assert_array_equal(data, arr)
        assert_same_world(img.affine, affine, arr.shape)
    if encoding not in ("bzip2", "hex"):
        s_values, s_affine = sitk_reference(path)
        np.testing.assert_array_equal(s_values, arr)
        assert_same_world(img.affine, s_affine, arr.shape)


def test_detached_single_list_and_pattern_forms(reg, tmp_path):
    arr = _ramp((4, 3, 5), "float32")
    base = "type: float\ndimension: 3\nsizes: 4 3 5\nendian: little\n" + GEOM
    (tmp_path / "whole.raw").write_bytes(arr.tobytes(order="F"))
    sub = tmp_path / "slices"
    sub.mkdir()
    for k in range(5):
        (sub / f"s{k + 1:02d}.raw.gz").write_bytes(gzip.compress(arr[:, :, k].tobytes(order="F")))
    single = write_nrrd_file(
        tmp_path / "single.nhdr", base + "encoding: raw\ndata file: whole.raw\n"
    )
    listed = write_nrrd_file(
        tmp_path / "listed.nhdr",
        base
        + "encoding: gzip\ndata file: LIST\n"
        + "".join(f"slices/s{k + 1:02d}.raw.gz\n" for k in range(5)),
    )
    pattern = write_nrrd_file(
        tmp_path / "pattern.nhdr", base + "encoding: gzip\ndata file: slices/s%02d.raw.gz 1 5 1 2\n"
    )
    # 2-D sub-blocks stated explicitly in LIST form too; two 3-D halves need subdim 3 with
    # a LIST of one file per slab along no axis: build 5 2-D files listed with subdim 2.
    listed2 = write_nrrd_file(
        tmp_path / "listed2.nhdr",
        base
        + "encoding: gzip\ndata file: LIST 2\n"
        + "".join(f"slices/s{k + 1:02d}.raw.gz\n" for k in range(5)),
    )
    for path in (single, listed, pattern, listed2):
        img = reg.read(path)[0]
        np.testing.assert_array_equal(img.values(), arr, err_msg=path.name)
        np.testing.assert_allclose(img.affine, GEOM_RAS, atol=1e-12)
    s_values, s_affine = sitk_reference(pattern)
    np.testing.assert_array_equal(s_values, arr)
    assert_same_world(reg.read(pattern)[0].affine, s_affine, arr.shape)
    descending = write_nrrd_file(
        tmp_path / "desc.nhdr", base + "encoding: gzip\ndata file: slices/s%02d.raw.gz 5 1 -1\n"
    )
    np.testing.assert_array_equal(reg.read(descending)[0].values(), arr[:, :, ::-1])


def test_line_and_byte_skip(reg, tmp_path):
    arr = _ramp((3, 4, 2))
    raw = arr.astype("<i2").tobytes(order="F")
    base = "type: short\ndimension: 3\nsizes: 3 4 2\nendian: little\n" + GEOM
    (tmp_path / "skip.raw").write_bytes(b"junk line\nmore junk\n" + b"\x00" * 7 + raw)
    (tmp_path / "tail.raw").write_bytes(b"\xff" * 33 + raw)
    (tmp_path / "skip.raw.gz").write_bytes(b"junk\n" + gzip.compress(b"\x01" * 5 + raw))
    cases = [
        ("a.nhdr", "encoding: raw\nline skip: 2\nbyte skip: 7\ndata file: skip.raw\n"),
        ("b.nhdr", "encoding: raw\nbyte skip: -1\ndata file: tail.raw\n"),
        ("c.nhdr", "encoding: gzip\nlineskip: 1\nbyteskip: 5\ndata file: skip.raw.gz\n"),
    ]
    for name, extra in cases:
        path = write_nrrd_file(tmp_path / name, base + extra)
        np.testing.assert_array_equal(reg.read(path)[0].values(), arr, err_msg=name)
        np.testing.assert_array_equal(sitk_reference(path)[0], arr, err_msg=name)
        if "gzip" not in extra:  # pynrrd also seeks the byte skip in the compressed file
            np.testing.assert_array_equal(nrrd.read(str(path))[0], arr)
    (tmp_path / "tail2.raw").write_bytes(b"\xff" * 33 + raw + b"xyz")
    (tmp_path / "tail.raw.gz").write_bytes(gzip.compress(b"\x05" * 11 + raw + b"ab"))
    for name, extra in (
        ("d.nhdr", "encoding: raw\nbyte skip: -4\ndata file: tail2.raw\n"),
        ("e.nhdr", "encoding: gzip\nbyte skip: -3\ndata file: tail.raw.gz\n"),
        ("f.nhdr", "encoding: gzip\nbyte skip: -1\ndata file: skip.raw.gz\nline skip: 1\n"),
    ):
        path = write_nrrd_file(tmp_path / name, base + extra)
        np.testing.assert_array_equal(reg.read(path)[0].values(), arr, err_msg=name)
        np.testing.assert_array_equal(sitk_reference(path)[0], arr, err_msg=name)  # teem agrees
    attached = write_nrrd_file(
        tmp_path / "att.nrrd", base + "encoding: raw\nbyte skip: -1\n", b"padding" + raw
    )
    np.testing.assert_array_equal(reg.read(attached)[0].values(), arr)


# -- geometry ------------------------------------------------------------------------------
SPACES = {
    "right-anterior-superior": np.diag([1.0, 1, 1]),
    "RAS": np.diag([1.0, 1, 1]),
    "left-anterior-superior": np.diag([-1.0, 1, 1]),
    "left-posterior-superior": np.diag([-1.0, -1, 1]),
    "LPS": np.diag([-1.0, -1, 1]),
    "scanner-xyz": np.diag([-1.0, -1, 1]),
    "3D-right-handed": np.diag([-1.0, -1, 1]),
    "LPI": np.diag([-1.0, -1, -1]),
    "left-posterior-inferior": np.diag([-1.0, -1, -1]),
    "ASL": np.array([[0.0, 0, -1], [1, 0, 0], [0, 1, 0]]),
}


@pytest.mark.parametrize("space", list(SPACES))
def test_spaces(reg, tmp_path, space):
    arr = _ramp((4, 3, 2))
    dirs = np.array([[0.9, 0.1, 0.05], [-0.2, 1.3, 0.1], [0.02, -0.1, 2.5]])  # rows: axes
    origin = np.array([-10.0, 20.5, 3.0])
    header = (
        f"type: short\ndimension: 3\nsizes: 4 3 2\nendian: little\nencoding: raw\n"
        f"space: {space}\nspace directions: "
        + " ".join("(" + ",".join(repr(float(x)) for x in d) + ")" for d in dirs)
        + "\nspace origin: ("
        + ",".join(repr(float(x)) for x in origin)
        + ")\n"
    )
    path = write_nrrd_file(tmp_path / "s.nrrd", header, arr.astype("<i2").tobytes(order="F"))
    img = reg.read(path)[0]
    expected = np.eye(4)
    expected[:3, :3] = SPACES[space] @ dirs.T
    expected[:3, 3] = SPACES[space] @ origin
    np.testing.assert_allclose(img.affine, expected, atol=1e-12)
    try:
        _, s_affine = sitk_reference(path)
    except RuntimeError:
        assert space in ("LPI", "left-posterior-inferior", "ASL")  # not teem space names
        assert any("not a teem space" in n for n in img.notes)
        return
    assert_same_world(img.affine, s_affine, arr.shape)


def test_time_space_puts_time_axis_after_space(reg, tmp_path):
    arr = _ramp((2, 3, 4, 3), "float32")  # file axes: t, i, j, k
    file_arr = np.moveaxis(arr, 3, 0)
    header = (
        "type: float\ndimension: 4\nsizes: 3 2 3 4\nendian: little\nencoding: raw\n"
        "space: right-anterior-superior-time\n"
        "space directions: (0,0,0,2.5) (1,0,0,0) (0,2,0,0) (0,0,3,0)\n"
        "space origin: (1,2,3,0)\n"
    )
    path = write_nrrd_file(tmp_path / "t.nrrd", header, file_arr.tobytes(order="F"))
    img = reg.read(path)[0]
    assert img.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(img.values(), arr)
    np.testing.assert_allclose(img.affine, [[1, 0, 0, 1], [0, 2, 0, 2], [0, 0, 3, 3], [0, 0, 0, 1]])
    assert img.meta.repetition_time == 2.5


@pytest.mark.parametrize(
    ("kind", "intent"),
    [
        ("vector", "vector"),
        ("3-vector", "vector"),
        ("RGB-color", "rgb"),
        ("covariant-vector", "vector"),
    ],
)
def test_component_axis_first_moves_last(reg, tmp_path, kind, intent):
    arr = _ramp((5, 4, 3, 3), "float32")  # canonical: i, j, k, c
    file_arr = np.moveaxis(arr, 3, 0)
    header = (
        f"type: float\ndimension: 4\nsizes: 3 5 4 3\nendian: little\nencoding: raw\nkinds: {kind} "
        "domain domain domain\nspace: left-posterior-superior\n"
        "space directions: none (0.9,0.1,0) (-0.2,1.3,0) (0,0,2.5)\nspace origin: (-10,20.5,3)\n"
        "measurement frame: (0,1,0) (1,0,0) (0,0,1)\n"
    )
    path = write_nrrd_file(tmp_path / "v.nrrd", header, file_arr.tobytes(order="F"))
    img = reg.read(path)[0]
    assert img.shape == (5, 4, 3, 3)
    assert img.meta.intent == intent
    np.testing.assert_array_equal(img.values(), arr)
    np.testing.assert_allclose(img.affine, GEOM_RAS, atol=1e-12)
    np.testing.assert_allclose(
        img.extras["nrrd"]["measurement_frame_ras"], [[0, -1, 0], [-1, 0, 0], [0, 0, 1]]
    )
    assert any("measurement frame kept" in n for n in img.notes)
    s_values, s_affine = sitk_reference(path)
    np.testing.assert_array_equal(s_values, arr)
    assert_same_world(img.affine, s_affine, arr.shape)
    # written back: same layout and frame (nothing changed), SimpleITK agrees
    out = tmp_path / "back.nrrd"
    reg.write(img, out)
    _, header_back = nrrd.read(str(out))
    assert header_back["kinds"][0] == kind
    np.testing.assert_array_equal(
        header_back["measurement frame"], [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    )
    s_values, s_affine = sitk_reference(out)
    np.testing.assert_array_equal(s_values, arr)
    assert_same_world(img.affine, s_affine, arr.shape)


def test_fresh_vector_and_rgb_written_components_first(reg, tmp_path):
    for intent, kind, ncomp, dtype in (
        ("vector", "vector", 3, "float32"),
        ("rgb", "RGB-color", 3, "uint8"),
    ):
        img = synthetic_image((6, 5, 4))
        data = _ramp((6, 5, 4, ncomp), dtype)
        img = img.replace(data=data)
        img.meta.intent = intent
        out = tmp_path / f"{intent}.nrrd"
        reg.write(img, out)
        _, header = nrrd.read(str(out))
        assert header["kinds"] == [kind, "domain", "domain", "domain"]
        assert header["space"] == "left-posterior-superior"
        s_values, s_affine = sitk_reference(out)
        np.testing.assert_array_equal(s_values, data)
        assert_same_world(s_affine, img.affine, img.shape)
        back = reg.read(out)[0]
        assert back.meta.intent == intent
        np.testing.assert_array_equal(back.values(), data)


def test_complex_kind_becomes_complex_dtype(reg, tmp_path):
    img = synthetic_image((5, 4, 3), "complex64")
    out = tmp_path / "c.nrrd"
    reg.write(img, out)
    data, header, _, _ = pynrrd_reference(out)
    assert header["kinds"][0] == "complex"
    np.testing.assert_array_equal(data[0] + 1j * data[1], img.values())
    back = reg.read(out)[0]
    assert back.dtype == np.complex64
    np.testing.assert_array_equal(back.values(), img.values())
    assert_same_world(back.affine, img.affine, img.shape)


def test_dwi_gradients_become_ras_bvecs_and_back(reg, tmp_path):
    arr = _ramp((4, 3, 2, 3), "int16")
    file_arr = np.moveaxis(arr, 3, 0)
    header = (
        "type: short\ndimension: 4\nsizes: 3 4 3 2\nendian: little\nencoding: raw\n"
        "kinds: list domain domain domain\nspace: left-posterior-superior\n"
        "space directions: none (2,0,0) (0,2,0) (0,0,2)\nspace origin: (0,0,0)\n"
        "measurement frame: (1,0,0) (0,0,1) (0,-1,0)\n"
        "modality:=DWMRI\nDWMRI_b-value:=1000\nDWMRI_gradient_0000:=0 0 0\n"
        "DWMRI_gradient_0001:=1 0 0\nDWMRI_gradient_0002:=0 0.7071067811865476 0\n"
    )
    path = write_nrrd_file(tmp_path / "dwi.nrrd", header, file_arr.tobytes(order="F"))
    img = reg.read(path)[0]
    assert img.shape == (4, 3, 2, 3)
    assert img.meta.intent is None
    np.testing.assert_allclose(img.meta.bvals, [0, 1000, 500])
    # frame columns (1,0,0) (0,0,1) (0,-1,0) in LPS; gradient x -> world LPS x -> RAS -x
    np.testing.assert_allclose(img.meta.bvecs[1], [-1, 0, 0], atol=1e-12)
    # gradient y -> frame column 1 = LPS (0,0,1) -> RAS (0,0,1)
    np.testing.assert_allclose(img.meta.bvecs[2], [0, 0, 1], atol=1e-12)
    fresh = img.replace(extras={})
    out = tmp_path / "dwi_out.nrrd"
    reg.write(fresh, out)
    back = reg.read(out)[0]
    np.testing.assert_allclose(back.meta.bvals, img.meta.bvals, atol=1e-9)
    np.testing.assert_allclose(back.meta.bvecs, img.meta.bvecs, atol=1e-9)
    np.testing.assert_array_equal(back.values(), arr)


def test_no_space_uses_spacings_and_axis_mins_as_itk(reg, tmp_path):
    arr = _ramp((4, 3, 2))
    header = (
        "type: short\ndimension: 3\nsizes: 4 3 2\nendian: little\nencoding: raw\n"
        "spacings: 0.5 2 3\n"
    )
    path = write_nrrd_file(tmp_path / "n.nrrd", header, arr.astype("<i2").tobytes(order="F"))
    img = reg.read(path)[0]
    np.testing.assert_allclose(img.affine, np.diag([-0.5, -2, 3, 1]))
    _, s_affine = sitk_reference(path)
    assert_same_world(img.affine, s_affine, arr.shape)
    header += "axis mins: 1 2 3\ncenterings: cell node cell\n"
    path = write_nrrd_file(tmp_path / "m.nrrd", header, arr.astype("<i2").tobytes(order="F"))
    img = reg.read(path)[0]
    np.testing.assert_allclose(img.affine[:3, 3], [-1.25, -2, 4.5])


def test_two_dimensional_image_in_3d_space(reg, tmp_path):
    arr = _ramp((4, 3))
    header = (
        "type: short\ndimension: 2\nsizes: 4 3\nendian: little\nencoding: raw\n"
        "space: left-posterior-superior\nspace directions: (0,1,0) (0,0,2)\nspace origin: (1,2,3)\n"
    )
    path = write_nrrd_file(tmp_path / "2d.nrrd", header, arr.astype("<i2").tobytes(order="F"))
    img = reg.read(path)[0]
    assert img.shape == (4, 3)
    np.testing.assert_allclose(img.affine[:3, :2], [[0, 0], [-1, 0], [0, 2]])
    np.testing.assert_allclose(img.affine[:3, 3], [-1, -2, 3])
    assert abs(np.linalg.det(img.affine[:3, :3])) > 0


# -- writer --------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["raw", "gzip", "bzip2", "ascii"])
@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr"])
def test_writer_encodings(reg, tmp_path, encoding, suffix):
    img = synthetic_image(
        (7, 6, 5), "float32", affine=synthetic_affine(perm=(2, 0, 1), flips=(1, -1, 1))
    )
    out = tmp_path / f"w{suffix}"
    files = reg.write(img, out, options=WriteOptions(extra={"encoding": encoding}))
    if suffix == ".nhdr":
        ext = {"raw": ".raw", "gzip": ".raw.gz", "bzip2": ".raw.bz2", "ascii": ".txt"}[encoding]
        assert [f.name for f in files] == ["w.nhdr", "w" + ext]
    data, header, affine, _ = pynrrd_reference(out)
    assert header["encoding"] == encoding
    np.testing.assert_array_equal(data, img.values())
    assert_same_world(affine, img.affine, img.shape)
    back = reg.read(out)[0]
    np.testing.assert_array_equal(back.values(), img.values())
    assert_same_world(back.affine, img.affine, img.shape)


def test_writer_gzip_default_and_level(reg, tmp_path):
    img = synthetic_image((40, 40, 40), "int16")
    reg.write(img, tmp_path / "d.nrrd")
    assert nrrd.read_header(str(tmp_path / "d.nrrd"))["encoding"] == "gzip"
    reg.write(img, tmp_path / "fast.nrrd", options=WriteOptions(compress_level=1))
    reg.write(img, tmp_path / "small.nrrd", options=WriteOptions(compress_level=9))
    assert (tmp_path / "small.nrrd").stat().st_size <= (tmp_path / "fast.nrrd").stat().st_size
    with pytest.raises(WriteError, match="encoding"):
        reg.write(img, tmp_path / "x.nrrd", options=WriteOptions(extra={"encoding": "zstd"}))
    assert not (tmp_path / "x.nrrd").exists()


def test_nhdr_pair_is_atomic(reg, tmp_path):
    img = synthetic_image()
    reg.write(img, tmp_path / "p.nhdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.nhdr", "p.raw"]
    (tmp_path / "q.raw").write_bytes(b"x")
    with pytest.raises(Exception, match="exists"):
        reg.write(img, tmp_path / "q.nhdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.nhdr", "p.raw", "q.raw"]
    reg.write(img, tmp_path / "q.nhdr", force=True)
    np.testing.assert_array_equal(reg.read(tmp_path / "q.nhdr")[0].values(), img.values())


def test_time_series_axis_is_list_and_read_back(reg, tmp_path):
    img = synthetic_image((5, 4, 3, 6), "int16")
    out = tmp_path / "ts.nrrd"
    reg.write(img, out)
    _, header = nrrd.read(str(out))
    assert header["kinds"] == ["domain", "domain", "domain", "list"]
    back = reg.read(out)[0]
    assert back.shape == img.shape
    np.testing.assert_array_equal(back.values(), img.values())


def test_dtypes_written_exactly(reg, tmp_path):
    for dtype in (
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float64",
    ):
        img = synthetic_image((4, 3, 2), dtype)
        out = tmp_path / f"{dtype}.nrrd"
        reg.write(img, out)
        data, _ = nrrd.read(str(out))
        assert data.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(data, img.values())


# -- bad input -----------------------------------------------------------------------------
BASE = "type: short\ndimension: 3\nsizes: 4 3 2\nendian: little\nencoding: raw\n" + GEOM


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("type: short\ndimension: 3\nendian: little\nencoding: raw\n", "sizes"),
        ("type: short\ndimension: 3\nsizes: 4 3\nendian: little\nencoding: raw\n", "entries"),
        ("type: short\ndimension: 3\nsizes: 4 0 2\nendian: little\nencoding: raw\n", "positive"),
        (BASE.replace("encoding: raw", "encoding: zrl"), "encoding"),
        (BASE.replace("type: short", "type: quaternion"), "type"),
        (BASE.replace("endian: little\n", ""), "endian"),
        (BASE + "kinds: domain domain\n", "kinds"),
        (BASE + "this line has no separator\n", "neither"),
        (BASE.replace("space directions:", "space directions: (1,0,0)"), "space directions"),
        (BASE.replace("space: left-posterior-superior", "space: up-down-left"), "space"),
        (BASE + "type: int\n", "twice"),
        (BASE + "measurement frame: (1,0,0) (0,1) (0,0,1)\n", "measurement frame"),
        (BASE.replace("space origin: (-10,20.5,3)", "space origin: (1,2)"), "origin"),
    ],
)
def test_bad_headers_are_read_errors(reg, tmp_path, header, match):
    path = write_nrrd_file(tmp_path / "bad.nrrd", header, b"\x00" * 48)
    with pytest.raises(ReadError, match=match):
        reg.read(path)


def test_data_shorter_than_sizes(reg, tmp_path):
    raw = write_nrrd_file(tmp_path / "short.nrrd", BASE, b"\x00" * 47)
    with pytest.raises(ReadError, match="truncated"):
        reg.read(raw)
    gz = write_nrrd_file(
        tmp_path / "shortgz.nrrd", BASE.replace("raw", "gzip"), gzip.compress(b"\x00" * 40)
    )
    img = reg.read(gz)[0]
    with pytest.raises(ReadError, match="truncated"):
        img.values()
    liar = write_nrrd_file(
        tmp_path / "liar.nrrd",
        "type: double\ndimension: 3\nsizes: 10000 10000 100\nendian: little\nencoding: gzip\n",
        gzip.compress(b"\x00" * 1000),
    )
    with pytest.raises(ReadError, match="truncated"):
        reg.read(liar)[0].values()
    listing = write_nrrd_file(tmp_path / "few.nhdr", BASE + "data file: LIST\nslice1.raw\n")
    (tmp_path / "slice1.raw").write_bytes(b"\x00" * 24)
    with pytest.raises(ReadError, match="data files"):
        reg.read(listing)


def test_data_file_outside_header_folder(reg, tmp_path):
    outside = tmp_path / "outside.raw"
    outside.write_bytes(_ramp((4, 3, 2)).astype("<i2").tobytes(order="F"))
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "link.raw").symlink_to(outside)
    headers = {
        "rel.nhdr": "data file: ../outside.raw\n",
        "abs.nhdr": f"data file: {outside}\n",
        "link.nhdr": "data file: link.raw\n",
        "pattern.nhdr": "data file: ../outside%d.raw 1 1 1 3\n",
    }
    for name, line in headers.items():
        path = write_nrrd_file(inner / name, BASE + line)
        with pytest.raises(ReadError, match="outside"):
            reg.read(path)
    path = inner / "rel.nhdr"
    expected = _ramp((4, 3, 2))
    ok = reg.read(path, options=ReadOptions(allow_outside=True))[0]
    np.testing.assert_array_equal(ok.values(), expected)
    ok = reg.read(path, options=ReadOptions(extra={"allow_outside": "1"}))[0]
    np.testing.assert_array_equal(ok.values(), expected)
    missing = write_nrrd_file(inner / "missing.nhdr", BASE + "data file: nothere.raw\n")
    with pytest.raises(ReadError, match="not found"):
        reg.read(missing)


def test_bad_header_is_exit_4_in_one_line(reg, tmp_path):
    inner = tmp_path / "in"
    inner.mkdir()
    (tmp_path / "x.raw").write_bytes(b"\x00" * 48)
    path = write_nrrd_file(inner / "x.nhdr", BASE + "data file: ../x.raw\n")
    with pytest.raises(ReadError) as info:
        reg.read(path)
    assert info.value.exit_code == 4
    assert "\n" not in str(info.value)
    assert "allow_outside=1" in str(info.value)
    bad = write_nrrd_file(inner / "y.nrrd", "type: short\ndimension: 3\nencoding: raw\n", b"")
    with pytest.raises(ReadError) as info:
        reg.read(bad)
    assert "\n" not in str(info.value) and "sizes" in str(info.value)


def test_key_values_escapes_round_trip(reg, tmp_path):
    path = write_nrrd_file(
        tmp_path / "kv.nrrd",
        BASE + "note:=two\\nlines and a \\\\ backslash\nweird key: with colon:=v:=w\n",
        _ramp((4, 3, 2)).astype("<i2").tobytes(order="F"),
    )
    img = reg.read(path)[0]
    kv = dict(img.extras["nrrd"]["keyvalues"])
    assert kv["note"] == "two\nlines and a \\ backslash"
    assert img.extras["nrrd"]["fields"]["weird key"] == "with colon:=v:=w"
    reg.write(img, tmp_path / "kv2.nrrd")
    kv2 = dict(reg.read(tmp_path / "kv2.nrrd")[0].extras["nrrd"]["keyvalues"])
    assert kv2 == kv


def test_repetition_time_round_trips_as_list_axis_spacing(reg, tmp_path):
    img = synthetic_image((5, 4, 3, 6), "float32")
    img.meta.repetition_time = 2.5
    out = tmp_path / "tr.nrrd"
    reg.write(img, out)
    _, header = nrrd.read(str(out))
    assert header["spacings"][3] == 2.5 and header["units"][3] == "s"
    back = reg.read(out)[0]
    assert back.meta.repetition_time == 2.5
    s_values, s_affine = sitk_reference(out)  # ITK takes the list axis as components
    np.testing.assert_array_equal(s_values, img.values())
    assert_same_world(s_affine, img.affine, img.shape)
    ms = write_nrrd_file(
        tmp_path / "ms.nrrd",
        "type: uchar\ndimension: 4\nsizes: 1 1 1 2\nencoding: raw\n"
        "kinds: domain domain domain time\n"
        'spacings: 1 1 1 800\nunits: "mm" "mm" "mm" "ms"\n',
        b"\x01\x02",
    )
    assert reg.read(ms)[0].meta.repetition_time == pytest.approx(0.8)


def test_absurd_sizes_refused_before_allocating(reg, tmp_path):
    path = write_nrrd_file(
        tmp_path / "huge.nrrd",
        "type: double\ndimension: 3\nsizes: 9000000 9000000 9000000\nendian: little\n"
        "encoding: gzip\n",
        gzip.compress(b"\x00" * 100),
    )
    with pytest.raises(ReadError, match="bytes of data"):
        reg.read(path)


@pytest.mark.parametrize(
    ("perm", "flips"),
    [
        ((0, 1, 2), (1, 1, 1)),
        ((2, 0, 1), (-1, 1, 1)),
        ((1, 2, 0), (1, -1, -1)),
        ((2, 1, 0), (-1, -1, 1)),
    ],
)
def test_axis_orderings_written_and_read_by_sitk_and_pynrrd(reg, tmp_path, perm, flips):
    affine = synthetic_affine(zooms=(0.7, 1.9, 3.1), perm=perm, flips=flips)
    img = synthetic_image((9, 6, 4), "int16", affine=affine)
    for suffix in (".nrrd", ".nhdr"):
        out = tmp_path / f"o{suffix}"
        reg.write(img, out, force=True)
        s_values, s_affine = sitk_reference(out)
        np.testing.assert_array_equal(s_values, img.values())
        assert_same_world(s_affine, affine, img.shape)
        data, _, p_affine, _ = pynrrd_reference(out)
        np.testing.assert_array_equal(data, img.values())
        assert_same_world(p_affine, affine, img.shape)
        back = reg.read(out)[0]
        np.testing.assert_allclose(back.affine, affine, atol=1e-12)


def test_cli_outside_data_file_exit_4_then_allowed(tmp_path):
    import subprocess
    import sys

    inner = tmp_path / "in"
    inner.mkdir()
    (tmp_path / "x.raw").write_bytes(_ramp((4, 3, 2)).astype("<i2").tobytes(order="F"))
    path = write_nrrd_file(inner / "x.nhdr", BASE + "data file: ../x.raw\n")
    code = "import sys; from anyconv.cli import main; sys.argv[0] = 'anyconv'; main()"

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    run = cli(path, tmp_path / "out.nrrd")
    assert run.returncode == 4, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "outside" in run.stderr
    assert not (tmp_path / "out.nrrd").exists()
    run = cli(path, tmp_path / "out.nrrd", "-O", "allow_outside=1")
    assert run.returncode == 0, run.stderr
    data, _, affine, _ = pynrrd_reference(tmp_path / "out.nrrd")
    np.testing.assert_array_equal(data, _ramp((4, 3, 2)))
    np.testing.assert_allclose(affine, GEOM_RAS, atol=1e-12)


def test_nifti_style_vector_with_empty_t_axis(reg, tmp_path):
    img = synthetic_image((5, 4, 3))
    data = _ramp((5, 4, 3, 1, 3), "float32")
    img = img.replace(data=data)
    img.meta.intent = "vector"
    out = tmp_path / "v5.nrrd"
    reg.write(img, out)
    _, header = nrrd.read(str(out))
    assert header["kinds"] == ["vector", "domain", "domain", "domain"]
    s_values, s_affine = sitk_reference(out)
    np.testing.assert_array_equal(s_values, data[:, :, :, 0, :])
    assert_same_world(s_affine, img.affine, img.shape)


def test_crlf_header_and_comments(reg, tmp_path):
    arr = _ramp((4, 3, 2))
    text = ("NRRD0004\r\n# a comment\r\n" + BASE.replace("\n", "\r\n") + "\r\n").encode()
    path = tmp_path / "crlf.nrrd"
    path.write_bytes(text + arr.astype("<i2").tobytes(order="F"))
    img = reg.read(path)[0]
    np.testing.assert_array_equal(img.values(), arr)
    np.testing.assert_allclose(img.affine, GEOM_RAS, atol=1e-12)
    assert img.extras["nrrd"]["comments"] == ["a comment"]


def test_new_header_is_what_itk_writes(reg, tmp_path):
    """Slicer saves volumes through ITK: our fresh header matches ITK's byte for byte."""
    for dtype, shape in (("int16", (11, 7, 5)), ("float32", (6, 5, 4)), ("uint8", (3, 4, 5))):
        img = synthetic_image(shape, dtype)
        (tmp_path / "ours").mkdir(exist_ok=True)
        (tmp_path / "itk").mkdir(exist_ok=True)
        reg.write(img, tmp_path / "ours" / "v.nhdr", force=True)
        sitk.WriteImage(img.to_sitk(), str(tmp_path / "itk" / "v.nhdr"))
        for name in ("v.nhdr", "v.raw"):
            ours = (tmp_path / "ours" / name).read_bytes()
            assert ours == (tmp_path / "itk" / name).read_bytes(), (dtype, name)
