"""Write a :class:`~benchmarks.report.document.Document` as ONE self-contained HTML page.

``report.html`` opens from disk with no network: figures are embedded as base64 ``data:`` URIs
(png preferred, else svg; a figure with no file gets a visible note), tables are plain HTML
tables (sortable by clicking a header: a small inline script, numeric-aware), and the style
sheet is inline. Best cells are bold (``<strong>``), so nothing depends on colour, on screen or
in print. Only the standard library is used.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from benchmarks.report.document import Document, Figure, Section, Table, Text

__all__ = ["render_html", "write_html"]

#: Formats a figure may be embedded from, in order of preference, with their MIME types.
_IMAGE_TYPES: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       line-height: 1.45; margin: 0 auto; max-width: 1200px; padding: 1.5rem; color: #111; background: #fff; }
h1 { font-size: 1.8rem; margin-top: 0; }
h2 { font-size: 1.45rem; border-bottom: 1px solid #999; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.2rem; margin-top: 1.8rem; }
h4, h5, h6 { font-size: 1.05rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em;
       background: #f2f2f2; padding: 0 .2em; border-radius: 3px; }
nav.toc { border: 1px solid #bbb; padding: .6rem 1rem; margin: 1rem 0 1.5rem; }
nav.toc ul { margin: .2rem 0; padding-left: 1.3rem; }
.note { font-size: .92rem; color: #333; }
.block { margin: 1.2rem 0 1.8rem; break-inside: avoid; page-break-inside: avoid; }
.block-title { font-weight: 600; margin: .3rem 0; }
.table-wrap { overflow-x: auto; }
table.report-table { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
table.report-table th, table.report-table td { border: 1px solid #999; padding: .25rem .55rem;
       text-align: left; vertical-align: top; }
table.report-table thead th { background: #eee; cursor: pointer; user-select: none; white-space: nowrap; }
table.report-table thead th:focus { outline: 2px solid #333; outline-offset: -2px; }
table.report-table .sort-mark { display: inline-block; min-width: 1em; margin-left: .25em; }
table.report-table tbody th { font-weight: normal; }  /* bold means best only */
table.report-table strong { font-weight: 700; }
.caption { font-size: .9rem; color: #222; margin: .35rem 0 0; }
figure.block { margin-left: 0; margin-right: 0; }
img.report-figure { display: block; max-width: 100%; height: auto; border: 1px solid #ccc; }
.missing-figure { border: 2px dashed #555; padding: .8rem; font-style: italic; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav.toc { page-break-after: always; }
  .table-wrap { overflow: visible; }
  table.report-table thead th { background: none; cursor: auto; }
  table.report-table .sort-mark { display: none; }
  code { background: none; }
  a { color: inherit; text-decoration: none; }
  h2, h3, h4 { page-break-after: avoid; break-after: avoid; }
}
"""

# Sorting: a click (or Enter/Space) on a header sorts the body rows by that column; a second
# click reverses. Cells whose text starts with a number ("0.8123 ± 0.0100", "1.5x", "-3e-2",
# "12%") sort by that number, before text cells; blank cells ("", "-", "—", "n/a") stay last in
# both directions; ties keep their previous order.
_JS = r"""
(function () {
  "use strict";
  var NUM = /^[\s(]*([-+\u2212]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)/;
  var BLANK = /^\s*(?:|-|\u2013|\u2014|n\/?a|nan|none)\s*$/i;
  function key(text) {
    if (BLANK.test(text)) { return {kind: 2, num: 0, text: ""}; }
    var m = NUM.exec(text.replace(/(\d),(?=\d{3}\b)/g, "$1"));
    if (m) {
      var v = parseFloat(m[1].replace("\u2212", "-"));
      if (!isNaN(v)) { return {kind: 0, num: v, text: text}; }
    }
    return {kind: 1, num: 0, text: text.trim().toLowerCase()};
  }
  function compare(a, b) {
    if (a.kind !== b.kind) { return a.kind - b.kind; }
    if (a.kind === 0) { return a.num - b.num; }
    return a.text < b.text ? -1 : (a.text > b.text ? 1 : 0);
  }
  function sortBy(table, th) {
    var col = th.cellIndex;
    var asc = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    for (var i = 0; i < heads.length; i++) {
      heads[i].removeAttribute("aria-sort");
      var mark = heads[i].querySelector(".sort-mark");
      if (mark) { mark.textContent = ""; }
    }
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var own = th.querySelector(".sort-mark");
    if (own) { own.textContent = asc ? "\u25B2" : "\u25BC"; }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, pos) {
      var cell = row.cells[col];
      return {row: row, pos: pos, key: key(cell ? cell.textContent : "")};
    });
    rows.sort(function (x, y) {
      if (x.key.kind === 2 || y.key.kind === 2) {
        return (x.key.kind === 2) - (y.key.kind === 2) || x.pos - y.pos;
      }
      var c = compare(x.key, y.key);
      return (asc ? c : -c) || x.pos - y.pos;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }
  function init() {
    var tables = document.querySelectorAll("table.report-table");
    Array.prototype.forEach.call(tables, function (table) {
      if (!table.tHead || !table.tBodies.length) { return; }
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
        th.tabIndex = 0;
        th.title = "Sort by this column";
        th.addEventListener("click", function () { sortBy(table, th); });
        th.addEventListener("keydown", function (ev) {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(table, th); }
        });
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
"""


