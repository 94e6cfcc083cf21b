"""Instruction-tuning mixtures in the common chat JSONL format (LESS, Tülu / open-instruct).

Format: one JSON object per line, UTF-8, as released by open-instruct (``tulu-v2-sft-mixture``)
and by LESS (``data/train/processed/{flan_v2,cot,dolly,oasst1}/*_data.jsonl``)::

    {"dataset": "flan_v2", "id": "flan_v2_0", "messages": [
        {"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

- ``messages``: a non-empty list of ``{"role", "content"}`` objects; ``role`` is one of
  ``system``, ``user``, ``assistant`` (anything else is refused), ``content`` a string (kept as
  is). At least one assistant message must have non-blank content: the loss covers assistant
  tokens only. Other keys of a message (``name``, ...) are ignored.
- ``dataset``: the source the example comes from (the group tag of the ``ift`` scenario). When the
  key is missing, null or empty, the source is ``default_source`` when given, else the file name
  without ``.jsonl`` / ``.jsonl.gz`` (``flan_v2_data.jsonl`` -> ``flan_v2_data``).
- ``id`` and any other key are ignored; the example's ``eid`` is ``<file name>:<line number>``.

Blank lines are skipped. A file whose first bytes are the gzip magic (``.jsonl.gz``, whatever its
name) is decompressed on the fly. Lines are read one at a time, each at most
:data:`MAX_LINE_BYTES`, so a corrupt or hostile file (a gzip bomb, a file without newlines) cannot
exhaust memory. Every problem is a :class:`DataError` naming the file, the line, what is wrong and
how to fix it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from .instructions import ROLES, ChatExample, InstructionCorpus

MAX_LINE_BYTES = 16 << 20  # the longest Tülu v2 example has ~0.5 MB; a bigger line is not an example
SUFFIXES = (".jsonl", ".jsonl.gz")


def _stem(path: Path) -> str:
    """The file name without ``.jsonl.gz`` / ``.jsonl`` / ``.gz`` (the default source)."""
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", ".gz", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def iter_json_lines(path: Path, what: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of every non-blank line of a JSONL file, plain or gzip
    (detected by its magic bytes). ``what`` names the format in messages (``chat JSONL``).
    Raises DataError for an unreadable file, a corrupt gzip stream, a line that is too long, not
    UTF-8 or not JSON."""
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            lineno = 0
            while True:
                line = stream.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                lineno += 1
                if len(line) > MAX_LINE_BYTES:
                    raise DataError(f"{what}: {path}, line {lineno} is longer than "
                                    f"{MAX_LINE_BYTES >> 20} MiB; a {what} file has one example "
                                    "per line: the file is corrupt or in another format.")
                if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte order mark
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{what}: {path}, line {lineno} is not UTF-8 ({e.reason} at "
                                    f"byte {e.start}); save the file as UTF-8 or download it "
                                    "again.") from None
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError) as e:
                    raise DataError(f"{what}: {path}, line {lineno} is not valid JSON "
                                    f"({type(e).__name__}: {str(e)[:200]}); each line must be "
                                    "one JSON object: fix or remove the line, or download the "
                                    "file again.") from None
                yield lineno, value
    except DataError:
        raise
    except gzip.BadGzipFile as e:
        raise DataError(f"{what}: {path} starts like gzip but is not a valid gzip file ({e}); it "
                        "is corrupt or truncated: download or copy it again.") from None
    except (EOFError, zlib.error) as e:
        raise DataError(f"{what}: {path}: the gzip stream is truncated or corrupt ({e or type(e).__name__}); "
                        "download or copy the file again.") from None
    except OSError as e:
        raise DataError(f"{what}: cannot read {path}: {e.strerror or e}") from None


def _message(item: object, where: str, index: int) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise DataError(f"{where}: message {index} is a {type(item).__name__}, not an object "
                        '{"role": ..., "content": ...}; fix the line or remove it.')
    role, content = item.get("role"), item.get("content")
    if role not in ROLES:
        raise DataError(f"{where}: message {index} has role {str(role)[:40]!r}; the roles are "
                        f"{', '.join(ROLES)}. Fix the line (map other roles to these) or remove it.")
    if not isinstance(content, str):
        shown = "missing" if "content" not in item else f"a {type(content).__name__}"
        raise DataError(f"{where}: message {index} ({role}) has content {shown}, not a string; "
                        "fix the line or remove it.")
    return role, content


