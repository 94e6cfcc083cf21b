"""The WebNLG reader (benchmarks.data.webnlg) on small fixtures written in the real formats: the
enriched 2017 corpus v2.0 (``<lex>`` with a ``<text>`` child, as a folder and as a tar.gz) and the
2020 release v3.0 (text directly in ``<lex>``, one test file). The real corpus is read by the one
``realdata`` test, which skips when ``$DPS_DATA_DIR`` (or ``../shared/data``) does not have it."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from benchmarks.data import webnlg
from benchmarks.data.text import TextCorpus
from benchmarks.data.webnlg import (
    TEST_2020,
    content_md5,
    corpus_location,
    download_webnlg,
    load_webnlg,
    read_webnlg_xml,
    v2_files,
)
from benchmarks.errors import DataError

# ------------------------------------------------------------------------------- fixtures


QUOT = {'"': "&quot;"}  # as the real files write the quotes around literals


def enriched_entry(category: str, eid: str, triples: list[str], texts: list[str],
                   triple_tag: str = "mtriple") -> str:
    """One ``<entry>`` as in the enriched 2017 corpus v2.0, with the tags a reader must ignore:
    the original triples differ from the modified ones, templates and trees hold other text."""
    otriples = "".join(f"<otriple>{escape(t)}@en</otriple>" for t in triples)
    mtriples = "".join(f"<{triple_tag}>{escape(t, QUOT)}</{triple_tag}>" for t in triples)
    lexes = "".join(
        f'<lex comment="good" lid="Id{i}"><tree/><sortedtripleset><sentence ID="1">'
        f"<striple>{escape(triples[0])}</striple></sentence></sortedtripleset><references>"
        f'<reference entity="X" number="1" tag="AGENT-1" type="name">IGNORED REF</reference>'
        f"</references><text>{escape(text)}</text><template>IGNORED TEMPLATE AGENT-1 .</template>"
        f"<tree>(SENTENCES (S IGNORED))</tree></lex>"
        for i, text in enumerate(texts, 1))
    return (f'<entry category="{category}" eid="{eid}" size="{len(triples)}">'
            f"<originaltripleset>{otriples}</originaltripleset>"
            f"<modifiedtripleset>{mtriples}</modifiedtripleset>{lexes}"
            f"<entitymap><entity>AGENT-1 | {escape(triples[0].split(' | ')[0])}</entity></entitymap>"
            "</entry>")


def v3_entry(category: str, eid: str, triples: list[str], texts: list[str]) -> str:
    """One ``<entry>`` as in the 2020 release v3.0: the text is the ``<lex>`` element's own."""
    mtriples = "".join(f"<mtriple>{escape(t)}</mtriple>" for t in triples)
    lexes = "".join(f'<lex comment="good" lid="Id{i}" lang="en">{escape(text)}</lex>'
                    for i, text in enumerate(texts, 1))
    return (f'<entry category={quoteattr(category)} eid="{eid}" shape="(X (X))" shape_type="NA" '
            f'size="{len(triples)}"><originaltripleset><otriple>IGNORED | p | o</otriple>'
            f"</originaltripleset><modifiedtripleset>{mtriples}</modifiedtripleset>{lexes}"
            "<dbpedialinks><dbpedialink direction=\"en2ru\">A | sameAs | B</dbpedialink>"
            '</dbpedialinks><links><link direction="en2ru">C | includes | D</link></links></entry>')


def benchmark(*entries: str) -> bytes:
    return ('<?xml version="1.0" ?>\n<benchmark>\n\t<entries>\n\t\t' + "\n\t\t".join(entries)
            + "\n\t</entries>\n</benchmark>\n").encode()


ALAN = ['Alan_Bean | birthDate | "1932-03-15"', "Alan_Bean | occupation | Test_pilot"]

