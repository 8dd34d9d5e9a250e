"""Batch: parallel, journalled, resumable after SIGKILL, reported, and on Dask."""

import json
import os
import signal
import subprocess
import time

import nibabel as nib
import numpy as np
import pytest
from anyconv.batch import JOURNAL_NAME, BatchSettings, discover, read_journal, run_batch
from anyconv.registry import Registry
from anyconv.testing import synthetic_affine
from anyconv.testing.fixtures import anyconv_executable


def make_archive(root, n_series=120, corrupt=3, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n_series):
        folder = root / f"subj{i % 7:02d}" / f"ses{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        shape = tuple(int(s) for s in rng.integers(6, 24, 3))
        data = rng.integers(0, 4000, shape).astype(np.int16)
        nib.save(nib.Nifti1Image(data, synthetic_affine()), str(folder / f"run{i:03d}.nii"))
    for j in range(corrupt):
        bad = root / "subj00" / f"broken{j}.nii.gz"
        bad.write_bytes(b"\x1f\x8b\x08\x00garbage" * (j + 1))
    (root / "subj00" / "notes.txt").write_text("not an image, not reported")
    return n_series, corrupt


def outputs_of(out_dir):
    return {
        p.relative_to(out_dir).as_posix(): p.read_bytes()
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != JOURNAL_NAME
    }


def test_discovery_by_content(tmp_path):
    src = tmp_path / "src"
    n, corrupt = make_archive(src, n_series=10)
    units = discover(Registry(), [src])
    assert len(units) == n + corrupt
    assert sum(1 for u in units if u.error) == corrupt
    assert len({u.key for u in units}) == len(units)


def test_batch_in_process_report_and_failures(tmp_path):
    src = tmp_path / "src"
    n, corrupt = make_archive(src, n_series=20)
    out = tmp_path / "out"
    report = tmp_path / "report.jsonl"
    summary = run_batch(Registry(), [src], BatchSettings(out_dir=str(out)), jobs=1, report=report)
    assert (summary.converted, summary.failed) == (n, corrupt)
    assert summary.first_exit_code == 4
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(lines) == n + corrupt + 1
    assert "summary" in lines[-1]
    for rec in lines[:-1]:
        if rec["status"] == "ok":
            (out_file,) = rec["outputs"]
            src_img = nib.load(rec["source"])
            np.testing.assert_array_equal(nib.load(out_file).dataobj, src_img.dataobj)
        else:
            assert "broken" in rec["source"]
    # a second run without --resume refuses; with resume it skips everything
    with pytest.raises(Exception, match="journal"):
        run_batch(Registry(), [src], BatchSettings(out_dir=str(out)), jobs=1)
    again = run_batch(Registry(), [src], BatchSettings(out_dir=str(out)), jobs=1, resume=True)
    assert (again.skipped, again.converted, again.failed) == (n, 0, corrupt)


def test_kill_and_resume_gives_the_clean_result(tmp_path):
    src = tmp_path / "src"
    n, corrupt = make_archive(src, n_series=240)
    clean = tmp_path / "clean"
    code = subprocess.run(
        [anyconv_executable(), "batch", str(src), str(clean), "-j", "2", "-q"],
        capture_output=True, text=True, timeout=600, check=False,
    ).returncode  # fmt: skip
    assert code == 4  # the corrupt inputs
    expected = outputs_of(clean)
    assert len(expected) == n
    out = tmp_path / "out"
    rng = np.random.default_rng(7)
    kills = 0
    for attempt in range(6):
        args = [anyconv_executable(), "batch", str(src), str(out), "-j", "2", "-q"]
        if attempt:
            args.append("--resume")
        proc = subprocess.Popen(args, start_new_session=True)
        # kill once the journal has grown by a random number of units: mid-run, whatever
        # the machine's speed
        journal = out / JOURNAL_NAME
        start = len(journal.read_text().splitlines()) if journal.exists() else 0
        target = start + int(rng.integers(1, max(2, (n + corrupt - start) // 2)))
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= target:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        proc.wait()
        # after every kill, every output under its final name is complete
        for rel, data in outputs_of(out).items():
            assert ".anyconv-staging-" in rel or data == expected[rel], rel
    final = subprocess.run(
        [anyconv_executable(), "batch", str(src), str(out), "--resume", "-j", "2", "-q"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert final.returncode == 4, final.stderr
    assert outputs_of(out) == expected
    journal = read_journal(out)
    ok = [k for k, r in journal.items() if r["status"] == "ok"]
    assert len(ok) == n
    failed = [k for k, r in journal.items() if r["status"] != "ok"]
    assert len(failed) == corrupt
    assert not list(out.rglob(".anyconv-staging-*"))
    assert kills >= 1


def test_report_has_one_line_per_series(testdata, tmp_path):
    """The DICOM corpus folder with several series: one report line per output series."""
    report = tmp_path / "r.jsonl"
    src = testdata / "dicom" / "philips_achieva_enhanced_fieldmap"
    summary = run_batch(
        Registry(), [src], BatchSettings(out_dir=str(tmp_path / "o")), jobs=1, report=report
    )
    assert summary.failed == 0
    lines = [json.loads(line) for line in report.read_text().splitlines()][:-1]
    niftis = [o for line in lines for o in line["outputs"] if o.endswith(".nii.gz")]
    assert len(lines) == len(niftis) == 2
    assert [line["series_index"] for line in lines] == [0, 1]


def test_dask_local_cluster_gives_the_same_outputs(tmp_path):
    src = tmp_path / "src"
    n, _ = make_archive(src, n_series=12, corrupt=1)
    ref = tmp_path / "ref"
    run_batch(Registry(), [src], BatchSettings(out_dir=str(ref)), jobs=1)
    out = tmp_path / "dask"
    summary = run_batch(
        Registry(), [src], BatchSettings(out_dir=str(out)), jobs=2, scheduler="local"
    )
    assert (summary.converted, summary.failed) == (n, 1)
    assert outputs_of(out) == outputs_of(ref)


def test_cli_batch_reports_one_line(tmp_path, run_cli):
    src = tmp_path / "src"
    make_archive(src, n_series=4, corrupt=1)
    code, _, stderr = run_cli("batch", src, tmp_path / "out", "-j", "1")
    assert code == 4
    assert "4 converted" in stderr
    assert "1 failed" in stderr
    assert "Traceback" not in stderr
