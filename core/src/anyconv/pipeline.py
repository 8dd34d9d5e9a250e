"""One conversion from input path to output path(s): read, transform, name, write.

The CLI and ``anyconv.convert`` both call this; it holds the policy for folders (one file per
image, named by a template) so the CLI stays thin.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import AnyconvError, ReadError, UsageError
from .model import Image
from .registry import DEFAULT_OUTPUT_SUFFIX, Registry, url_scheme
from .specs import ReadOptions, WriteOptions


@dataclass
class ConvertRequest:
    """Everything a conversion is asked to do."""

    #: a path, or a ``scheme://`` address a transport plugin fetches
    src: Path | str
    #: a path, or a ``scheme://`` address a transport plugin stores to
    dst: Path | str
    from_fmt: str | None = None
    to_fmt: str | None = None
    force: bool = False
    name_template: str = "{auto}"
    read_options: ReadOptions = field(default_factory=ReadOptions)
    write_options: WriteOptions = field(default_factory=WriteOptions)
    transforms: Sequence[tuple[str, dict[str, str]]] = ()
    dst_is_folder: bool = False
    #: write an orientation-labelled PNG beside each output (``preview.preview_path``)
    preview: bool = False
    #: keep a small preview PNG of each image in ``Written.thumbnail`` (for a QC report)
    thumbnail: bool = False
    #: SHA-256 of every file written, in ``Written.checksums`` (for the provenance index);
    #: taken right after writing, before a ``scheme://`` output's temporary files go
    checksums: bool = False


@dataclass
class Written:
    """One image written: its files and what was lost or noted on the way."""

    files: list[Path]
    losses: list[str]
    notes: list[str]
    geometry: dict[str, object] = field(default_factory=dict)
    preview: Path | None = None
    thumbnail: bytes | None = None
    #: for an output sent to a ``scheme://`` address: what the transport stored (UIDs, URLs)
    stored: list[str] = field(default_factory=list)
    #: the image's slice-to-instance map (``Image.sources``) after transforms
    sources: list[dict[str, Any]] = field(default_factory=list)
    #: the input it was read from, and the reader and writer format ids
    source: str | None = None
    reader: str | None = None
    writer: str | None = None
    #: file path -> (size in bytes, SHA-256 hex), when ``ConvertRequest.checksums``
    checksums: dict[str, tuple[int, str]] = field(default_factory=dict)


def geometry_summary(image: Image) -> dict[str, object]:
    """Shape, dtype, voxel size, axis codes, obliquity and shear: what a QC row shows."""
    from . import geometry

    return {
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "zooms": [round(z, 6) for z in image.zooms],
        "axcodes": "".join(image.axcodes),
        "obliquity_deg": round(geometry.obliquity(image.affine), 4),
        "shear": round(geometry.shear(image.affine), 6),
    }


def _add_previews(image: Image, written: Written, req: ConvertRequest) -> None:
    """Preview PNG beside the output and/or a thumbnail; a failure is a note, not an error."""
    from . import preview

    title = written.files[0].name
    try:
        if req.preview:
            written.preview = preview.write_preview(
                image, preview.preview_path(written.files[0]), title=title
            )
        if req.thumbnail:
            written.thumbnail = preview.preview_png(image, panel=112, text=False)
    except (ValueError, IndexError, MemoryError, OSError) as exc:
        written.notes.append(f"no preview: {exc}")


def load_data(image: Image) -> Image:
    """Read lazy voxel data now, so a corrupt input is a read error, not a write error."""
    try:
        return image.load()
    except AnyconvError:
        raise
    except MemoryError as exc:
        raise ReadError(f"{image.source}: too large to load into memory") from exc
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ReadError(
            f"{image.source}: corrupt or truncated voxel data: {type(exc).__name__}"
            + (f": {first}" if first else "")
        ) from exc


def plan_outputs(registry: Registry, images: list[Image], req: ConvertRequest) -> list[Path]:
    """Output path of each image; a folder output gets one uniquely named file per image."""
    dst = Path(req.dst)
    folder = req.dst_is_folder or str(req.dst).endswith(("/", os.sep)) or dst.is_dir()
    if not folder and Path(req.src).is_dir() and "." not in dst.name:
        folder = True  # a folder in, a name without suffix out: one file per image in it
    if not folder and len(images) > 1:
        try:
            registry.choose_writer(dst)
        except AnyconvError:
            folder = True
        else:
            raise UsageError(
                f"{req.src}: holds {len(images)} images, but the output {dst} is one file",
                hint="give a folder as output",
            )
    if not folder:
        return [dst]
    suffix = DEFAULT_OUTPUT_SUFFIX
    if req.to_fmt is not None:
        spec = registry.choose_writer(Path("x"), req.to_fmt).spec
        suffix = spec.extensions[0] if spec.extensions else ""
    taken: dict[str, int] = {}
    outputs = []
    for index, image in enumerate(images):
        stem = registry.output_name(image, req.name_template, index)
        count = taken.get(stem, 0)
        taken[stem] = count + 1
        unique = stem if count == 0 else f"{stem}_{count + 1}"
        outputs.append(dst / f"{unique}{suffix}")
    return outputs


def convert(
    registry: Registry,
    req: ConvertRequest,
    *,
    explain: Callable[[str], None] | None = None,
) -> list[Written]:
    """Run one conversion; every output is complete or absent.

    A ``scheme://`` input is fetched into a temporary folder kept until the outputs are
    written; a ``scheme://`` output is written to a temporary folder in the transport's format
    and then stored (a store that fails leaves nothing behind locally).
    """
    src, dst = str(req.src), str(req.dst)
    if url_scheme(src) or url_scheme(dst):
        with contextlib.ExitStack() as stack:
            if url_scheme(src):
                local = stack.enter_context(registry.fetched(src, req.read_options))
                req = replace(req, src=local)
            if url_scheme(dst):
                spec = registry.transport_for(dst)
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="anyconv-out-"))
                req = replace(
                    req, dst=Path(folder), dst_is_folder=True, to_fmt=req.to_fmt or spec.format
                )
                results = _convert_local(registry, req, explain)
                for written in results:
                    written.stored = registry.store(written.files, dst, req.write_options)
                return results
            return _convert_local(registry, req, explain)
    return _convert_local(registry, replace(req, src=Path(src), dst=Path(dst)), explain)


def _convert_local(
    registry: Registry, req: ConvertRequest, explain: Callable[[str], None] | None
) -> list[Written]:
    assert isinstance(req.src, Path)
    if explain is not None and req.src.is_file():
        for line in registry.choose_reader(req.src, req.from_fmt).explain():
            explain("reader " + line)
    images = registry.read(req.src, fmt=req.from_fmt, options=req.read_options)
    # Transforms come before naming: an anonymized image must not be named from what the
    # anonymizer removed. Transforms keep voxel data lazy, so this reads no pixels.
    for name, opts in req.transforms:
        # -O KEY=VALUE reaches a transform that declares KEY (-t NAME:KEY=VALUE wins)
        declared = {o.name for o in registry.transform_spec(name).options}
        given = {k: v for k, v in req.write_options.extra.items() if k in declared}
        opts = {**given, **opts}
        images = [registry.apply_transform(image, name, opts) for image in images]
    outputs = plan_outputs(registry, images, req)
    if explain is not None:
        for line in registry.choose_writer(outputs[0], req.to_fmt).explain():
            explain("writer " + line)
    if not req.force:
        from .io import check_writable

        check_writable(outputs, force=False)
        if req.preview:
            from .preview import preview_path

            check_writable([preview_path(o) for o in outputs], force=False)
    results: list[Written] = []
    try:
        for image, out in zip(images, outputs, strict=True):
            if not getattr(image.data, "streams", False) or req.preview or req.thumbnail:
                # streamed data is read while it is written: its read errors stay read errors
                image = load_data(image)
            files = registry.write(
                image, out, fmt=req.to_fmt, force=req.force, options=req.write_options
            )
            written = Written(
                files,
                list(image.losses),
                list(image.notes),
                geometry_summary(image),
                sources=[dict(entry) for entry in image.sources],
                source=image.source,
                reader=image.format,
                writer=registry.choose_writer(out, req.to_fmt).spec.format,
            )
            results.append(written)
            if req.checksums:
                from .provenance import file_digest

                written.checksums = {str(f): file_digest(f) for f in files}
            if req.preview or req.thumbnail:
                _add_previews(image, written, req)
    except BaseException:
        # One conversion is one output: if its third image is corrupt, the first two go too.
        _remove_written(results)
        raise
    return results


def _remove_written(results: list[Written]) -> None:
    for written in results:
        for path in [*written.files, *([written.preview] if written.preview else [])]:
            with contextlib.suppress(OSError):
                Path(path).unlink()
