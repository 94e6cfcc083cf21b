"""Multiple-choice target tasks of the ``ift`` scenario: MMLU, ARC, HellaSwag, and the MMLU
questions shipped with lm-eval, each read from its released files as :class:`ChoiceItem`.

An item's ``prompt`` is the user message and its ``choices`` are the assistant continuations that
are scored. Lettered tasks (MMLU, ARC, mmlu-lmeval) put the options in the prompt and score the
letters, in the style of the FLAN / lm-eval MMLU prompts::

    prompt  = "<question>\\n(A) <option A> (B) <option B> (C) <option C> (D) <option D>"
    choices = ("The answer is (A).", "The answer is (B).", "The answer is (C).", "The answer is (D).")

HellaSwag scores its endings::

    prompt  = "Complete the description: " + activity_label + ": " + ctx
    choices = the four endings, as released

Formats and sources:

- **MMLU** (Hendrycks et al. 2021, ``data.tar`` of people.eecs.berkeley.edu/~hendrycks/ and
  github.com/hendrycks/test): ``data/{dev,val,test}/<subject>_<split>.csv``, no header, each
  row ``question, A, B, C, D, answer letter`` (quoted fields may span lines). The subject is the
  file name without ``_<split>.csv``; the question and options lose surrounding whitespace.
- **ARC** (AI2 Reasoning Challenge, ``ARC-V1-Feb2018``, allenai.org/data/arc):
  ``ARC-Challenge/ARC-Challenge-{Train,Dev,Test}.jsonl`` (and ``ARC-Easy/ARC-Easy-*.jsonl``),
  each line ``{"id", "question": {"stem", "choices": [{"text", "label"}, ...]}, "answerKey"}``.
  Labels are ``A``-``E`` or ``1``-``5``; 3 to 5 choices occur. The item's own labels are used:
  ``(1) ... (2) ...`` and ``The answer is (1).``; the stem and texts lose surrounding whitespace.
- **HellaSwag** (Zellers et al. 2019, github.com/rowanz/hellaswag, ``data/``):
  ``hellaswag_{train,val}.jsonl``, each line with ``ctx``, ``endings`` (4 strings), ``label``
  (0-3) and ``activity_label``; other fields are ignored. ``hellaswag_test.jsonl`` has no labels
  and is refused.
- **mmlu-lmeval**: the few-shot chain-of-thought examples of the ``lm-eval`` package
  (``lm_eval/tasks/mmlu/flan_cot_fewshot/mmlu_<subject>.yaml``: ``dataset_name`` and
  ``fewshot_config: samples:``, each with ``question``, the question followed by
  ``\\n(A) .. (B) .. (C) .. (D) ..``, and ``target``, a chain of thought ending
  ``The answer is (X).``). These are MMLU dev questions: split ``dev``.

Subjects: MMLU's subject for ``mmlu`` and ``mmlu-lmeval``, the task name elsewhere. Every problem
with the files is a :class:`DataError` naming the file (and line or row), what is wrong and how to
fix it.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import re
from pathlib import Path

import yaml

from ..errors import DataError
from .chat_jsonl import iter_json_lines
from .instructions import ChoiceItem

log = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D")
MMLU_SPLITS = ("dev", "val", "test")
ARC_SPLITS = {"train": "Train", "dev": "Dev", "test": "Test"}
ARC_VARIANTS = {"challenge": "ARC-Challenge", "easy": "ARC-Easy"}
ARC_RELEASE = "ARC-V1-Feb2018-2"
HELLASWAG_SPLITS = ("train", "val")
TASKS = ("mmlu", "arc_challenge", "arc_easy", "hellaswag", "mmlu-lmeval")
HELLASWAG_PREFIX = "Complete the description: "
MAX_FILE_BYTES = 64 << 20  # the largest file of these tasks (HellaSwag train) has ~45 MB
LMEVAL_FOLDER = ("tasks", "mmlu", "flan_cot_fewshot")

_ANSWER = re.compile(r"The answer is \(([A-Za-z0-9])\)")


def lettered(question: str, labels: list[str] | tuple[str, ...], options: list[str]) -> str:
    """``question`` then, on one line, ``(A) option (B) option ...`` with the given labels."""
    pairs = zip(labels, options, strict=True)
    return question + "\n" + " ".join(f"({label}) {text}" for label, text in pairs)


def answer_choices(labels: list[str] | tuple[str, ...] = LETTERS) -> tuple[str, ...]:
    """The scored continuations of a lettered task: ``The answer is (A).`` per label."""
    return tuple(f"The answer is ({label})." for label in labels)


def _read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file of at most MAX_FILE_BYTES; DataError otherwise."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataError(f"{what}: {path} has {size:,} bytes; no file of this task is over "
                            f"{MAX_FILE_BYTES >> 20} MiB: it is not the released file.")
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{what}: {path} is not UTF-8 ({e.reason} at byte {e.start}); the file is "
                        "corrupt: download it again.") from None
    except OSError as e:
        raise DataError(f"{what}: cannot read {path}: {e.strerror or e}") from None


# ------------------------------------------------------------------------------------ MMLU

def read_mmlu_csv(path: Path, split: str, subject: str | None = None) -> list[ChoiceItem]:
    """The questions of one MMLU CSV file (no header; rows ``question, A, B, C, D, letter``),
    in file order. ``subject`` defaults to the file name without ``_<split>.csv``. Raises
    DataError naming the file and line of a bad row."""
    path = Path(path)
    if subject is None:
        suffix = f"_{split}.csv"
        subject = path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem
    text = _read_text(path, "mmlu")
    items = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            where = f"mmlu: {path}, line {reader.line_num}"
            if len(row) != 6:
                raise DataError(f"{where} has {len(row)} fields; an MMLU row has 6 (question, A, "
                                "B, C, D, answer letter), no header. Quote fields holding commas, "
                                "or download the file again.")
            question, *options, letter = (field.strip() for field in row)
            if not question:
                raise DataError(f"{where} has an empty question; fix or remove the row.")
            if letter not in LETTERS:
                raise DataError(f"{where}: the answer {letter[:20]!r} is not one of A, B, C, D; "
                                "the last field is the right option's letter: fix the row.")
            items.append(ChoiceItem(task="mmlu", subject=subject,
                                    prompt=lettered(question, LETTERS, options),
                                    choices=answer_choices(), answer=LETTERS.index(letter),
                                    split=split))
    except csv.Error as e:
        raise DataError(f"mmlu: {path}, line {reader.line_num} is not valid CSV ({e}); the file "
                        "is corrupt: download it again.") from None
    return items


def mmlu_folder(root: Path, split: str) -> Path | None:
    """The folder of ``split``'s CSV files: ``root/<split>`` or ``root/data/<split>``."""
    for folder in (root / split, root / "data" / split):
        if folder.is_dir():
            return folder
    return None


