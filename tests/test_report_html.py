"""report.html: one self-contained page (embedded figures, escaped sortable tables), checked as
text and, when Chromium is installed, in a real headless browser.

The browser checks copy the page, add a small probe script (this test's own code, not the
product's) that runs on ``load``, measures every image and table, clicks a header and writes what
it saw as JSON into the DOM; ``dump_dom`` returns that DOM. Without a browser they skip, unless
``DPS_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import html as htmllib
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure as MplFigure

from benchmarks.report.browser import dump_dom, find_browser, screenshot
from benchmarks.report.document import Document, Figure, Section, Table, Text
from benchmarks.report.html import write_html

N_IMAGES = 3  # two png figures and one svg-only figure; the fourth figure has no file


def _plot(path: Path, fmt: str, k: int) -> Path:
    fig = MplFigure(figsize=(3, 2), dpi=50)
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0, k, k * k])
    ax.set_title(f"plot {k}")
    fig.savefig(path, format=fmt)
    return path


def _document(tmp: Path) -> Document:
    scores = Table(
        name="scores", title="Scores <by> method",
        frame=pd.DataFrame({
            "method": ["<b>&", "BADS", "uniform", "SPL"],
            "score": ["9.5", "10.0", "", "0.8123 ± 0.0100"],
            "speed": ["1.5x", "10x", "2x", "n/a"],
        }),
        caption="Mean ± std over 5 seeds; a & b < c.", best={(1, "score"), (0, "method")},
    )
    memory = Table(
        name="memory", title="Peak memory",
        frame=pd.DataFrame({"MiB": [12.5, 3.0, float("nan")], "note": ["x < y", "ok", "—"]},
                           index=pd.Index(["bads", "wbads", "base"], name="method")),
        caption="Peak resident memory of a training step.", best={(1, "MiB")},
    )
    figs = [
        Figure("curve-a", "Curve A", {"png": _plot(tmp / "a.png", "png", 1), "pdf": tmp / "a.pdf"},
               caption="First curve."),
        Figure("curve-b", "Curve B & more", {"png": _plot(tmp / "b.png", "png", 2)}, caption="Second."),
        Figure("vector", "Vector only", {"svg": _plot(tmp / "c.svg", "svg", 3)}, caption="An svg."),
        Figure("absent", "Never drawn", {}, caption="No file at all."),
    ]
    return Document(
        title="Report <test> & co", intro="Intro with `code` and <angle> brackets.",
        sections=[
            Section("Results", items=[Text("Some `text` & more."), scores, figs[0]],
                    subsections=[Section("Details <sub>", items=[memory, figs[1]])]),
            Section("Figures", items=[figs[2], figs[3]]),
        ],
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Document, Path]:
    tmp = tmp_path_factory.mktemp("report_html")
    doc = _document(tmp)
    page = write_html(doc, tmp / "out")
    return doc, page


def test_page_is_self_contained(report):
    doc, page = report
    assert page.name == "report.html" and page.is_file()
    text = page.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", text, re.I)
    assert "<link" not in text.lower()
    srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', text)
    assert len(srcs) == N_IMAGES
    assert all(s.startswith("data:image/") and ";base64," in s for s in srcs)
    assert sum(s.startswith("data:image/png;base64,") for s in srcs) == 2
    assert sum(s.startswith("data:image/svg+xml;base64,") for s in srcs) == 1
    assert text.count('class="report-figure"') == N_IMAGES
    for title in ("Curve A", "Curve B &amp; more", "Vector only"):
        assert f'alt="{title}"' in text
    assert "Figure not available" in text  # the figure with no file: a note, not a broken <img>
    assert text.count('class="report-table"') == len(doc.tables())
    # a table of contents linking to every section
    for anchor in re.findall(r'<section id="([^"]+)"', text):
        assert f'href="#{anchor}"' in text
    assert len(re.findall(r"<section ", text)) == 3
    # captions
    for item in doc.tables() + doc.figures():
        assert htmllib.escape(item.caption) in text


def test_escaping_and_best_cells(report):
    _, page = report
    text = page.read_text(encoding="utf-8")
    assert "<b>&" not in text and "<angle>" not in text and "<sub>" not in text and "<by>" not in text
    assert "<td><strong>&lt;b&gt;&amp;</strong></td>" in text
    assert "<td><strong>10.0</strong></td>" in text
    assert "<td><strong>3.0</strong></td>" in text
    assert "<td>x &lt; y</td>" in text
    assert "<title>Report &lt;test&gt; &amp; co</title>" in text
    assert "Intro with <code>code</code> and &lt;angle&gt; brackets." in text
    assert '<th scope="row">wbads</th>' in text  # a named index is shown
    assert "<td></td>" in text  # NaN is blank


# ---- in a real browser -----------------------------------------------------------------------

_PROBE = """
<script>
window.addEventListener("load", function () {
  var col = function (table, i) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[i].textContent; });
  };
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.report-table"));
  var out = {
    images: Array.prototype.map.call(document.images, function (img) {
      return {alt: img.alt, w: img.naturalWidth, h: img.naturalHeight, complete: img.complete};
    }),
    tables: tables.map(function (t) {
      return {rows: t.tBodies[0].rows.length, cols: t.tHead.rows[0].cells.length,
              strong: t.querySelectorAll("td strong").length};
    }),
  };
  var t = tables[0], th = t.tHead.rows[0].cells[1];
  out.before = col(t, 1);
  th.click(); out.asc = col(t, 1); out.ascSort = th.getAttribute("aria-sort");
  th.click(); out.desc = col(t, 1); out.descSort = th.getAttribute("aria-sort");
  var speed = t.tHead.rows[0].cells[2];
  speed.click(); out.speedAsc = col(t, 2);
  var pre = document.createElement("pre");
  pre.id = "dps-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        reason = "no Chromium found (set DPS_BROWSER or `apt-get install chromium`)"
        if os.environ.get("DPS_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"DPS_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def probed(report, browser) -> dict:
    _, page = report
    probe = page.with_name("probe.html")
    text = page.read_text(encoding="utf-8")
    assert text.count("</body>") == 1
    probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = dump_dom(probe)
    found = re.search(r'<pre id="dps-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; DOM starts:\n{dom[:2000]}"
    return json.loads(htmllib.unescape(found.group(1)))


def test_browser_renders_tables_and_figures(report, probed):
    doc, _ = report
    assert len(probed["images"]) == N_IMAGES
    for img in probed["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
    assert {i["alt"] for i in probed["images"]} == {"Curve A", "Curve B & more", "Vector only"}
    tables = doc.tables()
    assert [t["rows"] for t in probed["tables"]] == [len(t.frame) for t in tables]
    assert [t["cols"] for t in probed["tables"]] == [3, 3]  # the second shows its named index
    assert [t["strong"] for t in probed["tables"]] == [len(t.best) for t in tables]


def test_browser_sorts_numerically(probed):
    assert probed["before"] == ["9.5", "10.0", "", "0.8123 ± 0.0100"]
    assert probed["asc"] == ["0.8123 ± 0.0100", "9.5", "10.0", ""]  # blanks last
    assert probed["ascSort"] == "ascending"
    assert probed["desc"] == ["10.0", "9.5", "0.8123 ± 0.0100", ""]  # blanks still last
    assert probed["descSort"] == "descending"
    assert probed["speedAsc"] == ["1.5x", "2x", "10x", "n/a"]


def test_screenshot_writes_png(report, browser, tmp_path):
    _, page = report
    png = screenshot(page, tmp_path / "shot.png", width=800, height=600)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_missing_browser_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("DPS_BROWSER", str(tmp_path / "no-such-browser"))
    assert find_browser() is None
    page = tmp_path / "p.html"
    page.write_text("<!DOCTYPE html><p>x</p>", encoding="utf-8")
    with pytest.raises(RuntimeError, match="apt-get install chromium"):
        screenshot(page, tmp_path / "p.png")
