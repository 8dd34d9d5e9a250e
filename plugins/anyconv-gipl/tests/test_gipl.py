import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

import anyconv_gipl.plugin as plugin
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv import geometry
from anyconv.errors import AnyconvError, LossyConversionError, ReadError
from anyconv.model import Image, LazyArray
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import (
    ReaderConformance,
    WriterConformance,
    assert_same_world,
    synthetic_affine,
    synthetic_image,
)


def sitk_read(path):
    """Values (i, j, k order) and RAS affine straight from SimpleITK."""
    img = sitk.ReadImage(str(path))
    nd = img.GetDimension()
    lps = np.eye(4)
    direction = np.asarray(img.GetDirection()).reshape(nd, nd)[:3, :3]
    lps[:3, :3] = direction * np.asarray(img.GetSpacing()[:3])
    lps[:3, 3] = img.GetOrigin()[:3]
    return sitk.GetArrayFromImage(img).T, geometry.lps_to_ras(lps)


class TestGipl(WriterConformance):
    plugin = "anyconv_gipl.plugin"
    write_format = "gipl"
    suffix = ".gipl"
    dtypes = ("int16", "float32", "uint8", "float64")

    # GIPL stores no direction: oblique images are refused and other axis orders are written
    # reordered to LPS (both tested below). The kit's images use the LPS-ordered, anisotropic
    # affine GIPL holds as is, so its index-by-index comparisons apply.
    affine = np.array(
        [[-0.9, 0, 0, -91.5], [0, -1.3, 0, 37.25], [0, 0, 2.7, -12.0], [0, 0, 0, 1.0]]
    )

    def independent_read(self, path):
        return sitk_read(path)


class TestGiplGz(TestGipl):
    suffix = ".gipl.gz"


class TestGiplRead(ReaderConformance):
    """The corpus holds no GIPL file (none openly licensed was found), so the reader kit runs
    on files SimpleITK writes itself: 3-D and 4-D, plain and gzipped, several types."""

    plugin = "anyconv_gipl.plugin"
    read_formats = ("gipl",)
    _folder = None

    def _cases(self, testdata):
        cls = type(self)
        if cls._folder is None:
            cls._folder = Path(tempfile.mkdtemp(prefix="gipl-cases-"))
            rng = np.random.default_rng(1)
            for name, shape, dtype in [
                ("a.gipl", (9, 8, 7), np.int16),
                ("b.gipl.gz", (9, 8, 7), np.float32),
                ("c.gipl", (6, 5, 4, 3), np.uint8),
            ]:
                img = sitk.GetImageFromArray(rng.integers(0, 200, shape[::-1]).astype(dtype))
                img.SetSpacing([0.7, 1.1, 2.5, 2.0][: len(shape)])
                img.SetOrigin([-20.5, 31.25, 7.0, 0.0][: len(shape)])
                sitk.WriteImage(img, str(cls._folder / name))
        return sorted(cls._folder.iterdir())


@pytest.fixture
def reg():
    return Registry(plugins=[plugin], entry_points=False)


@pytest.mark.parametrize(
    ("perm", "flips"),
    [((0, 1, 2), (1, 1, 1)), ((0, 1, 2), (-1, -1, 1)), ((1, 2, 0), (1, -1, 1)),
     ((2, 0, 1), (-1, 1, -1)), ((1, 0, 2), (1, 1, -1))],
)  # fmt: skip
def test_any_axis_order_keeps_world(reg, tmp_path, perm, flips):
    affine = synthetic_affine(angles_deg=(0, 0, 0), perm=perm, flips=flips)
    img = synthetic_image((7, 5, 4), "int16", affine=affine)
    out = tmp_path / "o.gipl"
    reg.write(img, out)
    values, ras = sitk_read(out)
    # compare voxel by voxel in world space: map our voxels through both affines
    ijk = np.argwhere(np.ones(img.shape, bool))
    world = geometry.voxel_to_world(img.affine, ijk)
    back = np.rint(geometry.voxel_to_world(np.linalg.inv(ras), world)).astype(int)
    np.testing.assert_array_equal(values[tuple(back.T)], img.values()[tuple(ijk.T)])
    assert np.allclose(geometry.voxel_to_world(ras, back), world, atol=1e-5)
    mine = reg.read(out)[0]
    np.testing.assert_array_equal(mine.values(), values)
    np.testing.assert_allclose(mine.affine, ras, atol=1e-9)


def test_oblique_needs_lossy(reg, tmp_path):
    img = synthetic_image()
    with pytest.raises(LossyConversionError, match="oblique"):
        reg.write(img, tmp_path / "x.gipl")
    assert list(tmp_path.iterdir()) == []
    reg.write(img, tmp_path / "x.gipl", options=WriteOptions(lossy=True))
    assert any("oblique" in loss for loss in img.losses)
    _, ras = sitk_read(tmp_path / "x.gipl")
    assert not geometry.is_oblique(ras)


