"""WebNLG: RDF triple sets with human verbalisations (data-to-text), read from the official XML.

Format (every release): ``<benchmark><entries><entry category="Astronaut" eid="Id1" size="2">``
holding ``<modifiedtripleset>`` with one ``<mtriple>`` per triple (``Alan_Bean | birthDate |
"1932-03-15"``: subject, predicate and object separated by ``" | "``) and one or more ``<lex>``
reference texts. The text of a ``<lex>`` is its ``<text>`` child in the enriched 2017 corpus
(release 2.0 of Castro Ferreira et al. 2018), and the ``<lex>`` element's own text in the 2017
challenge release and in the 2020 release (v3.0). Everything else (``originaltripleset``,
``sortedtripleset``, ``template``, ``tree``, ``references``, ``entitymap``, ``dbpedialinks``,
``links``, the attributes ``size``, ``shape``, ``comment``, ...) is ignored. The enriched test
split writes its modified triples as ``<otriple>`` inside ``<modifiedtripleset>``; both tags are
read there. A ``<lex>`` with empty text is skipped (dev has 6); an entry left with no text at all
is kept out of the corpus (dev has 2 such entries, of 872): pass a list as ``skipped`` to get
their ``split/file#eid`` names; they are also logged (``logging``, level INFO).

Layouts, all below the data directory ``DIR`` (``--data-dir DIR`` / ``$DPS_DATA_DIR``):

- ``DIR/webnlg/webnlg-en-v2.0.tar.gz``: the enriched 2017 corpus v2.0 (English) as kept in
  ``../shared/data`` (MD5 ``2b75cace61758df811ada435ad9a6723``, 2,621,384 bytes): the folder
  ``data/v2.0/en`` of github.com/ThiagoCF05/webnlg at commit 711a8ca3, packed as
  ``webnlg-en-v2.0/{train,dev,test}/<k>triples/<Category>.xml``. The repository publishes the
  files, not this tarball: the MD5 is that of this packing. Read member by member from the
  archive (nothing is extracted) after an MD5 check of the whole file; another packing of the
  same files fails that check, so extract it as the folder below instead.
- ``DIR/webnlg/webnlg-en-v2.0/``: the same files extracted (what :func:`download_webnlg` writes).
- ``DIR/webnlg/release_v3.0/en/``: the WebNLG 2020 release v3.0 (gitlab.com/shimorina/webnlg-dataset):
  ``{train,dev}/<k>triples/<Category>.xml`` and the single test file
  ``test/rdf-to-text-generation-test-data-with-refs-en.xml`` (the other files of ``test/``:
  ``*-without-refs-*`` and the semantic-parsing set, are not read). Its entries carry their
  category in the ``category`` attribute, as everywhere.
- ``DIR`` itself may also be the ``webnlg`` folder, one of the folders above, or the tarball.

The split comes from the folder name (``train``, ``dev``, ``test``), the category from the
``category`` attribute. Entries come in a fixed order: by split (train, dev, test), then file
(``<k>triples`` by k, then file name), then document order.

The corpus's ``version`` is ``webnlg-2017-v2.0`` when the XML files read are byte-identical to the
published v2.0 files (an MD5 over every file's path and MD5, :data:`V2_CONTENT_MD5`; a tarball
that passed its MD5 check always is), ``webnlg-2017-unverified`` for other files of the 2017
layout (e.g. the original challenge release), ``webnlg-2020-v3.0`` for the 2020 layout (no
published checksum to verify against). Every problem with the files is a :class:`DataError` naming
the file, what is wrong and how to fix it; XML is parsed with ``defusedxml`` so that entity
declarations (billion laughs, external entities) are refused, never expanded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ..errors import DataError
from .idx import md5sum
from .text import Entry, TextCorpus, Triple

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
TARBALL = "webnlg-en-v2.0.tar.gz"
TARBALL_MD5 = "2b75cace61758df811ada435ad9a6723"
V2_FOLDER = "webnlg-en-v2.0"
V2020_FOLDER = ("release_v3.0", "en")
TEST_2020 = "rdf-to-text-generation-test-data-with-refs-en.xml"
MAX_XML_BYTES = 64 << 20  # the largest real file has 1.5 MB; a bigger one is not WebNLG
V2_URL = "https://github.com/ThiagoCF05/webnlg/tree/master/data/v2.0/en"
V2020_URL = "https://gitlab.com/shimorina/webnlg-dataset (release_v3.0/en)"

_SIZE_DIR = re.compile(r"([1-9][0-9]?)triples")


# ---------------------------------------------------------------------------- one XML file

def _parse(data: bytes, origin: str) -> Element:
    """The root element of ``data``; DataError for anything that is not safe, well-formed XML."""
    try:
        return fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise DataError(f"webnlg: {origin} declares XML entities or external references ({e!r}); "
                        "WebNLG files never do, so it was refused unread (a hostile or corrupt "
                        "file). Use the published corpus.") from None
    except ParseError as e:
        raise DataError(f"webnlg: {origin} is not well-formed XML ({e}); the file is corrupt or "
                        "truncated: download or copy the corpus again.") from None
    except (ValueError, LookupError, UnicodeError, RecursionError) as e:
        raise DataError(f"webnlg: {origin} cannot be parsed as XML ({type(e).__name__}: {e}); "
                        "download or copy the corpus again.") from None


def _triple(element: Element, origin: str, eid: str) -> Triple:
    parts = [p.strip() for p in (element.text or "").split(" | ")]
    if len(parts) != 3 or not all(parts):
        shown = (element.text or "")[:120]
        raise DataError(f"webnlg: {origin}, entry {eid!r}: the triple {shown!r} is not "
                        "'subject | predicate | object' (three non-empty parts separated by "
                        "' | '); the file is corrupt or not WebNLG: download it again.")
    return parts[0], parts[1], parts[2]


def _lex_text(lex: Element) -> str:
    """A ``<lex>``'s reference: its ``<text>`` child (enriched 2017), else its own text (2020)."""
    child = lex.find("text")
    if child is not None:
        return "".join(child.itertext()).strip()
    return (lex.text or "").strip()


