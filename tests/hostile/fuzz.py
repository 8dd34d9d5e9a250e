"""Hypothesis fuzz targets for every installed reader's header parser, for a time budget.

    python -m tests.hostile.fuzz --seconds 60              # every format, 60 s each
    python -m tests.hostile.fuzz --format nrrd --seconds 600 --strict
    python tests/hostile/fuzz.py --examples 40 --derandomize   # what CI runs (test_fuzz.py)

Binary formats (NIfTI, Analyze, MGH, MINC, DICOM) start from a small corpus file and get
hypothesis-drawn byte edits in the header region, a cut, and optionally gzip; text headers
(NRRD, MetaImage) are drawn from a grammar of their fields with hostile values.

Each input goes through ``Registry.read`` and the voxel load, as a conversion does. A finding
is: an exception that is not an ``AnyconvError`` with exit 3/4, a ``MemoryError`` anywhere
in the cause chain, or more than ``--timeout`` seconds. ``--strict`` also reports inputs the
core had to wrap (the reader let a library exception through) and accepted images with a
non-finite or singular affine. Findings are saved under ``regressions/<format>/`` and
``test_fuzz.py`` replays every saved file.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import math
import os
import resource
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

REGRESSIONS = HERE / "regressions"
INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xff\xff",
    b"\x7f\xff",
    b"\xff\x7f",
    b"\x00\x80",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"\x00\x00\x80\x7f",
    b"\x00\x00\xc0\x7f",
    b"\x00\x00\x80\xff",  # float32 inf, nan, -inf
    b"\x00\x00\x00\x00\x00\x00\xf0\x7f",
    b"\x00\x00\x00\x00\x00\x00\xf8\x7f",  # float64
    b"\x00\x00\x00\x00\x00\x00\x00\x40",
]


@dataclass
class Target:
    """One reader's fuzz target: a seed file (binary) or a grammar (text)."""

    fmt: str
    ext: str
    seed: bytes = b""
    gzipped: bool = False
    region: int = 0
    companions: dict[str, bytes] = field(default_factory=dict)
    grammar: str | None = None
    #: the file name to write (a detached header names its data files after itself)
    name: str = ""

    @property
    def filename(self) -> str:
        return self.name or f"x{self.ext}"


def _seed(testdata: Path, rel: str) -> bytes:
    raw = (testdata / rel).read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def targets(testdata: Path, formats: set[str]) -> list[Target]:
    """Fuzz targets of the installed readers."""
    import hostile_cases

    out = []
    binary = {
        "nifti1": ("nifti/nibabel/anatomical.nii", ".nii", False, 348),
        "nifti2": ("nifti2/nibabel/example_nifti2.nii.gz", ".nii.gz", True, 540),
        "analyze": ("analyze/spm99/avg152T1.hdr", ".hdr", False, 348),
        "mgh": ("mgh/nibabel/test.mgz", ".mgz", True, 284),
        "minc1": ("minc1/nibabel/tiny.mnc", ".mnc", False, 2048),
        "minc2": ("minc2/minc_tools/test-rnd.mnc", ".mnc", False, 4096),
        "dicom": ("dicom/pydicom/MR_small.dcm", ".dcm", False, 0),
    }
    for fmt, (rel, ext, gz, region) in binary.items():
        if fmt not in formats or not (testdata / rel).is_file():
            continue
        seed = _seed(testdata, rel)
        if fmt == "dicom":
            region = hostile_cases.header_len("dicom", rel, seed)
        comps = {}
        if fmt == "analyze":
            comps = {"x.img": (testdata / rel).with_suffix(".img").read_bytes()}
        out.append(Target(fmt, ext, seed, gz, min(region, len(seed)), comps))
    if "nrrd" in formats:
        out.append(Target("nrrd", ".nrrd", grammar="nrrd"))
        out.append(Target("nrrd", ".nhdr", grammar="nrrd-detached"))
    if "metaimage" in formats:
        out.append(Target("metaimage", ".mha", grammar="metaimage"))
        out.append(Target("metaimage", ".mhd", grammar="metaimage-detached"))
    covered = {t.fmt for t in out}
    out += [t for t in generic_targets(testdata, formats - covered) if t.fmt not in covered]
    return out


