"""The ``anyconv`` command: a thin typer layer over the library.

Only this module prints errors, always as one line: ``anyconv: error: <what> (<what to do>)``.
Imports of numpy, the registry and plugins happen inside commands, so ``--help`` is quick.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import __version__


class _DefaultToConvert(TyperGroup):
    """``anyconv IN OUT`` means ``anyconv convert IN OUT``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["convert", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToConvert,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Convert medical images between formats, keeping world geometry and metadata.\n\n"
    "anyconv INPUT OUTPUT converts (see `anyconv convert --help`). Plugins add commands "
    "(anyconv anonymize, query, echo, send ...): `anyconv plugins` lists them.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"anyconv {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Convert medical images between formats, keeping world geometry and metadata."""


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"anyconv: {record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(quiet: bool, verbose: bool, debug: bool) -> None:
    logger = logging.getLogger("anyconv")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logger.addHandler(handler)
    logger.propagate = False
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif debug:
        level = logging.DEBUG
    elif verbose:
        level = logging.INFO
    logger.setLevel(level)
    # Libraries (pydicom, nibabel, h5py) warn through `warnings` and their own loggers; without
    # this, Python prints those as multi-line text on stderr. With --debug they are shown.
    logging.captureWarnings(True)
    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())
    if debug:
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
    else:
        # nibabel attaches its own stderr handler ('nibabel.global'); loggers that do not set
        # a level inherit this one, so their warnings stay quiet too.
        root.setLevel(logging.ERROR)


def _error(message: str) -> None:
    typer.echo(f"anyconv: error: {message}", err=True)


@contextlib.contextmanager
def _reported(debug: bool) -> Iterator[None]:
    """Turn library errors into one line and the documented exit code."""
    from .errors import AnyconvError

    try:
        yield
    except typer.Exit:
        raise
    except AnyconvError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _error("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # `anyconv info DIR | head`: the reader went away; stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(141) from None
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: say so, exit 1
        if debug:
            traceback.print_exc()
        _error(
            f"internal error: {type(exc).__name__}: {exc} "
            "(a bug in anyconv; run with --debug for the traceback and report it)"
        )
        raise typer.Exit(1) from None


_TRANSFORMS_KEY = "anyconv.transforms"


def _queue(ctx: typer.Context, entries: list[tuple[str, dict[str, str]]]) -> None:
    """Transforms run in command-line order: click calls callbacks in that order."""
    ctx.meta.setdefault(_TRANSFORMS_KEY, []).extend(entries)


def _transform_option(ctx: typer.Context, values: list[str] | None) -> list[str] | None:
    entries = []
    for value in values or []:
        name, _, rest = value.partition(":")
        opts = _parse_pairs([p for p in rest.split(",") if p]) if rest else {}
        entries.append((name, opts))
    _queue(ctx, entries)
    return values


def _anonymize_entry(ctx: typer.Context) -> dict[str, str]:
    """The queued anonymize transform's options, queued now if it is not yet."""
    for name, opts in ctx.meta.get(_TRANSFORMS_KEY, []):
        if name == "anonymize":
            return opts
    opts: dict[str, str] = {}
    _queue(ctx, [("anonymize", opts)])
    return opts


def _anonymize_option(ctx: typer.Context, value: bool) -> bool:
    if value:
        _anonymize_entry(ctx)
    return value


def _anon_recipe_option(ctx: typer.Context, value: Path | None) -> Path | None:
    if value is not None:
        _anonymize_entry(ctx)["recipe"] = str(value)
    return value


def _reorient_option(ctx: typer.Context, value: str | None) -> str | None:
    if value is not None:
        _queue(ctx, [("reorient", {"axcodes": value})])
    return value


def _parse_pairs(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


# Options that convert and batch share, defined once (typer reads the Annotated metadata).
ToOpt = Annotated[str | None, typer.Option("--to", help="Output format id.")]
LossyOpt = Annotated[
    bool, typer.Option("--lossy", help="Convert even when the target loses data; record it.")
]
NameOpt = Annotated[
    str,
    typer.Option(
        "--name",
        help="File name template for folder outputs: {series_number}, "
        "{series_description}, {protocol}, {echo}, {modality}, {index}, {stem}.",
    ),
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option("--option", "-O", help="KEY=VALUE passed to the reader and writer."),
]
TransformOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--transform",
        "-t",
        callback=_transform_option,
        help="Apply a transform: NAME or NAME:KEY=VALUE,... (in command-line order).",
    ),
]
AnonymizeOpt = Annotated[
    bool,
    typer.Option(
        "--anonymize",
        callback=_anonymize_option,
        help="De-identify (PS3.15 Basic Profile; shorthand for -t anonymize).",
    ),
]
AnonRecipeOpt = Annotated[
    Path | None,
    typer.Option(
        "--anon-recipe", callback=_anon_recipe_option, help="TOML recipe (implies --anonymize)."
    ),
]
ReorientOpt = Annotated[
    str | None,
    typer.Option(
        "--reorient",
        callback=_reorient_option,
        help="Reorder voxel axes to AXCODES (RAS, LPS, PIR, ... or canonical).",
    ),
]
SidecarOpt = Annotated[
    bool,
    typer.Option(
        "--sidecar/--no-sidecar",
        help="Write a BIDS JSON (and .bval/.bvec) beside images with acquisition metadata.",
    ),
]
CompressOpt = Annotated[
    int | None, typer.Option("--compress-level", min=0, max=9, help="gzip level.")
]
PreviewOpt = Annotated[
    bool,
    typer.Option("--preview", help="Also write an orientation-labelled PNG beside each output."),
]
IndexOpt = Annotated[
    Path | None,
    typer.Option(
        "--index",
        help="Record provenance in this SQLite file: per output its input files and UIDs, "
        "slice-to-instance map, versions, options, transforms, warnings and SHA-256 "
        "(see `anyconv index query`).",
    ),
]
IndexLinkageOpt = Annotated[
    bool,
    typer.Option(
        "--index-linkage",
        help="With --index and de-identified outputs: also keep the original identifiers "
        "and input paths, in the index's separate linkage table.",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Say more.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Tracebacks for errors.")]


@app.command()
def convert(
    ctx: typer.Context,
    input: Annotated[
        str,
        typer.Argument(
            help="Input file or folder, or a scheme:// address a plugin fetches.",
            show_default=False,
            metavar="INPUT",
        ),
    ],
    output: Annotated[
        str,
        typer.Argument(
            help="Output file, or folder (ends in /, exists, or the input holds several images), "
            "or a scheme:// address a plugin stores to.",
            show_default=False,
            metavar="OUTPUT",
        ),
    ],
    to: ToOpt = None,
    from_: Annotated[str | None, typer.Option("--from", help="Input format id.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite outputs.")] = False,
    lossy: LossyOpt = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Say which reader and writer were chosen and why.")
    ] = False,
    name: NameOpt = "{auto}",
    option: OptionOpt = None,
    transform: TransformOpt = None,
    anonymize: AnonymizeOpt = False,
    anon_recipe: AnonRecipeOpt = None,
    reorient: ReorientOpt = None,
    sidecar: SidecarOpt = True,
    compress_level: CompressOpt = None,
    preview: PreviewOpt = False,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE metadata to set on the output, in the output format's names "
            "(DICOM: keyword or tag, e.g. PatientName=Doe^J).",
        ),
    ] = None,
    index: IndexOpt = None,
    index_linkage: IndexLinkageOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Convert INPUT to OUTPUT (format from the suffix, or --to)."""
    _setup_logging(quiet, verbose, debug)
    extra = _parse_pairs(option)
    if index_linkage and index is None:
        raise typer.BadParameter("--index-linkage needs --index FILE.sqlite")
    with _reported(debug), contextlib.ExitStack() as stack:
        from . import get_registry
        from .pipeline import ConvertRequest
        from .pipeline import convert as run
        from .registry import url_scheme
        from .specs import ReadOptions, WriteOptions

        provenance = None
        if index is not None:  # opened first: an unwritable index stops before converting
            from .provenance import ProvenanceIndex

            provenance = stack.enter_context(
                ProvenanceIndex(index, linkage=index_linkage, command=["convert"])
            )
        req = ConvertRequest(
            src=input if url_scheme(input) else Path(input),
            dst=output if url_scheme(output) else Path(output),
            # Path() drops a trailing slash, which is how a user says "a folder"
            dst_is_folder=output.endswith(("/", os.sep)),
            from_fmt=from_,
            to_fmt=to,
            force=force,
            name_template=name,
            read_options=ReadOptions(
                extra=extra, allow_outside=extra.get("allow_outside", "") in ("1", "true", "yes")
            ),
            write_options=WriteOptions(
                lossy=lossy,
                compress_level=compress_level,
                sidecar=sidecar,
                extra=extra,
                set_values=_parse_pairs(set_),
            ),
            transforms=list(ctx.meta.get(_TRANSFORMS_KEY, [])),
            preview=preview,
            checksums=provenance is not None,
        )
        say = (lambda line: typer.echo(line, err=True)) if explain else None
        registry = get_registry()
        results = run(registry, req, explain=say)
        if provenance is not None:
            from .provenance import describe

            recorded = {
                "command": "convert",
                "to": to,
                "from": from_,
                "name": name,
                "force": force,
                "lossy": lossy,
                "sidecar": sidecar,
                "compress_level": compress_level,
                "preview": preview,
                "options": extra,
                "set": req.write_options.set_values,
            }
            for result in results:
                provenance.add(
                    describe(
                        result,
                        registry,
                        options=recorded,
                        transforms=req.transforms,
                        destination=output if url_scheme(output) else None,
                    )
                )
        log = logging.getLogger("anyconv")
        for result in results:
            for loss in result.losses:
                log.warning("%s: lost: %s", result.files[0], loss)
            for note in result.notes:
                log.info("%s: %s", result.files[0], note)
            if not quiet:
                shown = [*result.files, *([result.preview] if result.preview else [])]
                if result.stored:
                    shown = [f"{output} ({len(result.stored)} stored)"]
                typer.echo(" ".join(str(f) for f in shown))


@app.command()
def batch(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(
            help="SRC... OUT_DIR: files or folders, then the output folder.",
            metavar="SRC... OUT_DIR",
            show_default=False,
        ),
    ],
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=0, help="Workers (0: one per core).")
    ] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted batch.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write one JSON line per input here.")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address (tcp://HOST:PORT).")
    ] = None,
    dask: Annotated[bool, typer.Option("--dask", help="Run on a local Dask cluster.")] = False,
    to: ToOpt = None,
    name: NameOpt = "{auto}",
    force: Annotated[bool, typer.Option("--force", "-f", help="Start again, overwrite.")] = False,
    lossy: LossyOpt = False,
    option: OptionOpt = None,
    transform: TransformOpt = None,
    anonymize: AnonymizeOpt = False,
    anon_recipe: AnonRecipeOpt = None,
    reorient: ReorientOpt = None,
    sidecar: SidecarOpt = True,
    compress_level: CompressOpt = None,
    preview: PreviewOpt = False,
    qc_report: Annotated[
        Path | None,
        typer.Option(
            "--qc-report",
            help="Write a self-contained HTML page: one row per series, thumbnail, geometry, "
            "warnings, status.",
        ),
    ] = None,
    index: IndexOpt = None,
    index_linkage: IndexLinkageOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Convert every image under SRC... into OUT_DIR in parallel; resumable, with a report."""
    _setup_logging(quiet, verbose, debug)
    if len(paths) < 2:
        raise typer.BadParameter("give at least one SRC and the OUT_DIR")
    if index_linkage and index is None:
        raise typer.BadParameter("--index-linkage needs --index FILE.sqlite")
    extra = _parse_pairs(option)
    with _reported(debug):
        from .errors import UsageError
        from .registry import url_scheme

        remote = [p for p in paths if url_scheme(p)]
        if remote:
            raise UsageError(
                f"{remote[0]}: batch reads local files and folders",
                hint="fetch it first with `anyconv ADDRESS folder/`, then batch that folder",
            )
        from . import get_registry
        from .batch import BatchSettings, run_batch

        settings = BatchSettings(
            out_dir=paths[-1],
            to_fmt=to,
            name_template=name,
            transforms=tuple(
                (t, tuple(sorted(o.items()))) for t, o in ctx.meta.get(_TRANSFORMS_KEY, [])
            ),
            lossy=lossy,
            compress_level=compress_level,
            sidecar=sidecar,
            extra=tuple(sorted(extra.items())),
            preview=preview,
        )
        with _progress(quiet) as on_progress:
            summary = run_batch(
                get_registry(),
                [Path(p) for p in paths[:-1]],
                settings,
                jobs=jobs,
                resume=resume,
                force=force,
                report=report,
                scheduler="local" if dask and scheduler is None else scheduler,
                on_progress=on_progress,
                qc_report=qc_report,
                index=index,
                index_linkage=index_linkage,
            )
        if not quiet:
            typer.echo(summary.line(), err=True)
            if qc_report is not None:
                typer.echo(f"QC report: {qc_report}", err=True)
            if index is not None:
                typer.echo(f"provenance index: {index}", err=True)
        if summary.failed:
            raise typer.Exit(summary.first_exit_code or 1)


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """A rich progress bar on a terminal; failures as warning lines; silent otherwise."""
    log = logging.getLogger("anyconv")

    def report_failure(result: Any) -> None:
        if result is not None and result.status != "ok":
            log.warning("%s: %s", result.key, result.error)

    if quiet or not sys.stderr.isatty():
        yield lambda done, total, result: report_failure(result)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("converting", total=None)

        def update(done: int, total: int, result: Any) -> None:
            bar.update(task, completed=done, total=total)
            report_failure(result)

        yield update


def _image_summary(image: Any) -> dict[str, Any]:
    from . import geometry

    return {
        "path": image.source,
        "format": image.format,
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "zooms": [round(z, 6) for z in image.zooms],
        "affine": image.affine.tolist(),
        "axcodes": "".join(image.axcodes),
        "obliquity_deg": round(geometry.obliquity(image.affine), 4),
        "scaling": {"slope": image.slope, "inter": image.inter},
        "meta": image.meta.as_dict(),
        "notes": list(image.notes),
        "files": (image.extras.get(image.format or "") or {}).get("files"),
    }


def _series_table(summaries: list[dict[str, Any]]) -> list[str]:
    """One line per image: what a folder holds, before anything is converted."""
    lines = [f"{'#':>3}  {'series':>6}  {'modality':<8} {'shape':<20} {'files':>5}  description"]
    for i, s in enumerate(summaries, 1):
        meta = s["meta"]
        shape = "x".join(str(n) for n in s["shape"])
        files = "" if s["files"] is None else str(s["files"])
        lines.append(
            f"{i:>3}  {meta.get('series_number', ''):>6}  {meta.get('modality', ''):<8} "
            f"{shape:<20} {files:>5}  {meta.get('series_description', '')}"
        )
    return lines


@app.command()
def info(
    input: Annotated[
        str,
        typer.Argument(
            help="File or folder, or a scheme:// address a plugin fetches.",
            show_default=False,
            metavar="INPUT",
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON: one object for a file; for a folder (or --tree) the nested "
            "patient/study/series tree with each image under its series.",
        ),
    ] = False,
    tree: Annotated[
        bool,
        typer.Option("--tree", help="Show the patient/study/series tree for a file too."),
    ] = False,
    fhir: Annotated[
        bool,
        typer.Option("--fhir", help="Print one FHIR R4 ImagingStudy per study (JSON list)."),
    ] = False,
    to: Annotated[
        str | None, typer.Option("--to", help="Output format the names are shown for.")
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="Output name template the names are shown for.")
    ] = "{auto}",
    from_: Annotated[str | None, typer.Option("--from", help="Input format id.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks for errors.")] = False,
) -> None:
    """Describe an image: format, shape, dtype, zooms, RAS affine, axis codes, metadata.

    A folder is shown as a Patient -> Study -> Series tree (instances, size, and the file
    each series would become), then each image.
    """
    _setup_logging(False, False, debug)
    with _reported(debug), contextlib.ExitStack() as stack:
        from . import get_registry
        from . import study as st
        from .registry import url_scheme

        registry = get_registry()
        remote = url_scheme(input) is not None
        # an address is fetched into a temporary folder, kept until the description is done
        source = stack.enter_context(registry.fetched(input)) if remote else Path(input)
        images = registry.read(source, fmt=from_)
        if fhir:
            resources = st.imaging_studies(st.build_tree(images))
            if not resources:
                from .errors import UsageError

                raise UsageError(
                    f"{input}: no study with a Study Instance UID",
                    hint="FHIR ImagingStudy needs study, series and instance UIDs",
                )
            typer.echo(json.dumps(resources, indent=2))
            return
        summaries = [_image_summary(img) for img in images]
        if remote:  # name the address, not the temporary folder that is about to go
            for summary in summaries:
                summary["path"] = str(summary["path"]).replace(str(source), input.rstrip("/"))
        show_tree = tree or remote or source.is_dir()
        patients = None
        if show_tree:
            from .pipeline import ConvertRequest, plan_outputs

            req = ConvertRequest(
                src=source, dst=Path(), dst_is_folder=True, to_fmt=to, name_template=name
            )
            names = [p.name for p in plan_outputs(registry, images, req)]
            patients = st.build_tree(images, names)
        if as_json:
            payload: Any
            if patients is not None:
                payload = st.tree_dict(patients, summaries)
            else:
                payload = summaries[0] if len(summaries) == 1 else summaries
            typer.echo(json.dumps(payload, indent=2, default=str))
            return
        if patients is not None:
            for line in st.tree_lines(patients):
                typer.echo(line)
            typer.echo("")
        elif len(summaries) > 1:
            for line in _series_table(summaries):
                typer.echo(line)
            typer.echo("")
        for s in summaries:
            typer.echo(f"{s['path']}  [{s['format']}]")
            typer.echo(f"  shape    {tuple(s['shape'])}  {s['dtype']}")
            typer.echo(f"  zooms    {tuple(s['zooms'])} mm   axcodes {s['axcodes']}")
            if s["obliquity_deg"]:
                typer.echo(f"  oblique  {s['obliquity_deg']} deg")
            if s["scaling"] != {"slope": 1.0, "inter": 0.0}:
                typer.echo(
                    f"  scaling  slope {s['scaling']['slope']:g} inter {s['scaling']['inter']:g}"
                )
            typer.echo("  affine (voxel -> RAS mm)")
            for row in s["affine"]:
                typer.echo("    " + "  ".join(f"{v:11.5f}" for v in row))
            for key, value in s["meta"].items():
                typer.echo(f"  {key:<9} {value}")


