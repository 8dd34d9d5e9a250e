"""The conformance kit can fail: a deliberately broken plugin gets readable failures."""

BROKEN_PLUGIN = """
import json
import numpy as np
import nibabel  # heavy, at module level: the kit must notice
from anyconv import hookimpl, Image
from anyconv.specs import Magic, ReaderSpec, WriterSpec


def read_toy(path, options):
    head, _, raw = path.read_bytes().partition(b"\\n")
    info = json.loads(head)
    data = np.frombuffer(raw, info["dtype"]).reshape(info["shape"], order="F")
    return Image(data.copy(), np.asarray(info["affine"]))


def write_toy(image, path, options):
    affine = np.diag([*image.zooms, 1.0])  # BUG: drops rotation and origin
    head = {"dtype": str(image.dtype), "shape": list(image.shape), "affine": affine.tolist()}
    raw = np.asfortranarray(image.values()).tobytes(order="F")
    path.write_bytes(json.dumps(head).encode() + b"\\n" + raw)


@hookimpl
def anyconv_readers():
    return [ReaderSpec(format="toy", load="broken_plugin:read_toy", extensions=(".toy",))]


@hookimpl
def anyconv_writers():
    return [WriterSpec(format="toy", load="broken_plugin:write_toy", extensions=(".toy",))]
"""

TEST_FILE = """
import numpy as np
from anyconv.testing import WriterConformance


class TestBroken(WriterConformance):
    plugin = "broken_plugin"
    write_format = "toy"
    suffix = ".toy"
    dtypes = ("float32",)

    def independent_read(self, path):
        import json
        head, _, raw = path.read_bytes().partition(b"\\n")
        info = json.loads(head)
        return (np.frombuffer(raw, info["dtype"]).reshape(info["shape"], order="F"),
                np.asarray(info["affine"]))
"""

LIGHT_TEST = """
from anyconv.testing import ReaderConformance


class TestHeavy(ReaderConformance):
    plugin = "broken_plugin"
    read_formats = ("toy",)

    def test_corpus_cases_exist(self):
        pass

    def test_corpus_detected_by_content(self):
        pass

    def test_corpus_reads(self):
        pass

    def test_truncated_input_is_read_error(self):
        pass
"""


def test_broken_plugin_fails_with_readable_messages(pytester):
    pytester.makepyfile(broken_plugin=BROKEN_PLUGIN)
    pytester.makepyfile(test_broken=TEST_FILE, test_heavy=LIGHT_TEST)
    pytester.makeconftest('pytest_plugins = ["anyconv.testing.fixtures"]')
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert result.ret != 0
    # geometry: the writer drops rotation and origin
    assert "world coordinates differ" in out
    # start-up: the plugin module imports a heavy library
    assert "importing broken_plugin pulls in" in out
    assert "nibabel" in out
    # the writer also stores scaled values under the stored dtype: the scaled round trip
    # reads back garbage and says so
    assert "cannot reshape array" in out
    # round trips (2) and the independent reader fail on geometry, the scaled round trip on
    # values, the light check on imports; atomic-write and overwrite checks pass, as do the
    # four no-op overrides
    result.assert_outcomes(failed=5, passed=6)
