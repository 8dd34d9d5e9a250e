"""Plugin capabilities as plain data, so listing and detection import no format library.

Only the standard library is used here: ``plugin.py`` modules import this and nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Magic:
    """Bytes ``value`` found at ``offset`` of the (gunzipped) first KiB of a file."""

    offset: int
    value: bytes


@dataclass(frozen=True)
class OptionSpec:
    """A ``--option KEY=VALUE`` a reader or writer accepts, listed by ``anyconv formats``."""

    name: str
    help: str
    default: str | None = None


@dataclass(frozen=True)
class ReaderSpec:
    """What a reader claims, without importing it.

    Parameters
    ----------
    format
        Lowercase format id (``nifti1``, ``minc2``).
    load
        ``"module:function"`` imported only when this reader is chosen. The function is
        called as ``fn(path, options)`` and returns an ``Image`` or a sequence of them.
    extensions
        Suffixes with the dot, compound ones whole (``".nii.gz"``).
    magic
        Signatures; any one matching is enough.
    directory
        The reader takes a whole folder (a DICOM series) when files inside match ``magic``.
    priority
        Breaks ties between readers with equal evidence; higher wins.
    companions
        Suffixes of files a header may name (``".img"`` for ``".hdr"``).
    """

    format: str
    load: str
    extensions: tuple[str, ...] = ()
    magic: tuple[Magic, ...] = ()
    directory: bool = False
    priority: int = 0
    description: str = ""
    companions: tuple[str, ...] = ()
    options: tuple[OptionSpec, ...] = ()
    plugin: str = ""


@dataclass(frozen=True)
class WriterSpec:
    """What a writer can hold, so a lossy pair is refused before anything is written.

    Parameters
    ----------
    format
        Lowercase format id.
    load
        ``"module:function"`` called as ``fn(image, path, options)``; it writes ``path`` and
        any companion files named from it, all inside the staging folder it is given.
    dtypes
        numpy dtype names the format stores; ``None`` means any.
    max_ndim
        Most axes the format holds; ``None`` means no limit.
    oblique
        Whether rotated (non axis-aligned) voxel axes can be stored.
    shear
        Whether a sheared affine (non-orthogonal axes) can be stored.
    scaling
        Whether stored values can carry a slope and intercept.
    companions
        Suffixes of extra files written beside the main one.
    sidecar
        Whether core may write a BIDS JSON (and .bval/.bvec) beside it; a format that holds
        its acquisition metadata itself (DICOM) says no.
    """

    format: str
    load: str
    extensions: tuple[str, ...] = ()
    dtypes: tuple[str, ...] | None = None
    max_ndim: int | None = None
    oblique: bool = True
    shear: bool = True
    scaling: bool = True
    priority: int = 0
    description: str = ""
    companions: tuple[str, ...] = ()
    options: tuple[OptionSpec, ...] = ()
    sidecar: bool = True
    #: takes ``--set KEY=VALUE`` (metadata the user sets on the output, in the format's names)
    settable: bool = False
    plugin: str = ""


@dataclass(frozen=True)
class TransformSpec:
    """A transform: ``load`` names ``fn(image, options) -> Image``; it does no I/O."""

    name: str
    load: str
    description: str = ""
    options: tuple[OptionSpec, ...] = ()
    plugin: str = ""


@dataclass(frozen=True)
class CommandSpec:
    """An extra subcommand (``anyconv NAME ...``) that a plugin brings.

    ``load`` names ``fn(args: list[str]) -> int``: it parses its own arguments and returns the
    exit code. It is imported only when the command is run, so ``anyconv --help`` stays quick.
    """

    name: str
    load: str
    help: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class TransportSpec:
    """Images behind a URL (a PACS, a DICOMweb server): fetched before reading, stored after.

    ``schemes`` are URL schemes claimed (``dicomweb+http``). ``fetch`` names
    ``fn(url: str, dest: Path, options: ReadOptions) -> Path``: it downloads into the empty
    folder ``dest`` and returns the file or folder the ordinary readers then read. ``store``
    names ``fn(files: list[Path], url: str, options: WriteOptions) -> list[str]``: it sends
    files written in ``format`` and returns what it stored (UIDs or URLs), one line each.
    """

    schemes: tuple[str, ...]
    fetch: str | None = None
    store: str | None = None
    format: str | None = None
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class ReadOptions:
    """What a reader is asked for; ``extra`` holds ``--option`` pairs meant for it.

    ``files``, for folder readers: read only these files of the folder, not its whole tree
    (batch hands each folder's own files as one unit).
    """

    extra: dict[str, str] = field(default_factory=dict)
    allow_outside: bool = False
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteOptions:
    """What a writer is asked for.

    ``lossy`` means the user accepted a loss; the writer records what it dropped in
    ``image.losses``. ``compress_level`` is ``None`` for the format's default. ``sidecar``
    lets core write a BIDS JSON (and .bval/.bvec) beside images that carry acquisition
    metadata.
    """

    lossy: bool = False
    compress_level: int | None = None
    sidecar: bool = True
    extra: dict[str, str] = field(default_factory=dict)
    #: ``--set KEY=VALUE``: metadata to set on the output, named as the writer's format names it
    set_values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """Return an ``--option`` value."""
        return self.extra.get(key, default)