V2_FILES = {  # corpus-relative path -> bytes, in the enriched 2017 layout
    "train/1triples/Airport.xml": benchmark(
        enriched_entry("Airport", "Id1", ['Aarhus_Airport | cityServed | "Aarhus, Denmark"'],
                       ["The Aarhus is the airport of Aarhus, Denmark.",
                        "Aarhus Airport serves the city of Aarhus, Denmark."]),
        enriched_entry("Airport", "Id2", ["Abilene | isPartOf | Texas"], ["", "  "]),  # no text
        enriched_entry("Airport", "Id3", ["Abilene | country | United_States"],
                       ["Abilene is in the United States."])),
    "train/2triples/Astronaut.xml": benchmark(
        enriched_entry("Astronaut", "Id1", ALAN,
                       ["Alan Bean, born on 1932-03-15, was a test pilot.", "",
                        "Test pilot Alan Bean was born on March 15, 1932.",
                        "Alan Bean was born in 1932 and was a test pilot."])),
    "dev/1triples/Airport.xml": benchmark(
        enriched_entry("Airport", "Id1", ["Adolfo_Suárez_Madrid–Barajas_Airport | elevation | 610.0"],
                       ["Adolfo Suárez Madrid–Barajas Airport is 610 metres above sea level."])),
    "test/1triples/Artist.xml": benchmark(  # the enriched test split writes <otriple> here
        enriched_entry("Artist", "Id1280", ["Aaron_Deer | genre | Psychedelia"],
                       ["Aaron Deer plays Psychedelia."], triple_tag="otriple")),
}

V3_FILES = {  # below release_v3.0/en/
    "train/1triples/Airport.xml": benchmark(
        v3_entry("Airport", "Id1", ["Aarhus_Airport | cityServed | \"Aarhus, Denmark\""],
                 ["The Aarhus is the airport of Aarhus, Denmark.", "Aarhus Airport serves Aarhus."])),
    "train/1triples/Company.xml": benchmark(
        v3_entry("Company", "Id1", ["Acme | foundingYear | 1950"], ["Acme was founded in 1950."])),
    "dev/2triples/Company.xml": benchmark(
        v3_entry("Company", "Id1", ["Acme | foundingYear | 1950", "Acme | city | Paris"],
                 ["Acme, of Paris, was founded in 1950."])),
    f"test/{TEST_2020}": benchmark(
        v3_entry("Film", "Id1", ["Up | director | Pete_Docter"], ["Up was directed by Pete Docter."]),
        v3_entry("Scientist", "Id2", ["Marie_Curie | field | Physics"],
                 ["Marie Curie worked in physics.", "Physics was Marie Curie's field."])),
    # files of the release that are not the generation test set with references: never read
    "test/rdf-to-text-generation-test-data-without-refs-en.xml": b"<not-read/>",
    "test/semantic-parsing-test-data-with-refs-en.xml": benchmark(
        v3_entry("MusicalWork", "Id1", ["Some | other | Thing"], ["Must not be read."])),
}


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def write_tarball(path: Path, files: dict[str, bytes], prefix: str = "webnlg-en-v2.0/") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in {"README.md": b"# WebNLG\n", **files}.items():
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _by_split(corpus: TextCorpus, split: str):
    return [e for e in corpus.entries if e.split == split]


# ------------------------------------------------------------------------------- one XML file


def test_reads_an_enriched_file_ignoring_the_other_tags():
    entries = read_webnlg_xml(V2_FILES["train/2triples/Astronaut.xml"], "train", "Astronaut.xml")
    assert len(entries) == 1
    (entry,) = entries
    assert entry.triples == (("Alan_Bean", "birthDate", '"1932-03-15"'),
                             ("Alan_Bean", "occupation", "Test_pilot"))
    assert entry.texts == ("Alan Bean, born on 1932-03-15, was a test pilot.",
                           "Test pilot Alan Bean was born on March 15, 1932.",
                           "Alan Bean was born in 1932 and was a test pilot.")  # empty lex skipped
    assert (entry.category, entry.split, entry.eid) == ("Astronaut", "train", "Id1")
    flat = " ".join(entry.texts) + " ".join(" ".join(t) for t in entry.triples)
    assert "IGNORED" not in flat and "@en" not in flat


def test_reads_otriple_in_the_modified_tripleset_of_the_enriched_test_split():
    (entry,) = read_webnlg_xml(V2_FILES["test/1triples/Artist.xml"], "test", "Artist.xml")
    assert entry.triples == (("Aaron_Deer", "genre", "Psychedelia"),)
    assert entry.texts == ("Aaron Deer plays Psychedelia.",)