def read_webnlg_xml(data: bytes, split: str, origin: str,
                    skipped: list[str] | None = None) -> list[Entry]:
    """The entries of one WebNLG XML file (its bytes), in document order, with ``split`` set.

    ``origin`` names the file in messages (a path, or ``archive:member``). Entries without any
    non-empty text are left out; their ``origin#eid`` is appended to ``skipped`` when given.
    Raises DataError for unsafe or malformed XML, a root that is not ``<benchmark>`` with
    ``<entries>``, an entry without ``category`` or ``<modifiedtripleset>`` triples, or a
    triple that is not three non-empty ``" | "``-separated parts.
    """
    root = _parse(data, origin)
    if root.tag != "benchmark" or root.find("entries") is None:
        raise DataError(f"webnlg: {origin} is XML but not a WebNLG file (root <{root.tag}>, "
                        "expected <benchmark><entries>...); check the path of the corpus.")
    out = []
    for entries in root.findall("entries"):
        for entry in entries.findall("entry"):
            eid = entry.get("eid", "")
            category = (entry.get("category") or "").strip()
            if not category:
                raise DataError(f"webnlg: {origin}, entry {eid!r} has no category attribute; the "
                                "file is corrupt or not WebNLG: download it again.")
            triples = tuple(_triple(t, origin, eid)
                            for mts in entry.findall("modifiedtripleset")
                            for t in mts if t.tag in ("mtriple", "otriple"))
            if not triples:
                raise DataError(f"webnlg: {origin}, entry {eid!r} has no <modifiedtripleset> "
                                "triples; the file is corrupt or not WebNLG: download it again.")
            texts = tuple(t for t in map(_lex_text, entry.findall("lex")) if t)
            if not texts:
                if skipped is not None:
                    skipped.append(f"{origin}#{eid}")
                continue
            out.append(Entry(triples=triples, texts=texts, category=category, split=split,
                             eid=eid))
    return out


