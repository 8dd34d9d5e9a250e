"""The plugin registry: finds plugins, collects their specs, chooses, and imports lazily.

Nothing is loaded at import. ``Registry()`` walks the entry-point group ``anyconv`` the first
time it is asked something; a plugin that fails to import is listed as broken and the rest
work. Tests build ``Registry(plugins=[...], entry_points=False)``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .detect import (
    Candidate,
    matches_magic,
    matching_suffix,
    rank,
    read_head,
    score_reader,
    suffixes_of,
)
from .errors import (
    AnyconvError,
    FormatNotFoundError,
    LossyConversionError,
    PluginError,
    ReadError,
    UsageError,
    WriteError,
)
from .specs import (
    CommandSpec,
    ReaderSpec,
    ReadOptions,
    TransformSpec,
    TransportSpec,
    WriteOptions,
    WriterSpec,
)

if TYPE_CHECKING:
    from .model import Image

ENTRY_POINT_GROUP = "anyconv"
DISABLE_ENV = "ANYCONV_DISABLE_PLUGINS"
DEFAULT_OUTPUT_SUFFIX = ".nii.gz"
log = logging.getLogger("anyconv")


@dataclass
class PluginInfo:
    """A plugin as ``anyconv plugins`` lists it."""

    name: str
    module: str
    version: str | None = None
    status: str = "ok"
    error: str | None = None


@dataclass
class Choice:
    """The spec chosen and every candidate considered, for ``--explain``."""

    spec: Any
    candidates: list[Candidate] = field(default_factory=list)
    why: str = ""

    def explain(self) -> list[str]:
        """One line per candidate, the winner first."""
        lines = [f"chose {self.spec.format} ({self.spec.plugin}): {self.why}"]
        for c in self.candidates:
            reasons = "; ".join(c.reasons) or "no evidence"
            lines.append(f"  {c.spec.format:<12} score {c.score:>5}  {reasons}")
        return lines


class _CoreDefaults:
    """Core's default policy hooks, registered ``trylast`` so plugins can override them."""

    @hookspecs.hookimpl(trylast=True)
    def anyconv_output_name(self, image: Image, template: str, index: int) -> str:
        return default_output_name(image, template, index)


