"""``generated``: a multi-domain data-to-text corpus made offline, the embedded default of the
``efficient`` scenario (WebNLG's shape at a size two CPU cores can train on).

Twelve domains in four families, each entry a subject with 1-4 (subject, predicate, object)
triples rendered to text by templates:

- people: scientist, astronaut, politician, athlete, artist
- works: film, song, book
- places: city, airport
- organisations: company, university

Each family has its own predicates and its own way of saying them (several templates per
predicate), and the predicates families share are said differently per family (``country``: a
person *is a citizen of* it, a place *is located in* it, a work *was made in* it, a company *is
based in* it); each domain adds predicates of its own. An entry's references (2 for train
entries, 3 for dev/test) draw their templates, sentence joins and pronouns at random, so BLEU
against all references rewards the domain's phrasing without saturating. Entity names are made of
random syllables, so a model must learn to copy them from the source.

The corpus is a pure function of ``seed`` (default 0): 400 entries per domain, split 300 train,
20 dev, 80 test. Unlike WebNLG 2017 every domain has all three splits; the ``efficient``
scenario keeps the target domains out of Dt as the paper's protocol does.
"""

from __future__ import annotations

import numpy as np

from .text import Entry, TextCorpus

FAMILIES = {
    "people": ("Scientist", "Astronaut", "Politician", "Athlete", "Artist"),
    "works": ("Film", "Song", "Book"),
    "places": ("City", "Airport"),
    "organisations": ("Company", "University"),
}
FAMILY_OF = {d: f for f, ds in FAMILIES.items() for d in ds}
DOMAINS = tuple(FAMILY_OF)
PER_DOMAIN = {"train": 300, "dev": 20, "test": 80}
COUNTRIES = ("Veloria", "Ostrand", "Kaluma", "Brenica", "Tamsk", "Orvane", "Quessa", "Delmor")
SYLLABLES = ("ka", "lo", "mi", "ren", "to", "sa", "vel", "dor", "an", "bri", "ki", "mos", "ta",
             "lun", "fe", "gar", "ish", "po", "ne", "cor", "ul", "zan", "he", "rim")

