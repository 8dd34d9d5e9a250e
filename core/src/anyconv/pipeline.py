"""One conversion from input path to output path(s): read, transform, name, write.

The CLI and ``anyconv.convert`` both call this; it holds the policy for folders (one file per
image, named by a template) so the CLI stays thin.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AnyconvError, ReadError, UsageError
from .model import Image
from .registry import DEFAULT_OUTPUT_SUFFIX, Registry
from .specs import ReadOptions, WriteOptions


@dataclass
class ConvertRequest:
    """Everything a conversion is asked to do."""

    src: Path
    dst: Path
    from_fmt: str | None = None
    to_fmt: str | None = None
    force: bool = False
    name_template: str = "{auto}"
    read_options: ReadOptions = field(default_factory=ReadOptions)
    write_options: WriteOptions = field(default_factory=WriteOptions)
    transforms: Sequence[tuple[str, dict[str, str]]] = ()
    dst_is_folder: bool = False


@dataclass
class Written:
    """One image written: its files and what was lost or noted on the way."""

    files: list[Path]
    losses: list[str]
    notes: list[str]


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
    dst = req.dst
    folder = req.dst_is_folder or str(dst).endswith(("/", os.sep)) or dst.is_dir()
    if not folder and req.src.is_dir() and "." not in dst.name:
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
    """Run one conversion; every output is complete or absent."""
    if explain is not None and req.src.is_file():
        for line in registry.choose_reader(req.src, req.from_fmt).explain():
            explain("reader " + line)
    images = registry.read(req.src, fmt=req.from_fmt, options=req.read_options)
    outputs = plan_outputs(registry, images, req)
    if explain is not None:
        for line in registry.choose_writer(outputs[0], req.to_fmt).explain():
            explain("writer " + line)
    if not req.force:
        from .io import check_writable

        check_writable(outputs, force=False)
    results = []
    for image, out in zip(images, outputs, strict=True):
        image = load_data(image)
        for name, opts in req.transforms:
            image = registry.apply_transform(image, name, opts)
        files = registry.write(
            image, out, fmt=req.to_fmt, force=req.force, options=req.write_options
        )
        results.append(Written(files, list(image.losses), list(image.notes)))
    return results
