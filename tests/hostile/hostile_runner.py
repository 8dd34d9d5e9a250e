"""Run hostile cases in-process, in a child with an address-space limit; JSON lines out.

``python hostile_runner.py TESTDATA WORKDIR < ids.json`` prints ``{"start": id}`` before each
conversion and one result object after it, so the parent can kill a hung child, blame the
case that hung and start a new child for the rest. A thread samples resident memory every
5 ms, so each case's own peak RSS is known.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: virtual address space of the child; numpy, HDF5 and thread stacks need some room.
ADDRESS_SPACE = int(os.environ.get("HOSTILE_RLIMIT_AS", str(3 << 30)))
#: peak resident memory a single case may reach.
RSS_LIMIT = 1 << 30


def rss_bytes() -> int:
    """Resident memory of this process now (from /proc/self/statm)."""
    with open("/proc/self/statm") as fh:  # noqa: PTH123 - read 100 times a second
        return int(fh.read().split()[1]) * PAGE


PAGE = os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples resident memory every 5 ms in a thread: the peak of each case on its own."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._on = False
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            if self._on:
                rss = rss_bytes()
                with self._lock:
                    self.peak = max(self.peak, rss)
            time.sleep(0.005)

    def start(self) -> None:
        with self._lock:
            self.peak = rss_bytes()
        self._on = True

    def stop(self) -> int:
        self._on = False
        with self._lock:
            return max(self.peak, rss_bytes())


def voxel_digest(paths: list[Path]) -> list[str]:
    """A digest of every NIfTI output's shape and scaled voxels, in name order."""
    import nibabel as nib
    import numpy as np

    out = []
    for p in sorted(paths):
        if not p.name.endswith((".nii", ".nii.gz")):
            continue
        img = nib.load(p)
        arr = np.asanyarray(img.dataobj)
        h = hashlib.sha256(str(arr.shape).encode() + str(arr.dtype).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
        out.append(h.hexdigest())
    return out


def sane_outputs(paths: list[Path]) -> str | None:
    """Why accepted outputs are not sane, or ``None``.

    Sane: each NIfTI loads, its shape has no empty axis, its affine is finite and invertible.
    """
    import nibabel as nib
    import numpy as np

    images = [p for p in paths if p.name.endswith((".nii", ".nii.gz"))]
    if not images:
        return f"conversion succeeded but wrote no image: {[p.name for p in paths]}"
    for p in images:
        try:
            img = nib.load(p)
            shape = img.shape
            affine = img.affine
            np.asanyarray(img.dataobj[(0,) * len(shape)])
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            return f"output {p.name} does not load: {type(exc).__name__}: {exc}"
        if not all(n >= 1 for n in shape):
            return f"output {p.name} has shape {shape}"
        if not np.all(np.isfinite(affine)):
            return f"output {p.name} has a non-finite affine {affine[:3].tolist()}"
        det = float(np.linalg.det(affine[:3, :3]))
        if not math.isfinite(det) or abs(det) < 1e-12:
            return f"output {p.name} has a singular affine (det {det:g})"
    return None


def chain(exc: BaseException) -> list[str]:
    """Exception types along ``__cause__``/``__context__``, outermost first."""
    out, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    return out


def innermost_frame(exc: BaseException) -> str:
    """``file:line in function: Error: message``: the deepest frame in anyconv code (core or a
    plugin) along the cause chain, with the innermost exception: where it broke."""
    chain_: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain_:
        chain_.append(cur)
        cur = cur.__cause__ or cur.__context__
    inner = chain_[-1]
    for e in reversed(chain_):
        frames = [
            f
            for f in traceback.extract_tb(e.__traceback__)
            if "/plugins/" in f.filename or "/core/src/" in f.filename
        ]
        if frames:
            f = frames[-1]
            path = f.filename
            for marker in ("/plugins/", "/core/src/"):
                if marker in path:
                    path = path[path.index(marker) + 1 :]
            return f"{path}:{f.lineno} in {f.name}: {type(inner).__name__}: {str(inner)[:160]}"
    return f"{type(inner).__name__}: {str(inner)[:160]}"


class Runner:
    """Converts cases the way the CLI does, through ``anyconv.pipeline.convert``."""

    def __init__(self, testdata: Path, workdir: Path) -> None:
        import anyconv
        import hostile_cases

        self.registry = anyconv.Registry()
        self.cases = {c.id: c for c in hostile_cases.all_cases(testdata, self.registry.readers())}
        self.workdir = workdir
        self.baselines: dict[str, list[str]] = {}
        self.n = 0
        self.rss = PeakRSS()

    def convert(self, src: Path, out: Path, from_fmt: str | None) -> None:
        from anyconv.pipeline import ConvertRequest, convert
        from anyconv.specs import WriteOptions

        req = ConvertRequest(
            src=src,
            dst=out,
            from_fmt=from_fmt,
            to_fmt="nifti1",
            dst_is_folder=True,
            write_options=WriteOptions(lossy=True),
        )
        convert(self.registry, req)

    def baseline(self, unit: Any) -> list[str]:
        """Voxel digests of a pristine unit's conversion."""
        if unit.key not in self.baselines:
            folder = self.workdir / "baseline"
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "in").mkdir(parents=True)
            src = unit.copy_to(folder / "in")
            self.convert(src, folder / "out", None)
            self.baselines[unit.key] = voxel_digest(list((folder / "out").iterdir()))
            shutil.rmtree(folder, ignore_errors=True)
        return self.baselines[unit.key]

    def run(self, case_id: str) -> dict[str, Any]:
        from anyconv.errors import AnyconvError

        case = self.cases.get(case_id)
        if case is None:  # the installed plugins changed between parent and child
            return {
                "id": case_id,
                "outcome": "no-run",
                "verdict": "fail",
                "rss_over": False,
                "why": "the runner did not generate this case (plugin set changed?)",
            }
        self.n += 1
        folder = self.workdir / f"c{self.n:05d}"
        inp_dir, out_dir = folder / "in", folder / "out"
        inp_dir.mkdir(parents=True)
        out_dir.mkdir()
        res: dict[str, Any] = {
            "id": case_id,
            "fmt": case.fmt,
            "kind": case.kind,
            "expect": case.expect,
        }
        try:
            inp = case.build(inp_dir)
        except Exception as exc:  # noqa: BLE001 - a recipe that cannot be built is reported
            shutil.rmtree(folder, ignore_errors=True)
            return {
                **res,
                "outcome": "build",
                "verdict": "fail",
                "why": f"case could not be built: {type(exc).__name__}: {exc}",
            }
        print(json.dumps({"start": case_id}), flush=True)
        self.rss.start()
        t0 = time.perf_counter()
        try:
            self.convert(inp.src, out_dir, inp.from_fmt)
            res["outcome"] = "ok"
        except AnyconvError as exc:
            res.update(
                outcome="error",
                code=exc.exit_code,
                message=str(exc)[:300],
                chain=chain(exc),
                where=innermost_frame(exc),
            )
        except BaseException as exc:  # noqa: BLE001 - what escapes is the finding
            res.update(
                outcome="crash",
                code=None,
                message=f"{type(exc).__name__}: {exc}"[:300],
                chain=chain(exc),
                where=innermost_frame(exc),
            )
        res["seconds"] = round(time.perf_counter() - t0, 3)
        peak = self.rss.stop()
        res["rss_mb"] = round(peak / 2**20)
        res["rss_over"] = peak > RSS_LIMIT
        left = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*"))
        res["left"] = left
        res["verdict"], res["why"] = self.judge(case, inp, res, out_dir)
        shutil.rmtree(folder, ignore_errors=True)
        return res

    def judge(self, case: Any, inp: Any, res: dict[str, Any], out_dir: Path) -> tuple[str, str]:
        """``pass`` or ``fail`` and why."""
        if res["rss_over"]:
            return "fail", f"peak RSS reached {res['rss_mb']} MiB (> 1 GiB)"
        if res["seconds"] > 10:
            return "fail", f"took {res['seconds']} s (> 10 s)"
        if res["outcome"] == "crash":
            return "fail", f"non-anyconv exception escaped: {res['message']} at {res['where']}"
        if res["outcome"] == "error":
            if "MemoryError" in res["chain"]:
                return "fail", f"stopped only by a failed allocation: {res['where']}"
            if res["code"] not in (3, 4):
                return "fail", f"exit code {res['code']} (not 3/4): {res['message']}"
            if res["left"]:
                return "fail", f"refused but left files in the output folder: {res['left']}"
            return "pass", f"refused (exit {res['code']})"
        outputs = [out_dir / p for p in res["left"]]
        if case.expect == "reject":
            return "fail", f"accepted hostile input, wrote {res['left']}"
        if any(Path(p).name.startswith(".") for p in res["left"]):
            return "fail", f"hidden or staging files left: {res['left']}"
        why = sane_outputs(outputs)
        if why:
            return "fail", why
        if case.expect == "sane" and inp.images is not None:
            n = len([p for p in outputs if p.name.endswith((".nii", ".nii.gz"))])
            if n != inp.images:
                return "fail", f"expected {inp.images} image(s), wrote {n}"
        if case.expect == "reject_or_same" and inp.unit is not None:
            if voxel_digest(outputs) != self.baseline(inp.unit):
                return "fail", "accepted a cut file and gave different voxels (silent data loss)"
            return "pass", "accepted: only bytes the image does not need were cut"
        return "pass", "accepted with sane output"