def test_4d_time_step_and_scaling(reg, tmp_path):
    affine = synthetic_affine(angles_deg=(0, 0, 0), flips=(-1, -1, 1))  # LPS: no reordering
    img = synthetic_image((6, 5, 4, 3), "int16", affine=affine, slope=0.5, inter=2.0)
    img.meta.repetition_time = 2.0
    out = tmp_path / "t.gipl.gz"
    reg.write(img, out)
    with gzip.open(out) as fh:
        assert fh.read(256)[252:] == b"\xef\xff\xe9\xb0"
    back = reg.read(out)[0]
    assert back.shape == (6, 5, 4, 3) and back.dtype == np.float32
    assert back.meta.repetition_time == 2.0
    np.testing.assert_allclose(back.values(), img.values(), rtol=1e-6)
    assert_same_world(back.affine, img.affine, img.shape)


def test_int32_stored_as_float64(reg, tmp_path):
    affine = synthetic_affine(angles_deg=(0, 0, 0), flips=(-1, -1, 1))
    img = synthetic_image((5, 4, 3), "int32", affine=affine)
    reg.write(img, tmp_path / "i.gipl")
    values, _ = sitk_read(tmp_path / "i.gipl")
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, img.values())


def test_header_promising_too_much_is_read_error(reg, tmp_path):
    head = bytearray(256)
    head[0:8] = np.array([65535, 65535, 65535, 1], ">u2").tobytes()
    head[8:10] = np.array([65], ">u2").tobytes()
    head[252:256] = b"\xef\xff\xe9\xb0"
    (tmp_path / "big.gipl").write_bytes(bytes(head) + b"\0" * 100)
    with pytest.raises(ReadError, match="truncated"):
        reg.read(tmp_path / "big.gipl")
    head[8:10] = np.array([3], ">u2").tobytes()
    (tmp_path / "t.gipl").write_bytes(bytes(head))
    with pytest.raises(ReadError, match="image type"):
        reg.read(tmp_path / "t.gipl")


