"""Conformance test classes every format plugin subclasses.

Example::

    class TestNrrd(ReaderConformance, WriterConformance):
        plugin = "anyconv_nrrd.plugin"
        read_formats = ("nrrd",)
        write_format = "nrrd"
        suffix = ".nrrd"

        def independent_read(self, path):
            ...  # return (values in i,j,k order, RAS affine) from another library
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from ..errors import AnyconvError, OutputExistsError, ReadError
from ..pipeline import load_data
from ..registry import Registry
from ..specs import WriteOptions
from .data import assert_same_world, manifest_cases, synthetic_image, truncated_copy

HEAVY_MODULES = ("pydicom", "SimpleITK", "h5py", "nibabel", "nrrd")


def _registry(plugin: str) -> Registry:
    return Registry(plugins=[importlib.import_module(plugin)], entry_points=False)


class ReaderConformance:
    """Checks for a reader.

    Light plugin module, corpus detected by content and read, truncated input rejected
    quickly with ``ReadError``.
    """

    plugin: ClassVar[str]
    read_formats: ClassVar[tuple[str, ...]]
    #: manifest ``format`` values whose cases this reader must read; default ``read_formats``.
    corpus_formats: ClassVar[tuple[str, ...]] = ()
    #: seconds a truncated file may take to be refused.
    truncated_seconds: ClassVar[float] = 5.0

    def _cases(self, testdata: Path) -> list[Path]:
        formats = self.corpus_formats or self.read_formats
        paths = []
        for case in manifest_cases(testdata):
            if case["format"] in formats:
                paths.append(testdata / case["path"])
        return paths

    def _files(self, testdata: Path) -> list[Path]:
        reg = _registry(self.plugin)
        exts = {e for r in reg.readers() for e in r.extensions if r.format in self.read_formats}
        out = []
        for path in self._cases(testdata):
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            out += [
                f for f in files if f.is_file() and any(f.name.lower().endswith(e) for e in exts)
            ]
        return out

    def test_plugin_module_is_light(self) -> None:
        code = (
            f"import importlib, sys; importlib.import_module({self.plugin!r}); "
            f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out == "", f"importing {self.plugin} pulls in {out}"

    def test_corpus_cases_exist(self, testdata: Path) -> None:
        cases = self._cases(testdata)
        assert cases, f"no corpus case of {self.corpus_formats or self.read_formats}"

    def test_corpus_detected_by_content(self, testdata: Path, tmp_path: Path) -> None:
        reg = _registry(self.plugin)
        for f in self._files(testdata):
            anonymous = tmp_path / f"{f.name}.unknownsuffix"
            shutil.copyfile(f, anonymous)
            choice = reg.choose_reader(anonymous)
            assert choice.spec.format in self.read_formats, f"{f}: detected as {choice.spec.format}"

    def test_corpus_reads(self, testdata: Path) -> None:
        reg = _registry(self.plugin)
        for path in self._cases(testdata):
            images = reg.read(path)
            assert images, path
            for img in images:
                assert np.all(np.isfinite(img.affine)), path
                assert all(s > 0 for s in img.shape), path
                assert img.format in self.read_formats

    def test_truncated_input_is_read_error(self, testdata: Path, tmp_path: Path) -> None:
        reg = _registry(self.plugin)
        for f in self._files(testdata):
            folder = tmp_path / f.parent.name
            if not folder.exists():
                shutil.copytree(f.parent, folder)
            bad = truncated_copy(f, folder, keep=0.5)
            start = time.monotonic()
            with pytest.raises(ReadError):
                for img in reg.read(bad):
                    load_data(img)
            took = time.monotonic() - start
            assert took < self.truncated_seconds, f"{f}: took {took:.1f} s to refuse"


class WriterConformance:
    """Checks for a writer.

    Oblique anisotropic round trips, an independent reader agrees, outputs are atomic and
    never overwritten without force.
    """

    plugin: ClassVar[str]
    write_format: ClassVar[str]
    suffix: ClassVar[str]
    dtypes: ClassVar[tuple[str, ...]] = ("int16", "float32")
    shapes: ClassVar[tuple[tuple[int, ...], ...]] = ((11, 7, 5), (6, 5, 4, 3))
    #: affine of the kit's images: oblique and anisotropic by default; a format that cannot
    #: hold rotation (GIPL, Analyze) sets an axis-aligned one it holds as is.
    affine: ClassVar[np.ndarray | None] = None

    def _image(self, shape: tuple[int, ...] = (11, 7, 5), dtype: str = "int16", **kw: Any) -> Any:
        return synthetic_image(shape, dtype, affine=self.affine, **kw)

    def independent_read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Values (i, j, k order, scaling applied) and RAS affine by another library."""
        raise NotImplementedError

    def _write(self, reg: Registry, img: Any, path: Path, **kw: Any) -> list[Path]:
        return reg.write(img, path, fmt=self.write_format, **kw)

    @pytest.mark.parametrize("shape_index", [0, 1])
    def test_round_trip_oblique(self, tmp_path: Path, shape_index: int) -> None:
        reg = _registry(self.plugin)
        for dtype in self.dtypes:
            img = self._image(self.shapes[shape_index], dtype)
            out = tmp_path / f"rt_{dtype}{self.suffix}"
            self._write(reg, img, out)
            back = reg.read(out)[0]
            np.testing.assert_array_equal(back.values(), img.values())
            assert_same_world(back.affine, img.affine, img.shape)

    def test_scaled_round_trip(self, tmp_path: Path) -> None:
        reg = _registry(self.plugin)
        img = self._image((9, 8, 7), "int16", slope=0.25, inter=-3.0)
        out = tmp_path / f"scaled{self.suffix}"
        self._write(reg, img, out)
        back = reg.read(out)[0]
        np.testing.assert_allclose(back.values(), img.values(), rtol=1e-6, atol=1e-6)

    def test_independent_reader_agrees(self, tmp_path: Path) -> None:
        reg = _registry(self.plugin)
        for dtype in self.dtypes:
            img = self._image((11, 7, 5), dtype)
            out = tmp_path / f"ind_{dtype}{self.suffix}"
            self._write(reg, img, out)
            values, affine = self.independent_read(out)
            np.testing.assert_allclose(values, img.values(), rtol=1e-6)
            assert_same_world(affine, img.affine, img.shape)

    def test_failed_write_leaves_nothing(self, tmp_path: Path) -> None:
        class Exploding:
            shape = (4, 4, 4)
            dtype = np.dtype("int16")
            ndim = 3

            def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
                raise OSError("disk on fire")

        reg = _registry(self.plugin)
        img = self._image((4, 4, 4), "int16").replace(data=Exploding())
        with pytest.raises(AnyconvError):
            self._write(reg, img, tmp_path / f"x{self.suffix}")
        assert list(tmp_path.iterdir()) == []

    def test_existing_output_needs_force(self, tmp_path: Path) -> None:
        reg = _registry(self.plugin)
        out = tmp_path / f"exists{self.suffix}"
        out.write_bytes(b"keep me")
        img = self._image()
        with pytest.raises(OutputExistsError):
            self._write(reg, img, out)
        assert out.read_bytes() == b"keep me"
        files = self._write(reg, img, out, force=True, options=WriteOptions())
        assert out.stat().st_size > len(b"keep me")
        assert files[0] == out
        # exactly the writer's files (a detached header's data file too), no staging left
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