def drive(
    testdata: Path, ids: list[str], workdir: Path, timeout: float = 10.0
) -> dict[str, dict[str, Any]]:
    """Run ``ids`` in two child processes side by side (file-system and device cases, which
    may hang until killed, in one; the rest in the other); a case that hangs past ``timeout``
    is killed and failed, and a new child takes the rest of its lane."""
    from concurrent.futures import ThreadPoolExecutor

    lanes = [[i for i in ids if i.startswith("fs:")], [i for i in ids if not i.startswith("fs:")]]
    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(len(lanes)) as pool:
        futures = []
        for n, lane in enumerate(lanes):
            folder = workdir / f"lane{n}"
            folder.mkdir(parents=True, exist_ok=True)
            futures.append(pool.submit(_drive_lane, testdata, lane, folder, timeout))
        for f in futures:
            results.update(f.result())
    return results


def _drive_lane(
    testdata: Path, ids: list[str], workdir: Path, timeout: float
) -> dict[str, dict[str, Any]]:
    import selectors
    import subprocess

    results: dict[str, dict[str, Any]] = {}
    todo = list(ids)
    errpath = workdir.parent / f"{workdir.name}.stderr"
    while todo:
        errlog = errpath.open("w")
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(testdata), str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(todo))
        proc.stdin.close()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        current: str | None = None
        started = time.monotonic()
        buf = ""
        hung = False
        while True:
            wait = None if current is None else max(0.0, timeout + 2 - (time.monotonic() - started))
            if current is None:
                wait = 300.0  # building cases and importing
            if not sel.select(wait):
                hung = True
                break
            chunk = os.read(proc.stdout.fileno(), 1 << 16).decode()
            if not chunk:
                break
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                msg = json.loads(line)
                if "start" in msg:
                    current, started = msg["start"], time.monotonic()
                else:
                    results[msg["id"]] = msg
                    current = None
        if hung or proc.poll() is None:
            proc.kill()
        proc.wait()
        errlog.close()
        err = errpath.read_text(errors="replace").strip().splitlines()
        done = set(results)
        if current is not None and current not in done:
            results[current] = {
                "id": current,
                "verdict": "fail",
                "outcome": "hang",
                "why": f"no answer within {timeout} s (killed)"
                if hung
                else f"the child died (exit {proc.returncode}) during this case: {err[-1:]}",
            }
        before = len(todo)
        todo = [i for i in todo if i not in results]
        if len(todo) == before:  # the child died before any case: report all, do not loop
            for i in todo:
                results[i] = {
                    "id": i,
                    "verdict": "fail",
                    "outcome": "no-run",
                    "why": f"the runner failed (exit {proc.returncode}): {err[-3:]}",
                }
            todo = []
        for p in workdir.iterdir():
            shutil.rmtree(p, ignore_errors=True)
    errpath.unlink(missing_ok=True)
    return results


def main() -> int:
    """Run the case ids read from stdin; one JSON line per case."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    logging.getLogger("anyconv").setLevel(logging.CRITICAL)
    import warnings

    warnings.simplefilter("ignore")
    testdata, workdir = Path(sys.argv[1]), Path(sys.argv[2])
    ids = json.loads(sys.stdin.read())
    runner = Runner(testdata, workdir)
    for case_id in ids:
        res = runner.run(case_id)
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