def parse_chat(value: object, where: str, default_source: str, eid: str = "") -> ChatExample:
    """One chat example from a parsed JSON line (see the module docstring); ``where`` names the
    file and line in messages. Raises DataError."""
    if not isinstance(value, dict):
        raise DataError(f"{where} is a JSON {type(value).__name__}, not an object with "
                        '"messages" (and "dataset"); fix the line or remove it.')
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        shown = "has no \"messages\"" if "messages" not in value else \
            "has \"messages\" that is not a non-empty list"
        raise DataError(f"{where} {shown}; each line needs \"messages\": "
                        '[{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]: fix '
                        "the line or remove it.")
    pairs = tuple(_message(item, where, i) for i, item in enumerate(messages))
    if not any(role == "assistant" and content.strip() for role, content in pairs):
        raise DataError(f"{where} has no assistant message with non-empty content; an "
                        "instruction example needs the response to train on: add it or remove "
                        "the line.")
    source = value.get("dataset")
    if source is None or source == "":
        source = default_source
    elif not isinstance(source, str):
        raise DataError(f"{where}: \"dataset\" is a {type(source).__name__}, not the source's "
                        "name (a string such as \"flan_v2\"); fix the line.")
    return ChatExample(messages=pairs, source=source, eid=eid)


def read_chat_jsonl(path: Path, default_source: str | None = None) -> list[ChatExample]:
    """The chat examples of one JSONL file (plain or gzip), in file order (see the module
    docstring for the format). ``default_source`` is the source of lines without ``dataset``
    (default: the file name without ``.jsonl`` / ``.jsonl.gz``). Raises DataError naming the file
    and line of the first problem."""
    path = Path(path)
    what = "chat JSONL"
    source = default_source or _stem(path)
    return [parse_chat(value, f"{what}: {path}, line {lineno}", source, f"{path.name}:{lineno}")
            for lineno, value in iter_json_lines(path, what)]


def _expand(item: Path) -> list[Path]:
    if item.is_dir():
        return sorted((p for p in item.iterdir() if p.name.endswith(SUFFIXES) and p.is_file()),
                      key=lambda p: p.name)
    if item.is_file():
        return [item]
    raise DataError(f"chat JSONL: {item} does not exist; pass a .jsonl or .jsonl.gz file, a "
                    "folder of them, or a comma-separated list of files.")


def load_chat_mixture(paths: str | Path | list[str | Path] | tuple[str | Path, ...],
                      default_source: str | None = None) -> InstructionCorpus:
    """An instruction mixture from chat JSONL files: ``paths`` is one file, a folder (all its
    ``*.jsonl`` and ``*.jsonl.gz`` files, sorted by name; subfolders are not searched), a
    comma-separated string of files or folders, or a list of them. Files are read in that order.
    ``default_source`` as in :func:`read_chat_jsonl` (default: each file's name).

    The corpus is named ``jsonl``; its ``version`` lists the file names read, comma-separated;
    its ``root`` is the folder given, else the first file's folder. Raises DataError when a path
    does not exist, when no JSONL file is found (naming where it looked) or when the files hold no
    example."""
    if isinstance(paths, (list, tuple)):
        items = [Path(p) for p in paths]
    elif isinstance(paths, str):
        items = [Path(p.strip()) for p in paths.split(",") if p.strip()]
    else:
        items = [Path(paths)]
    if not items:
        raise DataError("chat JSONL: no path given; pass a .jsonl or .jsonl.gz file, a folder of "
                        "them, or a comma-separated list of files.")
    files = [f for item in items for f in _expand(item)]
    if not files:
        where = ", ".join(str(p) for p in items)
        deeper = [p for item in items if item.is_dir() for p in sorted(item.glob("*/*.jsonl*"))[:3]]
        hint = (f" Subfolders hold some (e.g. {', '.join(map(str, deeper))}): pass those files, "
                "comma-separated." if deeper else "")
        raise DataError(f"chat JSONL: no *.jsonl or *.jsonl.gz file in {where}; put the mixture's "
                        f"files (one chat example per line) there or pass them directly.{hint}")
    examples = tuple(e for f in files for e in read_chat_jsonl(f, default_source))
    if not examples:
        raise DataError(f"chat JSONL: {', '.join(map(str, files))} hold no example (only blank "
                        "lines); check the files.")
    root = items[0] if items[0].is_dir() else files[0].parent
    return InstructionCorpus(name="jsonl", examples=examples, root=root,
                             version=",".join(f.name for f in files))