def load_target(target: str, what: str) -> Callable[..., Any]:
    """Import ``"module:attribute"``; a failure names the target and what to install."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module_name
        raise PluginError(
            f"{what}: cannot import {module_name}: {exc}",
            hint=f"install the package that provides {missing!r}",
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise PluginError(f"{what}: {module_name} has no {attr!r}") from exc


class Registry:
    """Plugins and their readers, writers and transforms.

    Parameters
    ----------
    plugins
        Plugin objects (modules or instances with ``@hookimpl`` methods) to register.
    entry_points
        Also load plugins from the ``anyconv`` entry-point group.
    disabled
        Plugin names to skip; defaults to ``$ANYCONV_DISABLE_PLUGINS`` (comma separated).
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        entry_points: bool = True,
        disabled: Iterable[str] | None = None,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._pm.register(_CoreDefaults(), name="anyconv-core")
        self._entry_points = entry_points
        if disabled is None:
            disabled = [n for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]
        self._disabled = {n.strip() for n in disabled}
        self._infos: dict[str, PluginInfo] = {}
        self._pending = list(plugins)
        self._loaded = False
        self._cache: dict[str, list[Any]] = {}

    # -- plugins --------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for plugin in self._pending:
            self.register(plugin)
        self._pending.clear()
        if self._entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            version = getattr(getattr(ep, "dist", None), "version", None)
            info = PluginInfo(ep.name, ep.value, version)
            self._infos[ep.name] = info
            if ep.name in self._disabled:
                info.status = "disabled"
                continue
            if self._pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
                self._pm.register(module, name=ep.name)
                self._check(ep.name)
            except Exception as exc:
                info.status = "broken"
                info.error = f"{type(exc).__name__}: {exc}"
                log.debug("plugin %s failed to load", ep.name, exc_info=True)
                if self._pm.get_plugin(ep.name) is not None:
                    self._pm.unregister(name=ep.name)

    def _check(self, name: str) -> None:
        plugin = self._pm.get_plugin(name)
        for hook in self._pm.get_hookcallers(plugin) or []:
            if not hook.has_spec():
                raise PluginError(f"plugin {name}: unknown hook {hook.name}")

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (for tests and code that is not packaged)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self._pm.get_plugin(name) is not None:
            raise PluginError(f"a plugin named {name!r} is already registered")
        self._pm.register(plugin, name=name)
        try:
            self._check(name)
        except PluginError:
            self._pm.unregister(name=name)
            raise
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self._infos[name] = PluginInfo(name, module, getattr(plugin, "__version__", None))
        self._cache.clear()
        return name

    def unregister(self, name: str) -> None:
        """Remove a plugin registered by name."""
        self._pm.unregister(name=name)
        self._infos.pop(name, None)
        self._cache.clear()

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, with its status (``ok``, ``broken``, ``disabled``)."""
        self._ensure_loaded()
        return sorted(self._infos.values(), key=lambda i: i.name)

    @property
    def hook(self) -> Any:
        """The pluggy hook relay, for policy hooks such as ``anyconv_output_name``."""
        self._ensure_loaded()
        return self._pm.hook

    def _collect(self, hook_name: str, kind: type) -> list[Any]:
        self._ensure_loaded()
        if hook_name in self._cache:
            return self._cache[hook_name]
        specs: list[Any] = []
        hook = getattr(self._pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            result = impl.function()
            for spec in result or []:
                if not isinstance(spec, kind):
                    raise PluginError(
                        f"plugin {impl.plugin_name}: {hook_name} returned {spec!r}, "
                        f"not a {kind.__name__}"
                    )
                specs.append(_with_plugin(spec, impl.plugin_name))
        self._cache[hook_name] = specs
        return specs

    def readers(self) -> list[ReaderSpec]:
        """Every reader spec of every working plugin."""
        return self._collect("anyconv_readers", ReaderSpec)

    def writers(self) -> list[WriterSpec]:
        """Every writer spec of every working plugin."""
        return self._collect("anyconv_writers", WriterSpec)

    def transforms(self) -> list[TransformSpec]:
        """Every transform spec of every working plugin."""
        return self._collect("anyconv_transforms", TransformSpec)

    def transports(self) -> list[TransportSpec]:
        """Every transport spec of every working plugin."""
        return self._collect("anyconv_transports", TransportSpec)

    def commands(self) -> list[CommandSpec]:
        """Every extra subcommand of every working plugin."""
        return self._collect("anyconv_commands", CommandSpec)

    def transport_for(self, url: str) -> TransportSpec:
        """The transport claiming ``url``'s scheme."""
        scheme = url_scheme(url)
        for spec in self.transports():
            if scheme in spec.schemes:
                return spec
        known = ", ".join(sorted(s for t in self.transports() for s in t.schemes)) or "none"
        raise UsageError(
            f"{url}: no installed plugin handles {scheme}:// addresses", hint=f"known: {known}"
        )

    @contextlib.contextmanager
    def fetched(self, url: str, options: ReadOptions | None = None) -> Iterator[Path]:
        """Download ``url`` into a temporary folder, yield the local path, then remove it."""
        spec = self.transport_for(url)
        if not spec.fetch:
            raise UsageError(f"{url}: {url_scheme(url)}:// can be written to, not read from")
        func = load_target(spec.fetch, f"transport {url_scheme(url)}")
        with tempfile.TemporaryDirectory(prefix="anyconv-fetch-") as tmp:
            try:
                local = func(url, Path(tmp), options or ReadOptions())
            except AnyconvError:
                raise
            except Exception as exc:
                raise ReadError(f"{url}: cannot fetch: {_describe(exc)}") from exc
            yield Path(local)

    def store(self, files: list[Path], url: str, options: WriteOptions | None = None) -> list[str]:
        """Send written files to ``url`` with its transport; what was stored, one per line."""
        spec = self.transport_for(url)
        if not spec.store:
            raise UsageError(f"{url}: {url_scheme(url)}:// can be read from, not written to")
        func = load_target(spec.store, f"transport {url_scheme(url)}")
        try:
            return list(func(files, url, options or WriteOptions()))
        except AnyconvError:
            raise
        except Exception as exc:
            raise WriteError(f"{url}: cannot store: {_describe(exc)}") from exc

    def formats(self) -> list[dict[str, Any]]:
        """One entry per format: extensions, read/write, plugin and version."""
        out: dict[str, dict[str, Any]] = {}
        versions = {i.name: i.version for i in self.plugins()}
        for spec, mode in [(s, "read") for s in self.readers()] + [
            (s, "write") for s in self.writers()
        ]:
            entry = out.setdefault(
                spec.format,
                {
                    "format": spec.format,
                    "plugin": spec.plugin,
                    "version": versions.get(spec.plugin),
                    "extensions": [],
                    "read": False,
                    "write": False,
                    "description": spec.description,
                },
            )
            entry[mode] = True
            for ext in spec.extensions:
                if ext not in entry["extensions"]:
                    entry["extensions"].append(ext)
            if getattr(spec, "directory", False):
                entry["directory"] = True
        return sorted(out.values(), key=lambda e: e["format"])

    # -- choosing -------------------------------------------------------------------------
    def choose_reader(self, path: Path, fmt: str | None = None) -> Choice:
        """The reader for a file: ``fmt`` if given, else by magic bytes, then suffix."""
        path = Path(path)
        readers = self.readers()
        if fmt is not None:
            named = [r for r in readers if r.format == fmt.lower()]
            if not named:
                raise FormatNotFoundError(
                    f"no reader for format {fmt!r}", hint="see `anyconv formats`"
                )
            best = max(named, key=lambda r: r.priority)
            return Choice(best, [], "asked for with --from")
        _require_regular(path)
        return self._choose_by_content(path, readers, None)

    def _choose_by_content(
        self, path: Path, readers: list[ReaderSpec], memo: _FolderMemo | None
    ) -> Choice:
        """Score every reader on the file's head and suffix.

        With ``memo``, files with the same evidence (known suffixes, signatures present)
        share one decision: a folder of 7,200 DICOM files is scored once, not 7,200 times.
        """
        try:
            head = read_head(path)
        except OSError as exc:
            raise ReadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        if not head:
            raise ReadError(f"{path}: file is empty or not a readable gzip stream")
        names = suffixes_of(path.name)
        if memo is None:
            return self._choose(
                [score_reader(r, path.name, head, names) for r in readers],
                path,
                "no reader recognises it",
            )
        key = (
            tuple(n for n in names if n in memo.suffixes),
            tuple(matches_magic(head, r.magic) if r.magic else None for r in readers),
        )
        choice = memo.choices.get(key)
        if choice is None:
            choice = memo.choices[key] = self._choose_by_content(path, readers, None)
        return choice

    def _choose(self, candidates: list[Candidate], path: Path, none_msg: str) -> Choice:
        ranked = rank(candidates)
        if not ranked:
            raise FormatNotFoundError(
                f"{path}: unknown format: {none_msg}",
                hint="use --from/--to FORMAT; `anyconv formats` lists them",
            )
        top = ranked[0]
        ties = [
            c
            for c in ranked[1:]
            if (c.score, c.spec.priority) == (top.score, top.spec.priority)
            and c.spec.format != top.spec.format
        ]
        if ties:
            names = ", ".join(sorted({top.spec.format, *(c.spec.format for c in ties)}))
            raise FormatNotFoundError(
                f"{path}: ambiguous format, candidates: {names}",
                hint="choose one with --from/--to",
            )
        return Choice(top.spec, ranked, "; ".join(top.reasons))

    def choose_writer(self, path: Path, fmt: str | None = None) -> Choice:
        """The writer for an output path: ``fmt`` if given, else the longest known suffix."""
        path = Path(path)
        writers = self.writers()
        if fmt is not None:
            named = [w for w in writers if w.format == fmt.lower()]
            if not named:
                readable = any(r.format == fmt.lower() for r in self.readers())
                hint = "it can be read, not written" if readable else "see `anyconv formats`"
                raise FormatNotFoundError(f"no writer for format {fmt!r}", hint=hint)
            return Choice(max(named, key=lambda w: w.priority), [], "asked for with --to")
        cands = []
        suffixes = suffixes_of(path.name)
        for w in writers:
            exts = [e.lower() for e in w.extensions]
            hit = next((s for s in suffixes if s in exts), None)
            if hit is not None:
                cands.append(Candidate(w, 100 + len(hit), [f"suffix {hit}"]))
        suffix = suffixes[-1] if suffixes else "(none)"
        return self._choose(cands, path, f"no writer for suffix {suffix}")

    def transform_spec(self, name: str) -> TransformSpec:
        """The transform called ``name``."""
        for spec in self.transforms():
            if spec.name == name:
                return spec
        known = ", ".join(sorted(t.name for t in self.transforms())) or "none installed"
        raise UsageError(f"unknown transform {name!r}", hint=f"known: {known}")

    # -- doing ----------------------------------------------------------------------------
    def read(
        self,
        path: str | os.PathLike[str],
        *,
        fmt: str | None = None,
        options: ReadOptions | None = None,
    ) -> list[Image]:
        """Every image in a file or folder, with lazy data where the format allows.

        A ``scheme://`` address is fetched by its transport plugin and read with its data
        loaded (the download is removed before this returns).
        """
        options = options or ReadOptions()
        if isinstance(path, str) and url_scheme(path):
            with self.fetched(path, options) as local:
                return [img.load() for img in self.read(local, fmt=fmt, options=options)]
        path = Path(path)
        if not path.exists():
            raise ReadError(f"{path}: no such file or folder")
        if path.is_dir():
            return self._read_folder(path, fmt, options)
        _require_regular(path)
        choice = self.choose_reader(path, fmt)
        return self._run_reader(choice.spec, path, options)

    def _run_reader(self, spec: ReaderSpec, path: Path, options: ReadOptions) -> list[Image]:
        func = load_target(spec.load, f"reader {spec.format}")
        try:
            result = func(path, options)
        except AnyconvError:
            raise
        except (MemoryError, RecursionError) as exc:
            raise ReadError(f"{path}: too large or deeply nested to read: {exc}") from exc
        except Exception as exc:
            raise ReadError(f"{path}: cannot read as {spec.format}: {_describe(exc)}") from exc
        images = [result] if not isinstance(result, Sequence) else list(result)
        for img in images:
            img.source = img.source or str(path)
            img.format = img.format or spec.format
            _check_geometry(img, spec.format)
        return images

    def _read_folder(self, folder: Path, fmt: str | None, options: ReadOptions) -> list[Image]:
        from .io import files_under

        files = files_under(folder)
        folder_readers: dict[str, ReaderSpec] = {}
        singles: list[tuple[Path, ReaderSpec]] = []
        claimed: set[Path] = set()
        readers = self.readers()
        memo = _FolderMemo(frozenset(e.lower() for r in readers for e in r.extensions))
        for f in files:
            if f in claimed:
                continue
            try:
                if fmt is None:
                    choice = self._choose_by_content(f, readers, memo)
                else:
                    choice = self.choose_reader(f, fmt)
            except (FormatNotFoundError, ReadError) as exc:
                log.debug("skipping %s: %s", f, exc)
                continue
            spec = choice.spec
            if spec.directory:
                folder_readers.setdefault(spec.format, spec)
            else:
                singles.append((f, spec))
                claimed.update(_companions(f, spec))
        singles = [(f, s) for f, s in singles if f not in claimed or _is_header(f, s)]
        images: list[Image] = []
        for spec in folder_readers.values():
            images.extend(self._run_reader(spec, folder, options))
        for f, spec in singles:
            try:
                images.extend(self._run_reader(spec, f, options))
            except ReadError as exc:
                log.warning("skipping %s", exc)
        if not images:
            raise ReadError(f"{folder}: no readable image in this folder")
        return images

    def write(
        self,
        image: Image,
        path: str | os.PathLike[str],
        *,
        fmt: str | None = None,
        force: bool = False,
        options: WriteOptions | None = None,
    ) -> list[Path]:
        """Write ``image`` atomically; return the files written (main file first).

        Raises ``LossyConversionError`` before writing anything when the format cannot hold
        the image and ``options.lossy`` is off.
        """
        from .adapt import fit_image
        from .io import check_writable, staged_output

        path = Path(path)
        options = options or WriteOptions()
        spec = self.choose_writer(path, fmt).spec
        if options.set_values and not spec.settable:
            raise UsageError(
                f"{spec.format} output takes no --set ({', '.join(sorted(options.set_values))})",
                hint="--set is for formats with named metadata fields, such as DICOM",
            )
        stem_targets = [path] + [_companion_path(path, c) for c in spec.companions]
        check_writable(stem_targets, force=force)
        fitted, losses = fit_image(image, spec, lossy=options.lossy)
        if losses and not options.lossy:
            raise LossyConversionError(
                f"{path}: {spec.format} cannot hold {'; '.join(losses)}",
                hint="use --lossy to convert anyway and record the loss",
            )
        func = load_target(spec.load, f"writer {spec.format}")
        written: list[Path] = []
        with staged_output(path, force=force) as staged:
            try:
                func(fitted, staged, options)
                if options.sidecar and spec.sidecar:
                    from .sidecar import wants_sidecar, write_sidecars

                    if wants_sidecar(fitted):
                        suffix = matching_suffix(path.name, spec.extensions) or ""
                        stem = path.name[: len(path.name) - len(suffix)]
                        write_sidecars(fitted, staged.parent, stem)
            except AnyconvError:
                raise
            except Exception as exc:
                raise WriteError(f"{path}: cannot write {spec.format}: {_describe(exc)}") from exc
            written = [path.parent / p.name for p in sorted(staged.parent.iterdir())]
        written.sort(key=lambda p: p.name != path.name)
        image.losses[:] = fitted.losses
        image.notes[:] = fitted.notes
        return written

    def apply_transform(
        self, image: Image, name: str, options: dict[str, str] | None = None
    ) -> Image:
        """Run a transform by name on ``image``."""
        spec = self.transform_spec(name)
        func = load_target(spec.load, f"transform {name}")
        return func(image, dict(options or {}))

    def output_name(self, image: Image, template: str, index: int) -> str:
        """The file stem for one image of several (``anyconv_output_name`` hook)."""
        return self.hook.anyconv_output_name(image=image, template=template, index=index)


