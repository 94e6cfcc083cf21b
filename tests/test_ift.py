"""The ``ift`` scenario: the generated instruction mixture, ChatML rows with assistant-only labels,
the causal LM behind the method contract, exact-match and multiple-choice evaluation, AskLLM-O's
judge, the groups and sources of Dt, and short end-to-end runs through the harness and the CLI."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

from benchmarks import harness
from benchmarks.cli import main
from benchmarks.data import load_source
from benchmarks.data.generated_instructions import (
    CORRUPTED,
    IRRELEVANT,
    SOURCES,
    USEFUL,
    generate_mixture,
    generate_target,
    make_task,
)
from benchmarks.errors import ConfigError
from benchmarks.models.causal_lm import (
    IGNORE,
    PAD_X,
    assistant_nll,
    encode_chat,
)
from benchmarks.scenarios import get_scenario
from benchmarks.scenarios.ift import Choices, Letters, OpenAnswers, _letter_form
from benchmarks.sweep import plan
from methods import Batch, get_method, list_methods

TINY = {"d_model": 32, "d_ff": 64, "heads": 2, "layers": 1, "vocab_size": 400,
        "pretrain_steps": 3, "meta_per_task": 4, "test_per_task": 6, "n_train": 120,
        "eval_batch_size": 8, "max_len": 64, "max_new_tokens": 4}


@pytest.fixture(scope="module")
def scenario():
    return get_scenario("ift")


@pytest.fixture(scope="module")
def data(scenario, tmp_path_factory):
    import os

    os.environ.setdefault("DPS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    settings = scenario.resolve_settings("generated-ift", "quick", TINY)
    return scenario.build(load_source("generated-ift"), settings, 0), settings


# -- the generated mixture ----------------------------------------------------------------------

def _true_answer(family: str, prompt: str) -> str:
    numbers = [int(v) for v in re.findall(r"\d+", prompt)]
    if family.startswith("arithmetic"):
        return str(numbers[0] + numbers[1])
    if family == "sorting":
        return " ".join(map(str, sorted(numbers)))
    if family == "lookup":
        pairs = dict(re.findall(r"(\w+)=(\d+)", prompt))
        key = re.search(r"(?:What is|find|Look up) (\w+)", prompt).group(1)
        return pairs[key]
    if family == "reversal":
        return re.search(r"(?:word|Spell|Write) (\w+)", prompt).group(1)[::-1]
    return prompt.split(": ", 1)[1]


@pytest.mark.parametrize("family", SOURCES)
def test_each_task_family_answers_right_except_the_corrupted_one(family):
    rng = __import__("numpy").random.default_rng(3)
    for _ in range(200):
        prompt, answer = make_task(family, rng)
        if family in CORRUPTED:
            assert answer != _true_answer(family, prompt) and int(answer) >= 0
        else:
            assert answer == _true_answer(family, prompt), (prompt, answer)


def test_mixture_and_targets_are_deterministic_and_disjoint_streams():
    a, b = generate_mixture(0, per_source=50), generate_mixture(0, per_source=50)
    assert a == b and a.sources() == {s: 50 for s in SOURCES}
    assert generate_mixture(1, per_source=50) != a
    meta = generate_target("arithmetic", 30, 7, "meta")
    test = generate_target("arithmetic", 30, 7, "test")
    assert meta == generate_target("arithmetic", 30, 7, "meta")
    assert [e.messages for e in meta] != [e.messages for e in test]
    with pytest.raises(ValueError, match="unknown target task"):
        generate_target("copying", 3, 0, "meta")


# -- rows: ChatML with assistant-only labels ------------------------------------------------------

def test_labels_cover_exactly_the_assistant_turns(data):
    d, _ = data
    tok = d.tokenizer
    messages = (("system", "be brief"), ("user", "What is 2 + 3?"), ("assistant", "5"),
                ("user", "And 4 + 4?"), ("assistant", "8"))
    ids, labels = encode_chat(tok, messages, 200)
    assert len(ids) == len(labels)
    labelled = [i for i, v in zip(ids, labels, strict=True) if v != IGNORE]
    assert [v for v in labels if v != IGNORE] == labelled  # a label is the token itself
    text = tok.decode(labelled, skip_special_tokens=False)
    assert text.replace(" ", "") == "5<|im_end|>8<|im_end|>"
    full = tok.decode(ids, skip_special_tokens=False)
    assert "be brief" in full and "What is 2 + 3?" in full.replace("  ", " ")
    cut_ids, cut_labels = encode_chat(tok, messages, 7)
    assert cut_ids == ids[:7] and cut_labels == labels[:7]


def test_loss_counts_only_labelled_tokens_and_ignores_padding(data):
    d, _ = data
    torch.manual_seed(0)
    logits = torch.randn(2, 6, d.num_classes, requires_grad=True)
    y = torch.full((2, 6), IGNORE)
    y[0, 3:5] = torch.tensor([5, 7])
    y[1, 1] = 9
    loss = assistant_nll(logits, y)
    lp = logits.log_softmax(-1)
    want0 = -(lp[0, 2, 5] + lp[0, 3, 7]) / 2  # position t predicts the label at t + 1
    assert torch.allclose(loss, torch.stack([want0, -lp[1, 0, 9]]))
    loss.sum().backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert touched.tolist() == [[False, False, True, True, False, False],
                                [True, False, False, False, False, False]]


def test_a_row_scores_the_same_alone_and_padded_in_a_batch(data):
    d, settings = data
    model = get_scenario("ift").make_model(d, settings).eval()
    rows = d.train.x[:4]
    lengths = (rows != PAD_X).sum(1)
    assert (rows[lengths.argmin(), lengths.min():] == PAD_X).all()
    together = assistant_nll(model(rows), d.train.y[:4])
    alone = torch.stack([assistant_nll(model(rows[i: i + 1, : lengths[i]]),
                                       d.train.y[i: i + 1, : lengths[i]])[0] for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)
    logits, features = model.forward_features(rows)
    assert features.shape == (4, settings.d_model)
    emb = model.lm.get_input_embeddings()(rows[0, : lengths[0]])
    assert torch.allclose(features[0], emb.mean(0), atol=1e-6)


# -- the scenario's data --------------------------------------------------------------------------

def test_build_groups_sources_and_splits(data):
    d, settings = data
    assert d.group_names == ("useful", "irrelevant", "corrupted")
    assert len(d.train) == settings.n_train and len(d.categories) == len(d.train)
    code = {s: 0 for s in USEFUL} | {s: 1 for s in IRRELEVANT} | {s: 2 for s in CORRUPTED}
    assert d.train.group.tolist() == [code[c] for c in d.categories]
    assert len(d.meta) == 2 * settings.meta_per_task  # arithmetic and sorting
    tasks = dict(d.extras["test"])
    assert list(tasks) == ["arithmetic", "sorting"]
    assert all(isinstance(m, OpenAnswers) and len(m.answers) == 6 for m in tasks.values())
    assert len(d.test) == 12 and len(d.val) == 8
    judge_x, judge_y, n_yes = d.extras["judge"]
    assert judge_x.shape[0] == len(d.train)
    for i in range(5):
        row, labels = judge_x[i], judge_y[i]
        assert d.tokenizer.decode(labels[labels != IGNORE].tolist()).strip() == "yes"
        text = d.tokenizer.decode(row[row != PAD_X].tolist(), skip_special_tokens=False)
        assert "###" in text and "OPTIONS" in text and text.rstrip().endswith("yes")
        # the example itself is in its prompt: its answer, and its prompt's words
        labels_i = d.train.y[i]
        answer = d.tokenizer.decode(labels_i[labels_i != IGNORE].tolist(), skip_special_tokens=True)
        assert f"assistant: {answer.strip()}".replace(" ", "") in text.replace(" ", "")
        train_text = d.tokenizer.decode([t for t in d.train.x[i].tolist() if t != PAD_X],
                                        skip_special_tokens=True)
        question = train_text.split("user", 1)[1].split("assistant")[0].strip()
        assert question.replace(" ", "") in text.replace(" ", "")
    distinct_examples = len({tuple(r.tolist()) for r in d.train.x})  # the mixture has duplicates
    assert len({tuple(r.tolist()) for r in judge_x}) == distinct_examples
    assert (judge_y != IGNORE).sum(1).eq(n_yes).all()


def test_exact_match_scores_greedy_decodes_against_the_answers(scenario, data, monkeypatch):
    d, settings = data
    model = scenario.make_model(d, settings)
    answers = [a for _, m in d.extras["test"] for a in m.answers]
    ids = [d.tokenizer.encode(a, add_special_tokens=False).ids for a in answers]
    calls = iter(range(len(answers)))

    def fake_generate(prompts, max_new, eos):  # right on every other prompt
        out = []
        for _ in prompts:
            i = next(calls)
            out.append(ids[i] if i % 2 == 0 else ids[i] + ids[i])
        return out

    monkeypatch.setattr(model, "generate", fake_generate)
    acc = scenario.evaluate(model, d, d.test, settings, torch.device("cpu"))
    assert acc == pytest.approx(0.5)


class ScoreByFirstToken(torch.nn.Module):
    """Logits that make a row's labelled token likelier the larger its first token id."""

    def forward(self, x):
        logits = torch.zeros(*x.shape, 50)
        logits[:, :, 7] = x[:, :1].float()  # every label below is token 7
        return logits