def read_mmlu(root: Path, split: str) -> list[ChoiceItem]:
    """All MMLU questions of ``split`` (``dev``, ``val`` or ``test``), by subject (file name
    order), then file order. ``root`` is the folder holding ``dev/ val/ test/`` (the released
    ``data/``) or the folder holding ``data/``. Raises DataError for an unknown split, a missing
    folder, a folder without ``*_<split>.csv`` files or a bad row."""
    root = Path(root)
    if split not in MMLU_SPLITS:
        raise DataError(f"mmlu: unknown split {split!r}; MMLU has {', '.join(MMLU_SPLITS)}.")
    folder = mmlu_folder(root, split)
    files = sorted(folder.glob(f"*_{split}.csv")) if folder else []
    if not files:
        raise DataError(f"mmlu: no {split} questions: expected {root}/{split}/<subject>_{split}.csv "
                        f"or {root}/data/{split}/<subject>_{split}.csv. Extract MMLU's data.tar "
                        "(people.eecs.berkeley.edu/~hendrycks/data.tar) there.")
    return [item for path in files for item in read_mmlu_csv(path, split)]


# ------------------------------------------------------------------------------------- ARC

def read_arc_jsonl(path: Path, task: str, split: str) -> list[ChoiceItem]:
    """The questions of one ARC JSONL file, in file order; ``task`` is ``arc_challenge`` or
    ``arc_easy`` (also the subject). Raises DataError naming the file and line of a bad one."""
    items = []
    for lineno, value in iter_json_lines(Path(path), "arc"):
        where = f"arc: {path}, line {lineno}"
        question = value.get("question") if isinstance(value, dict) else None
        stem = question.get("stem") if isinstance(question, dict) else None
        choices = question.get("choices") if isinstance(question, dict) else None
        if not isinstance(stem, str) or not isinstance(choices, list):
            raise DataError(f"{where} is not an ARC question: expected {{\"question\": {{\"stem\": "
                            "..., \"choices\": [{\"text\": ..., \"label\": ...}, ...]}, "
                            "\"answerKey\": ...}; the file is corrupt or another format: download "
                            "ARC again.")
        labels, texts = [], []
        for choice in choices:
            label = choice.get("label") if isinstance(choice, dict) else None
            text = choice.get("text") if isinstance(choice, dict) else None
            if not isinstance(label, str) or not label.strip() or not isinstance(text, str):
                raise DataError(f"{where}: a choice is not {{\"text\": <string>, \"label\": "
                                "<string>}; fix the line or download ARC again.")
            labels.append(label.strip())
            texts.append(text.strip())
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise DataError(f"{where} has choice labels {labels[:8]}; an ARC question has 2 or "
                            "more choices with distinct labels: fix the line.")
        key = value.get("answerKey")
        key = key.strip() if isinstance(key, str) else key
        if key not in labels:
            raise DataError(f"{where}: the answerKey {str(key)[:20]!r} is not one of the choice "
                            f"labels {', '.join(labels)}; fix the line.")
        items.append(ChoiceItem(task=task, subject=task, prompt=lettered(stem.strip(), labels, texts),
                                choices=answer_choices(labels), answer=labels.index(key),
                                split=split))
    return items