@dataclass
class _FolderMemo:
    """Reader choices of one folder, by evidence.

    The evidence is the suffixes some reader knows and the signatures the file's head holds;
    the rest of a name cannot change the choice.
    """

    suffixes: frozenset[str]
    choices: dict[tuple, Choice] = field(default_factory=dict)


_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def url_scheme(text: str) -> str | None:
    """``dicomweb+http`` for ``dicomweb+http://host/...``; ``None`` for a plain path."""
    match = _URL.match(text)
    # one letter before ':' is a Windows drive, not a scheme
    return match.group(1).lower() if match and len(match.group(1)) > 1 else None


def _require_regular(path: Path) -> None:
    """Refuse FIFOs, devices and sockets before opening them.

    A FIFO blocks the first read forever, and ``/dev/zero`` never ends.
    """
    if path.exists() and not path.is_file():
        raise ReadError(f"{path}: not a regular file")


def _check_geometry(img: Image, fmt: str) -> None:
    """What every reader must give, checked once for all: a usable affine, no empty axis.

    A NaN, infinite or singular voxel-to-world matrix has no world coordinates to keep; such
    files are refused as invalid rather than written on with invented geometry.
    """
    import numpy as np

    where = img.source or "input"
    if any(s <= 0 for s in img.shape):
        raise ReadError(f"{where}: invalid {fmt} image: an axis of size 0 (shape {img.shape})")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise ReadError(f"{where}: invalid {fmt} geometry: the affine is not finite")
    with np.errstate(all="ignore"):
        det = np.linalg.det(affine[:3, :3])
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if not np.isfinite(det) or abs(det) <= 1e-12 * max(float(np.prod(zooms)), 1e-300):
        raise ReadError(
            f"{where}: invalid {fmt} geometry: voxel axes are degenerate "
            f"(voxel sizes {', '.join(f'{z:g}' for z in zooms)})"
        )