def test_multiple_choice_picks_the_likeliest_answer(scenario, data):
    d, settings = data
    # three questions with 2, 3 and 2 choices; the row whose first token is largest wins
    firsts = [1, 4, 9, 2, 3, 6, 5]
    question = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    x = torch.tensor([[f, 1, 1] for f in firsts])
    y = torch.full_like(x, IGNORE)
    y[:, 2] = 7
    picked = Choices(x, y, question, torch.tensor([1, 0, 1]))  # picks rows 1, 2, 5: q2 wrong
    extras = {**d.extras, "test": (("hellaswag", picked),)}
    import dataclasses

    d2 = dataclasses.replace(d, extras=extras)
    acc = scenario.evaluate(ScoreByFirstToken(), d2, d2.test, settings, torch.device("cpu"))
    assert acc == pytest.approx(2 / 3)


def test_the_judge_is_the_probability_of_yes_after_the_prompt(scenario, data):
    d, settings = data
    model = scenario.make_model(d, settings)
    judge = scenario.judge(model, d, settings, torch.device("cpu"))
    index = torch.tensor([0, 5, 7])
    p = judge(index)
    assert len(set(judge(torch.arange(20)).tolist())) > 1  # the examples are told apart
    x, y, n_yes = d.extras["judge"]
    for k, i in enumerate(index.tolist()):
        row = x[i][x[i] != PAD_X]
        with torch.no_grad():
            logp = model.lm(input_ids=row[None]).logits[0].log_softmax(-1)
        yes = row[-n_yes:]
        want = sum(float(logp[len(row) - n_yes - 1 + j, t]) for j, t in enumerate(yes.tolist()))
        assert p[k] == pytest.approx(float(torch.tensor(want).exp()), rel=1e-4)
        assert 0 < p[k] < 1
    assert model.training  # put back as it was


