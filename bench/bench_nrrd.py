"""NRRD read/write speed on a 256^3 float32 volume: anyconv-nrrd next to pynrrd and SimpleITK.

Usage: uv run python bench/bench_nrrd.py [--size 256] [--repeat 3]

Writes: attached gzip (each tool's default level, and pynrrd/SimpleITK at their defaults),
attached raw, detached .nhdr + .raw. Reads: the same files (written by anyconv), timed to a
numpy array in memory (``Image.values()``, ``nrrd.read``, ``sitk.GetArrayViewFromImage``).
Best of ``--repeat`` rounds in which the tools take turns; one process, same files.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyconv_nrrd.plugin as plugin
import nrrd
import numpy as np
import SimpleITK as sitk
from anyconv.model import Image
from anyconv.registry import Registry
from anyconv.specs import WriteOptions
from anyconv.testing import synthetic_affine


def race(
    cases: list[tuple[str, Callable[[], object], tuple[Path, str] | None]], repeat: int
) -> dict[str, float]:
    """Best time of each case over ``repeat`` rounds, the tools taking turns in each round so
    that a busy machine slows them alike. Outputs (folder, stem) are removed before each run,
    so no tool pays for freeing the previous run's file."""
    times: dict[str, float] = {}
    for _ in range(repeat):
        for who, fn, clean in cases:
            if clean is not None:
                for old in clean[0].glob(clean[1] + ".*"):
                    old.unlink()
            start = time.perf_counter()
            fn()
            took = time.perf_counter() - start
            times[who] = min(took, times.get(who, took))
    return times


def phantom(n: int) -> np.ndarray:
    """A smooth float32 head-like phantom with noise: compresses like real MRI, not zeros."""
    rng = np.random.default_rng(0)
    ax = np.linspace(-1, 1, n, dtype=np.float32)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij", sparse=True)
    r = np.sqrt(x**2 / 0.8 + y**2 + z**2 / 0.9)
    vol = np.where(r < 0.9, 800 + 300 * np.cos(6 * r), 0).astype(np.float32)
    vol += rng.normal(0, 20, size=vol.shape).astype(np.float32)
    return np.asfortranarray(np.clip(vol, 0, None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.size, args.repeat
    reg = Registry(plugins=[plugin], entry_points=False)
    data = phantom(n)
    img = Image(data, synthetic_affine(zooms=(1.0, 1.0, 1.0)))
    sitk_img = img.to_sitk()
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([-1.0, -1.0, 1.0]) @ img.affine[:3, :3],
        "space origin": (np.diag([-1.0, -1.0, 1.0]) @ img.affine[:3, 3]),
        "kinds": ["domain"] * 3,
    }
    mib = data.nbytes / 2**20
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def ours(name: str, **extra: str) -> Callable[[], object]:
            opts = WriteOptions(extra=dict(extra))
            return lambda: reg.write(img, d / name, force=True, options=opts)

        def theirs_pynrrd(name: str, raw: bool = False, **kw: object) -> Callable[[], object]:
            hdr = dict(header, encoding="raw") if raw else dict(header)
            if "level" in kw:
                kw["compression_level"] = kw.pop("level")
            return lambda: nrrd.write(str(d / name), data, hdr, **kw)

        def theirs_sitk(name: str, compress: bool) -> Callable[[], object]:
            return lambda: sitk.WriteImage(sitk_img, str(d / name), compress)

        for op, cases in (
            (
                "write .nrrd gzip",
                [
                    ("anyconv (zlib-ng 2, default)", ("a_gz.nrrd", ours("a_gz.nrrd"))),
                    ("pynrrd (level 9, default)", ("p_gz.nrrd", theirs_pynrrd("p_gz.nrrd"))),
                    ("pynrrd (level 1)", ("p1_gz.nrrd", theirs_pynrrd("p1_gz.nrrd", level=1))),
                    ("SimpleITK (useCompression)", ("s_gz.nrrd", theirs_sitk("s_gz.nrrd", True))),
                ],
            ),
            (
                "write .nrrd raw",
                [
                    ("anyconv", ("a_raw.nrrd", ours("a_raw.nrrd", encoding="raw"))),
                    ("pynrrd", ("p_raw.nrrd", theirs_pynrrd("p_raw.nrrd", raw=True))),
                    ("SimpleITK", ("s_raw.nrrd", theirs_sitk("s_raw.nrrd", False))),
                ],
            ),
            (
                "write .nhdr + .raw",
                [
                    ("anyconv", ("a.nhdr", ours("a.nhdr"))),
                    ("pynrrd", ("p.nhdr", theirs_pynrrd("p.nhdr", raw=True, detached_header=True))),
                    ("SimpleITK", ("s.nhdr", theirs_sitk("s.nhdr", False))),
                ],
            ),
        ):  # fmt: skip
            timed = race([(w, fn, (d, name.split(".")[0])) for w, (name, fn) in cases], repeat)
            rows += [(op, who, sec) for who, sec in timed.items()]
        for label, name in (("gzip", "a_gz.nrrd"), ("raw", "a_raw.nrrd"), ("nhdr", "a.nhdr")):
            path = str(d / name)
            timed = race(
                [
                    ("anyconv", lambda p=path: reg.read(p)[0].values(), None),
                    ("pynrrd", lambda p=path: nrrd.read(p)[0], None),
                    (
                        "SimpleITK",
                        lambda p=path: sitk.GetArrayViewFromImage(sitk.ReadImage(p)),
                        None,
                    ),
                ],
                repeat,
            )
            rows += [(f"read .{label}", who, sec) for who, sec in timed.items()]
        sizes = {p.name: p.stat().st_size / 2**20 for p in sorted(d.glob("*gz.nrrd"))}
        ours_v = reg.read(d / "a_gz.nrrd")[0].values()
        agree = np.array_equal(ours_v, nrrd.read(str(d / "s_gz.nrrd"))[0]) and np.array_equal(
            ours_v, sitk.GetArrayFromImage(sitk.ReadImage(str(d / "p_gz.nrrd"))).T
        )
    print(f"NRRD {n}^3 float32 ({mib:.0f} MiB in memory), best of {repeat}")
    print(f"{'operation':<20} {'tool':<28} {'seconds':>8} {'MiB/s':>8} {'vs best peer':>12}")
    for op, who, sec in rows:
        peers = [s for o, w, s in rows if o == op and not w.startswith("anyconv")]
        ratio = f"{sec / min(peers):.2f}x" if who.startswith("anyconv") and peers else ""
        print(f"{op:<20} {who:<28} {sec:>8.3f} {mib / sec:>8.0f} {ratio:>12}")
    print("gzip file sizes (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    print(f"values agree across the three tools: {agree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
