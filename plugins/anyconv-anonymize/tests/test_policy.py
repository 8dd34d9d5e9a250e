"""Table E.1-1 as data, option columns, recipe parsing, keyed replacements."""

import datetime as dt
import tomllib

import anyconv_anonymize.plugin as plugin
import pytest
from anyconv.errors import UsageError
from anyconv.registry import Registry
from anyconv_anonymize import policy as pol
from anyconv_anonymize import profile
from anyconv_anonymize.policy import (
    Policy,
    date_shift,
    new_uid,
    pseudonym,
    shift_date,
    shift_date_time_pair,
)
from pydicom.datadict import dictionary_description, keyword_for_tag


def test_table_rows_match_the_dicom_dictionary():
    rows = profile.table()
    assert len(rows) >= 450
    for tag, row in rows.items():
        assert row.basic in {"X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}, tag
        for column, code in row.options:
            assert column in profile.OPTION_COLUMNS and code in {"K", "C", "X"}, (tag, column)
        if "x" in tag or tag == "private":
            continue
        letters = "".join(c for c in row.name.lower() if c.isalpha())
        known = "".join(c for c in dictionary_description(int(tag, 16)).lower() if c.isalpha())
        assert letters[:10] == known[:10], tag


@pytest.mark.parametrize(
    ("keyword", "options", "action"),
    [
        ("PatientName", {}, "Z"),
        ("PatientID", {}, "Z"),
        ("PatientBirthDate", {"dates": "keep"}, "Z"),
        ("StudyDate", {}, "S"),
        ("StudyDate", {"dates": "keep"}, "K"),
        ("StudyDate", {"dates": "remove"}, "Z"),
        ("SeriesDate", {"dates": "remove"}, "D"),  # X/D
        ("AcquisitionDateTime", {"dates": "remove"}, "D"),  # X/Z/D
        ("AcquisitionTime", {"dates": "remove"}, "Z"),  # X/Z
        ("InstitutionName", {}, "D"),
        ("InstitutionName", {"institution_identity": "1"}, "K"),
        ("DeviceSerialNumber", {}, "D"),
        ("DeviceSerialNumber", {"device_identity": "1"}, "K"),
        ("PatientSex", {"patient_characteristics": "0"}, "Z"),
        ("PatientSex", {}, "K"),
        ("PatientWeight", {"patient_characteristics": "0"}, "X"),
        ("SeriesDescription", {}, "X"),
        ("SeriesDescription", {"descriptors": "keep"}, "C"),
        ("ProtocolName", {}, "D"),
        ("SOPInstanceUID", {}, "U"),
        ("SOPInstanceUID", {"uids": "1"}, "K"),
        ("ReferencedImageSequence", {}, "K"),  # X/Z/U*: UIDs inside replaced by their rows
        ("ReferencedPatientSequence", {"uids": "1"}, "X"),
        ("ContentSequence", {}, "D"),
        ("ContentSequence", {"structured_content": "keep"}, "C"),
        ("DeviceUID", {"device_identity": "1"}, "K"),
    ],
)
def test_options_change_the_table_action(keyword, options, action):
    from pydicom.datadict import tag_for_keyword

    p = Policy.from_options(options, need_key=False)
    assert p.table_action(tag_for_keyword(keyword), keyword) == action


def test_groups_and_private_rules():
    p = Policy.from_options({}, need_key=False)
    assert p.table_action(0x50000010) == "X"  # curve
    assert p.table_action(0x50023000) == "X"
    assert p.table_action(0x60004000) == "X"  # overlay comments
    assert p.table_action(0x60023000) == "X"  # overlay data
    assert p.table_action(0x60000010) is None  # left to the engine (goes with the overlay)
    assert p.private_action("SIEMENS CSA HEADER", 0x00291010) == "C"
    assert p.private_action("SIEMENS CSA HEADER", 0x00291131) == "X"
    assert p.private_action("GEMS_PARM_01", 0x00431039) == "C"
    assert p.private_action("GEMS_IDEN_01", 0x00091002) == "X"
    off = Policy.from_options({"safe_private": "0"}, need_key=False)
    assert off.private_action("SIEMENS CSA HEADER", 0x00291010) == "X"
    assert "rtn_safe_private" not in off.used_options()


def test_recipe_overrides_by_keyword_tag_and_private(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[options]\ndevice_identity = 1\ndates = "keep"\n'
        '[actions]\nInstitutionName = "K"\n"(0010,0020)" = "X"\n"0019,GEMS_ACQU_01,BB" = "X"\n'
        'private = "K"\n'
        '[safe_private]\n"SIEMENS CSA HEADER" = ["10"]\n"ACME 1" = "*"\n'
    )
    p = Policy.from_options({"recipe": str(recipe)}, need_key=False)
    assert p.table_action(0x00080080, "InstitutionName") == "K"
    assert p.table_action(0x00100020, "PatientID") == "X"
    assert p.table_action(0x00181000, "DeviceSerialNumber") == "K"
    assert p.table_action(0x00080020, "StudyDate") == "K"
    assert p.private_action("SIEMENS CSA HEADER", 0x00291020) == "K"  # not safe: recipe's private
    assert p.private_action("SIEMENS CSA HEADER", 0x00291010) == "C"
    assert p.private_action("ACME 1", 0x00111077) == "C"
    assert p.private_action("GEMS_ACQU_01", 0x001910BB) == "X"
    # -O options win over the recipe's
    p2 = Policy.from_options({"recipe": str(recipe), "dates": "remove"}, need_key=False)
    assert p2.dates == "remove"


@pytest.mark.parametrize(
    "text",
    [
        '[actions]\nPatientName = "Q"\n',
        "[options]\ncolour = 1\n",
        '[options]\ndates = "later"\n',
        '[options]\nuids = "maybe"\n',
        "not toml [",
    ],
)
def test_bad_recipes_are_usage_errors(tmp_path, text):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    with pytest.raises(UsageError):
        Policy.from_options({"recipe": str(recipe)}, need_key=False)


def test_printed_recipe_is_the_effective_policy(tmp_path):
    p = Policy.from_options(
        {"device_identity": "1", "descriptors": "keep", "dates": "remove"}, need_key=False
    )
    text = p.to_toml()
    data = tomllib.loads(text)
    assert data["options"]["device_identity"] == 1
    assert data["options"]["descriptors"] == "keep"
    assert "key" not in data["options"]
    assert data["actions"]["StationName"] == "K"
    assert data["actions"]["SeriesDescription"] == "C"
    assert data["actions"]["StudyDate"] == "Z"
    # reading it back gives the same action for every table row
    (tmp_path / "r.toml").write_text(text)
    back = Policy.from_options({"recipe": str(tmp_path / "r.toml")}, need_key=False)
    for tag in profile.table():
        if "x" in tag or tag == "private":
            continue
        keyword = keyword_for_tag(int(tag, 16))
        assert back.table_action(int(tag, 16), keyword) == p.table_action(int(tag, 16), keyword)
    assert back.private == p.private


def test_uids_pseudonyms_and_shifts_are_keyed_and_consistent():
    assert new_uid(b"a", "1.2.3") == new_uid(b"a", "1.2.3")
    assert new_uid(b"a", "1.2.3") != new_uid(b"b", "1.2.3")
    assert new_uid(b"a", "1.2.3") != new_uid(b"a", "1.2.4")
    assert new_uid(b"a", "1.2.3").startswith("2.25.")
    assert len(new_uid(b"a", "1.2.3")) <= 64
    assert pseudonym(b"a", "P1") == pseudonym(b"a", "P1") != pseudonym(b"a", "P2")
    shift = date_shift(b"a", "patient")
    assert shift == date_shift(b"a", "patient") != date_shift(b"a", "other")
    assert dt.timedelta(days=-3651) < shift < dt.timedelta(0)


def test_shift_formats():
    shift = -dt.timedelta(days=10, hours=2)
    assert shift_date("20200111", shift) == "20191231"  # a date alone moves as its midnight
    assert shift_date("2020-01-11", shift) == "2019-12-31"
    assert shift_date("120000.50", shift) == "100000.50"
    assert shift_date("01:00:00", shift) == "23:00:00"
    assert shift_date("20200111120000.123+0100", shift) == "20200101100000.123+0100"
    assert shift_date("2020-01-11T12:00:00", shift) == "2020-01-01T10:00:00"
    assert shift_date("00010101", shift) is None  # out of range: dropped, no crash
    assert shift_date("not a date", shift) is None
    # a Date with its Time moves as one instant (across midnight)
    assert shift_date_time_pair("20200111", "010000", shift) == ("20191231", "230000")
    assert shift_date_time_pair("20200111", "120000.5", shift) == ("20200101", "100000.5")


def test_registered_transform_and_command():
    reg = Registry(plugins=[plugin], entry_points=False)
    assert [t.name for t in reg.transforms()] == ["anonymize"]
    assert [c.name for c in reg.commands()] == ["anonymize"]


def test_key_file_is_private(tmp_path, monkeypatch):
    monkeypatch.delenv("ANYCONV_ANON_KEY", raising=False)
    monkeypatch.setattr(pol, "KEY_FILE", tmp_path / "k" / "anonymize.key")
    first = pol.load_key()
    assert first == pol.load_key()
    assert (tmp_path / "k" / "anonymize.key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("ANYCONV_ANON_KEY", "from-env")
    assert pol.load_key() == b"from-env"
    assert pol.load_key("given") == b"given"


def test_plugin_module_is_light():
    import subprocess
    import sys

    code = (
        "import sys, anyconv_anonymize.plugin as p; p.anyconv_transforms(); p.anyconv_commands();"
        "print([m for m in ('pydicom', 'numpy', 'h5py') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
