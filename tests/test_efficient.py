"""The ``efficient`` scenarios (data-to-text): the generated corpus, the tokenizer, the sequence
model behind the method contract (padding, masks, the [EOS] embedding), BLEU, the splits and
groups, a local pretrained T5 folder, and every method of the registry through the harness."""

from __future__ import annotations

import json

import pytest
import torch
from toys import methods_without_requirements

from benchmarks import harness
from benchmarks.cli import main
from benchmarks.data.generated_text import DOMAINS, FAMILY_OF, PER_DOMAIN, generate_corpus
from benchmarks.data.text import Entry, TextCorpus
from benchmarks.data.tokenize import (
    EOS,
    PAD,
    SPECIAL,
    cached_tokenizer,
    linearise,
    read_tokenizer,
    split_predicate,
    train_tokenizer,
)
from benchmarks.errors import ConfigError, DataError
from benchmarks.models.seq2seq import Seq2Seq, check_pretrained_folder, sequence_nll, t5_config
from benchmarks.scenarios import get_scenario
from benchmarks.scenarios.efficient import bleu, predicate_similarity, related_categories
from benchmarks.sweep import plan
from methods.lookahead import lookahead_meta_loss

TINY = {"d_model": 16, "d_ff": 32, "heads": 2, "layers": 1, "vocab_size": 300,
        "test_per_category": 4, "meta_per_category": 5, "n_train": 120, "max_source_len": 48,
        "max_target_len": 40, "eval_batch_size": 16}


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus()


@pytest.fixture(scope="module")
def scenario():
    return get_scenario("efficient")


def build(scenario, corpus, seed=0, profile="quick", **overrides):
    settings = scenario.resolve_settings(corpus.name, profile, {**TINY, **overrides})
    return scenario.build(corpus, settings, seed), settings


# -- the generated corpus ----------------------------------------------------------------------

def test_generated_corpus_is_deterministic_and_shaped_like_webnlg(corpus):
    again = generate_corpus()
    assert corpus.entries == again.entries and generate_corpus(seed=1).entries != corpus.entries
    assert len(DOMAINS) == 12 and set(corpus.categories()) == set(DOMAINS)
    for split, n in PER_DOMAIN.items():
        assert set(corpus.categories(split).values()) == {n}
    for e in corpus.entries[:500]:
        subjects = {s for s, _, _ in e.triples}
        assert len(subjects) == 1 and 1 <= len(e.triples) <= 4 and e.texts
        name = next(iter(subjects)).replace("_", " ")
        assert all(name in t or t.startswith(name) or "He " in t or "She " in t or "It " in t
                   for t in e.texts[:1])
    # references differ (templates drawn at random), so BLEU against all of them is not trivial
    assert sum(len(e.texts) > 1 for e in corpus.entries) > 0.8 * len(corpus)


def test_a_shared_predicate_is_said_differently_per_family(corpus):
    by_family = {}
    for e in corpus.entries:
        for _, p, o in e.triples:
            if p == "country" and len(e.triples) == 1:
                by_family.setdefault(FAMILY_OF[e.category], set()).update(
                    t.replace(o.replace("_", " "), "{o}") for t in e.texts)
    phrasings = {f: {t.split(" ", 2)[-1] for t in texts} for f, texts in by_family.items()}
    families = list(phrasings)
    assert len(families) == 4
    for a in families:
        for b in families:
            if a != b:
                assert not phrasings[a] & phrasings[b], (a, b)


# -- text and tokenizer ------------------------------------------------------------------------

def test_linearise_and_split_predicate():
    assert split_predicate("birthDate") == "birth date"
    assert split_predicate("was_a_crew_member_of") == "was a crew member of"
    assert linearise((("Alan_Bean", "birthDate", '"1932-03-15"'),)) == \
        "<H> Alan Bean <R> birth date <T> 1932-03-15"


def test_tokenizer_round_trips_and_reserves_t5_ids(tmp_path):
    texts = ["Alan Bean was born in 1932.", "<H> Alan Bean <R> birth date <T> 1932"] * 20
    tok = train_tokenizer(texts, 300)
    assert [tok.token_to_id(t) for t in SPECIAL] == list(range(len(SPECIAL)))
    ids = tok.encode("Zyx Qöq was born in 2031.", add_special_tokens=False).ids
    assert tok.token_to_id("<unk>") not in ids  # byte-level: nothing is out of vocabulary
    assert tok.decode(ids).strip() == "Zyx Qöq was born in 2031."
    assert tok.encode("<H> x <R> y", add_special_tokens=False).tokens[0] == "<H>"
    path = tmp_path / "tokenizer.json"
    path.write_text(tok.to_str())
    assert read_tokenizer(path).encode("born").ids == tok.encode("born").ids