def _with_plugin(spec: Any, plugin: str) -> Any:
    from dataclasses import replace

    return spec if spec.plugin else replace(spec, plugin=plugin)


def _companion_path(path: Path, suffix: str) -> Path:
    """``x.hdr`` with companion ``.img`` gives ``x.img``."""
    suffixes = suffixes_of(path.name)
    stem = path.name[: -len(suffixes[-1])] if suffixes else path.name
    return path.with_name(stem + suffix)


def _companions(path: Path, spec: ReaderSpec) -> list[Path]:
    out = []
    for suffix in spec.companions:
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        for variant in (suffix, suffix.upper()):
            cand = path.with_name(stem + variant)
            if cand.exists() and cand != path:
                out.append(cand)
    return out


def _is_header(path: Path, spec: ReaderSpec) -> bool:
    return not any(path.name.lower().endswith(c.lower()) for c in spec.companions)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
#: Device names Windows (and SMB shares) refuse as file names, with any extension.
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
)
#: Longest file stem we make from metadata; file systems stop at 255 bytes with the suffix.
MAX_STEM = 120


def sanitize(name: str) -> str:
    """A file-name-safe version of free text.

    No separators, spaces or control characters, never ``.``/``..``, no Windows device name
    (``CON`` becomes ``CON_``), at most ``MAX_STEM`` characters.
    """
    out = _SAFE.sub("_", name).strip("._-")[:MAX_STEM].rstrip("._-")
    head, dot, rest = out.partition(".")
    if head.upper() in _RESERVED:
        out = f"{head}_{dot}{rest}"
    return out