def test_askllm_o_trains_on_the_top_beta_of_each_super_batch(scenario, data):
    d, settings = data
    from benchmarks.scenarios import make_optimizer
    from methods import Context

    model = scenario.make_model(d, settings)
    scores = torch.linspace(0, 1, len(d.train))
    seen = []
    ctx = Context(model=model, make_optimizer=make_optimizer(settings), n_train=len(d.train),
                  n_meta=len(d.meta), loss=scenario.loss, embed=model.features,
                  device=torch.device("cpu"), num_classes=d.num_classes,
                  judge=lambda index: scores[index])
    cls = get_method("askllm_o")
    method = cls(ctx, cls.Hparams(beta=0.25))
    assert method.pool().batch_scale == 4.0
    original = ctx.loss

    def spy(output, target):
        seen.append(target)
        return original(output, target)

    method.ctx.loss = spy
    index = torch.tensor([3, 50, 9, 100, 20, 7, 60, 1])
    logs = method.step(Batch(d.train.x[index], d.train.y[index], index), None)
    assert torch.equal(seen[0], d.train.y[torch.tensor([100, 60])])  # the 2 highest scores
    assert float(logs["p_yes_kept"]) > float(logs["p_yes"])
    w = method.weights()
    assert w.sum() == int(0.25 * len(d.train)) and w[-1] == 1 and w[0] == 0


def test_askllm_o_is_refused_where_the_model_cannot_be_asked():
    assert get_method("askllm_o").requires == ("judge",)
    with pytest.raises(ConfigError, match="askllm_o needs the context's judge.*run it on ift"):
        plan("balancing", None, "quick", ["askllm_o"], [0], {}, {})


# -- through the harness and the command line -----------------------------------------------------

