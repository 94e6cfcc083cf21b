"""What an instruction-tuning source returns: chat examples tagged with their source, and target
tasks as open-answer or multiple-choice items.

Dt of the ``ift`` scenario is a mixture of instruction sources (FLAN V2, CoT, Dolly, OpenAssistant
in the paper; generated task families offline): each example is a conversation in the common
chat format (``messages``, each with a ``role`` and ``content``) and names the source it comes
from (the JSONL ``dataset`` field). Target tasks are multiple-choice benchmarks (MMLU, ARC,
HellaSwag: :class:`ChoiceItem`) or, offline, open-answer prompts scored by exact match
(:class:`ChatExample` whose last message is the gold answer).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatExample:
    """One conversation. messages: (role, content) pairs, role in :data:`ROLES`, at least one
    assistant message (the loss covers assistant tokens only); source: the IFT source (JSONL
    ``dataset``) or task family it comes from; eid: an id for tracing back (file:line)."""

    messages: tuple[tuple[str, str], ...]
    source: str
    eid: str = ""

    @property
    def prompt(self) -> tuple[tuple[str, str], ...]:
        """The messages before the last assistant message."""
        last = max(i for i, (role, _) in enumerate(self.messages) if role == "assistant")
        return self.messages[:last]

    @property
    def answer(self) -> str:
        """The last assistant message's content (the gold answer of a target prompt)."""
        return next(c for role, c in reversed(self.messages) if role == "assistant")


@dataclass(frozen=True)
class ChoiceItem:
    """One multiple-choice question of a target task.

    task: ``mmlu``, ``arc_challenge``, ``arc_easy``, ``hellaswag`` (or ``mmlu-lmeval``);
    subject: MMLU's subject (the task name elsewhere); prompt: the user message (question and,
    for lettered tasks, the options); choices: the assistant continuations that are scored (e.g.
    ``The answer is (B).``, or HellaSwag's endings); answer: index of the right choice;
    split: the file's split (``dev``, ``val``, ``test``, ``train``)."""

    task: str
    subject: str
    prompt: str
    choices: tuple[str, ...]
    answer: int
    split: str = "test"

    def __post_init__(self) -> None:
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"answer {self.answer} out of range for {len(self.choices)} choices")

    def as_chat(self) -> ChatExample:
        """The question with its right answer, as a chat example (a Dm example)."""
        return ChatExample((("user", self.prompt), ("assistant", self.choices[self.answer])),
                           self.task)


@dataclass(frozen=True)
class InstructionCorpus:
    """All Dt examples of an instruction source; the ``ift`` scenario draws Dt from them."""

    name: str
    examples: tuple[ChatExample, ...]
    root: Path | None = None
    version: str = ""
    order: str = field(default="official", repr=False)

    def sources(self) -> Counter:
        """Examples per source."""
        return Counter(e.source for e in self.examples)

    def __len__(self) -> int:
        return len(self.examples)