# ---------------------------------------------------------------------------- files of a corpus

def classify(relpath: str) -> tuple[int, int, str] | None:
    """Sort key (split rank, k, file name) of a corpus file path relative to the corpus folder
    (``train/3triples/Food.xml``, ``test/rdf-to-text-generation-test-data-with-refs-en.xml``),
    or None for a path that is not one of the corpus's XML files (README, other test files...)."""
    parts = relpath.split("/")
    if len(parts) == 3 and parts[0] in SPLITS and (m := _SIZE_DIR.fullmatch(parts[1])) \
            and parts[2].endswith(".xml") and not parts[2].startswith("."):
        return SPLITS.index(parts[0]), int(m.group(1)), parts[2]
    if parts == ["test", TEST_2020]:
        return SPLITS.index("test"), 0, parts[1]
    return None


def _check_size(size: int, origin: str) -> None:
    if size > MAX_XML_BYTES:
        raise DataError(f"webnlg: {origin} has {size:,} bytes; no WebNLG file is over "
                        f"{MAX_XML_BYTES >> 20} MiB (the largest has 1.5 MB): not the corpus.")


def _folder_files(folder: Path) -> Iterator[tuple[str, str, bytes]]:
    """(relative path, origin, bytes) of every corpus file of an extracted folder."""
    for split in SPLITS:
        base = folder / split
        if not base.is_dir():
            continue
        for path in sorted(base.glob("*/*.xml")) + [base / TEST_2020]:
            rel = path.relative_to(folder).as_posix()
            if classify(rel) is None or not path.is_file():
                continue
            try:
                _check_size(path.stat().st_size, str(path))
                yield rel, str(path), path.read_bytes()
            except OSError as e:
                raise DataError(f"webnlg: cannot read {path}: {e.strerror or e}") from None


def _member_path(name: str) -> str | None:
    """The corpus-relative path of a tar member: the member's path, or it without its one
    leading folder (``webnlg-en-v2.0/train/...``), when that is a corpus file."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    for rel in ("/".join(parts), "/".join(parts[1:])):
        if classify(rel) is not None:
            return rel
    return None


def _tar_files(archive: Path) -> Iterator[tuple[str, str, bytes]]:
    """(relative path, origin, bytes) of every corpus file in a tar(.gz), member by member."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = _member_path(member.name)
                if rel is None or not member.isfile():
                    continue
                origin = f"{archive}:{member.name}"
                _check_size(member.size, origin)
                handle = tar.extractfile(member)
                yield rel, origin, handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, UnicodeError) as e:
        raise DataError(f"webnlg: {archive} is not a readable tar archive ({e}); it is corrupt "
                        "or truncated: download or copy it again.") from None


def content_md5(files: dict[str, bytes]) -> str:
    """MD5 over the sorted lines ``<relative path> <md5 of the file>`` of the corpus files: one
    digest for a whole corpus, the same for its tarball and its extracted folder."""
    lines = "".join(f"{rel} {hashlib.md5(files[rel]).hexdigest()}\n" for rel in sorted(files))
    return hashlib.md5(lines.encode()).hexdigest()


V2_CONTENT_MD5 = "6e9e8e9cfae7019cfdda63b506f70d4d"
"""content_md5 of the 185 XML files of the v2.0 tarball (= data/v2.0/en of ThiagoCF05/webnlg at
commit 711a8ca37eff2d694d664edcaeb07b0ccf8f56c2, checked file by file)."""


