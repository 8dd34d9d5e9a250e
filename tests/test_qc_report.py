"""`anyconv batch --qc-report`: one self-contained HTML page, rendered in headless Chromium.

Chromium (Debian's ``chromium`` package) runs the page's own script, which marks every
``<img>`` it decoded; ``--dump-dom`` then gives the page as the browser built it. Missing
Chromium fails the test when ``CI`` is set, and skips it elsewhere.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from anyconv.testing import synthetic_affine


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    msg = "headless Chromium not found (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def render(page, tmp_path):
    """The DOM after Chromium loaded the page and ran its scripts."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)  # a fresh profile each time
    args = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
        "--dump-dom", page.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Dom(HTMLParser):
    """Rows, images and the body's attributes of a dumped DOM."""

    def __init__(self, text):
        super().__init__()
        self.body = {}
        self.rows = []
        self.images = []
        self.external = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "tr" and "series" in (attrs.get("class") or "").split():
            self.rows.append(attrs)
        elif tag == "img":
            self.images.append(attrs)
        if tag in ("img", "script", "link") and (attrs.get("src") or attrs.get("href")):
            ref = attrs.get("src") or attrs.get("href")
            if not ref.startswith("data:"):
                self.external.append(ref)


def report_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()][:-1]


def test_corpus_dicom_report_renders_one_row_per_series(testdata, tmp_path, run_cli):
    page = tmp_path / "report.html"
    jsonl = tmp_path / "report.jsonl"
    code, _, err = run_cli(
        "batch", testdata / "dicom", tmp_path / "out", "-j", "2", "-q",
        "--qc-report", page, "--report", jsonl,
    )  # fmt: skip
    assert code == 0, err
    lines = report_lines(jsonl)
    expected = [(rec["key"], str(rec.get("series_index", 0))) for rec in lines]
    assert len(expected) > len({k for k, _ in expected})  # some folders hold several series
    dom = Dom(render(page, tmp_path))
    assert dom.body.get("data-ready") == "ok", dom.body
    got = [(row["data-key"], row["data-series"]) for row in dom.rows]
    assert sorted(got) == sorted(expected)
    assert len(dom.images) == len(expected)
    assert all(img.get("data-decoded") == "1" for img in dom.images)
    assert dom.body["data-images-decoded"] == str(len(expected))
    assert dom.external == []  # self-contained: no file or URL the page needs
    # each thumbnail is a labelled preview PNG of its series
    from anyconv import preview

    src = dom.images[0]["src"]
    layout = preview.read_layout(base64.b64decode(src.split(",", 1)[1]))
    assert [p["name"] for p in layout["panels"]] == ["axial", "coronal", "sagittal"]
    text = page.read_text()
    for rec in lines:  # every output is listed, every warning shown
        for out in rec["outputs"]:
            assert Path(out).name in text
        for warning in rec["warnings"]:
            assert warning in text or warning.replace("'", "&#x27;") in text


def make_inputs(root):
    root.mkdir()
    for i, angles in enumerate([(0, 0, 0), (15, -5, 20), (0, 30, 0)]):
        data = np.random.default_rng(i).integers(0, 1000, (12, 10, 8)).astype(np.int16)
        affine = synthetic_affine(angles_deg=angles)
        nib.save(nib.Nifti1Image(data, affine), str(root / f"s{i}.nii"))
    fmri = np.random.default_rng(9).random((8, 9, 7, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(fmri, synthetic_affine()), str(root / "fmri.nii.gz"))
    (root / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")


def test_failures_warnings_preview_and_resume(tmp_path, run_cli):
    src = tmp_path / "src"
    make_inputs(src)
    out = tmp_path / "out"
    page = tmp_path / "qc" / "index.html"
    code, _, err = run_cli(
        "batch", src, out, "-j", "1", "--preview", "--qc-report", page, "--to", "nrrd"
    )
    assert code == 4, err  # the broken input
    assert f"QC report: {page}" in err
    for name in ("s0", "s1", "s2", "fmri"):
        assert (out / f"{name}.png").is_file()  # --preview: beside each output
    dom = Dom(render(page, tmp_path))
    assert dom.body.get("data-ready") == "ok"
    status = {row["data-key"]: row["data-status"] for row in dom.rows}
    assert status == {
        "src/s0.nii": "ok", "src/s1.nii": "ok", "src/s2.nii": "ok",
        "src/fmri.nii.gz": "ok", "src/broken.nii.gz": "failed",
    }  # fmt: skip
    assert len(dom.images) == 4  # none for the failed input
    assert all(img.get("data-decoded") == "1" for img in dom.images)
    text = page.read_text()
    assert re.search(r"oblique 2\d\.\d\d?\u00b0|oblique 2\d\.?\d*\u00b0", text)
    assert "8\u00d79\u00d77\u00d74 float32" in text
    assert 'href="../out/s0.nrrd"' in text  # links relative to the page
    # a resumed batch lists the earlier results too, with thumbnails from the previews
    code, _, err = run_cli("batch", src, out, "-j", "1", "--resume", "--qc-report", page)
    assert code == 4, err
    dom = Dom(render(page, tmp_path))
    assert len(dom.rows) == 5
    assert len(dom.images) == 4
    assert dom.body.get("data-ready") == "ok"
    assert page.read_text().count("done by an earlier run") == 4
    # the check can fail: a truncated thumbnail is caught by the page's own script
    text = page.read_text()
    start = text.index("base64,") + len("base64,")
    end = text.index('"', start)
    broken = tmp_path / "broken.html"
    broken.write_text(text[: start + 200] + text[end:])
    dom = Dom(render(broken, tmp_path))
    assert dom.body.get("data-ready") == "broken"
    assert [img.get("data-decoded") for img in dom.images].count("0") == 1
    # the journal holds no thumbnails
    journal = (out / ".anyconv-batch.jsonl").read_text()
    assert "base64" not in journal
    assert "iVBOR" not in journal


def test_resume_without_previews_reads_outputs_back(tmp_path, run_cli):
    src = tmp_path / "src"
    make_inputs(src)
    out = tmp_path / "out"
    code, _, err = run_cli("batch", src, out, "-j", "1")
    assert code == 4, err
    page = tmp_path / "r.html"
    code, _, err = run_cli("batch", src, out, "-j", "1", "--resume", "--qc-report", page)
    assert code == 4, err
    dom = Dom(render(page, tmp_path))
    assert len(dom.rows) == 5
    assert len(dom.images) == 4
    assert dom.body.get("data-ready") == "ok"
