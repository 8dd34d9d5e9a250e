"""`anyconv preview`: world-aligned, labelled mid-planes, checked from the PNG pixels.

One world scene (a box with three bright bars along the edges that meet at its left-anterior-
superior corner) is stored in many axis orders, including oblique ones. Whatever the storage,
each panel of the preview must show its bar in the corner whose edges are labelled with the
bar's two directions (axial: L and A; coronal: L and S; sagittal: A and S).
"""

import io
import json

import nibabel as nib
import numpy as np
import pytest
from anyconv import preview
from anyconv.model import Image
from anyconv.testing import synthetic_affine
from PIL import Image as PILImage

HALF = np.array([30.0, 36.0, 27.0])  # world half-extents of the box (mm), non-cubic
ZOOMS = {0: 1.2, 1: 1.5, 2: 2.0}  # voxel size along world x, y, z, whatever the storage
CODES = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
ORDERS = ["RAS", "LPS", "PIR", "LAS", "RPI", "ASR", "IRP", "SLA", "PSL"]


def scene(points):
    """Values of the world scene at N x 3 RAS points."""
    x, y, z = points.T
    a = 0.35 * HALF
    inside = np.all(np.abs(points) < HALF, axis=1)
    bars = ((x < -a[0]) & (y > a[1])) | ((x < -a[0]) & (z > a[2])) | ((y > a[1]) & (z > a[2]))
    return np.where(inside, np.where(bars, 1000.0, 100.0), 0.0)


def stored_as(codes, rotation=None):
    """The scene sampled on a grid whose voxel axes point to ``codes``, centred on 0."""
    axes = np.zeros((3, 3))
    shape = []
    for k, code in enumerate(codes):
        world, sign = CODES[code]
        axes[world, k] = sign * ZOOMS[world]
        shape.append(round(2 * HALF[world] / ZOOMS[world]))
    if rotation is not None:  # oblique: rotate, and grow the grid to keep the box inside
        axes = rotation @ axes
        shape = [int(s * 1.5) for s in shape]
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = -axes @ ((np.array(shape) - 1) / 2.0)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    data = scene(world).reshape(shape).astype(np.int16)
    return data, affine


def rotation(angles):
    return synthetic_affine(zooms=(1, 1, 1), angles_deg=angles, origin=(0, 0, 0))[:3, :3]


CASES = [(codes, None) for codes in ORDERS] + [
    ("RAS", (20.0, -12.0, 25.0)),
    ("PIR", (-15.0, 10.0, 30.0)),
    ("LPS", (0.0, 0.0, 35.0)),
]


def panels(png):
    layout = preview.read_layout(png)
    pixels = np.asarray(PILImage.open(png).convert("RGB")).astype(int)
    for panel in layout["panels"]:
        x0, y0, x1, y1 = panel["box"]
        yield panel, pixels[y0:y1, x0:x1]


