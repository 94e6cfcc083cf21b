"""The readers of the ``ift`` scenario on small fixtures written in the real formats: chat JSONL
mixtures (LESS / Tülu, plain and gzip; benchmarks.data.chat_jsonl) and the multiple-choice target
tasks (benchmarks.data.choice_tasks): MMLU's CSV files, ARC's JSONL, HellaSwag's JSONL and the
MMLU few-shot YAML files of lm-eval, the last also on the installed package."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks.data import choice_tasks
from benchmarks.data.chat_jsonl import load_chat_mixture, read_chat_jsonl
from benchmarks.data.choice_tasks import (
    load_choice_task,
    read_arc,
    read_hellaswag,
    read_lmeval_mmlu,
    read_lmeval_yaml,
    read_mmlu,
)
from benchmarks.data.instructions import ChatExample, ChoiceItem
from benchmarks.errors import DataError

LETTER_CHOICES = ("The answer is (A).", "The answer is (B).", "The answer is (C).", "The answer is (D).")

# ------------------------------------------------------------------------------- chat JSONL


def chat_line(dataset: str | None, messages: list[tuple[str, str]], eid: str = "x_0") -> str:
    obj: dict = {"id": eid, "messages": [{"role": r, "content": c} for r, c in messages]}
    if dataset is not None:
        obj = {"dataset": dataset} | obj
    return json.dumps(obj, ensure_ascii=False)


MIXTURE = [
    chat_line("flan_v2", [("user", "Translate to French: cat"), ("assistant", "chat")], "flan_v2_0"),
    "",
    chat_line("oasst1", [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
                         ("user", "Name a colour"), ("assistant", "Blue — ou bleu.")], "oasst1_7"),
    "   ",
    chat_line(None, [("user", "2+2?"), ("assistant", "4")], "no_dataset"),
]


def write_lines(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_chat_jsonl_fields(tmp_path):
    path = write_lines(tmp_path / "tulu_mix.jsonl", MIXTURE)
    examples = read_chat_jsonl(path)
    assert [e.eid for e in examples] == ["tulu_mix.jsonl:1", "tulu_mix.jsonl:3", "tulu_mix.jsonl:5"]
    assert examples[0] == ChatExample((("user", "Translate to French: cat"), ("assistant", "chat")),
                                      "flan_v2", "tulu_mix.jsonl:1")
    second = examples[1]
    assert second.source == "oasst1"
    assert second.messages[0] == ("system", "Be brief.")
    assert second.answer == "Blue — ou bleu."
    assert second.prompt == (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
                             ("user", "Name a colour"))
    assert examples[2].source == "tulu_mix"  # no "dataset": the file's stem
    assert read_chat_jsonl(path, default_source="misc")[2].source == "misc"
    assert read_chat_jsonl(path, default_source="misc")[0].source == "flan_v2"


def test_chat_jsonl_gzip_reads_like_plain(tmp_path):
    plain = read_chat_jsonl(write_lines(tmp_path / "mix.jsonl", MIXTURE))
    packed = read_chat_jsonl(write_lines(tmp_path / "mix.jsonl.gz", MIXTURE, compress=True))
    assert [e.messages for e in packed] == [e.messages for e in plain]
    assert [e.source for e in packed] == ["flan_v2", "oasst1", "mix"]
    assert packed[0].eid == "mix.jsonl.gz:1"


def test_chat_jsonl_truncated_gzip(tmp_path):
    data = gzip.compress(("\n".join(MIXTURE) + "\n").encode())
    path = tmp_path / "mix.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"mix\.jsonl\.gz.*(truncated|corrupt)"):
        read_chat_jsonl(path)


@pytest.mark.parametrize("bad, pattern", [
    ('{"dataset": "cot", "messages": [{"role": "user", "content": "x"}', r"line 2 is not valid JSON"),
    (chat_line("cot", [("human", "x"), ("assistant", "y")]), r"line 2: message 0 has role 'human'.*"
                                                             r"system, user, assistant"),
    (chat_line("cot", [("user", "x")]), r"line 2 has no assistant message with non-empty content"),
    (chat_line("cot", [("user", "x"), ("assistant", "  ")]), r"line 2 has no assistant message"),
    ('{"dataset": "cot"}', r'line 2 has no "messages"'),
    ('[1, 2]', r"line 2 is a JSON list, not an object"),
    ('{"dataset": 3, "messages": [{"role": "assistant", "content": "y"}]}', r'"dataset" is a int'),
    ('{"messages": [{"role": "assistant", "content": null}]}', r"content a NoneType, not a string"),
])
def test_chat_jsonl_bad_lines(tmp_path, bad, pattern):
    path = write_lines(tmp_path / "cot.jsonl", [MIXTURE[0], bad])
    with pytest.raises(DataError, match=pattern) as err:
        read_chat_jsonl(path)
    assert str(path) in str(err.value)
    assert "fix" in str(err.value).lower() or "remove" in str(err.value).lower()


def test_chat_jsonl_line_limit(tmp_path, monkeypatch):
    """A line longer than MAX_LINE_BYTES (a file without newlines, a gzip bomb) is refused
    after reading at most that many bytes of it."""
    from benchmarks.data import chat_jsonl

    monkeypatch.setattr(chat_jsonl, "MAX_LINE_BYTES", 200)
    long = chat_line("cot", [("user", "x" * 400), ("assistant", "y")])
    for name, compress in (("long.jsonl", False), ("long.jsonl.gz", True)):
        path = write_lines(tmp_path / name, [MIXTURE[0], long], compress)
        with pytest.raises(DataError, match=rf"{name}, line 2 is longer than"):
            read_chat_jsonl(path)


def test_chat_jsonl_not_utf8(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"messages": [{"role": "assistant", "content": "caf\xe9"}]}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl, line 1 is not UTF-8"):
        read_chat_jsonl(path)


def test_chat_mixture_folder_list_and_commas(tmp_path):
    folder = tmp_path / "mixture"
    folder.mkdir()
    write_lines(folder / "b_dolly.jsonl", [chat_line(None, [("user", "q"), ("assistant", "a")])])
    write_lines(folder / "a_flan.jsonl.gz", MIXTURE[:1], compress=True)
    (folder / "notes.txt").write_text("not read")
    corpus = load_chat_mixture(folder)
    assert corpus.name == "jsonl"
    assert corpus.version == "a_flan.jsonl.gz,b_dolly.jsonl"
    assert corpus.root == folder
    assert corpus.sources() == {"flan_v2": 1, "b_dolly": 1}
    assert [e.eid for e in corpus.examples] == ["a_flan.jsonl.gz:1", "b_dolly.jsonl:1"]
    listed = load_chat_mixture(f"{folder / 'b_dolly.jsonl'}, {folder / 'a_flan.jsonl.gz'}")
    assert listed.version == "b_dolly.jsonl,a_flan.jsonl.gz"
    assert len(load_chat_mixture([folder / "b_dolly.jsonl"], default_source="dolly")) == 1
    assert load_chat_mixture(folder, default_source="dolly").sources() == {"flan_v2": 1, "dolly": 1}


def test_chat_mixture_nothing_found(tmp_path):
    with pytest.raises(DataError, match=r"missing.*does not exist"):
        load_chat_mixture(tmp_path / "missing")
    (tmp_path / "empty" / "flan_v2").mkdir(parents=True)
    write_lines(tmp_path / "empty" / "flan_v2" / "flan_v2_data.jsonl", MIXTURE[:1])
    with pytest.raises(DataError, match=r"no \*\.jsonl or \*\.jsonl\.gz file in .*empty.*"
                                        r"Subfolders hold some.*flan_v2_data\.jsonl"):
        load_chat_mixture(tmp_path / "empty")
    write_lines(tmp_path / "blank.jsonl", ["", "  "])
    with pytest.raises(DataError, match="hold no example"):
        load_chat_mixture(str(tmp_path / "blank.jsonl"))


# ------------------------------------------------------------------------------------- MMLU


def write_mmlu(folder: Path, subject: str, split: str, rows: list[list[str]]) -> Path:
    path = folder / split / f"{subject}_{split}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)  # no header, as released
    return path


MMLU_ROWS = {
    "astronomy": [["What is true for a type-Ia supernova?", "This type occurs in binary systems.",
                   "This type occurs in young galaxies.", "This type produces gamma-ray bursts.",
                   "This type produces high amounts of X-rays.", "A"]],
    "abstract_algebra": [["Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.", "0", "1", "2", "3",
                          "B"],
                         ["Statement 1 | A, B, C.\nStatement 2 | \"quoted\".", "True, True",
                          "False, False", "True, False", "False, True", "D"]],
}


def test_read_mmlu_fields(tmp_path):
    data = tmp_path / "data"
    for subject, rows in MMLU_ROWS.items():
        write_mmlu(data, subject, "test", rows)
    write_mmlu(data, "astronomy", "dev", MMLU_ROWS["astronomy"])
    items = read_mmlu(data, "test")
    assert [i.subject for i in items] == ["abstract_algebra", "abstract_algebra", "astronomy"]
    assert items[0] == ChoiceItem(
        task="mmlu", subject="abstract_algebra",
        prompt="Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\n(A) 0 (B) 1 (C) 2 (D) 3",
        choices=LETTER_CHOICES, answer=1, split="test")
    assert items[1].prompt == ('Statement 1 | A, B, C.\nStatement 2 | "quoted".\n'
                               "(A) True, True (B) False, False (C) True, False (D) False, True")
    assert items[1].answer == 3
    assert items[2].answer == 0
    assert items[2].as_chat().answer == "The answer is (A)."
    assert read_mmlu(tmp_path, "test") == items  # the folder holding data/
    dev = read_mmlu(tmp_path, "dev")
    assert [(i.subject, i.split) for i in dev] == [("astronomy", "dev")]


@pytest.mark.parametrize("row, pattern", [
    (["Q?", "a", "b", "c", "d", "E"], r"line 2: the answer 'E' is not one of A, B, C, D"),
    (["Q?", "a", "b", "c", "d"], r"line 2 has 5 fields; an MMLU row has 6"),
    (["", "a", "b", "c", "d", "A"], r"line 2 has an empty question"),
])
def test_read_mmlu_bad_rows(tmp_path, row, pattern):
    path = write_mmlu(tmp_path, "anatomy", "val", [MMLU_ROWS["astronomy"][0], row])
    with pytest.raises(DataError, match=pattern) as err:
        read_mmlu(tmp_path, "val")
    assert str(path) in str(err.value)


def test_read_mmlu_missing(tmp_path):
    with pytest.raises(DataError, match=r"expected .*/test/<subject>_test\.csv or .*/data/test/.*data\.tar"):
        read_mmlu(tmp_path, "test")
    with pytest.raises(DataError, match="unknown split 'train'; MMLU has dev, val, test"):
        read_mmlu(tmp_path, "train")


# -------------------------------------------------------------------------------------- ARC


def arc_line(qid: str, stem: str, choices: list[tuple[str, str]], key: str) -> str:
    return json.dumps({"id": qid, "question": {"stem": stem, "choices": [
        {"text": text, "label": label} for label, text in choices]}, "answerKey": key})


ARC_LINES = [
    arc_line("Mercury_7175875", "An astronomer observes that a planet rotates faster after a "
             "meteorite impact. Which is the most likely effect?",
             [("A", "Planetary density will decrease."), ("B", "Planetary years will become longer."),
              ("C", "Planetary days will become shorter."), ("D", "Planetary gravity will become stronger.")],
             "C"),
    arc_line("NYSEDREGENTS_2015_4_8", "Which tool measures mass?",
             [("1", "ruler"), ("2", "balance"), ("3", "thermometer"), ("4", "graduated cylinder")], "2"),
    arc_line("MCAS_2000_4_6", "Which is a mammal?",
             [("A", "frog"), ("B", "whale"), ("C", "shark"), ("D", "eel"), ("E", "trout")], "B"),
    arc_line("Mercury_3", "Which has three choices?", [("A", "x"), ("B", "y"), ("C", "z")], "C"),
]


def test_read_arc_fields(tmp_path):
    folder = tmp_path / "ARC-V1-Feb2018-2" / "ARC-Challenge"
    folder.mkdir(parents=True)
    path = write_lines(folder / "ARC-Challenge-Dev.jsonl", ARC_LINES)
    items = read_arc(tmp_path, "challenge", "dev")
    assert read_arc(path, "challenge", "dev") == items == read_arc(folder, "challenge", "dev")
    assert items[0] == ChoiceItem(
        task="arc_challenge", subject="arc_challenge",
        prompt="An astronomer observes that a planet rotates faster after a meteorite impact. Which is "
               "the most likely effect?\n(A) Planetary density will decrease. (B) Planetary years will "
               "become longer. (C) Planetary days will become shorter. (D) Planetary gravity will "
               "become stronger.",
        choices=LETTER_CHOICES, answer=2, split="dev")
    assert items[1].prompt == ("Which tool measures mass?\n(1) ruler (2) balance (3) thermometer "
                               "(4) graduated cylinder")
    assert items[1].choices == tuple(f"The answer is ({n})." for n in "1234")
    assert items[1].answer == 1
    assert len(items[2].choices) == 5 and items[2].choices[4] == "The answer is (E)."
    assert items[2].answer == 1
    assert len(items[3].choices) == 3 and items[3].answer == 2


def test_read_arc_bad(tmp_path):
    folder = tmp_path / "ARC-Easy"
    folder.mkdir()
    write_lines(folder / "ARC-Easy-Test.jsonl",
                [ARC_LINES[0], arc_line("q", "Stem?", [("A", "x"), ("B", "y")], "Z")])
    with pytest.raises(DataError, match=r"ARC-Easy-Test\.jsonl, line 2: the answerKey 'Z' is not one "
                                        r"of the choice labels A, B"):
        read_arc(tmp_path, "easy", "test")
    with pytest.raises(DataError, match=r"arc_easy train not found; expected one of .*"
                                        r"ARC-Easy-Train\.jsonl.*allenai\.org"):
        read_arc(tmp_path, "easy", "train")
    with pytest.raises(DataError, match="unknown variant"):
        read_arc(tmp_path, "hard", "test")


# -------------------------------------------------------------------------------- HellaSwag


def hellaswag_line(ctx_a: str, ctx_b: str, endings: list[str], label: int | None,
                   activity: str = "Removing ice from car") -> str:
    obj = {"ind": 24, "activity_label": activity, "ctx_a": ctx_a, "ctx_b": ctx_b,
           "ctx": f"{ctx_a} {ctx_b}".strip(), "split": "val", "split_type": "indomain",
           "label": label, "endings": endings, "source_id": "activitynet~v_-1IBHYS3L-Y"}
    if label is None:
        del obj["label"]
    return json.dumps(obj)


ENDINGS = [", the man adds wax to the windshield and cuts it.",
           ", a person board a ski lift, while two men supporting the head of the person.",
           ", the man puts on a christmas coat, knitted with netting.",
           ", the man continues removing the snow on his car."]


def test_read_hellaswag_fields(tmp_path):
    path = write_lines(tmp_path / "hellaswag_val.jsonl", [
        hellaswag_line("Then, the man writes over the snow covering the window of a car, and a woman "
                       "wearing winter clothes smiles.", "then", ENDINGS, 3)])
    (item,) = read_hellaswag(path)
    assert item.prompt == ("Complete the description: Removing ice from car: Then, the man writes over "
                           "the snow covering the window of a car, and a woman wearing winter clothes "
                           "smiles. then")
    assert item.choices == tuple(ENDINGS)
    assert (item.answer, item.split, item.task, item.subject) == (3, "val", "hellaswag", "hellaswag")


@pytest.mark.parametrize("line, pattern", [
    (hellaswag_line("A", "b", ENDINGS[:3], 0), r"line 1: endings must be a list of 4 strings \(got 3\)"),
    (hellaswag_line("A", "b", ENDINGS, 4), r"line 1: label '4' is not an ending's index 0-3"),
    (hellaswag_line("A", "b", ENDINGS, None), r"line 1 lacks label\. hellaswag_test\.jsonl has no "
                                              r"labels: use hellaswag_val\.jsonl"),
])
def test_read_hellaswag_bad(tmp_path, line, pattern):
    path = write_lines(tmp_path / "hellaswag_train.jsonl", [line])
    with pytest.raises(DataError, match=pattern) as err:
        read_hellaswag(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------ mmlu-lmeval

LMEVAL_YAML = r"""dataset_name: college_physics
description: The following are multiple choice questions (with answers) about college
  physics.