def arc_candidates(root: Path, variant: str, split: str) -> list[Path]:
    """Where :func:`read_arc` looks for ``<ARC-Variant>-<Split>.jsonl`` below the folder root."""
    folder = ARC_VARIANTS[variant]
    name = f"{folder}-{ARC_SPLITS[split]}.jsonl"
    return [root / name, root / folder / name, root / ARC_RELEASE / folder / name,
            root / "arc" / folder / name, root / "arc" / ARC_RELEASE / folder / name]


def read_arc(path_or_dir: Path, variant: str, split: str) -> list[ChoiceItem]:
    """ARC questions of ``variant`` (``challenge`` or ``easy``) and ``split`` (``train``,
    ``dev`` or ``test``). ``path_or_dir`` is the JSONL file itself, or a folder holding it
    directly, in ``ARC-Challenge/``, ``ARC-V1-Feb2018-2/ARC-Challenge/`` or either of those
    below ``arc/`` (see :func:`arc_candidates`). Task and subject: ``arc_<variant>``."""
    if variant not in ARC_VARIANTS:
        raise DataError(f"arc: unknown variant {variant!r}; choose {' or '.join(ARC_VARIANTS)}.")
    if split not in ARC_SPLITS:
        raise DataError(f"arc: unknown split {split!r}; ARC has {', '.join(ARC_SPLITS)}.")
    task = f"arc_{variant}"
    path = Path(path_or_dir)
    if not path.is_file():
        candidates = arc_candidates(path, variant, split)
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataError(f"arc: {task} {split} not found; expected one of "
                            f"{', '.join(map(str, candidates))}. Download ARC-V1-Feb2018 "
                            "(allenai.org/data/arc) and extract it there.")
        path = found
    return read_arc_jsonl(path, task, split)


# ------------------------------------------------------------------------------- HellaSwag

def read_hellaswag(path: Path) -> list[ChoiceItem]:
    """The contexts of one HellaSwag JSONL file, in file order. The split is ``<split>`` of a
    file named ``hellaswag_<split>.jsonl``, else the file name without ``.jsonl``. Raises
    DataError naming the file and line of a bad one (missing field, not 4 endings, label not
    0-3)."""
    path = Path(path)
    m = re.fullmatch(r"hellaswag_(\w+)\.jsonl(?:\.gz)?", path.name)
    split = m.group(1) if m else path.name.split(".")[0]
    items = []
    for lineno, value in iter_json_lines(path, "hellaswag"):
        where = f"hellaswag: {path}, line {lineno}"
        if not isinstance(value, dict):
            raise DataError(f"{where} is a JSON {type(value).__name__}, not an object with ctx, "
                            "endings, label and activity_label; download HellaSwag again.")
        missing = [k for k in ("ctx", "endings", "label", "activity_label") if k not in value]
        if missing:
            fix = (" hellaswag_test.jsonl has no labels: use hellaswag_val.jsonl."
                   if missing == ["label"] else " Download HellaSwag again.")
            raise DataError(f"{where} lacks {', '.join(missing)}.{fix}")
        ctx, endings, label, activity = (value[k] for k in ("ctx", "endings", "label", "activity_label"))
        if not isinstance(ctx, str) or not isinstance(activity, str):
            raise DataError(f"{where}: ctx and activity_label must be strings; fix the line.")
        if not isinstance(endings, list) or len(endings) != 4 \
                or not all(isinstance(e, str) for e in endings):
            count = len(endings) if isinstance(endings, list) else type(endings).__name__
            raise DataError(f"{where}: endings must be a list of 4 strings (got {count}); fix the "
                            "line or download HellaSwag again.")
        if isinstance(label, str) and label.strip().isdecimal() and len(label) <= 3:
            label = int(label.strip())
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < 4:
            raise DataError(f"{where}: label {str(label)[:20]!r} is not an ending's index 0-3; fix "
                            "the line.")
        items.append(ChoiceItem(task="hellaswag", subject="hellaswag",
                                prompt=f"{HELLASWAG_PREFIX}{activity}: {ctx}",
                                choices=tuple(endings), answer=label, split=split))
    return items