def default_output_name(image: Image, template: str, index: int) -> str:
    """Fill a ``--name`` template from the image's metadata.

    ``{auto}`` (the default) is ``{series_number}_{series_description}`` (plus ``_e{echo}``)
    when the image has them, else the source file's stem, else ``image{index}``. No patient
    identity is used unless the template asks for it.
    """
    meta = image.meta
    source = Path(image.source) if image.source else None
    stem = ""
    if source is not None:
        stem = source.name
        for s in suffixes_of(stem)[:1]:
            stem = stem[: -len(s)]
    echo = meta.bids.get("EchoNumber")
    fields: dict[str, Any] = {
        "series_number": meta.series_number if meta.series_number is not None else "",
        "series_description": meta.series_description or "",
        "protocol": meta.protocol_name or "",
        "modality": meta.modality or "",
        "echo": echo if echo is not None else "",
        "index": index + 1,
        "stem": stem,
        "patient_id": meta.patient.get("id", ""),
        "patient_name": meta.patient.get("name", ""),
    }
    if template == "{auto}":
        if meta.series_number is not None or meta.series_description:
            parts = [str(fields["series_number"]), fields["series_description"]]
            if echo is not None:
                parts.append(f"e{echo}")
            name = "_".join(sanitize(str(p)) for p in parts if str(p))
        else:
            name = stem
    else:
        try:
            name = template.format_map(fields)
        except (KeyError, ValueError, IndexError) as exc:
            raise UsageError(
                f"bad --name template {template!r}: {exc}",
                hint="placeholders: " + ", ".join("{" + k + "}" for k in fields),
            ) from exc
    name = sanitize(name)
    return name or f"image{index + 1}"
