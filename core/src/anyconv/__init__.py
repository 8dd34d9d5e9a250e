"""anyconv: convert medical images between formats with their world geometry intact.

``read``, ``write`` and ``convert`` use a default registry that loads installed plugins on
first use. Importing this package loads no plugin and no format library (nor numpy).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .model import Image, Meta
    from .registry import Registry

__all__ = [
    "Image",
    "Meta",
    "Registry",
    "__version__",
    "convert",
    "get_registry",
    "hookimpl",
    "read",
    "read_all",
    "write",
]

__version__ = "0.1.0"

_default_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built from installed plugins on first call."""
    global _default_registry
    if _default_registry is None:
        from .registry import Registry

        _default_registry = Registry()
    return _default_registry


def read_all(path: str | os.PathLike[str], *, fmt: str | None = None) -> list[Image]:
    """Every image in a file or folder (a DICOM folder may hold several series)."""
    return get_registry().read(path, fmt=fmt)


def read(path: str | os.PathLike[str], *, fmt: str | None = None) -> Image:
    """The one image in ``path``; use ``read_all`` when it may hold several."""
    from .errors import UsageError

    images = read_all(path, fmt=fmt)
    if len(images) != 1:
        raise UsageError(f"{path}: holds {len(images)} images", hint="use anyconv.read_all")
    return images[0]


def write(
    image: Image,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    force: bool = False,
    lossy: bool = False,
) -> list[Path]:
    """Write ``image`` to ``path`` atomically; the format comes from the suffix or ``fmt``."""
    from .specs import WriteOptions

    return get_registry().write(
        image, path, fmt=fmt, force=force, options=WriteOptions(lossy=lossy)
    )


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    from_fmt: str | None = None,
    to_fmt: str | None = None,
    force: bool = False,
    lossy: bool = False,
) -> list[Path]:
    """Convert a file or folder as the CLI does; return every file written.

    A folder input, or one holding several images, writes one file per image into ``dst``.
    """
    from .pipeline import ConvertRequest
    from .pipeline import convert as run
    from .specs import WriteOptions

    req = ConvertRequest(
        src=src if isinstance(src, str) else Path(src),
        dst=dst if isinstance(dst, str) else Path(dst),
        dst_is_folder=str(dst).endswith(("/", os.sep)),
        from_fmt=from_fmt,
        to_fmt=to_fmt,
        force=force,
        write_options=WriteOptions(lossy=lossy),
    )
    return [f for written in run(get_registry(), req) for f in written.files]


def __getattr__(name: str) -> Any:
    if name in ("Image", "Meta"):
        from . import model

        return getattr(model, name)
    if name == "Registry":
        from .registry import Registry

        return Registry
    raise AttributeError(f"module 'anyconv' has no attribute {name!r}")
