"""Registry behaviour with throwaway plugins registered in code."""

import sys
import types

import numpy as np
import pytest
from anyconv import Image, hookimpl
from anyconv.errors import FormatNotFoundError, LossyConversionError, PluginError, ReadError
from anyconv.registry import Registry
from anyconv.specs import Magic, ReaderSpec, WriteOptions, WriterSpec
from anyconv.testing import synthetic_image


def toy_read(path, options):
    raw = path.read_bytes()
    if not raw.startswith(b"TOY1"):
        raise ValueError("bad toy")
    n = raw[4]
    return Image(np.frombuffer(raw[5 : 5 + n], np.uint8).reshape(n, 1, 1).copy(), np.eye(4))


def toy_write(image, path, options):
    arr = np.asarray(image.stored()).astype(np.uint8).ravel()
    path.write_bytes(b"TOY1" + bytes([arr.size]) + arr.tobytes())
    path.with_name(path.name + ".side").write_text("companion")


class ToyPlugin:
    @hookimpl
    def anyconv_readers(self):
        return [
            ReaderSpec(
                format="toy",
                load="tests.test_registry:toy_read",
                extensions=(".toy", ".toy.gz"),
                magic=(Magic(0, b"TOY1"),),
            )
        ]

    @hookimpl
    def anyconv_writers(self):
        return [
            WriterSpec(
                format="toy",
                load="tests.test_registry:toy_write",
                extensions=(".toy",),
                dtypes=("uint8",),
                max_ndim=3,
                oblique=False,
            )
        ]


class RivalPlugin:
    @hookimpl
    def anyconv_readers(self):
        return [ReaderSpec(format="rival", load="x:y", extensions=(".toy",))]


@pytest.fixture(autouse=True)
def importable_tests_module():
    sys.modules.setdefault("tests.test_registry", sys.modules[__name__])


@pytest.fixture
def reg():
    return Registry(plugins=[ToyPlugin()], entry_points=False)


def write_toy(path, values):
    path.write_bytes(b"TOY1" + bytes([len(values)]) + bytes(values))
    return path


def test_nothing_loads_until_asked():
    reg = Registry(plugins=[ToyPlugin()], entry_points=False)
    assert reg._loaded is False
    assert [r.format for r in reg.readers()] == ["toy"]
    assert reg.readers()[0].plugin == "ToyPlugin"


