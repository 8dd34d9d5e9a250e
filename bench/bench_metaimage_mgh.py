"""MetaImage and MGH/MGZ read/write speed on a 256^3 float32 volume, next to SimpleITK/nibabel.

Usage: uv run python bench/bench_metaimage_mgh.py [--size 256] [--repeat 3]

Every tool starts from, or ends with, the same numpy array in memory:
- write: anyconv ``Registry.write(Image(arr, affine))``; SimpleITK ``GetImageFromArray`` +
  geometry + ``WriteImage`` (same zlib level 1 when compressed); nibabel ``MGHImage`` + ``save``.
- read: anyconv ``Registry.read(path)[0].stored()``; SimpleITK ``GetArrayFromImage(ReadImage)``;
  nibabel ``np.asarray(load(path).dataobj).astype(float32)`` (native values, so its
  memory map of an .mgh is really read). Each reads the file it wrote itself.
Best of ``--repeat`` runs, one process, files in the page cache; each timed write goes to a
fresh path (earlier outputs are deleted untimed). "ratio" is anyconv's time over
the faster peer's (target: at most 1.2).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyconv_metaimage.plugin as metaimage_plugin
import anyconv_mgh.plugin as mgh_plugin
import nibabel as nib
import numpy as np
import SimpleITK as sitk
from anyconv import geometry
from anyconv.model import Image
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import synthetic_affine


def best(
    fn: Callable[[], object], repeat: int, setup: Callable[[], object] = lambda: None
) -> float:
    times = []
    for _ in range(repeat):
        setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def clear(folder: Path, stem: str) -> Callable[[], None]:
    """Remove earlier outputs before a timed write, so no tool pays for replacing a file."""

    def run() -> None:
        for p in folder.glob(stem + ".*"):
            p.unlink()

    return run


def phantom(n: int) -> np.ndarray:
    """A smooth head-like field with noise, stored to 1e-3: compresses like real data."""
    x, y, z = np.ogrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j, -1 : 1 : n * 1j]
    r = np.sqrt(x**2 + (1.2 * y) ** 2 + (0.9 * z) ** 2)
    field = np.where(r < 0.85, 800.0 - 300.0 * r, 0.0)
    noise = np.random.default_rng(0).normal(0, 5, (n, n, n))
    return np.asfortranarray(np.round(field + noise, 3).astype(np.float32))


def sitk_image(arr: np.ndarray, affine: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.T)
    spacing, direction, origin = geometry.spacing_direction_origin(geometry.ras_to_lps(affine))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection(direction.ravel().tolist())
    img.SetOrigin([float(o) for o in origin])
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    arr = phantom(args.size)
    affine = synthetic_affine()
    image = Image(arr, affine)
    reg = Registry(plugins=[metaimage_plugin, mgh_plugin], entry_points=False)
    raw = WriteOptions(extra={"compress": "0"})
    rows: list[tuple[str, str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def ours_write(name: str, options: WriteOptions | None = None) -> float:
            return best(
                lambda: reg.write(image, d / name, force=True, options=options), args.repeat
            )

        def ours_read(name: str) -> float:
            return best(lambda: reg.read(d / name)[0].stored(), args.repeat)

        def sitk_write(name: str, compress: bool) -> float:
            return best(
                lambda: sitk.WriteImage(sitk_image(arr, affine), str(d / name), compress, 1),
                args.repeat,
                clear(d, Path(name).stem),
            )

        def sitk_read(name: str) -> float:
            return best(lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(d / name))), args.repeat)

        def nib_write(name: str) -> float:
            return best(
                lambda: nib.save(nib.MGHImage(arr, affine), str(d / name)),
                args.repeat,
                clear(d, Path(name).stem),
            )

        def nib_read(name: str) -> float:
            # nibabel memory-maps .mgh; asking for native floats makes it read the voxels.
            return best(
                lambda: np.asarray(nib.load(str(d / name)).dataobj).astype(np.float32),
                args.repeat,
            )

        for label, suffix, compress in (
            (".mha raw", ".mha", False),
            (".mha zlib-1", ".mha", True),
            (".mhd+.raw", ".mhd", False),
        ):
            ours, peer = f"ours{suffix}", f"itk{suffix}"
            opts = None if compress else raw
            if compress:
                opts = WriteOptions(compress_level=1)
            rows.append(
                ("write", label, ours_write(ours, opts), sitk_write(peer, compress), "SimpleITK")
            )
            rows.append(("read", label, ours_read(ours), sitk_read(peer), "SimpleITK"))
        for label, suffix in ((".mgh", ".mgh"), (".mgz gzip-1", ".mgz")):
            ours, peer = f"ours{suffix}", f"nib{suffix}"
            rows.append(("write", label, ours_write(ours), nib_write(peer), "nibabel"))
            rows.append(("read", label, ours_read(ours), nib_read(peer), "nibabel"))
        # Cross-check once: each peer reads anyconv's files to the same voxels.
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(d / "ours.mha"))).T, arr)
        assert np.array_equal(np.asanyarray(nib.load(str(d / "ours.mgz")).dataobj), arr)

    mib = arr.nbytes / 2**20
    print(f"{args.size}^3 float32 ({mib:.0f} MiB), best of {args.repeat}")
    print(f"{'op':<6} {'file':<13} {'anyconv s':>10} {'peer s':>8}  {'peer':<10} {'ratio':>6}")
    for op, label, ours_t, peer_t, peer in rows:
        ratio = ours_t / peer_t
        print(f"{op:<6} {label:<13} {ours_t:>10.3f} {peer_t:>8.3f}  {peer:<10} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
