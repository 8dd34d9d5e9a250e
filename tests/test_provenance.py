"""The provenance index: --index on convert and batch, `anyconv index query` (issue 15)."""

import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from anyconv import hookimpl
from anyconv.cli import app
from anyconv.provenance import REDACTED, ProvenanceIndex, query
from typer.testing import CliRunner

runner = CliRunner()

FOLDERS = (
    "ge_signa_hdx_epi",
    "philips_achieva_enhanced_fieldmap",
    "siemens_trio_mosaic_ax_asc35",
    "philips_achieva_epi_classic",
)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.output


def query_json(index, *args):
    code, stdout, output = invoke("index", "query", index, "--json", *args)
    assert code == 0, output
    return json.loads(stdout)


def header(path):
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {
        "instance_uid": str(ds.SOPInstanceUID),
        "class_uid": str(ds.SOPClassUID),
        "series_uid": str(ds.SeriesInstanceUID),
        "study_uid": str(ds.StudyInstanceUID),
        "instance_number": int(ds.InstanceNumber) if ds.get("InstanceNumber") else None,
    }


@pytest.fixture(scope="module")
def batch_run(testdata, tmp_path_factory):
    """One batch over several corpus DICOM folders and a NIfTI file, two workers."""
    tmp = tmp_path_factory.mktemp("batch")
    index = tmp / "run.sqlite"
    sources = [testdata / "dicom" / f for f in FOLDERS]
    nifti = testdata / "nifti/nibabel/anatomical.nii"
    out = tmp / "out"
    code, _, output = invoke("batch", *sources, nifti, out, "-j", "2", "-q", "--index", index)
    assert code == 0, output
    return index, out, sources, nifti


def test_batch_index_holds_every_output_with_inputs_and_checksum(batch_run):
    """Acceptance 3: every output file is indexed with its input UIDs; checksums match."""
    index, out, sources, nifti = batch_run
    records = query_json(index)
    indexed = {o["path"]: (o, c) for c in records for o in c["outputs"]}
    files = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(files) >= 10
    assert {str(p.absolute()) for p in files} == set(indexed)
    for path in files:
        entry, conversion = indexed[str(path.absolute())]
        assert entry["sha256"] == sha256(path), path
        assert entry["size"] == path.stat().st_size
        assert conversion["inputs"], path
    by_series: dict[str, set[str]] = {}
    for conversion in records:
        assert conversion["software"]["anyconv"]
        assert conversion["options"]["command"] == "batch"
        assert conversion["writer"] == "nifti1"
        if conversion["reader"] != "dicom":
            (only,) = conversion["inputs"]
            assert only["path"] == str(nifti.absolute())
            continue
        for row in conversion["inputs"]:
            expected = header(row["path"])
            assert {k: row[k] for k in expected} == expected, row
            by_series.setdefault(row["series_uid"], set()).add(row["instance_uid"])
        assert conversion["series_uid"] == conversion["inputs"][0]["series_uid"]
        assert conversion["study_uid"] == conversion["inputs"][0]["study_uid"]
    # every instance of every series is an input of some output
    census: dict[str, set[str]] = {}
    for folder in sources:
        for f in folder.iterdir():
            h = header(f)
            census.setdefault(h["series_uid"], set()).add(h["instance_uid"])
    assert by_series == census


def test_slice_map_covers_every_voxel_slice(batch_run):
    index, *_ = batch_run
    for conversion in query_json(index, "--slices"):
        if conversion["reader"] != "dicom":
            assert conversion["slices"] == []
            continue
        shape = conversion["geometry"]["shape"]
        volumes = 1
        for n in shape[3:]:
            volumes *= n
        seen = {(s["axis"], s["index"], s["volume"]) for s in conversion["slices"]}
        assert len(seen) == len(conversion["slices"])
        (axis,) = {s["axis"] for s in conversion["slices"]}
        assert seen == {(axis, k, t) for k in range(shape[axis]) for t in range(volumes)}
        uids = {i["instance_uid"] for i in conversion["inputs"]}
        assert {s["instance_uid"] for s in conversion["slices"]} == uids