RUN = {**TINY, "steps": 4, "eval_every": 2, "batch_size": 6, "meta_batch_size": 4}
SHORT = {"cds": {"pretrain_steps": 2, "finetune_steps": 2, "batch_size": 4},
         "classact": {"ref_steps": 2, "batch_size": 4}}


@pytest.mark.parametrize("method", ["mixing", "bads", "askllm_o", "blo", "cds", "classact",
                                    "random_select"])
def test_methods_run_on_the_causal_lm(scenario, data, method):
    d, _ = data
    spec = plan("ift", "generated-ift", "quick", [method], [0], RUN,
                {k: v for k, v in SHORT.items() if k == method})[0]
    out = harness.run(spec, scenario, d, torch.device("cpu"))
    assert out.status == "ok", out.error
    test = out.curves[out.curves.split == "test"]
    assert sorted(test.step) == [2, 4] and test.value.between(0, 1).all()
    assert out.time_per_step_ms > 0 and out.peak_mem_mb > 0
    if out.weights is not None:
        assert set(out.weights.category) == set(SOURCES)


def test_cli_runs_bads_and_mixing_and_reports_the_weight_per_source(tmp_path, monkeypatch):
    monkeypatch.setenv("DPS_CACHE_DIR", str(tmp_path / "cache"))
    sets = [a for k, v in RUN.items() for a in ("--set", f"{k}={v}")]
    code = main(["run", "--scenario", "ift", "--methods", "bads,mixing", "--seeds", "0",
                 "--out", str(tmp_path / "store"), "--no-progress", *sets])
    assert code == 0
    runs = pd.read_csv(tmp_path / "store" / "runs.csv")
    assert set(runs.method) == {"bads", "mixing"} and (runs.status == "ok").all()
    assert main(["report", "--out", str(tmp_path / "store"), "--to", str(tmp_path / "report")]) == 0
    tables = "\n".join(p.read_text() for p in (tmp_path / "report").rglob("*.md"))
    assert "arithmetic-corrupt (corrupted)" in tables and "sorting (useful)" in tables


def test_sources_are_useful_only_for_the_targets_they_generate(scenario):
    corpus = generate_mixture(0, per_source=2)
    settings = scenario.resolve_settings("generated-ift", "quick", {})
    names, code = scenario._groups(corpus, settings, ["arithmetic", "sorting"])
    assert names == ("useful", "irrelevant", "corrupted")
    assert sorted(s for s, c in code.items() if c == 0) == ["arithmetic", "sorting"]
    _, code = scenario._groups(corpus, settings, ["mmlu-lmeval"])  # cpu-real's target
    assert 0 not in code.values() and code["arithmetic-corrupt"] == 2


@pytest.mark.parametrize("targets, pattern", [
    ("arithmetic,mmlu-lmeval", "mix open-answer tasks"),
    ("mmlu_pro", "unknown target task.*mmlu_pro.*multiple choice: mmlu"),
])
def test_bad_targets_are_named(scenario, targets, pattern):
    settings = scenario.resolve_settings("generated-ift", "quick", {**TINY, "targets": targets})
    with pytest.raises(ConfigError, match=pattern):
        scenario.build(load_source("generated-ift"), settings, 0)


def test_every_registered_method_but_askllm_o_runs_on_any_scenario():
    needing = [m for m in list_methods() if get_method(m).requires]
    assert needing == ["askllm_o"]
    assert "judge" in get_scenario("ift").provides
    assert all(not get_scenario(n).provides for n in ("balancing", "denoising", "efficient"))


def test_lm_eval_evaluator_fails_early_with_how_to_fix_it(monkeypatch):
    from benchmarks.errors import DataError
    from benchmarks.scenarios.ift import check_lm_eval

    with pytest.raises(ConfigError, match="scores mmlu.*not arithmetic.*evaluator=builtin"):
        check_lm_eval(["arithmetic"])
    monkeypatch.setitem(__import__("sys").modules, "lm_eval.tasks", None)  # not installed
    with pytest.raises(ConfigError, match="pip install lm-eval"):
        check_lm_eval(["mmlu"])
    monkeypatch.undo()
    tasks = pytest.importorskip("lm_eval.tasks", reason="lm-eval is not installed")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(tasks, "get_task_dict", offline)
    with pytest.raises(DataError, match="Hugging Face hub.*evaluator=builtin"):
        check_lm_eval(["mmlu", "hellaswag"])


