"""What a data-to-text source returns: entries of RDF-style triples with their reference texts.

A data-to-text source (``webnlg``, the generated ``triples`` corpus) is not a labelled array like
:class:`benchmarks.data.base.SourceData`: each entry is a set of (subject, predicate, object)
triples, the category (domain) it comes from, and one or more human (or templated) texts that
verbalise it. The ``efficient`` scenario turns entries into Dt / Dm / test and tokenises them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

Triple = tuple[str, str, str]


@dataclass(frozen=True)
class Entry:
    """One data-to-text entry.

    triples: the (subject, predicate, object) triples, as the corpus writes them (WebNLG's
    ``<modifiedtripleset>``: underscores in entity names, quotes around literals kept).
    texts: the reference verbalisations (WebNLG's ``<lex>/<text>``); at least one.
    category: the DBpedia category (WebNLG) or domain (generated corpus).
    split: ``train``, ``dev`` or ``test``, as the corpus assigns it.
    eid: the entry's id within its file (WebNLG's ``eid``), for tracing back.
    """

    triples: tuple[Triple, ...]
    texts: tuple[str, ...]
    category: str
    split: str
    eid: str = ""


@dataclass(frozen=True)
class TextCorpus:
    """All entries of a data-to-text source; scenarios partition them (by split and category)."""

    name: str
    entries: tuple[Entry, ...]
    root: Path | None = None
    version: str = ""
    """What was read, e.g. ``webnlg-2017-v2.0`` or ``webnlg-2020-v3.0`` (recorded with runs)."""
    order: str = field(default="official", repr=False)

    def categories(self, split: str | None = None) -> Counter:
        """Entries per category (of one split, or of all)."""
        return Counter(e.category for e in self.entries if split is None or e.split == split)

    def __len__(self) -> int:
        return len(self.entries)