def write_html(doc: Document, path: Path) -> Path:
    """Write ``doc`` as one self-contained page and return the file written.

    ``path`` is either the ``.html`` file to write or a directory, in which case the page is
    ``path / "report.html"``. Parent directories are created. The page needs no network: figures
    are embedded as base64 ``data:`` URIs, and style and script are inline.
    """
    path = Path(path)
    out = path if path.suffix.lower() in {".html", ".htm"} else path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(doc), encoding="utf-8")
    return out


def render_html(doc: Document) -> str:
    """The page for ``doc`` as a string (what :func:`write_html` writes)."""
    anchors = _Anchors()
    ids = {id(s): anchors.new(s.title, "section") for s in _walk(doc.sections)}
    has_best = any(t.best for t in doc.tables())
    has_tables = bool(doc.tables())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(doc.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f'<h1 id="top">{_esc(doc.title)}</h1>',
    ]
    parts += _paragraphs(doc.intro)
    notes = []
    if has_best:
        notes.append("Bold cells are the best of their column.")
    if has_tables:
        notes.append("Click a column header to sort a table by it (click again to reverse).")
    if notes:
        parts.append(f'<p class="note">{_esc(" ".join(notes))}</p>')
    if doc.sections:
        parts.append('<nav class="toc" aria-label="Contents"><strong>Contents</strong>')
        parts += _toc(doc.sections, ids)
        parts.append("</nav>")
    for section in doc.sections:
        parts += _section(section, ids, anchors, level=2)
    parts += ["</main>", f"<script>{_JS}</script>", "</body>", "</html>", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------


class _Anchors:
    """Unique, readable ``id`` values for a page."""

    def __init__(self) -> None:
        self._used: set[str] = {"top"}

    def new(self, text: str, prefix: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or prefix
        base = f"{prefix}-{slug}"
        anchor, n = base, 2
        while anchor in self._used:
            anchor, n = f"{base}-{n}", n + 1
        self._used.add(anchor)
        return anchor


def _walk(sections: list[Section]):
    for s in sections:
        yield s
        yield from _walk(s.subsections)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _inline(text: str) -> str:
    """Escape ``text`` and turn markdown-style ``code`` spans into ``<code>``."""
    text = str(text)
    if text.count("`") % 2:  # an unmatched backtick: show the text as it is
        return _esc(text)
    pieces = text.split("`")
    return "".join(f"<code>{_esc(p)}</code>" if i % 2 and p else _esc(p) for i, p in enumerate(pieces))


def _paragraphs(text: str) -> list[str]:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", str(text or "")) if b.strip()]
    return [f"<p>{_inline(b)}</p>" for b in blocks]


def _toc(sections: list[Section], ids: dict[int, str]) -> list[str]:
    parts = ["<ul>"]
    for s in sections:
        parts.append(f'<li><a href="#{ids[id(s)]}">{_inline(s.title)}</a>')
        if s.subsections:
            parts += _toc(s.subsections, ids)
        parts.append("</li>")
    parts.append("</ul>")
    return parts


def _section(section: Section, ids: dict[int, str], anchors: _Anchors, level: int) -> list[str]:
    h = min(level, 6)
    parts = [f'<section id="{ids[id(section)]}">', f"<h{h}>{_inline(section.title)}</h{h}>"]
    for item in section.items:
        if isinstance(item, Table):
            parts += _table(item, anchors)
        elif isinstance(item, Figure):
            parts += _figure(item, anchors)
        elif isinstance(item, Text):
            parts += _paragraphs(item.text)
        else:  # pragma: no cover - the Item union is closed
            raise TypeError(f"unknown report item {type(item).__name__}")
    for sub in section.subsections:
        parts += _section(sub, ids, anchors, level + 1)
    parts.append("</section>")
    return parts


def _cell_text(value: object) -> str:
    """The display text of one table value: missing values (None, NaN, NA, NaT) are blank."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    text = str(value)
    return "" if text in {"nan", "NaN", "<NA>", "NaT", "None"} else text


def _has_default_index(frame) -> bool:
    index = frame.index
    return index.name is None and list(index) == list(range(len(frame)))


def _table(table: Table, anchors: _Anchors) -> list[str]:
    frame = table.frame
    show_index = not _has_default_index(frame)
    columns = list(frame.columns)
    heads = ([_cell_text(frame.index.name or "")] if show_index else []) + [_cell_text(c) for c in columns]
    parts = [
        f'<div class="block" id="{anchors.new(table.name, "table")}">',
        f'<p class="block-title">{_inline(table.title)}</p>' if table.title else "",
        '<div class="table-wrap">',
        '<table class="report-table">',
        "<thead><tr>",
        "".join(f'<th scope="col">{_esc(h)}<span class="sort-mark" aria-hidden="true"></span></th>'
                for h in heads),
        "</tr></thead>",
        "<tbody>",
    ]
    rows = zip(frame.index, frame.itertuples(index=False, name=None), strict=True)
    for pos, (label, row) in enumerate(rows):
        cells = [f'<th scope="row">{_esc(_cell_text(label))}</th>'] if show_index else []
        for col, value in zip(columns, row, strict=True):
            text = _esc(_cell_text(value))
            if (pos, col) in table.best and text:
                text = f"<strong>{text}</strong>"
            cells.append(f"<td>{text}</td>")
        parts.append(f"<tr>{''.join(cells)}</tr>")
    parts += ["</tbody>", "</table>", "</div>"]
    if table.caption:
        parts.append(f'<p class="caption">{_inline(table.caption)}</p>')
    parts.append("</div>")
    return [p for p in parts if p]


def _figure_source(figure: Figure) -> tuple[str, str | None]:
    """``(data URI, None)`` for the preferred existing file of ``figure``, else ``("", note)``."""
    files = {str(k).lower().lstrip("."): Path(v) for k, v in (figure.files or {}).items()}
    missing = []
    for fmt, mime in _IMAGE_TYPES.items():
        file = files.get(fmt)
        if file is None:
            continue
        if not file.is_file():
            missing.append(file.name)
            continue
        data = base64.b64encode(file.read_bytes()).decode("ascii")
        return f"data:{mime};base64,{data}", None
    if missing:
        return "", f"Figure not available: file(s) missing ({', '.join(missing)})."
    others = sorted(set(files) - set(_IMAGE_TYPES))
    if others:
        return "", f"Figure not embedded: only {', '.join(others)} exists (no png or svg)."
    return "", "Figure not available: no image file was produced."


def _figure(figure: Figure, anchors: _Anchors) -> list[str]:
    src, note = _figure_source(figure)
    parts = [f'<figure class="block" id="{anchors.new(figure.name, "figure")}">']
    if figure.title:
        parts.append(f'<p class="block-title">{_inline(figure.title)}</p>')
    if note is None:
        parts.append(f'<img class="report-figure" alt="{_esc(figure.title or figure.name)}" src="{src}">')
    else:
        parts.append(f'<p class="missing-figure" role="note">{_esc(note)}</p>')
    if figure.caption:
        parts.append(f'<figcaption class="caption">{_inline(figure.caption)}</figcaption>')
    parts.append("</figure>")
    return parts