def test_bad_tokenizer_files_are_clear_errors(tmp_path):
    path = tmp_path / "tokenizer.json"
    with pytest.raises(DataError, match="cannot read"):
        read_tokenizer(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a readable tokenizer.json"):
        read_tokenizer(path)
    from tokenizers import Tokenizer, models

    wrong = Tokenizer(models.WordLevel({"</s>": 0, "<pad>": 1, "<unk>": 2}, unk_token="<unk>"))
    path.write_text(wrong.to_str())
    with pytest.raises(DataError, match="<pad> at id 1, not 0"):
        read_tokenizer(path)


def test_cached_tokenizer_is_reused_and_a_damaged_cache_is_retrained(tmp_path):
    texts = ["one two three", "four five six"] * 10
    first = cached_tokenizer(texts, 300, cache=tmp_path)
    (path,) = (tmp_path / "tokenizers").glob("*.json")
    path.write_text("damaged")
    second = cached_tokenizer(texts, 300, cache=tmp_path)
    assert second.get_vocab() == first.get_vocab()
    assert json.loads(path.read_text())["model"]["type"] == "BPE"  # written again


# -- the sequence model ------------------------------------------------------------------------

def tiny_seq2seq(seed=0, src_len=12, tgt_len=10, vocab=50):
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    return Seq2Seq(T5ForConditionalGeneration(t5_config(vocab, 16, 1, 2, 32)), src_len, tgt_len)


def packed(lengths, src_len=12, tgt_len=10, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((len(lengths), src_len + tgt_len), PAD)
    for i, (s, t) in enumerate(lengths):
        x[i, : s - 1] = torch.randint(3, vocab, (s - 1,), generator=g)
        x[i, s - 1] = EOS
        x[i, src_len: src_len + t - 1] = torch.randint(3, vocab, (t - 1,), generator=g)
        x[i, src_len + t - 1] = EOS
    return x, x[:, src_len:].clone()


def test_per_example_loss_and_eos_embedding_do_not_depend_on_the_batch_padding():
    model = tiny_seq2seq().eval()
    x, y = packed([(3, 2), (12, 10), (7, 4)])
    out, emb = model.forward_features(x)
    assert out.shape[:2] == (3, 10) and emb.shape == (3, 16)
    batched = sequence_nll(out, y)
    for i in range(3):  # alone, the model drops the padding columns: same loss, same embedding
        alone_out, alone_emb = model.forward_features(x[i: i + 1])
        assert alone_out.shape[1] == int((y[i] != PAD).sum())
        torch.testing.assert_close(sequence_nll(alone_out, y[i: i + 1])[0], batched[i])
        torch.testing.assert_close(alone_emb[0], emb[i])
    torch.testing.assert_close(model.features(x), emb)
    torch.testing.assert_close(model(x), out)


def test_sequence_nll_is_the_mean_token_nll_over_the_target_only():
    logits = torch.randn(2, 3, 7)
    target = torch.tensor([[4, 1, PAD], [5, 6, 1]])
    logp = logits.log_softmax(-1)
    want = torch.stack([-(logp[0, 0, 4] + logp[0, 1, 1]) / 2,
                        -(logp[1, 0, 5] + logp[1, 1, 6] + logp[1, 2, 1]) / 3])
    torch.testing.assert_close(sequence_nll(logits, target), want)
    # a target wider than the logits (the model dropped all-padding columns) is cut to match
    wider = torch.cat([target, torch.zeros(2, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(sequence_nll(logits, wider), want)


def test_both_lookahead_backends_agree_on_the_sequence_model():
    model = tiny_seq2seq().double()
    x, y = packed([(5, 4), (9, 6), (12, 10), (4, 3)])
    from methods import Batch

    meta = Batch(x[:2], y[:2], torch.arange(2))
    grads = []
    for backend in ("func", "higher"):
        w = torch.full((4,), 0.25, dtype=torch.float64, requires_grad=True)
        loss = lookahead_meta_loss(model, x, lambda out, w=w: (w * sequence_nll(out, y)).sum(),
                                   meta, sequence_nll, steps=1, inner_lr=0.1, backend=backend)
        grads.append(torch.autograd.grad(loss, [w])[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)
    assert grads[0].abs().sum() > 0


def test_generate_decodes_greedily_and_stops_at_the_length_limit():
    model = tiny_seq2seq()
    x, _ = packed([(5, 4), (12, 10)])
    out = model.generate(x[:, :12], max_len=6)
    assert out.shape[0] == 2 and out.shape[1] <= 6 and model.training


# -- BLEU and evaluation -----------------------------------------------------------------------

def test_bleu_scores_against_every_reference():
    refs = (("the cat sat on the mat", "a cat sat on a mat"), ("a dog barks",))
    assert bleu(["a cat sat on a mat", "a dog barks"], refs) == pytest.approx(100.0)
    assert bleu(["the cat sat on the mat", "a dog barks"], refs) == pytest.approx(100.0)
    assert bleu(["a cat sat on the rug", "a dog barks"], refs) < 100.0
    assert bleu(["a cat sat on the mat", "a dog barks"], refs[:1] + (("one dog barks",),)) < 100.0
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        bleu(["a", "b"], refs[:1])


def test_evaluate_decodes_and_scores_the_references(scenario, corpus):
    data, settings = build(scenario, corpus)
    tok = data.tokenizer

    class Oracle(torch.nn.Module):  # "generates" the first reference of each example
        def generate(self, src, max_len):
            rows = {tuple(r.tolist()): i for i, r in enumerate(data.test.x[:, : src.shape[1]])}
            texts = [data.test.references[rows[tuple(r.tolist())]][0] for r in src]
            return torch.tensor([(tok.encode(t, add_special_tokens=False).ids + [EOS] + [PAD] * 300)[:300]
                                 for t in texts])

    assert scenario.evaluate(Oracle(), data, data.test, settings, torch.device("cpu")) == \
        pytest.approx(100.0)


# -- splits and groups -------------------------------------------------------------------------

def test_targets_stay_out_of_dt_and_groups_follow_the_relatedness_rule(scenario, corpus):
    data, settings = build(scenario, corpus, n_train=-1)
    cats = set(data.categories)
    assert cats == set(DOMAINS) - {"Scientist", "Film", "Song"}
    assert len(data.train) == sum(len(e.texts) for e in corpus.entries
                                  if e.split == "train" and e.category in cats)
    related = {c for c, g in zip(data.categories, data.train.group.tolist(), strict=True) if g == 0}
    assert related == {"Astronaut", "Politician", "Athlete", "Artist", "Book"}
    assert len(data.meta) == 3 * 5 and len(data.test) == 3 * 4
    test_sources = {tuple(r.tolist()) for r in data.test.x[:, : data.test.x.shape[1] - data.test.y.shape[1]]}
    meta_sources = {tuple(r.tolist()) for r in data.meta.x[:, : data.meta.x.shape[1] - data.meta.y.shape[1]]}
    assert not test_sources & meta_sources
    torch.testing.assert_close(data.train.y, data.train.x[:, -data.train.y.shape[1]:])
    assert ((data.train.x == EOS).sum(1) == 2).all()  # one </s> ends the source, one the target
    # each test example keeps all its entry's references (3 drawn for dev/test, duplicates merged)
    assert all(1 <= len(r) <= 3 for r in data.test.references)
    assert sum(len(r) > 1 for r in data.test.references) >= len(data.test) // 2


def test_relatedness_is_relative_to_the_most_similar_category():
    def entry(cat, *preds):
        return Entry(tuple(("s", p, "o") for p in preds), ("t",), cat, "train")

    dt = [entry("A", "born", "died"), entry("B", "born", "country"), entry("C", "country", "area")]
    targets = [entry("T", "born", "died")]
    sims = predicate_similarity(dt, targets)
    assert sims["A"] == pytest.approx(1.0) and sims["C"] == 0.0 and 0 < sims["B"] < 1
    assert related_categories(dt, targets, 0.5) == {"A", "B"}
    assert related_categories(dt, targets, 0.9) == {"A"}


def test_controlled_variant_trains_on_artist_and_city_only(corpus):
    scenario = get_scenario("efficient-controlled")
    data, _ = build(scenario, corpus, meta_per_category=50, n_train=-1)
    assert set(data.categories) == {"Artist", "City"}
    groups = dict(zip(data.categories, data.train.group.tolist(), strict=True))
    assert groups == {"Artist": 0, "City": 1}
    assert len(data.meta) == 150


def test_bad_targets_and_sources_are_clear_errors(scenario, corpus):
    with pytest.raises(ConfigError, match="Nowhere are not in generated"):
        build(scenario, corpus, targets="Nowhere")
    with pytest.raises(ConfigError, match="fewer than meta_per_category"):
        build(scenario, corpus, meta_per_category=500)
    tiny = TextCorpus("generated", tuple(e for e in corpus.entries if e.category in ("Film", "Song",
                                                                                      "Scientist")))
    with pytest.raises(ConfigError, match="Dt is empty"):
        build(scenario, tiny)


def test_missing_webnlg_is_one_clear_message(tmp_path, capsys):
    code = main(["run", "--scenario", "efficient", "--source", "webnlg", "--methods", "train_only",
                 "--seeds", "0", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "webnlg" in err.lower() and "Traceback" not in err


# -- a local pretrained T5 folder ---------------------------------------------------------------

def test_incomplete_t5_folder_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        check_pretrained_folder(tmp_path / "absent")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match="model.safetensors or pytorch_model.bin, tokenizer.json"):
        check_pretrained_folder(tmp_path)


def test_a_local_t5_folder_is_loaded_with_its_tokenizer(tmp_path, scenario, corpus):
    from transformers import T5ForConditionalGeneration

    texts = [t for e in corpus.entries[:300] for t in (linearise(e.triples), *e.texts)]
    tok = train_tokenizer(texts, 400)
    t5 = T5ForConditionalGeneration(t5_config(tok.get_vocab_size(), 16, 1, 2, 32))
    t5.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text(tok.to_str())
    data, settings = build(scenario, corpus, t5_path=str(tmp_path))
    assert data.tokenizer.get_vocab() == tok.get_vocab()
    model = scenario.make_model(data, settings)
    for a, b in zip(model.t5.parameters(), t5.parameters(), strict=True):
        torch.testing.assert_close(a, b)


# -- every method, unchanged, through the harness -----------------------------------------------

@pytest.mark.parametrize("method", methods_without_requirements())
def test_every_method_runs_on_the_sequence_model(scenario, corpus, method):
    spec = plan("efficient", "generated", "quick", [method], [0],
                {**TINY, "steps": 4, "eval_every": 2, "batch_size": 6, "meta_batch_size": 4},
                {"cds": {"pretrain_steps": 2, "finetune_steps": 2}, "classact": {"ref_steps": 2}})[0]
    data = scenario.build(corpus, scenario.Settings(**spec.settings), 0)
    out = harness.run(spec, scenario, data, torch.device("cpu"))
    assert out.status == "ok", out.error
    test = out.curves[out.curves.split == "test"]
    assert sorted(test.step) == [2, 4] and test.value.between(0, 100).all()
    assert out.time_per_step_ms > 0 and out.peak_mem_mb > 0
    if out.weights is not None:
        assert list(out.weights.columns) == ["index", "weight", "group", "category"]
        assert set(out.weights.category) == set(data.categories)


def test_run_then_report_tables_bleu_and_the_weight_per_category(tmp_path, capsys):
    """The command line end to end: a resumable sweep stores the weights with their categories,
    and the report tables BLEU and which categories each method weights up."""
    sets = [a for k, v in {**TINY, "steps": 4, "eval_every": 4, "batch_size": 6}.items()
            for a in ("--set", f"{k}={v}")]
    argv = ["run", "--scenario", "efficient", "--methods", "train_only,bads", "--seeds", "0",
            "--out", str(tmp_path / "store"), "--no-progress", *sets]
    assert main(argv) == 0
    assert main(argv) == 0 and "0 runs done, 2 skipped" in capsys.readouterr().out  # resumed
    from benchmarks.store import Store

    store = Store(tmp_path / "store")
    runs = store.runs().set_index("method")
    weights = store.weights(runs.loc["bads", "run_id"])
    assert {"category", "group"} <= set(weights.columns)
    assert set(weights.category) <= set(DOMAINS) - {"Scientist", "Film", "Song"}
    assert main(["report", "--out", str(tmp_path / "store"), "--to", str(tmp_path / "report"),
                 "--format", "md", "--figures", "png"]) == 0
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "efficient: weight per category" in text and "Astronaut (target)" in text
    assert "bleu" in text


@pytest.mark.realdata
def test_real_webnlg_2017_follows_the_unseen_category_protocol(scenario):
    import os
    from pathlib import Path

    from benchmarks.data.webnlg import load_webnlg

    env = os.environ.get("DPS_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    try:
        corpus = load_webnlg(root)
    except DataError:
        pytest.skip(f"the WebNLG corpus is not under {root}")
    if corpus.version != "webnlg-2017-v2.0":
        pytest.skip(f"not the enriched 2017 corpus v2.0 ({corpus.version})")
    settings = scenario.resolve_settings("webnlg", "webnlg-cpu", {"n_train": -1})
    data = scenario.build(corpus, settings, 0)
    assert set(data.categories) == set(corpus.categories("train"))  # targets are unseen there
    assert len(data.train) == 18102 and len(data.meta) == 3 * 30 and len(data.test) == 3 * 40
    related = {c for c, g in zip(data.categories, data.train.group.tolist(), strict=True) if g == 0}
    assert related == {"Astronaut", "SportsTeam"}