def test_truncated_gz_is_read_error(reg, tmp_path):
    affine = synthetic_affine(angles_deg=(0, 0, 0))
    img = synthetic_image((40, 30, 20), "float32", affine=affine)
    reg.write(img, tmp_path / "a.gipl.gz")
    raw = (tmp_path / "a.gipl.gz").read_bytes()
    (tmp_path / "b.gipl.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError):
        reg.read(tmp_path / "b.gipl.gz")


def test_compress_level(reg, tmp_path):
    affine = synthetic_affine(angles_deg=(0, 0, 0), flips=(-1, -1, 1))
    img = synthetic_image((40, 30, 20), "int16", affine=affine)
    sizes = {}
    for level in (1, 9):
        out = tmp_path / f"l{level}.gipl.gz"
        reg.write(img, out, options=WriteOptions(compress_level=level))
        sizes[level] = out.stat().st_size
        np.testing.assert_array_equal(sitk_read(out)[0], img.values())
    assert sizes[9] <= sizes[1] < img.values().nbytes


# -- numpy reader/writer against SimpleITK as the oracle -----------------------------------

LPS_AXES = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
ITK_DTYPES = ("int8", "uint8", "int16", "uint16", "float32", "float64")


def _lps_image(shape, dtype, seed=0):
    """An image GIPL holds as is: LPS axis order, anisotropic voxels, origin off zero."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        data = rng.normal(0, 1000, shape).astype(dtype)
    else:
        data = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    affine = LPS_AXES @ np.diag([0.7, 1.3, 2.9, 1.0])
    affine[:3, 3] = [31.5, -12.25, 7.75]  # RAS of voxel 0
    img = Image(np.asfortranarray(data), affine)
    if len(shape) == 4:
        img.meta.repetition_time = 2.5
    return img


def _sitk_write(values, spacing, origin, path):
    img = sitk.GetImageFromArray(np.ascontiguousarray(values.T), isVector=False)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return img


@pytest.mark.parametrize("suffix", [".gipl", ".gipl.gz"])
@pytest.mark.parametrize("shape", [(7, 5, 3), (6, 4, 3, 2)])
@pytest.mark.parametrize("dtype", [*ITK_DTYPES, "int32", "uint32"])
def test_written_file_read_by_sitk(reg, tmp_path, dtype, shape, suffix):
    img = _lps_image(shape, dtype)
    out = tmp_path / f"w{suffix}"
    reg.write(img, out)
    back = sitk.ReadImage(str(out))
    values = sitk.GetArrayFromImage(back).T
    # ITK reads and writes no int32/uint32 GIPL ("Pixel Type Unknown"): those go as float64
    assert values.dtype == (np.float64 if dtype in ("int32", "uint32") else np.dtype(dtype))
    np.testing.assert_array_equal(values, img.stored())
    spacing = [0.7, 1.3, 2.9] + ([2.5] if len(shape) == 4 else [])
    origin = [-31.5, 12.25, 7.75] + ([0.0] if len(shape) == 4 else [])
    np.testing.assert_allclose(back.GetSpacing(), spacing, rtol=1e-7)  # float32 on disk
    np.testing.assert_array_equal(back.GetOrigin(), origin)


@pytest.mark.parametrize("suffix", [".gipl", ".gipl.gz"])
@pytest.mark.parametrize("shape", [(7, 5, 3), (6, 4, 3, 2), (7, 5)])
@pytest.mark.parametrize("dtype", ITK_DTYPES)
def test_same_bytes_as_sitk(tmp_path, dtype, shape, suffix):
    """Header and voxels byte for byte as ITK writes them (gzip framing aside)."""
    from anyconv_gipl.writer import write_gipl

    img = _lps_image(shape, dtype)
    ours, theirs = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    write_gipl(img, ours, WriteOptions())
    values = img.stored() if len(shape) > 2 else img.stored()[..., np.newaxis]
    nd = values.ndim  # a 2-D image is written as one slice with the affine's slice size
    _sitk_write(values, [0.7, 1.3, 2.9, 2.5][:nd], [-31.5, 12.25, 7.75, 0.0][:nd], theirs)
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(ours, "rb") as a, opener(theirs, "rb") as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("suffix", [".gipl", ".gipl.gz"])
@pytest.mark.parametrize("shape", [(7, 5, 3), (6, 4, 3, 2), (9, 1, 4)])
@pytest.mark.parametrize("dtype", ITK_DTYPES)
def test_sitk_file_read(reg, tmp_path, dtype, shape, suffix):
    """Voxels, and world coordinates of the corner voxels as ITK places them (LPS -> RAS)."""
    rng = np.random.default_rng(3)
    values = (rng.normal(0, 40, shape)).astype(dtype)
    nd = len(shape)
    out = tmp_path / f"s{suffix}"
    ref = _sitk_write(values, [0.7, 1.3, 2.9, 1.75][:nd], [-20.5, 31.25, 7.0, 0.0][:nd], out)
    image = reg.read(out)[0]
    assert image.shape == shape and image.dtype == np.dtype(dtype)
    assert image.data.flags.f_contiguous and image.data.dtype.isnative
    np.testing.assert_array_equal(image.stored(), values)
    assert image.extras["gipl"] == {
        "image_type": {"int8": 7, "uint8": 8, "int16": 15, "uint16": 16, "float32": 64,
                       "float64": 65}[dtype],
        "dims": [*shape, 1][:4],
    }  # fmt: skip
    assert image.meta.repetition_time == (1.75 if nd == 4 else None)
    for corner in np.ndindex(2, 2, 2):
        ijk = [(s - 1) * c for s, c in zip(shape[:3], corner, strict=True)]
        lps = ref.TransformIndexToPhysicalPoint([*ijk, 0][:nd])[:3]
        ras = np.array([-lps[0], -lps[1], lps[2]])
        np.testing.assert_allclose(geometry.voxel_to_world(image.affine, ijk)[0], ras, atol=1e-9)
    # and the affine Image.from_sitk (the former reader) gives for the same file
    np.testing.assert_array_equal(image.affine, Image.from_sitk(sitk.ReadImage(out)).affine)


@pytest.mark.parametrize("code", [31, 32])
def test_int32_files_read(reg, tmp_path, code):
    """Types ITK cannot read (uint32/int32) still read: the GIPL layout is the same."""
    from anyconv_gipl.header import pack

    dtype = np.uint32 if code == 31 else np.int32
    values = np.arange(7 * 5 * 3, dtype=dtype).reshape(7, 5, 3, order="F") * 1000003
    path = tmp_path / "i.gipl"
    head = pack((7, 5, 3), code, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    path.write_bytes(head + values.astype(np.dtype(dtype).newbyteorder(">")).tobytes("F"))
    image = reg.read(path)[0]
    assert image.dtype == dtype
    np.testing.assert_array_equal(image.stored(), values)


def test_binary_and_old_magic(reg, tmp_path):
    """ITK reads binary (type 1) as one unsigned byte per voxel and takes either magic."""
    from anyconv_gipl.header import pack

    values = (np.arange(60) % 2).astype(np.uint8).reshape(5, 4, 3, order="F")
    head = bytearray(pack((5, 4, 3), 1, [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]))
    head[252:256] = (719555000).to_bytes(4, "big")
    (tmp_path / "b.gipl").write_bytes(bytes(head) + values.tobytes("F"))
    image = reg.read(tmp_path / "b.gipl")[0]
    assert image.dtype == np.uint8 and image.extras["gipl"]["image_type"] == 1
    np.testing.assert_array_equal(image.stored(), values)


def _header_file(path, *, dims=(7, 5, 3, 1), code=15, magic=b"\xef\xff\xe9\xb0", pad=210,
                 pixdim=(1, 1, 1, 1)):  # fmt: skip
    head = bytearray(256)
    head[0:8] = np.array(dims, ">u2").tobytes()
    head[8:10] = np.array([code], ">u2").tobytes()
    head[10:26] = np.array(pixdim, ">f4").tobytes()
    head[252:256] = magic
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(bytes(head) + b"\0" * pad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pad": 209}, "truncated: header promises 466 bytes, file has 465"),
        ({"pad": -100}, "truncated: 156 of 256 header bytes"),
        ({"magic": b"\x00\x01\x02\x03"}, "not a GIPL file: magic number 0x00010203"),
        ({"code": 3}, "unknown GIPL image type 3"),
        ({"code": 192}, "unsupported GIPL image type 192"),
        ({"dims": (7, 0, 3, 1)}, "invalid GIPL sizes"),
        ({"pixdim": (1, 0, 1, 1)}, "invalid GIPL voxel sizes"),
    ],
)
@pytest.mark.parametrize("suffix", [".gipl", ".gipl.gz"])
def test_bad_files_are_one_line_read_errors(reg, tmp_path, kwargs, match, suffix):
    path = tmp_path / f"x{suffix}"
    if kwargs.get("pad", 0) < 0:
        opener = gzip.open if suffix.endswith(".gz") else open
        with opener(path, "wb") as fh:
            fh.write(b"\0" * 156)
    else:
        _header_file(path, **kwargs)
    # --from gipl: a header that fails detection (short, bad magic) still reaches the reader
    with pytest.raises(ReadError, match=match) as info:
        reg.read(path, fmt="gipl")
    assert "\n" not in str(info.value)
    with pytest.raises(AnyconvError) as info:
        reg.read(path)
    assert "\n" not in str(info.value)


def test_gz_header_promising_more_than_deflate_holds(reg, tmp_path):
    path = tmp_path / "big.gipl.gz"
    _header_file(path, dims=(65535, 65535, 65535, 1), code=65)
    with pytest.raises(ReadError, match=r"more than a \d+-byte gzip file can hold"):
        reg.read(path)


def test_cut_gz_stream_is_truncated(reg, tmp_path):
    img = _lps_image((40, 30, 20), "float32")
    reg.write(img, tmp_path / "a.gipl.gz")
    raw = (tmp_path / "a.gipl.gz").read_bytes()
    (tmp_path / "b.gipl.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError, match="truncated") as info:
        reg.read(tmp_path / "b.gipl.gz")
    assert "\n" not in str(info.value)
    (tmp_path / "c.gipl.gz").write_bytes(raw[:10] + b"\xff" * 64 + raw[74:])
    with pytest.raises(ReadError, match="gzip"):
        reg.read(tmp_path / "c.gipl.gz")


class _Streaming(LazyArray):
    """Lazy data that hands out small Fortran-order blocks, as a streaming reader does."""

    streams = True

    def __init__(self, values):
        self._values = values
        self._shape = values.shape
        self._dtype = values.dtype

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("streamed data must not be loaded whole")

    def fortran_blocks(self, max_bytes):
        flat = self._values.reshape(-1, order="F")
        for start in range(0, flat.size, 37):
            yield flat[start : start + 37]


def test_lazy_data_is_streamed(tmp_path):
    from anyconv_gipl.writer import write_gipl

    img = _lps_image((7, 5, 3), "int16")
    write_gipl(img, tmp_path / "a.gipl", WriteOptions())
    write_gipl(img.replace(data=_Streaming(img.stored())), tmp_path / "b.gipl", WriteOptions())
    assert (tmp_path / "a.gipl").read_bytes() == (tmp_path / "b.gipl").read_bytes()


def test_too_big_for_gipl_sizes(tmp_path):
    from anyconv_gipl.writer import write_gipl

    img = Image(np.zeros((65536, 1, 1), np.uint8), LPS_AXES)
    with pytest.raises(LossyConversionError, match="65535"):
        write_gipl(img, tmp_path / "x.gipl", WriteOptions())


def test_no_simpleitk_at_runtime():
    code = (
        "import sys, anyconv_gipl.reader, anyconv_gipl.writer, anyconv_gipl.plugin\n"
        "assert 'SimpleITK' not in sys.modules, 'SimpleITK imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