def read_corpus(location: Path, check_md5: bool = True,
                skipped: list[str] | None = None) -> TextCorpus:
    """Read the corpus at ``location``: a tar(.gz) of any name (with ``check_md5`` it must be
    the known ``webnlg-en-v2.0.tar.gz``, MD5 :data:`TARBALL_MD5`, byte for byte) or a folder holding
    ``{train,dev,test}/``. DataError when unreadable, malformed or lacking a split."""
    is_tar = location.is_file()
    if is_tar and check_md5:
        try:
            digest = md5sum(location)
        except OSError as e:
            raise DataError(f"webnlg: cannot read {location}: {e.strerror or e}") from None
        if digest != TARBALL_MD5:
            raise DataError(f"webnlg: {location} failed the MD5 check against the known {TARBALL} "
                            f"of the corpus v2.0 ({TARBALL_MD5}; this file has {digest}): it is "
                            "corrupt, truncated or not that file. Copy it again, or extract the "
                            f"corpus as a folder DIR/webnlg/{V2_FOLDER}/ (download_webnlg fetches "
                            "it) instead.")
    files: dict[str, bytes] = {}
    found: list[tuple[tuple[int, int, str], list[Entry]]] = []
    for rel, origin, data in (_tar_files(location) if is_tar else _folder_files(location)):
        if rel in files:
            raise DataError(f"webnlg: {location} holds {rel} twice (with and without a leading "
                            "folder); keep one copy of the corpus.")
        files[rel] = data
        key = classify(rel)
        if key is None:  # never: both readers yield corpus files only
            continue
        found.append((key, read_webnlg_xml(data, SPLITS[key[0]], origin, skipped)))
    found.sort(key=lambda item: item[0])
    entries = tuple(e for _, chunk in found for e in chunk)
    for split in SPLITS:
        if not any(e.split == split for e in entries):
            where = f"{split}/<k>triples/*.xml" + (f" or test/{TEST_2020}" if split == "test" else "")
            raise DataError(f"webnlg: {location} has no {split} entries (no {where} with texts); "
                            "it is not a complete WebNLG corpus. Copy or download it again.")
    if any(key[1] == 0 for key, _ in found):
        version = "webnlg-2020-v3.0"
    else:
        version = "webnlg-2017-v2.0" if content_md5(files) == V2_CONTENT_MD5 else "webnlg-2017-unverified"
    return TextCorpus(name="webnlg", entries=entries, root=location, version=version)


def corpus_location(root: Path | None) -> Path:
    """Where the corpus is under the data directory ``root`` (see the module docstring)."""
    if root is None:
        candidates: list[Path] = []
    elif root.is_file():
        return root
    else:
        v3 = Path(*V2020_FOLDER)
        candidates = [root / "webnlg" / TARBALL, root / "webnlg" / V2_FOLDER, root / "webnlg" / v3,
                      root / TARBALL, root / V2_FOLDER, root / v3, root / "en", root]
    for path in candidates:
        if path.is_file() and path.name == TARBALL:
            return path
        if path.is_dir() and (path.name == V2_FOLDER or path.parts[-2:] == V2020_FOLDER
                              or ((path / "train").is_dir() and (path / "test").is_dir())):
            return path
    where = ", ".join(map(str, candidates)) or "nowhere (no --data-dir and no DPS_DATA_DIR)"
    raise DataError(
        f"webnlg: the WebNLG corpus was not found; looked in {where}. Get the enriched 2017 "
        f"corpus v2.0 (the folder data/v2.0/en of {V2_URL}; "
        "benchmarks.data.webnlg.download_webnlg(DIR) fetches it) and put it in "
        f"DIR/webnlg/{V2_FOLDER}/ (or its tarball as DIR/webnlg/{TARBALL}), or the WebNLG 2020 "
        f"release v3.0 ({V2020_URL}) as DIR/webnlg/release_v3.0/en/; then pass --data-dir DIR "
        "(or set DPS_DATA_DIR=DIR).")


def load_webnlg(root: Path | None, check_md5: bool = True,
                skipped: list[str] | None = None) -> TextCorpus:
    """The WebNLG corpus under the data directory ``root`` (module docstring: layouts, order,
    version), as a :class:`TextCorpus` named ``webnlg`` of train, dev and test entries.

    ``check_md5``: verify a tarball against :data:`TARBALL_MD5` (turn off only for fixtures).
    ``skipped``: a list to receive the names of entries left out for having no text.
    Raises DataError when the corpus is absent (naming where it looked and how to get it),
    fails its checksum, or holds a malformed file.
    """
    location = corpus_location(root)
    out: list[str] = []
    corpus = read_corpus(location, check_md5=check_md5, skipped=out)
    if out:
        log.info("webnlg: %d entries without any text were left out: %s", len(out), ", ".join(out))
    if skipped is not None:
        skipped.extend(out)
    return corpus