def test_reads_a_2020_file_with_the_text_in_lex():
    entries = read_webnlg_xml(V3_FILES[f"test/{TEST_2020}"], "test", TEST_2020)
    assert [(e.category, e.eid, len(e.texts)) for e in entries] == [("Film", "Id1", 1),
                                                                     ("Scientist", "Id2", 2)]
    assert entries[1].texts == ("Marie Curie worked in physics.", "Physics was Marie Curie's field.")
    assert entries[1].triples == (("Marie_Curie", "field", "Physics"),)
    assert all("sameAs" not in " ".join(t) for e in entries for t in e.triples)


def test_an_entry_without_text_is_kept_out_and_reported():
    skipped: list[str] = []
    entries = read_webnlg_xml(V2_FILES["train/1triples/Airport.xml"], "train", "A.xml", skipped)
    assert [e.eid for e in entries] == ["Id1", "Id3"]
    assert skipped == ["A.xml#Id2"]
    assert read_webnlg_xml(benchmark(), "dev", "empty.xml") == []


@pytest.mark.parametrize("data, match", [
    (b"<benchmark><entries><entry category='A' eid='1'>", "not well-formed"),
    (b"\x00\x01garbage", "not well-formed"),
    (b"", "not well-formed"),
    (b"<?xml version='1.0' encoding='bogus'?><benchmark/>", "cannot be parsed"),
    (b"<html><body/></html>", "not a WebNLG file"),
    (benchmark(enriched_entry("Food", "Id7", ["Bacon | country"], ["x"])), "Id7.*not 'subject"),
    (benchmark(enriched_entry("Food", "Id7", ["Bacon | | Italy"], ["x"])), "not 'subject"),
    (benchmark(enriched_entry("Food", "Id7", ["A | b | c | d"], ["x"])), "not 'subject"),
    (benchmark(enriched_entry("", "Id7", ["A | b | c"], ["x"])), "no category"),
    (b'<benchmark><entries><entry category="Food" eid="Id7"><modifiedtripleset/><lex><text>x'
     b"</text></lex></entry></entries></benchmark>", "Id7.*no <modifiedtripleset>"),
])
def test_malformed_files_raise_a_data_error_naming_the_file(data, match):
    with pytest.raises(DataError, match=match) as info:
        read_webnlg_xml(data, "train", "train/1triples/Food.xml")
    assert "train/1triples/Food.xml" in str(info.value)


def test_entity_expansion_and_external_entities_are_refused(tmp_path):
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">'
                        for i in range(1, 10))
              + ']><benchmark><entries><entry category="&lol9;" eid="1"/></entries></benchmark>')
    with pytest.raises(DataError, match="entities"):
        read_webnlg_xml(laughs.encode(), "train", "bomb.xml")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY x SYSTEM "file://{secret}">]>'
           '<benchmark><entries><entry category="A" eid="1"><modifiedtripleset>'
           "<mtriple>a | b | &x;</mtriple></modifiedtripleset><lex>&x;</lex></entry></entries>"
           "</benchmark>")
    with pytest.raises(DataError, match="entities") as info:
        read_webnlg_xml(xxe.encode(), "train", "xxe.xml")
    assert "TOP SECRET" not in str(info.value) and "xxe.xml" in str(info.value)


# ------------------------------------------------------------------------------- the corpus


def test_loads_the_enriched_folder_in_a_fixed_order(tmp_path):
    write_folder(tmp_path / "webnlg" / "webnlg-en-v2.0", V2_FILES)
    (tmp_path / "webnlg" / "webnlg-en-v2.0" / "train" / "1triples" / "._Airport.xml").write_bytes(b"\0")
    skipped: list[str] = []
    corpus = load_webnlg(tmp_path, skipped=skipped)
    assert corpus.name == "webnlg" and corpus.version == "webnlg-2017-unverified"
    assert corpus.root == tmp_path / "webnlg" / "webnlg-en-v2.0"
    assert [(e.split, e.category, e.eid) for e in corpus.entries] == [
        ("train", "Airport", "Id1"), ("train", "Airport", "Id3"), ("train", "Astronaut", "Id1"),
        ("dev", "Airport", "Id1"), ("test", "Artist", "Id1280")]
    assert [len(e.texts) for e in _by_split(corpus, "train")] == [2, 1, 3]
    assert len(skipped) == 1 and skipped[0].endswith("Airport.xml#Id2")
    assert corpus.categories("train") == {"Airport": 2, "Astronaut": 1}
    # the same corpus when the data directory is the folder itself, or the webnlg folder
    for root in (tmp_path / "webnlg" / "webnlg-en-v2.0", tmp_path / "webnlg"):
        assert load_webnlg(root).entries == corpus.entries


