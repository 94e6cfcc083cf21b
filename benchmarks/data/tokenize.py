"""Text for sequence models: triples linearised to a source string, and a subword tokenizer
trained on the training text with Hugging Face ``tokenizers`` (a byte-level BPE, so that no
character, however rare in Dt, is out of vocabulary), saved as and read from ``tokenizer.json``.

Linearisation (the usual WebNLG preprocessing): each triple becomes
``<H> subject <R> predicate <T> object``, with underscores turned into spaces, the quotes around
literals dropped and camelCase predicates split into words (``birthDate`` → ``birth date``).

Special tokens (fixed ids, T5's convention): ``<pad>`` 0 (also the decoder start), ``</s>`` 1,
``<unk>`` 2, then the markers ``<H>`` ``<R>`` ``<T>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import DataError
from .text import Triple

SPECIAL = ("<pad>", "</s>", "<unk>", "<H>", "<R>", "<T>")
PAD, EOS = 0, 1


def clean_entity(text: str) -> str:
    """``Alan_Bean`` → ``Alan Bean``; ``"1932-03-15"`` → ``1932-03-15``."""
    return text.replace("_", " ").strip().strip('"').strip()


def split_predicate(predicate: str) -> str:
    """``birthDate`` → ``birth date``; ``was_a_crew_member_of`` → ``was a crew member of``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", predicate.replace("_", " "))
    return " ".join(words.split()).lower()


def linearise(triples: Sequence[Triple]) -> str:
    """The source string of an entry: ``<H> s <R> p <T> o`` per triple, in the given order."""
    return " ".join(f"<H> {clean_entity(s)} <R> {split_predicate(p)} <T> {clean_entity(o)}"
                    for s, p, o in triples)


def train_tokenizer(texts: Iterable[str], vocab_size: int, extra: Sequence[str] = ()):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts`` with at most ``vocab_size``
    tokens (the special tokens first, at their fixed ids, then ``extra`` special tokens, e.g.
    ChatML's ``<|im_start|>`` and ``<|im_end|>``). Deterministic for the same texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    special = [*SPECIAL, *extra]
    if vocab_size < len(special) + 256:
        raise ValueError(f"vocab_size must be at least {len(special) + 256} (the special tokens "
                         f"and the 256 bytes), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    for i, token in enumerate(special):
        if tokenizer.token_to_id(token) != i:
            raise RuntimeError(f"the trained tokenizer put {token} at {tokenizer.token_to_id(token)}")
    return tokenizer


def parse_tokenizer_json(path: Path, fix: str):
    """A ``tokenizers.Tokenizer`` from the ``tokenizer.json`` at ``path``, any layout; DataError
    naming the file and ``fix`` (how to repair it) if it is missing or not a tokenizer."""
    from tokenizers import Tokenizer

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the tokenizer {path} ({e.strerror or e})") from None
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # the Rust parser raises Exceptions, or a PanicException (a
        # BaseException) on some malformed input
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable tokenizer.json ({first}); {fix}") from None


def read_tokenizer(path: Path):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` at ``path``; DataError if the file is
    missing, not a tokenizer, or lacks the special tokens at their ids (pad 0, ``</s>`` 1)."""
    tokenizer = parse_tokenizer_json(path, "delete it (a cached one is trained again) or save "
                                           "the tokenizer again")
    for token, want in (("<pad>", PAD), ("</s>", EOS)):
        got = tokenizer.token_to_id(token)
        if got != want:
            raise DataError(f"the tokenizer {path} has {token} at id {got}, not {want}: it is not "
                            "a T5-style tokenizer (pad 0, </s> 1)")
    if tokenizer.get_vocab_size() < len(SPECIAL):
        raise DataError(f"the tokenizer {path} has only {tokenizer.get_vocab_size()} tokens")
    return tokenizer


def cached_tokenizer(texts: Sequence[str], vocab_size: int, cache: Path | None = None,
                     extra: Sequence[str] = ()):
    """:func:`train_tokenizer` on ``texts``, saved under ``$DPS_CACHE_DIR/tokenizers/`` keyed by
    the texts, the size and the ``extra`` special tokens, and read back from there next time (a
    damaged file is retrained)."""
    from .mnist1d import cache_dir

    digest = hashlib.sha256()
    for t in extra:  # none: the key of the tokenizers cached before ``extra`` existed
        digest.update(b"\1" + t.encode("utf-8") + b"\0")
    for t in texts:
        digest.update(t.encode("utf-8") + b"\0")
    folder = (cache or cache_dir()) / "tokenizers"
    path = folder / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}.json"
    if path.is_file():
        try:
            cached = read_tokenizer(path)
            if all(cached.token_to_id(t) == len(SPECIAL) + i for i, t in enumerate(extra)):
                return cached
        except DataError:
            pass  # trained again below
    tokenizer = train_tokenizer(texts, vocab_size, extra)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tokenizer.to_str())
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs the training next time
    return tokenizer