fewshot_config:
  sampler: first_n
  samples:
  - question: 'A refracting telescope consists of two converging lenses separated by
      100 cm. The eye-piece lens has a focal length of 20 cm. The angular magnification
      of the telescope is

      (A) 4 (B) 5 (C) 6 (D) 20'
    target: Let's think step by step. In a refracting telescope, if both lenses are
      converging, the focus of both lenses must be between the two lenses. The answer
      is (A).
  - question: 'Predict the number of lines.

      (A) 4 (B) 3 (C) 6 (D) 24 (E) 8'
    target: Let's think step by step. Two times four. The answer is (E).
  - question: 'No options here?'
    target: "Let's think step by step. It is (B) maybe.\n\n"
  - question: 'Which is larger?

      (A) 1 (B) 2 (C) 3 (D) 4'
    target: "Let's think step by step. The answer is (A) at first; no. The answer is (D).\n\n"
process_docs: !function utils.process_docs
tag: mmlu_flan_cot_fewshot_stem
include: _mmlu_flan_cot_fewshot_template_yaml
task: mmlu_flan_cot_fewshot_college_physics
"""


def test_read_lmeval_yaml_fixture(tmp_path):
    (tmp_path / "mmlu_college_physics.yaml").write_text(LMEVAL_YAML)
    (tmp_path / "_mmlu_flan_cot_fewshot_template_yaml").write_text("output_type: generate_until\n")
    skipped: list[str] = []
    items = read_lmeval_mmlu(tmp_path, skipped)
    assert [i.answer for i in items] == [0, 3]  # the last "The answer is (X)" counts
    assert items[0] == ChoiceItem(
        task="mmlu-lmeval", subject="college_physics",
        prompt="A refracting telescope consists of two converging lenses separated by 100 cm. The "
               "eye-piece lens has a focal length of 20 cm. The angular magnification of the "
               "telescope is\n(A) 4 (B) 5 (C) 6 (D) 20",
        choices=LETTER_CHOICES, answer=0, split="dev")
    assert skipped == ["mmlu_college_physics.yaml#1: answer (E) is not A-D",
                       "mmlu_college_physics.yaml#2: no 'The answer is (X)' in target"]


def test_read_lmeval_bad(tmp_path, monkeypatch):
    path = tmp_path / "mmlu_x.yaml"
    path.write_text("dataset_name: x\nfewshot_config: [unclosed\n")
    with pytest.raises(DataError, match=r"mmlu_x\.yaml, line 3 is not valid YAML \(ParserError: "
                                        r"expected ',' or '\]'.*reinstall lm-eval"):
        read_lmeval_yaml(path)
    path.write_text("dataset_name: x\ntask: mmlu_x\n")
    with pytest.raises(DataError, match=r"not an lm-eval MMLU task file.*fewshot_config: samples:"):
        read_lmeval_yaml(path)
    with pytest.raises(DataError, match=r"no mmlu_<subject>\.yaml in .*missing.*pip install lm-eval"):
        read_lmeval_mmlu(tmp_path / "missing")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match=r"lm-eval package is not installed; `pip install lm-eval`"):
        read_lmeval_mmlu()


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                    reason="lm-eval is not installed (pip install lm-eval): its MMLU YAML files are "
                           "what this test reads")
def test_read_lmeval_installed():
    skipped: list[str] = []
    items = read_lmeval_mmlu(skipped=skipped)
    subjects = {i.subject for i in items}
    assert len(items) >= 200 and len(subjects) >= 50
    assert "abstract_algebra" in subjects and "high_school_physics" in subjects
    assert len(skipped) <= 5
    for item in items:
        assert item.task == "mmlu-lmeval" and item.choices == LETTER_CHOICES
        assert 0 <= item.answer < 4
        assert "(A)" in item.prompt and "(D)" in item.prompt


# -------------------------------------------------------------------------------- dispatch


def test_load_choice_task_dispatch(tmp_path):
    write_mmlu(tmp_path / "mmlu" / "data", "astronomy", "val", MMLU_ROWS["astronomy"])
    arc = tmp_path / "arc" / "ARC-V1-Feb2018-2" / "ARC-Easy"
    arc.mkdir(parents=True)
    write_lines(arc / "ARC-Easy-Train.jsonl", ARC_LINES[1:2])
    (tmp_path / "hellaswag").mkdir()
    write_lines(tmp_path / "hellaswag" / "hellaswag_val.jsonl", [hellaswag_line("A", "b", ENDINGS, 2)])
    assert [i.subject for i in load_choice_task("mmlu", tmp_path, "val")] == ["astronomy"]
    assert [i.answer for i in load_choice_task("arc_easy", tmp_path, "train")] == [1]
    assert [i.choices for i in load_choice_task("hellaswag", tmp_path, "val")] == [tuple(ENDINGS)]
    with pytest.raises(DataError, match=r"mmlu: test files not found; expected .*mmlu/data/test/"
                                        r"<subject>_test\.csv"):
        load_choice_task("mmlu", tmp_path, "test")
    with pytest.raises(DataError, match=r"arc_challenge test not found; expected one of .*"
                                        r"ARC-Challenge/ARC-Challenge-Test\.jsonl"):
        load_choice_task("arc_challenge", tmp_path, "test")
    with pytest.raises(DataError, match=r"hellaswag: train not found; expected one of .*"
                                        r"hellaswag/hellaswag_train\.jsonl"):
        load_choice_task("hellaswag", tmp_path, "train")
    with pytest.raises(DataError, match="unknown choice task 'piqa'; choose one of mmlu, arc_challenge"):
        load_choice_task("piqa", tmp_path, "test")


def test_load_choice_task_lmeval_uses_the_package(tmp_path, monkeypatch):
    (tmp_path / "mmlu_college_physics.yaml").write_text(LMEVAL_YAML)
    monkeypatch.setattr(choice_tasks, "lmeval_folder", lambda: tmp_path)
    items = load_choice_task("mmlu-lmeval", None, "test")
    assert [(i.subject, i.split) for i in items] == [("college_physics", "dev")] * 2
