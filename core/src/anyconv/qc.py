"""The QC report of a batch: one static, self-contained HTML page, one row per output series.

Each row shows a labelled preview thumbnail (embedded as a base64 PNG, so the page needs no
server and no other file), the input, the outputs, a geometry summary, the warnings (losses
and the readers' notes: uneven spacing, gantry tilt, missing slices, lossy casts) and the
status. Rows are spooled to a temporary file as units finish, so memory does not grow with
the archive, then written in input order, and the page is renamed into place at the end.

A small inline script marks each ``<img>`` with ``data-decoded="1"`` once the page has loaded
and the browser could decode and draw it, and sets ``data-ready`` on ``<body>``: a headless
browser test reads both.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import Registry

THUMBNAIL_PANEL = 112

_CSS = """
body{font:13px/1.35 system-ui,sans-serif;margin:16px;color:#1d1d1f;background:#fafafa}
h1{font-size:18px;margin:0 0 4px} .summary{margin:0 0 12px;color:#444}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #ddd;padding:6px;
vertical-align:top;text-align:left} th{background:#eee;position:sticky;top:0}
td.thumb img{display:block;background:#18181c} code{font-size:12px;word-break:break-all}
ul{margin:0;padding-left:16px} td.status span{padding:1px 6px;border-radius:3px;color:#fff}
td.ok span{background:#2e7d32} td.failed span{background:#c62828}
td.skipped span{background:#6d6d6d}
tr.warned td.warnings{background:#fff6d6} tr.failed td{background:#fde8e8}
.muted{color:#777} .filter{margin:0 0 10px} .filter label{margin-right:12px}
table.only-warned tr.series:not(.warned):not(.failed){display:none}
table.only-failed tr.series:not(.failed){display:none}
"""

_SCRIPT = """
(function () {
  // Mark each image decoded: loaded, with a size, and drawn to a canvas (which forces the
  // decode) with an opaque pixel in its middle. A headless browser test reads the marks.
  function decoded(img) {
    if (!img.complete || img.naturalWidth === 0) { return false; }
    try {
      var c = document.createElement("canvas");
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      var ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      var px = ctx.getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
      return px[3] > 0;
    } catch (e) { return false; }
  }
  function check() {
    var imgs = Array.prototype.slice.call(document.images), ok = 0;
    imgs.forEach(function (img) {
      var good = decoded(img);
      img.dataset.decoded = good ? "1" : "0";
      ok += good ? 1 : 0;
    });
    document.body.dataset.images = String(imgs.length);
    document.body.dataset.imagesDecoded = String(ok);
    document.body.dataset.ready = ok === imgs.length ? "ok" : "broken";
  }
  document.querySelectorAll("input[name=show]").forEach(function (radio) {
    radio.addEventListener("change", function () {
      var table = document.getElementById("series");
      table.classList.toggle("only-warned", radio.value === "warned" && radio.checked);
      table.classList.toggle("only-failed", radio.value === "failed" && radio.checked);
    });
  });
  if (document.readyState === "complete") { check(); } else {
    window.addEventListener("load", check);
  }
})();
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def geometry_lines(geometry: dict[str, Any]) -> list[str]:
    """Short lines for the geometry column."""
    if not geometry:
        return []
    shape = "\u00d7".join(str(s) for s in geometry.get("shape", []))
    lines = [f"{shape} {geometry.get('dtype', '')}".strip()]
    zooms = geometry.get("zooms")
    if zooms:
        lines.append("voxel " + " \u00d7 ".join(f"{z:.4g}" for z in zooms) + " mm")
    if geometry.get("axcodes"):
        lines.append(f"stored {geometry['axcodes']}")
    tilt = float(geometry.get("obliquity_deg") or 0.0)
    if tilt > 1e-3:
        lines.append(f"oblique {tilt:.3g}\u00b0")
    if float(geometry.get("shear") or 0.0) > 1e-5:
        lines.append(f"sheared (|cos| {geometry['shear']:.3g})")
    return lines


class QCReport:
    """Collects batch results and writes the HTML page on ``close``.

    Parameters
    ----------
    path
        The HTML file to write (replaced atomically at the end).
    title
        Page heading.
    """

    def __init__(self, path: Path, title: str = "anyconv QC report") -> None:
        self.path = Path(path)
        self.title = title
        self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._index: list[tuple[str, int, int, int]] = []
        self.rows = 0
        self.images = 0
        self.warned = 0
        self.failed = 0

    # -- rows ------------------------------------------------------------------------------
    def add_record(
        self,
        record: dict[str, Any],
        *,
        thumbnails: Sequence[bytes | str | None] | None = None,
        registry: Registry | None = None,
        skipped: bool = False,
    ) -> None:
        """Add the rows of one batch unit (a journal / ``UnitResult`` record).

        ``thumbnails`` are PNG bytes or base64 text per series; missing ones come from the
        preview PNG beside the output, else from reading the output back with ``registry``.
        """
        key = str(record.get("key", record.get("source", "")))
        if record.get("status") != "ok" or not record.get("series"):
            series: list[dict[str, Any]] = [
                {"outputs": record.get("outputs", []), "warnings": record.get("warnings", [])}
            ]
        else:
            series = record["series"]
        for index, entry in enumerate(series):
            thumb = thumbnails[index] if thumbnails and index < len(thumbnails) else None
            entry = dict(entry)
            if record.get("status") == "ok" and thumb is None:
                thumb, problem = self._recover_thumbnail(entry, registry)
                if problem:
                    entry.setdefault("notes", []).append(problem)
            row = self._row(record, entry, index, len(series), thumb, skipped)
            data = row.encode("utf-8")
            offset = self._spool.seek(0, os.SEEK_END)
            self._spool.write(data)
            self._index.append((key, index, offset, len(data)))

    def _recover_thumbnail(
        self, entry: dict[str, Any], registry: Registry | None
    ) -> tuple[bytes | None, str | None]:
        """A thumbnail for a unit done by an earlier run: its preview PNG, else the output."""
        saved = entry.get("preview")
        if saved and Path(saved).is_file():
            return Path(saved).read_bytes(), None
        outputs = entry.get("outputs") or []
        if registry is None or not outputs:
            return None, None
        from . import preview
        from .errors import AnyconvError
        from .pipeline import geometry_summary

        try:
            image = registry.read(Path(outputs[0]))[0]
            if not entry.get("geometry"):
                entry["geometry"] = geometry_summary(image)
            return preview.preview_png(image, panel=THUMBNAIL_PANEL, text=False), None
        except (AnyconvError, ValueError, OSError) as exc:
            return None, f"no thumbnail: {exc}"

    def _row(
        self,
        record: dict[str, Any],
        entry: dict[str, Any],
        index: int,
        count: int,
        thumb: bytes | str | None,
        skipped: bool,
    ) -> str:
        status = str(record.get("status", "?"))
        failed = status != "ok"
        warnings = [*entry.get("warnings", []), *entry.get("notes", [])]
        if failed and record.get("error"):
            warnings.insert(0, str(record["error"]))
        cls = ["series", "failed" if failed else "ok"]
        if warnings and not failed:
            cls.append("warned")
        self.rows += 1
        self.failed += failed
        self.warned += bool(warnings) and not failed
        if thumb is not None:
            self.images += 1
            b64 = thumb if isinstance(thumb, str) else base64.b64encode(thumb).decode("ascii")
            name = Path(entry["outputs"][0]).name if entry.get("outputs") else record["key"]
            cell = f'<img src="data:image/png;base64,{b64}" alt="preview of {_esc(name)}">'
        else:
            cell = '<span class="muted">no image</span>'
        source = _esc(record.get("source", ""))
        shown = _esc(record.get("key") or record.get("source", ""))
        which = f'<div class="muted">series {index + 1} of {count}</div>' if count > 1 else ""
        outputs = "".join(
            f'<li><a href="{_esc(self._href(p))}" title="{_esc(p)}">'
            f"<code>{_esc(self._href(p))}</code></a></li>"
            for p in entry.get("outputs", [])
        )
        geometry = "<br>".join(_esc(line) for line in geometry_lines(entry.get("geometry") or {}))
        warn = "".join(f"<li>{_esc(w)}</li>" for w in warnings)
        label = "skipped" if skipped and not failed else status
        seconds = record.get("seconds")
        timing = f'<div class="muted">{seconds:.2f} s</div>' if seconds and not skipped else ""
        if skipped and not failed:
            timing = '<div class="muted">done by an earlier run</div>'
        return (
            f'<tr class="{" ".join(cls)}" data-key="{_esc(record.get("key", ""))}" '
            f'data-series="{index}" data-status="{_esc(status)}">'
            f'<td class="thumb">{cell}</td>'
            f'<td class="input"><code title="{source}">{shown}</code>{which}</td>'
            f'<td class="outputs"><ul>{outputs}</ul></td>'
            f'<td class="geometry">{geometry}</td>'
            f'<td class="warnings"><ul>{warn}</ul></td>'
            f'<td class="status {_esc(label)}"><span>{_esc(label)}</span>{timing}</td>'
            "</tr>\n"
        )

    def _href(self, target: str) -> str:
        try:
            rel = os.path.relpath(Path(target).resolve(), self.path.resolve().parent)
        except ValueError:  # another drive on Windows
            return Path(target).resolve().as_uri()
        return Path(rel).as_posix()

    # -- page ------------------------------------------------------------------------------
    def close(self, summary: dict[str, Any] | None = None) -> Path:
        """Write the page (rows in input order) and rename it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        summary = summary or {}
        facts = [
            f"{self.rows} series",
            f"{self.warned} with warnings",
            f"{self.failed} failed",
        ]
        if summary:
            facts.append(
                f"{summary.get('units', 0)} inputs: {summary.get('converted', 0)} converted, "
                f"{summary.get('skipped', 0)} done earlier, {summary.get('failed', 0)} failed "
                f"in {float(summary.get('seconds', 0.0)):.1f} s"
            )
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        head = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_esc(self.title)}</title><style>{_CSS}</style></head>\n<body>\n"
            f"<h1>{_esc(self.title)}</h1>\n"
            f'<p class="summary" id="summary" data-rows="{self.rows}">'
            f"{_esc('; '.join(facts))}. Written {_esc(stamp)}. Previews: world-aligned mid-"
            "planes (axial, coronal, sagittal), patient left on screen left.</p>\n"
            '<p class="filter">Show: <label><input type="radio" name="show" value="all" '
            'checked> all</label><label><input type="radio" name="show" value="warned"> '
            'warnings and failures</label><label><input type="radio" name="show" '
            'value="failed"> failures</label></p>\n'
            '<table id="series"><thead><tr><th>preview</th><th>input</th><th>outputs</th>'
            "<th>geometry</th><th>warnings</th><th>status</th></tr></thead>\n<tbody>\n"
        )
        tail = f"</tbody></table>\n<script>{_SCRIPT}</script>\n</body></html>\n"
        with tmp.open("wb") as out:
            out.write(head.encode("utf-8"))
            for _, _, offset, length in sorted(self._index):
                self._spool.seek(offset)
                out.write(self._spool.read(length))
            out.write(tail.encode("utf-8"))
        self._spool.close()
        tmp.replace(self.path)
        return self.path
