"""The report as a document: sections of tables, figures and text, written out by the writers
(``markdown.py``: REPORT.md and the per-table md/csv/tex files; ``html.py``: report.html).

Builders (``build.py``) fill a :class:`Document`; nothing here computes a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Table:
    """One table. ``name`` is the file stem of its md/csv/tex files (unique in a document);
    ``frame`` holds display values (numbers or text); ``best`` marks cells as the best of their
    column ({(row position, column name)}: bold in every format); ``caption`` says what the
    numbers are, and on what (device, threads, torch)."""

    name: str
    title: str
    frame: pd.DataFrame
    caption: str = ""
    best: set[tuple[int, str]] = field(default_factory=set)


@dataclass
class Figure:
    """One figure, saved in one or more formats: ``files`` maps a format (png, pdf, svg) to its
    path. The HTML page embeds the png (or svg); REPORT.md links the png."""

    name: str
    title: str
    files: dict[str, Path]
    caption: str = ""


@dataclass
class Text:
    """A paragraph of plain text (markdown-style ``code`` spans allowed)."""

    text: str


Item = Table | Figure | Text


@dataclass
class Section:
    title: str
    items: list[Item] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)


@dataclass
class Document:
    title: str
    intro: str = ""
    sections: list[Section] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [i for s in _walk(self.sections) for i in s.items if isinstance(i, Table)]

    def figures(self) -> list[Figure]:
        return [i for s in _walk(self.sections) for i in s.items if isinstance(i, Figure)]


def _walk(sections: list[Section]):
    for s in sections:
        yield s
        yield from _walk(s.subsections)
