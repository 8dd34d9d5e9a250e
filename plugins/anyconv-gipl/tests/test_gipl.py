import gzip
import tempfile
from pathlib import Path

import anyconv_gipl.plugin as plugin
import numpy as np
import pytest
import SimpleITK as sitk
from anyconv import geometry
from anyconv.errors import LossyConversionError, ReadError
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