def generic_targets(testdata: Path, formats: set[str]) -> list[Target]:
    """A target for any other installed reader: its smallest corpus image, else a synthetic
    image its own plugin writes; the first 2 KiB are the header region."""
    import hostile_cases
    from anyconv.detect import suffixes_of

    out = []
    units = hostile_cases.units(testdata, formats)
    for fmt in sorted(formats):
        mine = sorted(
            (u for u in units if u.fmt == fmt), key=lambda u: sum(f.stat().st_size for f in u.files)
        )
        if mine:
            u = mine[0]
            raw = u.main.read_bytes()
            seed, gz = hostile_cases.logical(raw)
            comps = {f.name: f.read_bytes() for f in u.files[1:]}
            ext = suffixes_of(u.main.name)[0] if suffixes_of(u.main.name) else ""
            out.append(Target(fmt, ext, seed, gz, min(2048, len(seed)), comps, name=u.main.name))
            continue
        made = _synthetic_seed(fmt)
        if made is not None:
            out.append(made)
    return out


def _synthetic_seed(fmt: str) -> Target | None:
    """A small oblique image written by the format's own writer, when there is one."""
    import hostile_cases
    from anyconv import Registry
    from anyconv.specs import WriteOptions
    from anyconv.testing import synthetic_image

    registry = Registry()
    writers = [w for w in registry.writers() if w.format == fmt and w.extensions]
    if not writers:
        return None
    ext = writers[0].extensions[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"seed{ext}"
        try:
            registry.write(synthetic_image(), path, fmt=fmt, options=WriteOptions(lossy=True))
        except Exception:  # noqa: BLE001 - no seed for this format then
            return None
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p != path}
        seed, gz = hostile_cases.logical(path.read_bytes())
    return Target(fmt, ext, seed, gz, min(2048, len(seed)), files, name=path.name)


# -- strategies ------------------------------------------------------------------------------
def binary_strategy(t: Target) -> Any:
    """Byte edits in the header region, then maybe a cut."""
    from hypothesis import strategies as st

    edit = st.tuples(
        st.integers(0, max(0, t.region - 1)),
        st.one_of(st.binary(min_size=1, max_size=2), st.sampled_from(INTERESTING)),
    )

    def apply(edits: list[tuple[int, bytes]], cut: int | None) -> bytes:
        buf = bytearray(t.seed)
        for off, value in edits:
            buf[off : off + len(value)] = value
        data = bytes(buf[: len(t.seed)])
        return data if cut is None else data[:cut]

    return st.builds(
        apply,
        st.lists(edit, min_size=1, max_size=8),
        st.one_of(st.none(), st.none(), st.integers(0, len(t.seed))),
    )


NUMBERS = [
    "0",
    "-1",
    "1",
    "3",
    "2147483647",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    "1.5",
    "99999999999999999999",
    "",
    "abc",
    "0x10",
    "1e-320",
    "-0",
]
FILES = [
    "LOCAL",
    "x.raw",
    "../x.raw",
    "/dev/zero",
    "/etc/passwd",
    ".",
    "LIST",
    "x%d.raw 0 3 1",
    "x%d.raw 0 2000000000 1",
    "x%d.raw 5 0 0",
    "nonexistent",
    "/proc/self/mem",
    "",
]