@app.command()
def preview(
    input: Annotated[
        Path, typer.Argument(help="Image file or folder.", show_default=False, metavar="INPUT")
    ],
    output: Annotated[
        str,
        typer.Argument(
            help="PNG to write (a folder, or NAME_1.png... when INPUT holds several images).",
            show_default=False,
            metavar="OUTPUT.png",
        ),
    ],
    volume: Annotated[
        int | None, typer.Option("--volume", help="Volume of a 4D image (default: middle).")
    ] = None,
    size: Annotated[
        int, typer.Option("--size", min=32, max=2048, help="Panel size in pixels.")
    ] = 256,
    nearest: Annotated[
        bool, typer.Option("--nearest", help="Nearest-neighbour instead of linear sampling.")
    ] = False,
    radiological: Annotated[
        bool, typer.Option("--radiological", help="Patient right on screen left.")
    ] = False,
    from_: Annotated[str | None, typer.Option("--from", help="Input format id.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the PNG.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks for errors.")] = False,
) -> None:
    """Draw three world-aligned mid-planes with R/L, A/P, S/I labels as a PNG."""
    _setup_logging(quiet, False, debug)
    with _reported(debug):
        from . import get_registry
        from . import preview as pv
        from .errors import AnyconvError, ReadError, UsageError, WriteError
        from .io import check_writable
        from .pipeline import load_data

        registry = get_registry()
        images = registry.read(input, fmt=from_)
        dst = Path(output)
        if output.endswith(("/", os.sep)) or dst.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            paths = [
                dst / f"{registry.output_name(img, '{auto}', i)}.png"
                for i, img in enumerate(images)
            ]
        elif len(images) == 1:
            paths = [dst]
        else:
            stem = dst.name[: -len(dst.suffix)] if dst.suffix else dst.name
            paths = [dst.with_name(f"{stem}_{i + 1}.png") for i in range(len(images))]
        check_writable(paths, force=force)
        for image, path in zip(images, paths, strict=True):
            count = pv.volume_count(image)
            if volume is not None and not -count <= volume < count:
                raise UsageError(
                    f"{image.source or input}: --volume {volume} out of range",
                    hint=f"the image holds {count} volume(s): 0..{count - 1}",
                )
            what = image.source or input
            try:
                pv.write_preview(
                    load_data(image) if image.ndim <= 3 else image,  # 4D: read one volume
                    path,
                    volume=volume,
                    panel=size,
                    interpolation="nearest" if nearest else "linear",
                    radiological=radiological,
                )
            except ValueError as exc:  # degenerate affine, structured voxels
                raise ReadError(f"{what}: cannot preview: {exc}") from exc
            except OSError as exc:
                raise WriteError(f"{path}: {exc.strerror or exc}") from exc
            except (AnyconvError, MemoryError):
                raise
            except Exception as exc:  # a lazy 4D volume failed to read
                raise ReadError(f"{what}: corrupt or truncated voxel data: {exc}") from exc
            if not quiet:
                typer.echo(str(path))