def bright_fraction_by_quadrant(rgb):
    """Fraction of bright grey pixels in each quadrant, a central band left out."""
    h, w = rgb.shape[:2]
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    bright = grey & (rgb[..., 0] > 200)
    bh, bw = h // 10, w // 10
    quads = {
        ("top", "left"): bright[: h // 2 - bh, : w // 2 - bw],
        ("top", "right"): bright[: h // 2 - bh, w // 2 + bw :],
        ("bottom", "left"): bright[h // 2 + bh :, : w // 2 - bw],
        ("bottom", "right"): bright[h // 2 + bh :, w // 2 + bw :],
    }
    return {k: float(v.mean()) for k, v in quads.items()}


def expected_corner(labels):
    """The corner whose two edges name directions of the marker (L, A, S)."""
    vertical = "top" if labels["top"] in "LAS" else "bottom"
    horizontal = "left" if labels["left"] in "LAS" else "right"
    assert labels[vertical] in "LAS" and labels[horizontal] in "LAS"
    return vertical, horizontal


@pytest.mark.parametrize(("codes", "angles"), CASES, ids=lambda v: str(v))
def test_marker_in_the_same_labelled_corner(tmp_path, run_cli, codes, angles):
    data, affine = stored_as(codes, None if angles is None else rotation(angles))
    src = tmp_path / "scene.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(src))
    stored = "".join(nib.aff2axcodes(affine))
    if angles is None:
        assert stored == codes
    # the radiological display (and nearest sampling) on a few of the storages
    variants = [[], ["--radiological", "--nearest"]] if codes in ("PIR", "SLA") else [[]]
    for extra in variants:
        png = tmp_path / f"p{len(extra)}.png"
        code, out, err = run_cli("preview", src, png, *extra)
        assert code == 0, err
        assert out.strip() == str(png)
        seen = {}
        for panel, rgb in panels(png):
            labels = panel["labels"]
            corner = expected_corner(labels)
            fractions = bright_fraction_by_quadrant(rgb)
            assert fractions[corner] > 0.05, (panel["name"], stored, fractions)
            for other, value in fractions.items():
                if other != corner:
                    assert value < min(0.01, fractions[corner] / 10), (other, fractions)
            seen[panel["name"]] = (labels, corner)
        # the labels follow the display convention, not the storage
        flip = bool(extra)
        assert seen["axial"][0] == {
            "left": "R" if flip else "L", "right": "L" if flip else "R", "top": "A", "bottom": "P"
        }  # fmt: skip
        assert seen["coronal"][0]["top"] == "S"
        assert seen["sagittal"][0] == {"left": "P", "right": "A", "top": "S", "bottom": "I"}
        assert seen["axial"][1] == ("top", "right" if flip else "left")
        assert seen["sagittal"][1] == ("top", "right")


def test_axis_aligned_storages_render_the_same_pixels():
    """Same world voxel grid stored in other orders: the panels agree pixel for pixel."""
    ref = None
    for codes in ("RAS", "LPS", "PIR", "SLA"):
        data, affine = stored_as(codes)
        png = preview.preview_png(Image(data, affine), interpolation="nearest", panel=160)
        pixels = np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB"))
        body = pixels[60:]  # leave out the header text (it names the storage order)
        if ref is None:
            ref = body
            continue
        assert body.shape == ref.shape
        differ = np.any(body != ref, axis=-1).mean()
        assert differ < 0.01, (codes, differ)


def test_panels_share_one_scale_and_keep_world_proportions():
    data, affine = stored_as("PIR")
    layout = preview.read_layout(preview.preview_png(Image(data, affine), panel=200))
    boxes = {p["name"]: p["box"] for p in layout["panels"]}
    size = {n: (b[2] - b[0], b[3] - b[1]) for n, b in boxes.items()}
    mm = layout["mm_per_pixel"]
    extent = 2 * HALF  # x, y, z
    assert size["axial"] == pytest.approx((extent[0] / mm, extent[1] / mm), abs=1)
    assert size["coronal"] == pytest.approx((extent[0] / mm, extent[2] / mm), abs=1)
    assert size["sagittal"] == pytest.approx((extent[1] / mm, extent[2] / mm), abs=1)
    assert max(max(s) for s in size.values()) == pytest.approx(200, abs=1)


def test_4d_shows_the_middle_volume_or_the_one_asked(tmp_path, run_cli):
    data, affine = stored_as("LPS")
    vols = np.zeros((*data.shape, 5), np.int16)
    vols[..., 2] = data  # only the middle volume has the scene
    vols[..., 4] = data[::-1]  # volume 4: the scene mirrored left-right in voxel space
    src = tmp_path / "four.nii"
    nib.save(nib.Nifti1Image(vols, affine), str(src))
    code, _, err = run_cli("preview", src, tmp_path / "mid.png")
    assert code == 0, err
    assert preview.read_layout(tmp_path / "mid.png")["volume"] == 2
    for panel, rgb in panels(tmp_path / "mid.png"):
        fractions = bright_fraction_by_quadrant(rgb)
        assert fractions[expected_corner(panel["labels"])] > 0.3
    code, _, err = run_cli("preview", src, tmp_path / "v4.png", "--volume", "4")
    assert code == 0, err
    for panel, rgb in panels(tmp_path / "v4.png"):
        if panel["name"] == "sagittal":
            continue  # the mirror is along x: the sagittal mid-plane looks the same
        fractions = bright_fraction_by_quadrant(rgb)
        v, h = expected_corner(panel["labels"])
        mirrored = (v, "right" if h == "left" else "left")
        assert fractions[mirrored] > 0.3, (panel["name"], fractions)
    code, _, err = run_cli("preview", src, tmp_path / "bad.png", "--volume", "5")
    assert code == 2
    assert "out of range" in err
    assert "Traceback" not in err
    assert not (tmp_path / "bad.png").exists()


def test_existing_png_needs_force_and_bad_input_is_one_line(tmp_path, run_cli):
    data, affine = stored_as("RAS")
    src = tmp_path / "a.nii"
    nib.save(nib.Nifti1Image(data, affine), str(src))
    png = tmp_path / "a.png"
    png.write_bytes(b"old")
    code, _, err = run_cli("preview", src, png)
    assert code == 5, err
    assert png.read_bytes() == b"old"
    code, _, err = run_cli("preview", src, png, "--force")
    assert code == 0, err
    assert json.loads(PILImage.open(png).text[preview.LAYOUT_KEY])["panels"]
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 20)
    code, _, err = run_cli("preview", bad, tmp_path / "b.png")
    assert code == 4
    assert len(err.strip().splitlines()) == 1


def test_convert_preview_writes_png_beside_output(tmp_path, run_cli):
    data, affine = stored_as("PIR", rotation((10.0, 0.0, 5.0)))
    src = tmp_path / "in.nii"
    nib.save(nib.Nifti1Image(data, affine), str(src))
    out = tmp_path / "out" / "scan.nii.gz"
    out.parent.mkdir()
    code, stdout, err = run_cli("convert", src, out, "--preview")
    assert code == 0, err
    png = tmp_path / "out" / "scan.png"
    assert str(png) in stdout.split()
    for panel, rgb in panels(png):
        assert bright_fraction_by_quadrant(rgb)[expected_corner(panel["labels"])] > 0.05


def test_sampling_through_the_inverse_affine():
    vol = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    affine = synthetic_affine()
    ijk = np.array([[0, 0, 0], [1, 2, 3], [0.5, 1, 1.5], [1, 2, 3.4], [5, 0, 0]], float)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    lin = preview.sample(vol, affine, world, "linear")
    near = preview.sample(vol, affine, world, "nearest")
    assert lin[:2] == pytest.approx([0, 23], abs=1e-4)
    assert lin[2] == pytest.approx((vol[0, 1, 1] + vol[1, 1, 1] + vol[0, 1, 2] + vol[1, 1, 2]) / 4)
    assert lin[3] == pytest.approx(23, abs=1e-4)  # within the edge voxel's outer half
    assert near[3] == 23
    assert np.isnan(lin[4])
    assert np.isnan(near[4])


def test_window_is_robust_to_outliers():
    values = np.concatenate([np.linspace(0, 100, 10000), [1e9, -1e9]]).astype(np.float32)
    lo, hi = preview.robust_window(values)
    assert 0 <= lo < 1
    assert 99 < hi <= 100
    assert preview.robust_window(np.full(10, 7.0)) == (7.0, 8.0)


def test_folder_of_several_series_gives_one_png_each(testdata, tmp_path, run_cli):
    src = testdata / "dicom" / "philips_achieva_enhanced_fieldmap"  # two series
    code, out, err = run_cli("preview", src, tmp_path / "fm.png")
    assert code == 0, err
    assert out.split() == [str(tmp_path / "fm_1.png"), str(tmp_path / "fm_2.png")]
    code, out, err = run_cli("preview", src, f"{tmp_path / 'folder'}/")
    assert code == 0, err
    pngs = sorted((tmp_path / "folder").glob("*.png"))
    assert len(pngs) == 2
    for png in pngs:
        assert len(preview.read_layout(png)["panels"]) == 3


def test_help_imports_no_pillow():
    import subprocess
    import sys

    code = (
        "import sys\nfrom anyconv.cli import app\n"
        "try:\n    app(['preview', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'PIL' not in sys.modules and 'anyconv.preview' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_degenerate_geometry_is_refused_not_drawn():
    affine = np.diag([1.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="singular"):
        preview.preview_png(Image(np.ones((4, 4, 4), np.int16), affine))
    with pytest.raises(ValueError, match="singular"):
        preview.preview_png(Image(np.ones((4, 4, 4), np.int16), np.full((4, 4), np.nan)))
