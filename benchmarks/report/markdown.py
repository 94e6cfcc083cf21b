"""Writers for REPORT.md and each table's md / csv / tex file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .document import Document, Figure, Section, Table, Text
from .summary import to_markdown

TABLE_FORMATS = ("md", "csv", "tex", "html")
LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def _marked(table: Table, mark) -> pd.DataFrame:
    frame = table.frame.astype(object).where(table.frame.notna(), "").astype(str)
    for i, column in table.best:
        if column in frame.columns and i < len(frame) and frame.iat[i, frame.columns.get_loc(column)]:
            frame.iat[i, frame.columns.get_loc(column)] = mark(frame.iat[i, frame.columns.get_loc(column)])
    return frame


def table_markdown(table: Table) -> str:
    frame = _marked(table, lambda v: f"**{v}**")
    frame = frame.apply(lambda c: c.str.replace("|", r"\|", regex=False))
    return to_markdown(frame)


MATH = {"±": r"$\pm$", "·": r"$\cdot$", "×": r"$\times$", "½": r"$\frac{1}{2}$",
        "⌊": r"$\lfloor$", "⌋": r"$\rfloor$", "β": r"$\beta$", "σ": r"$\sigma$",
        "θ": r"$\theta$", "φ": r"$\varphi$", "‖": r"$\|$", "∇": r"$\nabla$", "≤": r"$\leq$",
        "≥": r"$\geq$", "−": "-", "→": r"$\to$", "≈": r"$\approx$", "–": "--", "—": "---"}


def latex_escape(text: str) -> str:
    """``text`` for pdflatex: its special characters escaped, the symbols the report uses as
    math, and ``code`` spans as \\texttt."""
    out = "".join(MATH.get(ch, LATEX_SPECIALS.get(ch, ch)) for ch in str(text))
    return re.sub(r"`([^`]*)`", r"\\texttt{\1}", out)


def table_latex(table: Table) -> str:
    """A booktabs tabular (pandas' Styler), the best cells in \\textbf, the caption included."""
    escaped = Table(table.name, table.title, table.frame.astype(object).where(
        table.frame.notna(), "").map(latex_escape), table.caption, table.best)
    frame = _marked(escaped, lambda v: rf"\textbf{{{v}}}")
    frame.columns = [latex_escape(c) for c in frame.columns]
    return frame.style.hide(axis="index").to_latex(
        hrules=True, caption=latex_escape(table.caption) if table.caption else None,
        label=f"tab:{table.name}", position="htbp")


def write_tables(doc: Document, folder: Path, formats: list[str]) -> list[Path]:
    """folder/tables/<name>.<fmt> for every table and each of md, csv, tex."""
    out = folder / "tables"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in doc.tables():
        for fmt in formats:
            path = out / f"{table.name}.{fmt}"
            if fmt == "md":
                path.write_text(f"{table.title}\n\n{table_markdown(table)}\n\n{table.caption}\n")
            elif fmt == "csv":
                table.frame.to_csv(path, index=False)
            elif fmt == "tex":
                path.write_text(table_latex(table))
            else:
                continue
            written.append(path)
    return written


def write_markdown(doc: Document, folder: Path) -> Path:
    """folder/REPORT.md: every section, its tables inline and its figures as links."""
    lines = [f"# {doc.title}", "", doc.intro, ""]
    contents = [f"- [{s.title}](#{_anchor(s.title)})" for s in doc.sections]
    lines += ["Contents:", "", *contents, ""]

    def emit(section: Section, level: int) -> None:
        lines.extend([f"{'#' * level} {section.title}", ""])
        for item in section.items:
            if isinstance(item, Table):
                lines.extend([f"**{item.title}**", "", table_markdown(item), "",
                              f"*{item.caption}*" if item.caption else "", ""])
            elif isinstance(item, Figure):
                image = item.files.get("png") or item.files.get("svg") or next(iter(item.files.values()))
                rel = Path(os.path.relpath(image, folder)).as_posix()
                lines.extend([f"![{item.title}]({rel})", "", f"*{item.caption}*", ""])
            elif isinstance(item, Text):
                lines.extend([item.text, ""])
        for sub in section.subsections:
            emit(sub, level + 1)

    for section in doc.sections:
        emit(section, 2)
    path = folder / "REPORT.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to '-', punctuation dropped."""
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return keep.replace(" ", "-")