def test_read_write_round_trip_and_companions_are_atomic(reg, tmp_path):
    src = write_toy(tmp_path / "a.toy", [1, 2, 3])
    img = reg.read(src)[0]
    assert img.format == "toy"
    assert img.source == str(src)
    files = reg.write(img, tmp_path / "out" / "b.toy")
    assert [f.name for f in files] == ["b.toy", "b.toy.side"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.toy", "b.toy.side"]


def test_magic_beats_suffix_and_tie_is_an_error(tmp_path):
    reg = Registry(plugins=[ToyPlugin(), RivalPlugin()], entry_points=False)
    src = write_toy(tmp_path / "a.toy", [1])
    assert reg.choose_reader(src).spec.format == "toy"
    odd = tmp_path / "b.toy"
    odd.write_bytes(b"not a toy at all")
    # toy declares magic that is absent: only rival keeps its suffix evidence
    assert reg.choose_reader(odd).spec.format == "rival"


def test_equal_evidence_is_ambiguous(tmp_path):
    class Twin:
        @hookimpl
        def anyconv_readers(self):
            return [ReaderSpec(format="twin", load="x:y", extensions=(".toy",))]

    reg = Registry(plugins=[RivalPlugin(), Twin()], entry_points=False)
    path = tmp_path / "c.toy"
    path.write_bytes(b"xx")
    with pytest.raises(FormatNotFoundError, match=r"ambiguous.*rival, twin"):
        reg.choose_reader(path)


def test_lossy_refused_before_writing_then_recorded(reg, tmp_path):
    img = synthetic_image((3, 1, 1), "int16")  # oblique, int16: toy is uint8, axis-aligned
    with pytest.raises(LossyConversionError) as err:
        reg.write(img, tmp_path / "x.toy")
    assert "data type int16" in str(err.value)
    assert "oblique" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    reg.write(img, tmp_path / "x.toy", options=WriteOptions(lossy=True))
    assert any("oblique" in loss for loss in img.losses)


def test_safe_casts_are_not_losses(reg, tmp_path):
    img = Image(np.array([[[True]], [[False]]]), np.eye(4))
    reg.write(img, tmp_path / "b.toy")
    assert img.losses == []
    assert any("uint8" in n for n in img.notes)


def test_ndim_over_limit_drops_unit_axes_freely(reg, tmp_path):
    img = Image(np.zeros((2, 1, 1, 1, 1), np.uint8), np.eye(4))
    reg.write(img, tmp_path / "d.toy")
    assert img.losses == []


def test_reader_exceptions_become_read_errors(reg, tmp_path):
    bad = tmp_path / "bad.toy"
    bad.write_bytes(b"TOY1")  # truncated: reshape fails inside the plugin
    with pytest.raises(ReadError, match=r"bad\.toy"):
        reg.read(bad)


def test_unknown_writer_format(reg):
    with pytest.raises(FormatNotFoundError, match="no writer for format 'nope'"):
        reg.choose_writer("x.toy", "nope")


def test_misspelt_hook_is_rejected():
    class Typo:
        @hookimpl
        def anyconv_reader(self):
            return []

    reg = Registry(entry_points=False)
    with pytest.raises(PluginError, match="unknown hook anyconv_reader"):
        reg.register(Typo())


def test_spec_of_wrong_type_is_a_plugin_error():
    class Wrong:
        @hookimpl
        def anyconv_readers(self):
            return [{"format": "dict"}]

    reg = Registry(plugins=[Wrong()], entry_points=False)
    with pytest.raises(PluginError, match=r"not a ReaderSpec"):
        reg.readers()


def test_broken_entry_point_is_listed_and_rest_work(monkeypatch):
    import importlib.metadata as md

    good = types.ModuleType("good_plugin")
    good.anyconv_readers = hookimpl(lambda: [ReaderSpec(format="good", load="x:y")])
    sys.modules["good_plugin"] = good

    class EP:
        def __init__(self, name, value):
            self.name, self.value, self.dist = name, value, None

        def load(self):
            import importlib

            return importlib.import_module(self.value)

    eps = [EP("good", "good_plugin"), EP("broken", "no_such_module_anywhere")]
    monkeypatch.setattr(md, "entry_points", lambda group: eps if group == "anyconv" else [])
    reg = Registry()
    status = {p.name: p.status for p in reg.plugins()}
    assert status == {"broken": "broken", "good": "ok"}
    assert [r.format for r in reg.readers()] == ["good"]
    reg2 = Registry(disabled=["good"])
    assert {p.name: p.status for p in reg2.plugins()}["good"] == "disabled"
    assert reg2.readers() == []


def test_missing_load_target_names_what_to_install(tmp_path):
    class Missing:
        @hookimpl
        def anyconv_readers(self):
            return [
                ReaderSpec(format="m", load="not_installed_pkg.reader:read", extensions=(".m",))
            ]

    reg = Registry(plugins=[Missing()], entry_points=False)
    (tmp_path / "a.m").write_bytes(b"x")
    with pytest.raises(PluginError, match=r"install the package that provides 'not_installed_pkg'"):
        reg.read(tmp_path / "a.m")


def test_output_name_hook_can_be_overridden(reg):
    class Namer:
        @hookimpl
        def anyconv_output_name(self, image, template, index):
            return f"custom{index}"

    img = synthetic_image()
    img.meta.series_number = 7
    img.meta.series_description = "T1 MPRAGE / sag"
    assert reg.output_name(img, "{auto}", 0) == "7_T1_MPRAGE_sag"
    reg.register(Namer(), name="namer")
    assert reg.output_name(img, "{auto}", 0) == "custom0"


def test_lossy_dtype_choice_keeps_most_values():
    from anyconv.adapt import nearest_target

    mgh = ("uint8", "int16", "int32", "float32")
    assert nearest_target(np.dtype("uint32"), mgh) == np.dtype("int32")
    assert nearest_target(np.dtype("float64"), mgh) == np.dtype("float32")
    assert nearest_target(np.dtype("int64"), mgh) == np.dtype("int32")
    assert nearest_target(np.dtype("complex64"), mgh) == np.dtype("float32")
    assert nearest_target(np.dtype("int8"), ("uint8", "float32")) == np.dtype("float32")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("CON", "CON_"), ("aux ", "aux_"), ("CON.nii", "CON_.nii"), ("LPT9", "LPT9_"),
     ("../../etc/x", "etc_x"), ("..", ""), ("T1 MPRAGE/sag", "T1_MPRAGE_sag"),
     ("\x00\x1bx", "x"), ("COM10", "COM10")],
)  # fmt: skip
def test_sanitize_makes_safe_names(text, expected):
    from anyconv.registry import sanitize

    assert sanitize(text) == expected


def test_sanitize_bounds_length():
    from anyconv.registry import MAX_STEM, sanitize

    assert len(sanitize("a" * 5000)) == MAX_STEM


@pytest.mark.parametrize(("shear_cos", "loss"), [(4.7e-5, False), (1e-3, True)])
def test_rounding_level_shear_is_noted_not_refused(shear_cos, loss):
    """Printed DICOM positions leave a stack a hair off orthogonal: below 0.05 mm of corner
    movement a writer without shear gets it orthogonal (a note); above, it is a loss."""
    from anyconv.adapt import fit_image
    from anyconv.geometry import corner_world, shear
    from anyconv.specs import WriterSpec

    affine = np.diag([0.98, 0.98, 0.625, 1.0])
    affine[1, 2] = 0.625 * shear_cos
    img = Image(np.zeros((64, 64, 500), np.int16), affine)
    spec = WriterSpec(format="toy", load="x:y", shear=False)
    out, losses = fit_image(img, spec, lossy=False)
    assert bool(losses) is loss
    if not loss:
        assert shear(out.affine) < 1e-12 and "rounding" in out.notes[-1]
        moved = np.abs(corner_world(out.affine, img.shape) - corner_world(affine, img.shape))
        assert moved.max() <= 0.05