def text_strategy(t: Target) -> Any:
    """Header lines drawn from the format's fields with hostile values, then some data."""
    from hypothesis import strategies as st

    nrrd = t.grammar.startswith("nrrd")
    detached = t.grammar.endswith("detached")
    if nrrd:
        keys = [
            "type",
            "dimension",
            "sizes",
            "encoding",
            "endian",
            "space",
            "space dimension",
            "space directions",
            "space origin",
            "spacings",
            "kinds",
            "byte skip",
            "line skip",
            "data file",
            "measurement frame",
            "centers",
            "thicknesses",
            "axis mins",
            "space units",
            "labels",
            "block size",
            "content",
        ]
        values = {
            "type": ["short", "int16", "uchar", "float", "double", "block", "int64", "foo"],
            "encoding": ["raw", "gzip", "bzip2", "ascii", "hex", "txt", "bogus"],
            "endian": ["little", "big", "middle"],
            "space": ["left-posterior-superior", "RAS", "scanner-xyz-time", "bogus"],
            "kinds": ["domain domain domain", "vector", "RGB-color space space", "list"],
            "data file": FILES,
        }
        sep, magic = ": ", "NRRD0004\n"
    else:
        keys = [
            "ObjectType",
            "NDims",
            "DimSize",
            "ElementType",
            "ElementSpacing",
            "Offset",
            "TransformMatrix",
            "HeaderSize",
            "CompressedData",
            "CompressedDataSize",
            "BinaryData",
            "BinaryDataByteOrderMSB",
            "ElementNumberOfChannels",
            "ElementSize",
            "AnatomicalOrientation",
            "CenterOfRotation",
            "ElementByteOrderMSB",
        ]
        values = {
            "ObjectType": ["Image", "Mesh"],
            "ElementType": ["MET_SHORT", "MET_UCHAR", "MET_DOUBLE", "MET_FOO", "MET_STRING"],
            "CompressedData": ["True", "False", "maybe"],
            "BinaryData": ["True", "False"],
            "AnatomicalOrientation": ["RAI", "LPS", "???", "XYZ"],
        }
        sep, magic = " = ", ""
    number_list = st.lists(st.sampled_from(NUMBERS), min_size=0, max_size=5).map(" ".join)
    vector = st.lists(st.sampled_from(NUMBERS), min_size=0, max_size=4).map(
        lambda v: "(" + ",".join(v) + ")"
    )
    vectors = st.lists(st.one_of(vector, st.just("none")), max_size=4).map(" ".join)

    def value_for(key: str) -> Any:
        pools = [number_list, vectors, st.text(max_size=12)]
        if key in values:
            pools.insert(0, st.sampled_from(values[key]))
        return st.one_of(*pools)

    line = st.sampled_from(keys).flatmap(lambda k: value_for(k).map(lambda v: f"{k}{sep}{v}"))
    if nrrd:
        base = ["type: short", "dimension: 3", "sizes: 4 3 2", "encoding: raw", "endian: little"]
    else:
        base = ["ObjectType = Image", "NDims = 3", "DimSize = 4 3 2", "ElementType = MET_SHORT"]

    def assemble(lines: list[str], keep: list[bool], data: bytes, datafile: str) -> bytes:
        head = [b for b, k in zip(base, keep, strict=False) if k] + lines
        if nrrd:
            if detached:
                head.append(f"data file: {datafile}")
                return (magic + "\n".join(head) + "\n").encode("utf-8", "replace")
            return (magic + "\n".join(head) + "\n\n").encode("utf-8", "replace") + data
        head.append(f"ElementDataFile = {datafile if detached else 'LOCAL'}")
        return ("\n".join(head) + "\n").encode("utf-8", "replace") + data

    return st.builds(
        assemble,
        st.lists(line, max_size=8),
        st.lists(st.booleans(), min_size=len(base), max_size=len(base)),
        st.binary(max_size=64).map(lambda b: b * 1),
        st.sampled_from(FILES),
    )


# -- the check --------------------------------------------------------------------------------
class BudgetError(Exception):
    """An example ran past its budget."""


def check(t: Target, data: bytes, folder: Path, timeout: float, strict: bool) -> str | None:
    """Read ``data`` as a ``t.fmt`` file; why that is a finding, or ``None``."""
    import numpy as np
    from anyconv.errors import AnyconvError
    from anyconv.pipeline import load_data
    from hostile_runner import chain, innermost_frame

    for p in folder.iterdir():
        p.unlink()
    src = folder / t.filename
    src.write_bytes(hostile_gz(data) if t.gzipped else data)
    for name, content in t.companions.items():
        (folder / name).write_bytes(content)
    (folder / "x.raw").write_bytes(bytes(48))

    def alarm(*_: object) -> None:
        raise BudgetError

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    try:
        images = REGISTRY.read(src, fmt=t.fmt)
        images = [load_data(img) for img in images]
        for img in images:
            np.asarray(img.data)
    except BudgetError:
        return f"took over {timeout} s"
    except AnyconvError as exc:
        if "MemoryError" in chain(exc):
            return f"stopped only by a failed allocation: {innermost_frame(exc)}"
        if exc.exit_code not in (3, 4):
            return f"exit {exc.exit_code}: {exc}"
        if strict and exc.__cause__ is not None and not isinstance(exc.__cause__, AnyconvError):
            return f"unvalidated input reached a library: {innermost_frame(exc)}"
        return None
    except BaseException as exc:  # noqa: BLE001 - anything else escaping is the finding
        return f"escaped {type(exc).__name__}: {exc} at {innermost_frame(exc)}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if time.perf_counter() - t0 > timeout:
        return f"took {time.perf_counter() - t0:.1f} s"
    if strict:
        for img in images:
            aff = np.asarray(img.affine, dtype=float)
            det = float(np.linalg.det(aff[:3, :3])) if np.all(np.isfinite(aff)) else math.nan
            if not math.isfinite(det) or abs(det) < 1e-12:
                return f"accepted with a non-finite or singular affine: {aff[:3].tolist()}"
    return None


def hostile_gz(data: bytes) -> bytes:
    """gzip without a time stamp, so a saved regression replays byte for byte."""
    return gzip.compress(data, compresslevel=1, mtime=0)


REGISTRY: Any = None


