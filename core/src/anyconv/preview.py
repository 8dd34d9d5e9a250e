"""Orientation-labelled previews: three world-aligned mid-planes of an ``Image`` as a PNG.

A flipped or swapped axis is the most common conversion bug, and people catch it by looking.
So the planes are resampled in *world* (RAS+) space through the inverse affine, not cut along
voxel axes: an LPS-, PIR- or obliquely stored image shows the right way up, and every panel
edge carries the anatomical direction it points to. Works from ``Image`` only (affine and
values), so it knows no format. Pillow draws (imported here, never by ``anyconv --help``):
it imports in a fraction of matplotlib's time and the resampling is plain numpy.

The PNG carries a ``anyconv-preview`` text chunk (JSON) with each panel's pixel box and edge
labels, so tests and tools can find the panels without guessing the layout.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import geometry
from .model import Image

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: PNG text chunk holding the layout (JSON).
LAYOUT_KEY = "anyconv-preview"

# World axis -> (label of its negative end, label of its positive end).
_ENDS = (("L", "R"), ("P", "A"), ("I", "S"))

_BACKGROUND = (24, 24, 28)
_OUTSIDE = (16, 28, 56)  # plane pixels outside the volume
_TEXT = (235, 235, 235)
_LABEL = (255, 210, 60)


@dataclass(frozen=True)
class Plane:
    """One panel: the world axis pointing screen-right, the one pointing screen-up."""

    name: str
    right: tuple[int, int]  # (world axis, +1/-1)
    up: tuple[int, int]

    def labels(self) -> dict[str, str]:
        """Anatomical label at each edge of the panel."""

        def end(axis: tuple[int, int], positive: bool) -> str:
            world, sign = axis
            return _ENDS[world][1 if (sign > 0) == positive else 0]

        return {
            "left": end(self.right, False),
            "right": end(self.right, True),
            "top": end(self.up, True),
            "bottom": end(self.up, False),
        }


def planes(radiological: bool = False) -> tuple[Plane, Plane, Plane]:
    """Axial, coronal, sagittal panels; neurological (patient left on screen left) by default."""
    x = (0, -1) if radiological else (0, 1)
    return (
        Plane("axial", right=x, up=(1, 1)),
        Plane("coronal", right=x, up=(2, 1)),
        Plane("sagittal", right=(1, 1), up=(2, 1)),
    )


# -- values ------------------------------------------------------------------------------------
def volume_count(image: Image) -> int:
    """Number of 3D volumes (axes after the third flattened)."""
    return int(np.prod(image.shape[3:], dtype=np.int64)) if image.ndim > 3 else 1


def select_volume(image: Image, volume: int | None = None) -> np.ndarray:
    """Real values of one 3D volume (the middle one by default), i, j, k order.

    Axes after the third are taken as one flattened volume axis; only the chosen volume is read
    when the data proxy can be sliced. Unscaled integer data keeps its dtype (no float copy of
    a big volume); complex data becomes its magnitude.
    """
    shape = image.shape
    n = volume_count(image)
    if volume is None:
        volume = n // 2
    if not -n <= volume < n:
        raise IndexError(f"volume {volume} out of range: the image holds {n}")
    volume %= n
    data = image.data
    if image.ndim > 3:
        index = (Ellipsis, *np.unravel_index(volume, shape[3:]))
        arr = np.asarray(data[index]) if hasattr(data, "__getitem__") else np.asarray(data)[index]
    else:
        arr = np.asarray(data)
    while arr.ndim < 3:
        arr = arr[..., None]
    if arr.dtype.kind == "c":
        arr = np.abs(arr)
    elif arr.dtype.kind == "V" or arr.dtype.fields:
        raise ValueError(f"cannot preview structured voxels of dtype {arr.dtype}")
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if image.is_scaled:
        arr = arr.astype(np.float32) * np.float32(image.slope) + np.float32(image.inter)
    return arr


def robust_window(values: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Grey window from percentiles of the finite values (a strided subsample of big volumes)."""
    step = max(1, int(np.ceil((values.size / 2_000_000) ** (1 / max(values.ndim, 1)))))
    sample = values[(slice(None, None, step),) * values.ndim].astype(np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:  # flat image, or one value filling the percentiles: widen to the range
        lo, hi = float(sample.min()), float(sample.max())
        if hi <= lo:
            hi = lo + 1.0
    return lo, hi


# -- resampling --------------------------------------------------------------------------------
def world_bounds(affine: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """World box (min, max per axis) holding every voxel, edges included."""
    dims = [max(int(s), 1) for s in [*shape[:3], 1, 1, 1][:3]]
    corners = np.array(
        [[i, j, k] for i in (-0.5, dims[0] - 0.5) for j in (-0.5, dims[1] - 0.5)
         for k in (-0.5, dims[2] - 0.5)]
    )  # fmt: skip
    world = geometry.voxel_to_world(affine, corners)
    return world.min(axis=0), world.max(axis=0)


def sample(
    vol: np.ndarray, affine: np.ndarray, points: np.ndarray, interpolation: str = "linear"
) -> np.ndarray:
    """Values at world points (N x 3) through the inverse affine; NaN outside the volume."""
    inv = np.linalg.inv(affine)
    ijk = points @ inv[:3, :3].T + inv[:3, 3]
    dims = np.array(vol.shape[:3])
    inside = np.all((ijk >= -0.5) & (ijk <= dims - 0.5), axis=1)
    out = np.full(len(points), np.nan, dtype=np.float32)
    p = ijk[inside]
    if interpolation == "nearest":
        idx = np.clip(np.rint(p).astype(np.int64), 0, dims - 1)
        out[inside] = vol[idx[:, 0], idx[:, 1], idx[:, 2]]
        return out
    if interpolation != "linear":
        raise ValueError(f"interpolation must be 'linear' or 'nearest', not {interpolation!r}")
    base = np.floor(p)
    frac = (p - base).astype(np.float32)
    base = base.astype(np.int64)
    acc = np.zeros(len(p), dtype=np.float32)
    for corner in np.ndindex(2, 2, 2):
        off = np.array(corner)
        idx = np.clip(base + off, 0, dims - 1)  # edge voxels extend half a voxel outward
        w = np.prod(np.where(off == 1, frac, 1.0 - frac), axis=1)
        acc += w * vol[idx[:, 0], idx[:, 1], idx[:, 2]]
    out[inside] = acc
    return out


def plane_image(
    vol: np.ndarray,
    affine: np.ndarray,
    plane: Plane,
    centre: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    mm_per_px: float,
    interpolation: str = "linear",
) -> np.ndarray:
    """The world plane through ``centre``, screen-up first, as a 2D float array (NaN outside)."""
    (ax_r, sign_r), (ax_u, sign_u) = plane.right, plane.up
    width = max(1, round((hi[ax_r] - lo[ax_r]) / mm_per_px))
    height = max(1, round((hi[ax_u] - lo[ax_u]) / mm_per_px))
    mid_r = (hi[ax_r] + lo[ax_r]) / 2
    mid_u = (hi[ax_u] + lo[ax_u]) / 2
    # pixel centres; column 0 is the screen-left end, row 0 the screen-top end
    cols = (np.arange(width) + 0.5 - width / 2) * mm_per_px
    rows = (np.arange(height) + 0.5 - height / 2) * mm_per_px
    points = np.empty((height, width, 3))
    points[:] = centre
    points[:, :, ax_r] = mid_r + sign_r * cols[None, :]
    points[:, :, ax_u] = mid_u - sign_u * rows[:, None]
    values = sample(vol, affine, points.reshape(-1, 3), interpolation)
    return values.reshape(height, width)


# -- drawing -----------------------------------------------------------------------------------
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _line_height(font: Any) -> int:
    return int(getattr(font, "size", 10)) + 4


def _rgb(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Grey levels in the window; outside the volume in a colour no grey level has."""
    lo, hi = window
    scaled = (plane - lo) / (hi - lo) * 255.0
    grey = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[np.isnan(plane)] = _OUTSIDE
    return rgb


def describe(image: Image, volume: int | None = None) -> list[str]:
    """Text lines of the header: name, size, voxel size, axis codes, obliquity, volume."""
    name = Path(image.source).name if image.source else "(in memory)"
    shape = "x".join(str(s) for s in image.shape)
    zooms = " x ".join(f"{z:.4g}" for z in image.zooms)
    line2 = f"{shape} {image.dtype}  voxel {zooms} mm  stored {''.join(image.axcodes)}"
    tilt = geometry.obliquity(image.affine)
    if tilt > 1e-3:
        line2 += f"  oblique {tilt:.3g} deg"
    n = volume_count(image)
    if n > 1:
        shown = n // 2 if volume is None else volume % n
        line2 += f"  volume {shown} (of 0..{n - 1})"
    return [name, line2]


def render_preview(
    image: Image,
    *,
    volume: int | None = None,
    panel: int = 256,
    interpolation: str = "linear",
    radiological: bool = False,
    percentiles: tuple[float, float] = (0.5, 99.5),
    title: str | None = None,
    text: bool = True,
) -> PILImage.Image:
    """Three labelled world-aligned mid-planes of ``image`` as an RGB Pillow image.

    Parameters
    ----------
    image
        Any image; only its affine and values are used.
    volume
        Volume of a 4D+ image (default: the middle one).
    panel
        Size in pixels of the longest world extent; all panels share one mm-per-pixel scale.
    interpolation
        ``"linear"`` or ``"nearest"``.
    radiological
        Patient right on screen left in axial and coronal panels.
    percentiles
        Grey window, in percentiles of the volume's values.
    title
        First header line (default: the source file name).
    text
        Draw the header lines (thumbnails may leave them out); edge labels are always drawn.
    """
    from PIL import Image as Pil
    from PIL import ImageDraw
    from PIL.PngImagePlugin import PngInfo

    vol = select_volume(image, volume)
    window = robust_window(vol, *percentiles)
    affine = image.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("the affine is singular or not finite: no world planes to show")
    lo, hi = world_bounds(affine, vol.shape)
    centre = geometry.voxel_to_world(affine, (np.array(vol.shape[:3]) - 1) / 2.0)[0]
    mm_per_px = float((hi - lo).max()) / panel

    label_size = max(9, panel // 16)
    font_label = _font(label_size)
    font_text = _font(max(10, min(14, panel // 18)))
    margin = label_size + 6  # room for an edge label on every side
    header = 0
    lines: list[str] = []
    if text:
        lines = describe(image, volume)
        if title:
            lines[0] = title
        lines.append(f"window {window[0]:.4g} .. {window[1]:.4g}  ({interpolation})")
        header = 6 + len(lines) * _line_height(font_text)
    cell_w = panel + 2 * margin
    cell_h = panel + 2 * margin + label_size + 4  # panel title above
    canvas = Pil.new("RGB", (3 * cell_w, header + cell_h), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 4
    for line in lines:
        draw.text((6, y), line, fill=_TEXT, font=font_text)
        y += _line_height(font_text)

    count = volume_count(image)
    layout: dict[str, Any] = {
        "window": list(window),
        "mm_per_pixel": mm_per_px,
        "volume": (count // 2 if volume is None else volume % count) if count > 1 else None,
        "radiological": radiological,
        "panels": [],
    }
    for n, plane in enumerate(planes(radiological)):
        img = plane_image(vol, affine, plane, centre, lo, hi, mm_per_px, interpolation)
        grey = Pil.fromarray(_rgb(img, window))
        h, w = img.shape
        x0 = n * cell_w + margin + (panel - w) // 2
        y0 = header + label_size + 4 + margin + (panel - h) // 2
        canvas.paste(grey, (x0, y0))
        labels = plane.labels()
        cx, cy = x0 + w / 2, y0 + h / 2
        draw.text(
            (n * cell_w + margin, header + 2), plane.name, fill=_TEXT, font=font_text, anchor="la"
        )
        draw.text((x0 - 3, cy), labels["left"], fill=_LABEL, font=font_label, anchor="rm")
        draw.text((x0 + w + 3, cy), labels["right"], fill=_LABEL, font=font_label, anchor="lm")
        draw.text((cx, y0 - 2), labels["top"], fill=_LABEL, font=font_label, anchor="mb")
        draw.text((cx, y0 + h + 2), labels["bottom"], fill=_LABEL, font=font_label, anchor="mt")
        layout["panels"].append(
            {"name": plane.name, "box": [x0, y0, x0 + w, y0 + h], "labels": labels}
        )
    info = PngInfo()
    info.add_text(LAYOUT_KEY, json.dumps(layout))
    canvas.info["pnginfo"] = info
    return canvas


def preview_png(image: Image, **options: Any) -> bytes:
    """The preview as PNG bytes (with the layout text chunk); options as ``render_preview``."""
    canvas = render_preview(image, **options)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", pnginfo=canvas.info["pnginfo"], optimize=False)
    return buf.getvalue()


def write_preview(image: Image, path: Path, **options: Any) -> Path:
    """Write the preview PNG to ``path`` atomically (a temporary name, then a rename)."""
    path = Path(path)
    data = preview_png(image, **options)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def preview_path(output: Path) -> Path:
    """Where ``--preview`` puts the PNG of an output file: beside it, image suffix replaced."""
    name = Path(output).name
    for suffix in (".gz", ".bz2", ".zst"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return Path(output).with_name(f"{stem}.png")


def read_layout(path: Path | bytes) -> dict[str, Any]:
    """The layout JSON stored in a preview PNG (panel boxes and edge labels)."""
    from PIL import Image as Pil

    src = io.BytesIO(path) if isinstance(path, bytes) else Path(path)
    with Pil.open(src) as img:
        return json.loads(img.text[LAYOUT_KEY])