index_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Read a provenance index written by convert/batch --index FILE.sqlite.",
)
app.add_typer(index_app, name="index")


@index_app.command("query")
def index_query(
    file: Annotated[
        Path, typer.Argument(help="The index.", show_default=False, metavar="FILE.sqlite")
    ],
    series: Annotated[
        str | None, typer.Option("--series", help="Outputs made from this Series Instance UID.")
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Outputs made from this Study Instance UID.")
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option("--instance", help="Outputs made from this SOP Instance UID."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", help="What this output file came from (path, or its tail)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Full records as a JSON list (inputs, versions...).")
    ] = False,
    slices: Annotated[
        bool, typer.Option("--slices", help="With --json: include the slice-to-instance map.")
    ] = False,
    linkage: Annotated[
        bool,
        typer.Option("--linkage", help="With --json: include the linkage table's rows, if any."),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Which output came from which inputs: filters combine; none lists everything."""
    _setup_logging(False, False, debug)
    with _reported(debug):
        from . import provenance

        found = provenance.query(
            file,
            series=series,
            study=study,
            instance=instance,
            output=output,
            slices=slices,
            linkage=linkage,
        )
        if as_json:
            typer.echo(json.dumps(found, indent=2))
        elif found:
            for line in provenance.table_lines(found):
                typer.echo(line)
        else:
            typer.echo("anyconv: no entry matches", err=True)


@app.command()
def formats(
    as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False,
) -> None:
    """List the formats of every installed plugin, with read/write capability."""
    with _reported(False):
        from . import get_registry

        entries = get_registry().formats()
        if as_json:
            typer.echo(json.dumps(entries, indent=2))
            return
        for e in entries:
            mode = ("r" if e["read"] else "-") + ("w" if e["write"] else "-")
            exts = " ".join(e["extensions"]) + (" (folder)" if e.get("directory") else "")
            typer.echo(f"{e['format']:<12} {mode}  {exts:<32} {e['plugin']}")


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False,
) -> None:
    """List installed plugins, their versions, and any that failed to load."""
    with _reported(False):
        from dataclasses import asdict

        from . import get_registry

        registry = get_registry()
        infos = registry.plugins()
        commands = registry.commands()
        if as_json:
            typer.echo(json.dumps([asdict(i) for i in infos], indent=2))
            return
        for i in infos:
            extra = f"  {i.error}" if i.error else ""
            typer.echo(f"{i.name:<14} {i.version or '-':<10} {i.status}{extra}")
        if commands:
            typer.echo("\nplugin commands:")
            for c in commands:
                typer.echo(f"  anyconv {c.name:<12} {c.help}  [{c.plugin}]")


_BUILTIN = ("--help", "-h", "--version")


def _builtin_commands() -> set[str]:
    """Our command names, read from the registrations (building click's tree costs ~20 ms)."""
    names = {
        info.name or info.callback.__name__.replace("_", "-")
        for info in app.registered_commands
        if info.callback is not None
    }
    return names | {g.name for g in app.registered_groups if g.name}


def _plugin_command(argv: list[str]) -> int | None:
    """Run ``anyconv NAME ...`` when a plugin brings command NAME; ``None`` if none does.

    Only a first argument that is neither a built-in command, an option nor an existing path
    makes us load the plugins, so the common paths stay quick.
    """
    if not argv or argv[0].startswith("-") or argv[0] in _BUILTIN:
        return None
    name = argv[0]
    if name in _builtin_commands() or os.path.lexists(name):
        return None
    from . import get_registry
    from .registry import load_target

    try:
        with _reported("--debug" in argv):
            specs = [c for c in get_registry().commands() if c.name == name]
            if not specs:
                return None
            func = load_target(specs[0].load, f"command {name}")
            return int(func(argv[1:]) or 0)
    except typer.Exit as exc:
        return exc.exit_code


_FORMAT_OPTION = re.compile(r"^--([a-z0-9]+)-([a-z0-9][a-z0-9-]*)(?:=(.*))?$")


def _format_options(args: list[str]) -> list[str]:
    """``--FORMAT-OPTION VALUE`` is ``-O OPTION=VALUE`` for an option the format declares.

    So ``--dicom-layout enhanced`` works as well as ``-O layout=enhanced``. Only an argument of
    that shape which is not one of our own options makes us look at the plugins' specs.
    """
    known = {"--compress-level", "--anon-recipe", "--no-sidecar", "--index-linkage", "--qc-report"}
    if not any(_FORMAT_OPTION.match(a) and a.split("=")[0] not in known for a in args):
        return args
    from . import get_registry

    try:
        registry = get_registry()
        declared = {
            (spec.format, o.name)
            for spec in [*registry.readers(), *registry.writers()]
            for o in spec.options
        }
    except Exception:  # noqa: BLE001 - a broken plugin is reported by the command itself
        return args
    out: list[str] = []
    i = 0
    while i < len(args):
        match = _FORMAT_OPTION.match(args[i])
        name = match and (match.group(1), match.group(2).replace("-", "_"))
        if match and name in declared and args[i].split("=")[0] not in known:
            value = match.group(3)
            if value is None and i + 1 < len(args):
                i += 1
                value = args[i]
            out += ["-O", f"{name[1]}={value if value is not None else 'yes'}"]
        else:
            out.append(args[i])
        i += 1
    return out


def main() -> None:
    """Console-script entry point."""
    code = _plugin_command(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    app(args=_format_options(sys.argv[1:]))