def hellaswag_candidates(root: Path, split: str) -> list[Path]:
    name = f"hellaswag_{split}.jsonl"
    return [root / name, root / "hellaswag" / name, root / "hellaswag" / "data" / name]


# ------------------------------------------------------------------------------ mmlu-lmeval

class _LenientLoader(yaml.SafeLoader):
    """yaml's safe loader that reads an unknown local tag (lm-eval's ``!function utils.x``) as
    None instead of failing; the MMLU files of lm-eval 0.4.13 have none."""


_LenientLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def lmeval_folder() -> Path:
    """``lm_eval/tasks/mmlu/flan_cot_fewshot`` of the installed lm-eval (not imported)."""
    try:
        spec = importlib.util.find_spec("lm_eval")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError("mmlu-lmeval: the lm-eval package is not installed; `pip install lm-eval` "
                        "(0.4.x), or pass the folder of its tasks/mmlu/flan_cot_fewshot YAML files.")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*LMEVAL_FOLDER)


def read_lmeval_yaml(path: Path, skipped: list[str] | None = None) -> list[ChoiceItem]:
    """The few-shot samples of one ``mmlu_<subject>.yaml`` of lm-eval as items (task
    ``mmlu-lmeval``, split ``dev``): subject ``dataset_name``, prompt the sample's ``question`` as
    is, choices ``The answer is (A).`` .. ``(D).``, answer the letter of the last ``The answer is
    (X)`` in ``target``. A sample whose answer is missing or not A-D (one college_chemistry sample
    has five options, answer E), or whose question does not list (A) to (D), is left out, its
    ``file#index: reason`` appended to ``skipped`` and logged (INFO). Raises DataError for a file
    that is not such a YAML file."""
    path = Path(path)
    text = _read_text(path, "mmlu-lmeval")
    try:
        # a SafeLoader subclass (it builds plain data only) that reads lm-eval's local
        # ``!function`` tags as None: yaml.safe_load itself would refuse them
        loader = _LenientLoader(text)
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or " ".join(str(e).split())[:200]
        raise DataError(f"mmlu-lmeval: {path}{at} is not valid YAML ({type(e).__name__}: {what}); "
                        "reinstall lm-eval (`pip install --force-reinstall lm-eval`).") from None
    config = doc.get("fewshot_config") if isinstance(doc, dict) else None
    samples = config.get("samples") if isinstance(config, dict) else None
    subject = doc.get("dataset_name") if isinstance(doc, dict) else None
    if not isinstance(subject, str) or not subject or not isinstance(samples, list):
        raise DataError(f"mmlu-lmeval: {path} is not an lm-eval MMLU task file: it needs "
                        "\"dataset_name\" and a \"fewshot_config: samples:\" list; reinstall "
                        "lm-eval or pass the folder tasks/mmlu/flan_cot_fewshot.")
    items = []
    for index, sample in enumerate(samples):
        question = sample.get("question") if isinstance(sample, dict) else None
        target = sample.get("target") if isinstance(sample, dict) else None
        if not isinstance(question, str) or not isinstance(target, str):
            raise DataError(f"mmlu-lmeval: {path}, sample {index} lacks a question or target "
                            "string; reinstall lm-eval.")
        answers = _ANSWER.findall(target)
        reason = None
        if not answers:
            reason = "no 'The answer is (X)' in target"
        elif answers[-1] not in LETTERS:
            reason = f"answer ({answers[-1]}) is not A-D"
        elif not re.search(r"\(A\).*\(B\).*\(C\).*\(D\)", question, re.S):
            reason = "the question does not list options (A) to (D)"
        if reason:
            note = f"{path.name}#{index}: {reason}"
            log.info("mmlu-lmeval: skipped %s", note)
            if skipped is not None:
                skipped.append(note)
            continue
        items.append(ChoiceItem(task="mmlu-lmeval", subject=subject, prompt=question,
                                choices=answer_choices(), answer=LETTERS.index(answers[-1]),
                                split="dev"))
    return items