# ---------------------------------------------------------------------------- download

V2_COMMIT = "711a8ca37eff2d694d664edcaeb07b0ccf8f56c2"
V2_RAW = f"https://raw.githubusercontent.com/ThiagoCF05/webnlg/{V2_COMMIT}/data/v2.0/en/"
_SEEN = ("Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument",
         "SportsTeam", "University", "WrittenWork")
_UNSEEN = ("Artist", "Athlete", "CelestialBody", "MeanOfTransportation", "Politician")
_LARGEST = ("Astronaut", "Monument", "University")  # the only categories with 6 and 7 triples


def v2_files() -> list[str]:
    """The 185 file paths of the v2.0 corpus, relative to ``data/v2.0/en``."""
    out = []
    for split in SPLITS:
        for k in range(1, 8):
            if k >= 6:
                categories: tuple[str, ...] = _LARGEST
            elif split == "test":
                categories = tuple(sorted(_SEEN + _UNSEEN))
            else:
                categories = tuple(c for c in _SEEN if k == 1 or c != "City")
            out += [f"{split}/{k}triples/{c}.xml" for c in categories]
    return out


def download_webnlg(root: Path, timeout: float = 30.0) -> Path:
    """Fetch the enriched WebNLG 2017 corpus v2.0 into ``root/webnlg/webnlg-en-v2.0/``; for
    machines online. Returns that folder, which :func:`load_webnlg` then reads.

    What is fetched: the 185 XML files of ``data/v2.0/en`` of github.com/ThiagoCF05/webnlg at the
    pinned commit 711a8ca3 (raw.githubusercontent.com), the very files packed in the tarball
    ``webnlg-en-v2.0.tar.gz`` of ``../shared/data``. That tarball (MD5 2b75cace...) was packed
    locally and no URL serves it byte for byte (tar and gzip headers differ), so the download is
    verified by its content instead: :func:`content_md5` of the fetched files must be
    :data:`V2_CONTENT_MD5`, computed from that tarball's members. Files are written to a staging
    folder and moved into place only once verified; an existing folder is returned as it is when
    it holds the published corpus, and never overwritten. Raises DataError when a file cannot be
    fetched (e.g. no internet), the content does not match, or the folder exists with other content.
    """
    import http.client
    import shutil
    import tempfile
    import urllib.request

    target = root / "webnlg" / V2_FOLDER
    if target.exists():
        if read_corpus(target).version == "webnlg-2017-v2.0":
            return target
        raise DataError(f"webnlg: {target} exists and is not the published v2.0 corpus; move or "
                        "delete it, then download again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for rel in v2_files():
        url = V2_RAW + rel
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                payload = resp.read(MAX_XML_BYTES + 1)
        except (OSError, http.client.HTTPException) as e:
            raise DataError(f"webnlg: could not download {url} ({e}). This machine may have no "
                            f"internet: on one that has, fetch data/v2.0/en of {V2_URL} (commit "
                            f"{V2_COMMIT[:8]}) and copy it to {target}/ (train/, dev/, test/), or "
                            f"copy {TARBALL} to {target.parent}/.") from None
        _check_size(len(payload), url)
        files[rel] = payload
    digest = content_md5(files)
    if digest != V2_CONTENT_MD5:
        raise DataError(f"webnlg: the files fetched from {V2_RAW} have content MD5 {digest}, not "
                        f"the published corpus's {V2_CONTENT_MD5}; try again (or the repository "
                        "has changed: get the corpus elsewhere).")
    stage = Path(tempfile.mkdtemp(prefix=".webnlg-", dir=target.parent))
    try:
        for rel, payload in files.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_bytes(payload)
        os.replace(stage, target)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return target