# (family, predicate) -> templates; {s} subject, {o} object
SHARED = {
    ("people", "country"): ("{s} is a citizen of {o}.", "{s} holds {o} citizenship.",
                            "{s} is a national of {o}."),
    ("people", "birthPlace"): ("{s} was born in {o}.", "{s} was born in the town of {o}.",
                               "The birthplace of {s} is {o}."),
    ("people", "birthYear"): ("{s} was born in {o}.", "{s} was born in the year {o}.",
                              "The year {s} was born is {o}."),
    ("people", "almaMater"): ("{s} studied at {o}.", "{s} graduated from {o}.",
                              "{s} is an alumnus of {o}."),
    ("works", "country"): ("{s} was made in {o}.", "{s} comes from {o}.",
                           "{s} was produced in {o}."),
    ("works", "creator"): ("{s} was created by {o}.", "{o} is the creator of {s}.",
                           "{s} is a work by {o}."),
    ("works", "releaseYear"): ("{s} was released in {o}.", "{s} came out in {o}.",
                               "The release year of {s} is {o}."),
    ("works", "language"): ("{s} is in {o}.", "The language of {s} is {o}.",
                            "{s} was written in {o}."),
    ("places", "country"): ("{s} is located in {o}.", "{s} lies in {o}.", "{s} is in {o}."),
    ("places", "population"): ("{s} has a population of {o}.", "{o} people live in {s}.",
                               "The population of {s} is {o}."),
    ("places", "elevation"): ("{s} is {o} metres above sea level.",
                              "The elevation of {s} is {o} metres.",
                              "{s} lies at an elevation of {o} metres."),
    ("organisations", "country"): ("{s} is based in {o}.", "{s} has its base in {o}.",
                                   "The home country of {s} is {o}."),
    ("organisations", "foundingYear"): ("{s} was founded in {o}.", "{s} was established in {o}.",
                                        "The founding year of {s} is {o}."),
    ("organisations", "leader"): ("{s} is led by {o}.", "The leader of {s} is {o}.",
                                  "{o} heads {s}."),
}
OWN = {
    "Scientist": {"field": ("{s} works in the field of {o}.", "{s} is a researcher in {o}."),
                  "award": ("{s} received the {o}.", "{s} was awarded the {o}.")},
    "Astronaut": {"mission": ("{s} was a crew member of {o}.", "{s} flew on {o}."),
                  "selectionYear": ("{s} was selected by the space agency in {o}.",
                                    "{s} joined the astronaut corps in {o}.")},
    "Politician": {"party": ("{s} is a member of the {o}.", "{s} belongs to the {o}."),
                   "office": ("{s} served as {o}.", "{s} held the office of {o}.")},
    "Athlete": {"club": ("{s} plays for {o}.", "{s} is a player of {o}."),
                "position": ("{s} plays as a {o}.", "The position of {s} is {o}.")},
    "Artist": {"genre": ("{s} performs {o} music.", "The genre of {s} is {o}."),
               "label": ("{s} is signed to {o}.", "{s} records for {o}.")},
    "Film": {"runtime": ("{s} runs for {o} minutes.", "The running time of {s} is {o} minutes."),
             "starring": ("{s} stars {o}.", "{o} stars in {s}.")},
    "Song": {"album": ("{s} is on the album {o}.", "{s} appears on {o}."),
             "genre": ("{s} is a {o} song.", "The genre of {s} is {o}.")},
    "Book": {"pages": ("{s} has {o} pages.", "{s} is {o} pages long."),
             "publisher": ("{s} was published by {o}.", "{o} published {s}.")},
    "City": {"mayor": ("The mayor of {s} is {o}.", "{s} is governed by mayor {o}."),
             "river": ("{s} lies on the {o} river.", "The {o} river flows through {s}.")},
    "Airport": {"runwayLength": ("The runway of {s} is {o} metres long.",
                                 "{s} has a runway of {o} metres."),
                "operator": ("{s} is operated by {o}.", "{o} runs {s}.")},
    "Company": {"industry": ("{s} works in the {o} industry.", "{s} is a {o} company."),
                "employees": ("{s} has {o} employees.", "{o} people work for {s}.")},
    "University": {"students": ("{s} has {o} students.", "{o} students attend {s}."),
                   "motto": ("The motto of {s} is {o}.", "{s} has the motto {o}.")},
}
PRONOUN = {"people": ("He", "She"), "works": ("It",), "places": ("It",), "organisations": ("It",)}
WORDS = {
    "field": ("physics", "chemistry", "biology", "geology", "astronomy", "mathematics"),
    "award": ("Orvane Medal", "Kaluma Prize", "Tamsk Award", "Delmor Medal"),
    "party": ("Green Party", "Union Party", "Liberal Party", "Workers Party"),
    "office": ("Minister of Finance", "Governor", "Senator", "Mayor", "Speaker"),
    "position": ("forward", "goalkeeper", "defender", "midfielder"),
    "genre": ("jazz", "rock", "folk", "pop", "blues", "soul"),
    "language": ("Velorian", "Ostran", "Kaluman", "Brenic"),
    "industry": ("steel", "software", "shipping", "textile", "energy"),
}


