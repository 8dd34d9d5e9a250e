"""The hook contract between anyconv and its plugins.

A plugin is a module (named by an entry point in group ``anyconv``) or any object with
``@hookimpl`` functions. It may implement any subset of these hooks, and an implementation
may take fewer arguments than the spec names, so new arguments can be added safely.
Readers, writers and transforms are declared as data (``anyconv.specs``); the code they name
is imported only when chosen, so listing formats imports no format library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .model import Image
    from .specs import CommandSpec, ReaderSpec, TransformSpec, TransportSpec, WriterSpec

PROJECT = "anyconv"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def anyconv_readers() -> list[ReaderSpec]:
    """Declare the formats this plugin reads.

    Called once when the registry first needs readers (detection, ``anyconv formats``).

    Returns
    -------
    list[ReaderSpec]
        One spec per format read; an empty list or ``None`` for none.
    """


@hookspec
def anyconv_writers() -> list[WriterSpec]:
    """Declare the formats this plugin writes, with what each can hold.

    Called once when the registry first needs writers. The capabilities (dtypes, ndim,
    oblique, shear, scaling) let the registry refuse a lossy conversion before writing.

    Returns
    -------
    list[WriterSpec]
        One spec per format written; an empty list or ``None`` for none.
    """


@hookspec
def anyconv_transforms() -> list[TransformSpec]:
    """Declare image transforms (anonymize, reorient ...).

    Called once when the registry first needs transforms. A transform takes an ``Image`` and
    returns a new one; it does no I/O.

    Returns
    -------
    list[TransformSpec]
        One spec per transform; an empty list or ``None`` for none.
    """


@hookspec
def anyconv_transports() -> list[TransportSpec]:
    """Declare URL schemes whose images are fetched before reading or stored after writing.

    Called once when an input or output looks like ``scheme://...``. A transport only moves
    files; reading and writing stay with the format plugins.

    Returns
    -------
    list[TransportSpec]
        One spec per transport; an empty list or ``None`` for none.
    """


@hookspec
def anyconv_commands() -> list[CommandSpec]:
    """Declare extra subcommands (``anyconv query ...``, ``anyconv echo ...``).

    Called only when the first argument is not a built-in command nor an existing path.

    Returns
    -------
    list[CommandSpec]
        One spec per command; an empty list or ``None`` for none.
    """


@hookspec(firstresult=True)
def anyconv_output_name(image: Image, template: str, index: int) -> str | None:
    """Name the output file (without folder or extension) for one image of several.

    Called for each image when the output is a folder. Stops at the first non-``None``
    result; core registers a default, ``trylast``, that fills ``template`` from the image's
    metadata (``{series_number}``, ``{series_description}``, ``{protocol}``, ``{echo}``,
    ``{index}``, ``{stem}``).

    Parameters
    ----------
    image
        The image about to be written.
    template
        The user's ``--name`` template.
    index
        0-based position of the image among those read from the input.

    Returns
    -------
    str or None
        The file stem; ``None`` to let the next implementation decide.
    """