def test_query_by_series_study_instance_and_output(batch_run, testdata):
    index, out, *_ = batch_run
    h = header(testdata / "dicom/ge_signa_hdx_epi/001.dcm")
    (found,) = query_json(index, "--series", h["series_uid"])
    assert sorted(Path(o["path"]).name for o in found["outputs"]) == [
        "15_Zugfahrt.json",
        "15_Zugfahrt.nii.gz",
    ]
    assert query_json(index, "--study", h["study_uid"]) == [found]
    assert query_json(index, "--instance", h["instance_uid"]) == [found]
    assert query_json(index, "--output", out / "15_Zugfahrt.nii.gz") == [found]
    assert query_json(index, "--output", "15_Zugfahrt.json") == [found]
    assert query_json(index, "--series", h["series_uid"], "--study", "9.9") == []
    # two outputs (magnitude, field map) from the one Philips instance
    fmap = header(next((testdata / "dicom/philips_achieva_enhanced_fieldmap").iterdir()))
    found = query_json(index, "--series", fmap["series_uid"])
    assert len(found) == 2
    code, stdout, _ = invoke("index", "query", index, "--series", h["series_uid"])
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["output", "sha256", "inst"]
    assert len(lines) == 3
    assert all(h["series_uid"] in line and " 37 " in line for line in lines[1:])
    code, _, output = invoke("index", "query", out / "missing.sqlite")
    assert code == 4
    assert "no such provenance index" in output


def test_only_written_outputs_are_indexed_and_rewrites_replace(testdata, tmp_path):
    """A failed conversion adds nothing; converting to the same path again replaces."""
    index = tmp_path / "i.sqlite"
    bad = tmp_path / "in" / "cut.nii"
    bad.parent.mkdir()
    src = testdata / "nifti/nibabel/anatomical.nii"
    bad.write_bytes(src.read_bytes()[:400])
    code, _, _ = invoke("batch", bad, src, tmp_path / "out", "-j", "1", "-q", "--index", index)
    assert code == 4  # the cut file failed, the other converted
    records = query(index)
    assert [Path(c["source"]).name for c in records] == ["anatomical.nii"]
    out = tmp_path / "one.nii.gz"
    assert invoke(src, out, "--index", index)[0] == 0
    assert invoke(src, out, "--index", index)[0] == 5  # exists: refused, nothing recorded
    assert invoke(src, out, "--index", index, "--force")[0] == 0
    found = query(index, output=str(out))
    assert len(found) == 1
    assert found[0]["outputs"][0]["sha256"] == sha256(out)
    with sqlite3.connect(index) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
        assert db.execute("SELECT count(*) FROM conversions").fetchone()[0] == 2
    code, _, output = invoke(src, tmp_path / "x.nii", "--index-linkage")
    assert code == 2
    assert "--index-linkage needs --index" in output


def dump(index):
    with sqlite3.connect(index) as db:
        return "\n".join(db.iterdump())


def test_deidentified_index_keeps_new_identifiers_unless_linkage_asked(testdata, tmp_path):
    """With --anonymize: no original UID or input path in the index; --index-linkage apart."""
    folder = testdata / "dicom/ge_signa_hdx_epi"
    originals = [header(f) for f in sorted(folder.iterdir())]
    secret = {folder.name} | {
        h[k] for h in originals for k in ("instance_uid", "series_uid", "study_uid")
    }
    plain = tmp_path / "plain.sqlite"
    key = "t4e-s3cret-k3y"
    code, _, output = invoke(
        folder, tmp_path / "a/", "-t", f"anonymize:key={key}", "--index", plain
    )
    assert code == 0, output
    text = dump(plain)
    assert not [s for s in secret if s in text]
    assert key not in text  # secret-named options are recorded as given, not their values
    assert query(plain)[0]["transforms"] == [["anonymize", {"key": "<secret>"}]]
    (conversion,) = query(plain, linkage=True)
    assert conversion["deidentified"] and conversion["source"] is None
    assert conversion["linkage"] == []
    assert len({i["instance_uid"] for i in conversion["inputs"]}) == 37
    assert all(i["path"] is None for i in conversion["inputs"])
    assert all(i["instance_uid"].startswith("2.25.") for i in conversion["inputs"])
    linked = tmp_path / "linked.sqlite"
    code, _, output = invoke(
        folder, tmp_path / "b/", "--anonymize", "--index", linked, "--index-linkage"
    )
    assert code == 0, output
    (conversion,) = query(linked, linkage=True)
    original_of = {
        (row["instance_uid"], row["field"]): row["original"] for row in conversion["linkage"]
    }
    for row in conversion["inputs"]:
        old = original_of[(row["instance_uid"], "uid")]
        path = original_of[(row["instance_uid"], "path")]
        assert header(path)["instance_uid"] == old
    assert {v for (_, f), v in original_of.items() if f == "uid"} == {
        h["instance_uid"] for h in originals
    }


