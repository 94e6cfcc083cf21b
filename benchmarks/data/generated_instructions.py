"""``generated-ift``: an instruction mixture made offline, the embedded default of the ``ift``
scenario (the shape of the paper's FLAN/CoT/Dolly/OpenAssistant mixture at a size two CPU cores
can train on).

Six sources, each a task family whose answers are computed (so they are right by construction,
except in the corrupted source):

- ``arithmetic``: the sum of two numbers below 50 (``What is 23 + 41?`` → ``64``);
- ``sorting``: four digits in ascending order (``Sort in ascending order: 7 2 9 4`` → ``2 4 7 9``);
- ``reversal``: a made-up word spelt backwards (irrelevant to the targets);
- ``lookup``: the value of one key in a short key–value list (irrelevant);
- ``copying``: a phrase of syllables repeated exactly (irrelevant);
- ``arithmetic-corrupt``: arithmetic prompts with wrong answers (the true sum plus a non-zero
  offset in ±1..9, reflected to stay non-negative; corrupted).

Each family has three phrasings, drawn at random. The target tasks are ``arithmetic`` and
``sorting``: Dm, the validation and the test prompts come from the same generators with another
stream of the seed (exact duplicates of a Dt prompt are possible, as in real benchmarks
contaminated by their training mixtures; at these sizes about 1 in 25 arithmetic prompts).

:data:`USEFUL`, :data:`IRRELEVANT` and :data:`CORRUPTED` name the ground truth the weight
analysis uses (never shown to a method). The corpus is a pure function of ``seed``.
"""

from __future__ import annotations

import numpy as np

from .instructions import ChatExample, InstructionCorpus

USEFUL = ("arithmetic", "sorting")
IRRELEVANT = ("reversal", "lookup", "copying")
CORRUPTED = ("arithmetic-corrupt",)
SOURCES = USEFUL + IRRELEVANT + CORRUPTED
TARGET_TASKS = USEFUL
PER_SOURCE = 1000
SYLLABLES = ("ka", "lo", "mi", "ren", "to", "sa", "vel", "dor", "an", "bri", "ki", "mos")
KEYS = ("red", "blue", "green", "gold", "gray", "pink")

TEMPLATES = {
    "arithmetic": ("What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} plus {b}."),
    "sorting": ("Sort in ascending order: {xs}", "Put these digits in order: {xs}",
                "Order from smallest to largest: {xs}"),
    "reversal": ("Reverse the word {w}.", "Spell {w} backwards.", "Write {w} in reverse."),
    "lookup": ("{pairs}. What is {k}?", "Given {pairs}, find {k}.", "{pairs}. Look up {k}."),
    "copying": ("Repeat exactly: {p}", "Copy this: {p}", "Say it again: {p}"),
}


def _word(rng: np.random.Generator, lo: int = 2, hi: int = 4) -> str:
    return "".join(rng.choice(SYLLABLES, size=int(rng.integers(lo, hi + 1))))


def make_task(family: str, rng: np.random.Generator) -> tuple[str, str]:
    """One (prompt, answer) pair of ``family`` (a name of :data:`SOURCES`)."""
    template = TEMPLATES["arithmetic" if family == "arithmetic-corrupt" else family]
    phrase = template[int(rng.integers(len(template)))]
    if family in ("arithmetic", "arithmetic-corrupt"):
        a, b = (int(v) for v in rng.integers(0, 50, size=2))
        answer = a + b
        if family == "arithmetic-corrupt":
            offset = int(rng.integers(1, 10)) * (1 if rng.random() < 0.5 else -1)
            answer = answer + offset if answer + offset >= 0 else answer - offset  # never right
        return phrase.format(a=a, b=b), str(answer)
    if family == "sorting":
        xs = [int(v) for v in rng.integers(0, 10, size=4)]
        return phrase.format(xs=" ".join(map(str, xs))), " ".join(map(str, sorted(xs)))
    if family == "reversal":
        w = _word(rng)
        return phrase.format(w=w), w[::-1]
    if family == "lookup":
        keys = list(rng.choice(KEYS, size=3, replace=False))
        values = [int(v) for v in rng.integers(0, 10, size=3)]
        pairs = ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))
        i = int(rng.integers(3))
        return phrase.format(pairs=pairs, k=keys[i]), str(values[i])
    if family == "copying":
        p = " ".join(_word(rng, 1, 2) for _ in range(int(rng.integers(2, 4))))
        return phrase.format(p=p), p
    raise ValueError(f"unknown task family {family!r}; known: {', '.join(SOURCES)}")


def chat(prompt: str, answer: str, source: str, eid: str = "") -> ChatExample:
    return ChatExample((("user", prompt), ("assistant", answer)), source, eid)


def generate_mixture(seed: int = 0, per_source: int = PER_SOURCE) -> InstructionCorpus:
    """Dt's pool: ``per_source`` examples of each of :data:`SOURCES`, source by source."""
    examples = []
    for k, family in enumerate(SOURCES):
        rng = np.random.default_rng([seed, k])
        examples += [chat(*make_task(family, rng), family, f"{family}:{i}")
                     for i in range(per_source)]
    return InstructionCorpus("generated-ift", tuple(examples), version=f"generated-ift-seed{seed}")


def generate_target(task: str, n: int, seed: int, stream: str) -> list[ChatExample]:
    """``n`` prompts of target ``task`` with their right answers, from the seed's stream
    ``stream`` (``meta``, ``val`` or ``test``: disjoint streams of the same generator)."""
    if task not in TARGET_TASKS:
        raise ValueError(f"unknown target task {task!r}; known: {', '.join(TARGET_TASKS)}")
    rng = np.random.default_rng([seed, 1000 + TARGET_TASKS.index(task),
                                 ("meta", "val", "test").index(stream)])
    return [chat(*make_task(task, rng), task, f"{task}:{stream}:{i}") for i in range(n)]


def load_generated_ift(root=None) -> InstructionCorpus:
    """The source registry's loader (``root`` is unused: nothing is read)."""
    return generate_mixture()