def test_offdevice_weights_measurement_writes_its_table(tmp_path):
    from benchmarks.gpu.offdevice_weights import main as offdevice

    assert offdevice(["--sizes", "2000", "--storages", "device,memmap", "--device", "cpu",
                      "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "offdevice-weights.csv")
    assert list(frame.storage) == ["device", "memmap"] and (frame.n_train == 2000).all()
    assert (frame.ms_per_step > 0).all()
    assert frame.table_mb.iloc[0] == pytest.approx(2000 * 16 / 2**20, abs=0.05)
    assert "memmap" in (tmp_path / "offdevice-weights.md").read_text()


def test_lettered_choices_are_scored_by_the_letter_token_after_a_shared_prefix(scenario, data):
    import dataclasses

    from benchmarks.data.instructions import ChoiceItem

    d, settings = data
    tok = d.tokenizer
    choices = ("The answer is (A).", "The answer is (B).", "The answer is (C).")
    form = _letter_form(tok, choices)
    assert form is not None
    prefix, letters = form  # the prefix and the letter rebuild each choice's ids
    for c, t in zip(choices, letters, strict=True):
        ids = tok.encode(c, add_special_tokens=False).ids
        assert ids[: len(prefix) + 1] == prefix + [t]
    assert _letter_form(tok, ("yes", "no way")) is None
    item = ChoiceItem("mmlu", "x", "Q?", choices, 2)
    split = dict(scenario._eval_split(tok, [item, item], settings))
    assert isinstance(split["mmlu"], Letters)
    # scoring: the row's last position decides; a model that favours token 7 picks it
    x = torch.tensor([[3, 4, PAD_X], [3, 4, 5]])
    cand = torch.tensor([[7, 8, -1], [8, 9, 7]])
    material = Letters(x, cand, torch.tensor([0, 1]))

    class Favour7(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(*x.shape, 20)
            logits[..., 7] = 5.0
            logits[..., 9] = 1.0
            return logits

    d2 = dataclasses.replace(d, extras={**d.extras, "test": (("mmlu", material),)})
    acc = scenario.evaluate(Favour7(), d2, d2.test, settings, torch.device("cpu"))
    assert acc == pytest.approx(0.5)  # q0 right (7 is choice 0), q1 wrong (7 is choice 2)
    # the split's score is the mean of its tasks' scores, not pooled over questions
    both = (("mmlu", material), ("arc_easy", Letters(x[:1], cand[:1], torch.tensor([0]))))
    d3 = dataclasses.replace(d, extras={**d.extras, "test": both})
    assert scenario.evaluate(Favour7(), d3, d3.test, settings, torch.device("cpu")) == 0.75


def test_a_long_question_loses_its_start_not_its_answer(data):
    d, _ = data
    tok = d.tokenizer
    question = "word " * 60 + "Which is it? (A) x (B) y"
    messages = (("user", question), ("assistant", "The answer is (B)."))
    full, _ = encode_chat(tok, messages, 10_000)
    ids, labels = encode_chat(tok, messages, 40, truncate="left")
    assert len(ids) == 40 and len(full) > 40
    assert tok.decode([i for i, v in zip(ids, labels, strict=True) if v != IGNORE]).replace(
        " ", "").startswith("Theansweris(B).")
    assert ids[-12:] == full[-12:]  # the end (options, answer) is kept
    cut, _ = encode_chat(tok, messages, 40)  # the default cuts the end
    assert cut == full[:40]


def test_the_paper_profile_refuses_to_run_without_a_model(scenario):
    settings = scenario.resolve_settings("generated-ift", "paper", {})
    with pytest.raises(ConfigError, match="--set model=PATH"):
        scenario.build(load_source("generated-ift"), settings, 0)


def test_a_jsonl_mixture_against_mmlu_arc_and_hellaswag_files(tmp_path, monkeypatch):
    """The paper's data path on fixture files in the released formats: Dt from chat JSONL, Dm,
    validation and test from MMLU CSVs, ARC JSONL and HellaSwag JSONL; groups from
    useful_sources; a short run scores every target by multiple choice."""
    from test_ift_data import (
        ARC_LINES,
        ENDINGS,
        MMLU_ROWS,
        chat_line,
        hellaswag_line,
        write_lines,
        write_mmlu,
    )

    monkeypatch.setenv("DPS_CACHE_DIR", str(tmp_path / "cache"))
    lines = [chat_line("flan_v2", [("user", f"Q{i}: capital of X{i}?"), ("assistant", f"Y{i}")])
             for i in range(30)]
    lines += [chat_line("dolly", [("user", f"Tell me about {i}"), ("assistant", "It is a number.")])
              for i in range(30)]
    write_lines(tmp_path / "mixture.jsonl", lines)
    bench = tmp_path / "bench"
    for split in ("dev", "val", "test"):
        for subject, rows in MMLU_ROWS.items():
            write_mmlu(bench / "mmlu" / "data", subject, split, rows * 3)
    for variant in ("ARC-Challenge", "ARC-Easy"):
        (bench / variant).mkdir(parents=True)
        for split in ("Dev", "Test"):
            write_lines(bench / variant / f"{variant}-{split}.jsonl", ARC_LINES)
    write_lines(bench / "hellaswag_val.jsonl",
                [hellaswag_line("A man", f"is outside {i}.", ENDINGS, i % 4) for i in range(6)])
    scenario = get_scenario("ift")
    settings = scenario.resolve_settings("jsonl", "quick", {
        **TINY, "mixture": str(tmp_path / "mixture.jsonl"), "benchmarks_dir": str(bench),
        "targets": "mmlu,arc_challenge,arc_easy,hellaswag", "meta_per_subject": 1,
        "meta_per_task": 2, "useful_sources": "flan_v2", "n_train": -1, "max_len": 160})
    corpus = generate_mixture(0, per_source=1)  # the source's own corpus is replaced by mixture
    d = scenario.build(corpus, settings, 0)
    assert d.group_names == ("useful", "other") and len(d.train) == 60
    assert d.train.group.tolist() == [0 if c == "flan_v2" else 1 for c in d.categories]
    # Dm: 1 per MMLU subject (2) + 2 per ARC variant (4) + 2 HellaSwag; validation likewise
    assert len(d.meta) == 8 and len(d.val) == 8
    assert len(d.test) == 3 * 2 + 4 + 4 + 2  # MMLU test (3 rows x 2 subjects), ARC tests, HellaSwag rest
    kinds = {task: type(m).__name__ for task, m in d.extras["test"]}
    assert kinds == {"mmlu": "Letters", "arc_challenge": "Letters", "arc_easy": "Letters",
                     "hellaswag": "Choices"}  # each task scored its own way
    spec = plan("ift", "jsonl", "quick", ["bads"], [0], {**RUN, **{
        k: getattr(settings, k) for k in ("mixture", "benchmarks_dir", "targets",
                                          "meta_per_subject", "meta_per_task", "useful_sources",
                                          "n_train", "max_len")}}, {})[0]
    out = harness.run(spec, scenario, d, torch.device("cpu"))
    assert out.status == "ok", out.error
    assert out.curves[out.curves.split == "test"].value.between(0, 1).all()
    assert set(out.weights.category) == {"flan_v2", "dolly"}


def test_the_prepared_gpu_memory_script_runs_on_a_cpu_at_a_small_shape(tmp_path):
    """benchmarks/gpu/ift_memory.sh, as a GPU session would run it, at a tiny Llama on the CPU:
    every method's row and the report's table come back."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("dps-bench") is None:
        pytest.skip("the dps-bench command is not installed (pip install -e .)")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu" / "ift_memory.sh"
    env = {**os.environ, "DPS_IFT_SIZE": "d_model=32 layers=1 heads=2 d_ff=64",
           "DPS_DEVICE": "cpu", "DPS_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(["bash", str(script), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 8 and (runs.status == "ok").all()
    assert (runs.peak_mem_mb > 0).all() and (runs.time_per_step_ms > 0).all()
    assert (tmp_path / "out" / "report" / "REPORT.md").is_file()


def test_offline_passes_are_chunked_so_a_large_vocabulary_fits(scenario, data):
    import dataclasses

    d, settings = data
    assert scenario.offline_chunk(d, settings) == 1000  # small rows and vocabulary
    big = dataclasses.replace(d, train=dataclasses.replace(d.train, x=torch.zeros(2, 320)),
                              num_classes=49152)  # SmolLM2's vocabulary, cpu-real's rows
    assert scenario.offline_chunk(big, settings) == 2**28 // (320 * 49152) == 17
    assert get_scenario("balancing").offline_chunk(d, settings) == 1000