def test_loads_the_tarball_member_by_member_after_its_md5_check(tmp_path, monkeypatch):
    archive = write_tarball(tmp_path / "webnlg" / "webnlg-en-v2.0.tar.gz", V2_FILES)
    with pytest.raises(DataError, match="MD5 check.*corrupt, truncated or not that file") as info:
        load_webnlg(tmp_path)
    assert str(archive) in str(info.value)
    monkeypatch.setattr(webnlg, "TARBALL_MD5", md5(archive))
    corpus = load_webnlg(tmp_path)
    assert corpus.root == archive and len(corpus) == 5
    assert not (tmp_path / "webnlg" / "webnlg-en-v2.0").exists()  # nothing extracted
    folder = load_webnlg(write_folder(tmp_path / "x" / "webnlg-en-v2.0", V2_FILES))
    assert corpus.entries == folder.entries
    assert load_webnlg(archive).entries == corpus.entries  # the data directory is the tarball
    # the tarball is preferred to an extracted copy next to it
    write_folder(tmp_path / "webnlg" / "webnlg-en-v2.0", {})
    assert load_webnlg(tmp_path).root == archive


def test_the_version_says_whether_the_files_are_the_published_ones(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "webnlg-en-v2.0", V2_FILES)
    assert load_webnlg(folder).version == "webnlg-2017-unverified"
    monkeypatch.setattr(webnlg, "V2_CONTENT_MD5", content_md5(V2_FILES))
    assert load_webnlg(folder).version == "webnlg-2017-v2.0"
    archive = write_tarball(tmp_path / "w.tar.gz", V2_FILES)
    assert load_webnlg(archive, check_md5=False).version == "webnlg-2017-v2.0"


def test_loads_the_2020_release(tmp_path):
    write_folder(tmp_path / "webnlg" / "release_v3.0" / "en", V3_FILES)
    corpus = load_webnlg(tmp_path)
    assert corpus.version == "webnlg-2020-v3.0"
    assert corpus.root == tmp_path / "webnlg" / "release_v3.0" / "en"
    assert [(e.split, e.category) for e in corpus.entries] == [
        ("train", "Airport"), ("train", "Company"), ("dev", "Company"), ("test", "Film"),
        ("test", "Scientist")]
    assert corpus.categories("test") == {"Film": 1, "Scientist": 1}  # semantic parsing not read
    assert _by_split(corpus, "dev")[0].triples == (("Acme", "foundingYear", "1950"),
                                                   ("Acme", "city", "Paris"))
    for root in (tmp_path / "webnlg" / "release_v3.0", tmp_path / "webnlg" / "release_v3.0" / "en"):
        assert load_webnlg(root).entries == corpus.entries


def test_a_missing_corpus_names_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        load_webnlg(tmp_path)
    message = str(info.value)
    for where in ("webnlg/webnlg-en-v2.0.tar.gz", "webnlg/webnlg-en-v2.0", "webnlg/release_v3.0/en"):
        assert str(tmp_path / where) in message
    assert "--data-dir DIR" in message and "github.com/ThiagoCF05/webnlg" in message
    assert "release_v3.0" in message
    with pytest.raises(DataError, match="nowhere"):
        corpus_location(None)