def save_regression(t: Target, data: bytes, why: str) -> Path:
    """Keep a finding as ``regressions/<fmt>/<sha>.<ext>`` (+ ``.why``) for ``test_fuzz.py``."""
    folder = REGRESSIONS / t.fmt
    folder.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(t.ext.encode() + data).hexdigest()[:12]
    path = folder / f"{sha}{t.ext}.bin"
    path.write_bytes(data)
    path.with_suffix(".why").write_text(why + "\n")
    return path


def fuzz(
    t: Target,
    *,
    seconds: float | None,
    examples: int | None,
    derandomize: bool,
    timeout: float,
    strict: bool,
    save: bool,
) -> dict[str, Any]:
    """Run one target; findings (distinct by message head) with the input that shows them."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import HypothesisException

    strategy = text_strategy(t) if t.grammar else binary_strategy(t)
    findings: dict[str, bytes] = {}
    count = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        @settings(
            max_examples=examples or 10**9,
            derandomize=derandomize,
            deadline=None,
            database=None,
            phases=[Phase.generate] if not derandomize else [Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def run(data: bytes) -> None:
            nonlocal count
            if seconds is not None and time.monotonic() - start > seconds:
                raise _StopError
            count += 1
            why = check(t, data, folder, timeout, strict)
            if why is not None:
                key = why.split(" at ")[-1][:120]
                findings.setdefault(key, data)

        with contextlib.suppress(_StopError, HypothesisException):
            run()
    out = {
        "format": t.fmt,
        "ext": t.ext,
        "examples": count,
        "seconds": round(time.monotonic() - start, 1),
        "findings": [],
    }
    for why, data in findings.items():
        entry = {"why": why, "input_hex": data[:64].hex(), "size": len(data)}
        if save:  # the bytes as they were on disk (gzipped when the target is)
            on_disk = hostile_gz(data) if t.gzipped else data
            entry["saved"] = str(save_regression(t, on_disk, why).relative_to(HERE))
        out["findings"].append(entry)
    return out


class _StopError(Exception):
    """The time budget is spent."""


def main(argv: list[str] | None = None) -> int:
    """Fuzz the installed readers; exit 1 if anything was found."""
    global REGISTRY

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=None, help="budget per target")
    ap.add_argument("--examples", type=int, default=None, help="examples per target")
    ap.add_argument("--format", action="append", help="only these formats")
    ap.add_argument("--derandomize", action="store_true", help="same examples every run (CI)")
    ap.add_argument("--strict", action="store_true", help="also report wrapped library errors")
    ap.add_argument("--save", action="store_true", help="save findings under regressions/")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per example")
    ap.add_argument("--replay", action="store_true", help="replay saved regressions only")
    args = ap.parse_args(argv)
    if args.seconds is None and args.examples is None:
        args.seconds = 60.0
    with contextlib.suppress(ValueError, OSError):
        limit = int(os.environ.get("HOSTILE_RLIMIT_AS", str(3 << 30)))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    import logging

    for name in ("anyconv", "nibabel", "pydicom", "h5py"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with contextlib.suppress(ImportError):
        import nibabel

        nibabel.imageglobals.logger.setLevel(logging.CRITICAL)
    from anyconv import Registry
    from anyconv.testing import find_testdata

    REGISTRY = Registry()
    testdata = find_testdata(HERE)
    if testdata is None:
        print("shared test corpus not found", file=sys.stderr)
        return 2
    formats = {r.format for r in REGISTRY.readers()}
    if args.format:
        formats &= set(args.format)
    results = []
    if args.replay:
        results = replay(formats, args.timeout)
    else:
        for t in targets(testdata, formats):
            results.append(
                fuzz(
                    t,
                    seconds=args.seconds,
                    examples=args.examples,
                    derandomize=args.derandomize,
                    timeout=args.timeout,
                    strict=args.strict,
                    save=args.save,
                )
            )
    print(json.dumps(results, indent=1))
    return 1 if any(r["findings"] for r in results) else 0


def replay(formats: set[str], timeout: float) -> list[dict[str, Any]]:
    """Run every saved regression input again."""
    results = []
    if not REGRESSIONS.is_dir():
        return results
    for path in sorted(REGRESSIONS.glob("*/*.bin")):
        fmt = path.parent.name
        if fmt not in formats:
            continue
        ext = "." + ".".join(path.name.split(".")[1:-1])
        t = Target(fmt, ext)
        with tempfile.TemporaryDirectory() as tmp:
            why = check(t, path.read_bytes(), Path(tmp), timeout, strict=False)
        results.append(
            {
                "format": fmt,
                "ext": ext,
                "examples": 1,
                "file": path.name,
                "findings": [{"why": why}] if why else [],
            }
        )
    return results


if __name__ == "__main__":
    sys.exit(main())