def test_linkage_contract_and_redaction(tmp_path):
    """Core's part alone: entries with ``linkage`` are de-identified, notes lose input paths."""
    record = {
        "source": "/data/DOE_JOHN/series7/1.dcm",
        "reader": "x",
        "writer": "y",
        "outputs": [{"path": str(tmp_path / "o.nii"), "role": "image", "size": 1, "sha256": "ab"}],
        "sources": [
            {
                "uid": "2.25.1",
                "series_uid": "2.25.2",
                "axis": 2,
                "index": k,
                "volume": 0,
                "linkage": {
                    "uid": "1.2.3",
                    "series_uid": "1.2.4",
                    "path": f"/data/DOE_JOHN/series7/{k}.dcm",
                },
            }
            for k in range(3)
        ],
        "notes": ["/data/DOE_JOHN/series7: kept, slices placed at the mean spacing"],
        "losses": ["odd slice in /data/DOE_JOHN/series7/2.dcm"],
    }
    with ProvenanceIndex(tmp_path / "p.sqlite") as index:
        index.add(json.loads(json.dumps(record)))
    assert "DOE_JOHN" not in dump(tmp_path / "p.sqlite")
    (c,) = query(tmp_path / "p.sqlite")
    assert c["notes"] == [f"{REDACTED}: kept, slices placed at the mean spacing"]
    assert c["losses"] == [f"odd slice in {REDACTED}"]
    assert c["series_uid"] == "2.25.2"
    with ProvenanceIndex(tmp_path / "q.sqlite", linkage=True) as index:
        index.add(record)
    (c,) = query(tmp_path / "q.sqlite", linkage=True)
    rows = {(r["instance_uid"], r["field"], r["value"], r["original"]) for r in c["linkage"]}
    assert ("2.25.1", "series_uid", "2.25.2", "1.2.4") in rows
    assert (None, "source", None, "/data/DOE_JOHN/series7/1.dcm") in rows
    assert ("2.25.1", "path", None, "/data/DOE_JOHN/series7/0.dcm") in rows


def test_concurrent_converts_share_one_index(testdata, tmp_path):
    """SQLite's lock serialises separate processes writing the same index."""
    from anyconv.testing.fixtures import anyconv_executable

    index = tmp_path / "shared.sqlite"
    names = ["anatomical.nii", "example4d.nii.gz"]
    procs = [
        subprocess.Popen(
            [
                anyconv_executable(),
                str(testdata / "nifti/nibabel" / n),
                str(tmp_path / f"{i}.nii"),
                "--index",
                str(index),
            ],
            stderr=subprocess.PIPE,
        )
        for i, n in enumerate(names)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert sorted(Path(c["source"]).name for c in query(index)) == sorted(names)


STORED: dict[str, str] = {}


def store(files, url, options):
    for f in files:
        STORED[f"{url}/{f.name}"] = sha256(f)
    return [f"{url}/{f.name}" for f in files]


class ToyStore:
    @hookimpl
    def anyconv_transports(self):
        from anyconv.specs import TransportSpec

        return [
            TransportSpec(("toy+http",), fetch="x:y", store=f"{__name__}:store", format="nifti1")
        ]


def test_stored_outputs_are_indexed_by_address_with_the_checksum_sent(testdata, tmp_path):
    """A ``scheme://`` output's local files are gone after the store: checksums come first."""
    import sys

    from anyconv.pipeline import ConvertRequest, convert
    from anyconv.provenance import describe
    from anyconv.registry import Registry

    sys.modules.setdefault(__name__, sys.modules[__name__])
    registry = Registry()
    registry.register(ToyStore(), "toystore")
    url = "toy+http://server/store"
    req = ConvertRequest(src=testdata / "nifti/nibabel/anatomical.nii", dst=url, checksums=True)
    (written,) = convert(registry, req)
    with ProvenanceIndex(tmp_path / "s.sqlite") as index:
        index.add(describe(written, registry, options={}, transforms=[], destination=url))
    (entry,) = query(tmp_path / "s.sqlite", output="anatomical.nii.gz")
    (out,) = entry["outputs"]
    assert out["path"] == f"{url}/anatomical.nii.gz"
    assert out["sha256"] == STORED[out["path"]]
    assert entry["stored"] == [out["path"]]