def test_an_incomplete_or_damaged_corpus_is_a_data_error(tmp_path):
    no_test = {k: v for k, v in V2_FILES.items() if not k.startswith("test/")}
    with pytest.raises(DataError, match="no test entries"):
        load_webnlg(write_folder(tmp_path / "a" / "webnlg-en-v2.0", no_test))
    with pytest.raises(DataError, match=f"no test entries.*{TEST_2020}"):
        load_webnlg(write_folder(tmp_path / "b" / "release_v3.0" / "en",
                                 {k: v for k, v in V3_FILES.items() if TEST_2020 not in k}))
    bad = dict(V2_FILES, **{"dev/1triples/Airport.xml": b"<benchmark><entries><entry"})
    archive = write_tarball(tmp_path / "c.tar.gz", bad)
    with pytest.raises(DataError, match="c.tar.gz:webnlg-en-v2.0/dev/1triples/Airport.xml"):
        load_webnlg(archive, check_md5=False)
    truncated = tmp_path / "d" / "webnlg-en-v2.0.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(write_tarball(tmp_path / "e.tar.gz", V2_FILES).read_bytes()[:300])
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_webnlg(truncated, check_md5=False)
    both = tmp_path / "f.tar.gz"
    with tarfile.open(both, "w:gz") as tar:
        for name in ("webnlg-en-v2.0/dev/1triples/Airport.xml", "dev/1triples/Airport.xml"):
            info = tarfile.TarInfo(name)
            info.size = len(V2_FILES["dev/1triples/Airport.xml"])
            tar.addfile(info, io.BytesIO(V2_FILES["dev/1triples/Airport.xml"]))
    with pytest.raises(DataError, match="twice"):
        load_webnlg(both, check_md5=False)


# ------------------------------------------------------------------------------- download


def test_download_fails_offline_with_a_clear_message(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="no internet") as info:
        download_webnlg(tmp_path)
    assert "raw.githubusercontent.com/ThiagoCF05/webnlg/" in str(info.value)
    assert not (tmp_path / "webnlg" / "webnlg-en-v2.0").exists()


def test_download_verifies_the_content_before_moving_it_into_place(tmp_path, monkeypatch):
    import urllib.request

    served = {rel: V2_FILES.get(rel, V2_FILES["train/1triples/Airport.xml"]) for rel in v2_files()}
    fetched: list[str] = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake(url, timeout=None):
        assert url.startswith(webnlg.V2_RAW)
        fetched.append(url)
        return Response(served[url[len(webnlg.V2_RAW):]])

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    with pytest.raises(DataError, match="content MD5"):
        download_webnlg(tmp_path)
    assert not (tmp_path / "webnlg" / "webnlg-en-v2.0").exists()
    assert os.listdir(tmp_path / "webnlg") == []  # no staging folder left behind
    monkeypatch.setattr(webnlg, "V2_CONTENT_MD5", content_md5(served))
    folder = download_webnlg(tmp_path)
    assert folder == tmp_path / "webnlg" / "webnlg-en-v2.0" and len(fetched) == 2 * 185
    corpus = load_webnlg(tmp_path)
    assert corpus.version == "webnlg-2017-v2.0" and corpus.root == folder
    assert download_webnlg(tmp_path) == folder and len(fetched) == 2 * 185  # already there
    (folder / "dev" / "1triples" / "Airport.xml").write_bytes(V2_FILES["train/1triples/Airport.xml"])
    with pytest.raises(DataError, match="exists and is not the published"):
        download_webnlg(tmp_path)


# ------------------------------------------------------------------------------- real data


def _real_data_dir() -> Path:
    env = os.environ.get("DPS_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.realdata
def test_real_webnlg_counts():
    root = _real_data_dir()
    try:
        location = corpus_location(root)
    except DataError:
        pytest.skip(f"the WebNLG corpus is not under {root}")
    skipped: list[str] = []
    corpus = load_webnlg(root, skipped=skipped)
    if corpus.version != "webnlg-2017-v2.0":
        pytest.skip(f"{location} is not the enriched 2017 corpus v2.0 ({corpus.version})")
    if location.is_file():
        with tarfile.open(location) as tar:
            members = {webnlg._member_path(m.name) for m in tar if m.isfile()}
        assert members == set(v2_files())
    train, dev, test = (_by_split(corpus, s) for s in ("train", "dev", "test"))
    assert len(train) == 6940 and sum(len(e.texts) for e in train) == 18102
    assert set(corpus.categories("train")) == {
        "Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument",
        "SportsTeam", "University", "WrittenWork"}
    # dev has 872 entries, 2 of which have only empty <text>: they are kept out
    assert len(dev) == 870 and len(skipped) == 2 and all("/dev/" in s for s in skipped)
    assert set(corpus.categories("dev")) == set(corpus.categories("train"))
    assert len(test) == 1862
    assert set(corpus.categories("test")) - set(corpus.categories("train")) == {
        "Artist", "Athlete", "CelestialBody", "MeanOfTransportation", "Politician"}
    assert all(len(e.triples) in range(1, 8) and e.texts for e in corpus.entries)