def read_lmeval_mmlu(folder: Path | None = None, skipped: list[str] | None = None) -> list[ChoiceItem]:
    """The MMLU few-shot CoT questions shipped with lm-eval: every ``mmlu_*.yaml`` of ``folder``
    (default: ``tasks/mmlu/flan_cot_fewshot`` of the installed ``lm_eval`` package) by file name,
    each read by :func:`read_lmeval_yaml` (``skipped`` collects left-out samples). With lm-eval
    0.4.13: 281 items over 57 subjects (1 of 282 samples skipped). Raises DataError when lm-eval
    is not installed, the folder has no such file, or no sample could be read."""
    folder = lmeval_folder() if folder is None else Path(folder)
    files = sorted(folder.glob("mmlu_*.yaml")) if folder.is_dir() else []
    if not files:
        raise DataError(f"mmlu-lmeval: no mmlu_<subject>.yaml in {folder}; expected lm-eval's "
                        "tasks/mmlu/flan_cot_fewshot folder (`pip install lm-eval`).")
    items = [item for path in files for item in read_lmeval_yaml(path, skipped)]
    if not items:
        raise DataError(f"mmlu-lmeval: none of the {len(files)} files of {folder} has a readable "
                        "sample; reinstall lm-eval.")
    return items


# -------------------------------------------------------------------------------- dispatch

def load_choice_task(name: str, root: Path | None, split: str) -> list[ChoiceItem]:
    """The items of target task ``name`` and ``split`` below the data directory ``root``:

    - ``mmlu``: ``root/mmlu/data/<split>/*_<split>.csv`` (or ``root/mmlu/<split>/``,
      ``root/data/<split>/``, ``root/<split>/``); splits dev, val, test.
    - ``arc_challenge``, ``arc_easy``: ``root/arc/ARC-V1-Feb2018-2/ARC-Challenge/
      ARC-Challenge-<Split>.jsonl`` (or the other places of :func:`arc_candidates`); splits train,
      dev, test.
    - ``hellaswag``: ``root/hellaswag/hellaswag_<split>.jsonl`` (or ``root/hellaswag_<split>.jsonl``,
      ``root/hellaswag/data/``); splits train, val.
    - ``mmlu-lmeval``: the installed lm-eval package (``root`` and ``split`` are not used; the
      items are dev questions).

    Raises DataError for an unknown task or split, or listing the expected paths when the files
    are missing."""
    if name not in TASKS:
        raise DataError(f"unknown choice task {name!r}; choose one of {', '.join(TASKS)}.")
    if name == "mmlu-lmeval":
        return read_lmeval_mmlu()
    if root is None:
        raise DataError(f"{name}: no data directory given; pass --data-dir DIR (or set "
                        "$DPS_DATA_DIR) holding the task's files.")
    root = Path(root)
    if name == "mmlu":
        if split not in MMLU_SPLITS:
            raise DataError(f"mmlu: unknown split {split!r}; MMLU has {', '.join(MMLU_SPLITS)}.")
        for base in (root / "mmlu", root):
            if mmlu_folder(base, split) is not None:
                return read_mmlu(base, split)
        expected = [f"{base}/{sub}{split}/<subject>_{split}.csv"
                    for base in (root / "mmlu", root) for sub in ("data/", "")]
        raise DataError(f"mmlu: {split} files not found; expected {', '.join(expected)}. Extract "
                        "MMLU's data.tar (people.eecs.berkeley.edu/~hendrycks/data.tar) into "
                        f"{root / 'mmlu'}.")
    if name.startswith("arc_"):
        return read_arc(root, name.removeprefix("arc_"), split)
    if split not in HELLASWAG_SPLITS:
        raise DataError(f"hellaswag: unknown split {split!r}; HellaSwag has labelled "
                        f"{' and '.join(HELLASWAG_SPLITS)} files (its test file has no labels).")
    candidates = hellaswag_candidates(root, split)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise DataError(f"hellaswag: {split} not found; expected one of "
                        f"{', '.join(map(str, candidates))}. Download hellaswag_{split}.jsonl "
                        "(github.com/rowanz/hellaswag, data/) there.")
    return read_hellaswag(found)