def _name(rng: np.random.Generator, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def _person(rng) -> str:
    return f"{_name(rng, 2)} {_name(rng, int(rng.integers(2, 4)))}"


def _subject(rng, domain: str) -> str:
    family = FAMILY_OF[domain]
    if family == "people":
        return _person(rng).replace(" ", "_")
    base = _name(rng, int(rng.integers(2, 4)))
    suffix = {"Film": "", "Song": "", "Book": "", "City": "", "Airport": " Airport",
              "Company": " Corporation", "University": " University"}[domain]
    prefix = "The " if domain in ("Film", "Book") and rng.random() < 0.5 else ""
    return (prefix + base + suffix).replace(" ", "_")


def _object(rng, domain: str, predicate: str) -> str:
    if predicate == "country":
        return str(rng.choice(COUNTRIES))
    if predicate in ("birthYear", "releaseYear", "foundingYear", "selectionYear"):
        return str(int(rng.integers(1900, 2020)))
    if predicate in ("population", "employees", "students"):
        return f"{int(rng.integers(1, 900)) * 100:,}"
    if predicate in ("elevation", "runtime", "pages", "runwayLength"):
        return str(int(rng.integers(10, 3000)))
    if predicate in WORDS:
        return str(rng.choice(WORDS[predicate]))
    if predicate in ("creator", "starring", "leader", "mayor"):
        return _person(rng).replace(" ", "_")
    if predicate in ("birthPlace", "river"):
        return _name(rng, 2)
    if predicate == "almaMater":
        return f"{_name(rng, 2)}_University"
    if predicate == "mission":
        return f"{_name(rng, 2)} {int(rng.integers(1, 20))}"
    if predicate in ("club", "label", "publisher", "operator", "album"):
        return _name(rng, 3) + {"club": " FC", "label": " Records", "publisher": " Press",
                                "operator": " Aviation", "album": ""}[predicate]
    if predicate == "motto":
        return f"{_name(rng, 2).lower()} {_name(rng, 2).lower()}"
    raise KeyError(predicate)


def predicates_of(domain: str) -> tuple[str, ...]:
    family = FAMILY_OF[domain]
    return tuple(p for f, p in SHARED if f == family) + tuple(OWN[domain])


def templates_of(domain: str, predicate: str) -> tuple[str, ...]:
    return SHARED.get((FAMILY_OF[domain], predicate)) or OWN[domain][predicate]


def _render(rng, domain: str, triples, pronoun: str) -> str:
    sentences = []
    for i, (s, p, o) in enumerate(triples):
        template = str(rng.choice(templates_of(domain, p)))
        subject = s.replace("_", " ")
        if i > 0 and template.startswith("{s}") and rng.random() < 0.5:
            subject = pronoun
        sentences.append(template.format(s=subject, o=o.replace("_", " ")))
    if len(sentences) > 1 and rng.random() < 0.4:  # join the first two sentences
        first, second = sentences[0].rstrip("."), sentences[1]
        head, _, rest = second.partition(" ")
        if head in ("He", "She", "It", "The"):  # a name keeps its capital
            second = f"{head.lower()} {rest}"
        sentences[:2] = [f"{first} and {second}"]
    return " ".join(sentences)


def generate_corpus(seed: int = 0) -> TextCorpus:
    """The corpus for ``seed``: 400 entries per domain (300 train, 20 dev, 80 test)."""
    rng = np.random.default_rng([seed, 20241])
    entries = []
    for domain in DOMAINS:
        family = FAMILY_OF[domain]
        preds = predicates_of(domain)
        k = 0
        for split, count in PER_DOMAIN.items():
            for _ in range(count):
                subject = _subject(rng, domain)
                n = int(rng.integers(1, 5))
                chosen = [preds[i] for i in rng.choice(len(preds), size=n, replace=False)]
                if "birthYear" in chosen and "birthPlace" in chosen:  # one "born in" per entry
                    chosen.remove("birthYear")
                triples = tuple((subject, p, _object(rng, domain, p).replace(" ", "_"))
                                for p in chosen)
                pronoun = str(rng.choice(PRONOUN[family]))
                refs = 2 if split == "train" else 3
                texts = tuple(dict.fromkeys(_render(rng, domain, triples, pronoun)
                                            for _ in range(refs)))
                k += 1
                entries.append(Entry(triples, texts, domain, split, f"Id{k}"))
    return TextCorpus("generated", tuple(entries), version=f"generated-v1-seed{seed}")


def load_generated(root=None) -> TextCorpus:
    """The ``generated`` source (``root`` is unused: nothing is read from disk)."""
    return generate_corpus()
