"""A T5 encoder-decoder behind the suite's model contract (``forward``, ``features``, one-pass
``forward_features``), for data-to-text generation.

Packed inputs. Methods see a batch as tensors ``x`` and ``y`` and concatenate batches row-wise
(Bt with Bm), so every example of a scenario is padded to the same two lengths and packed into one
row of token ids: ``x = [source ids (src_len) | target ids (tgt_len)]``, padded with ``pad_id``
(T5's 0); ``y`` = the target ids (the same as x's second part). The model splits x, derives the
attention masks from the padding, and drops the columns that are padding in every row of the batch
(so fixed-length padding costs nothing per step). Teacher forcing: the decoder reads the target
shifted right behind T5's start token (the pad id).

Outputs: ``forward(x)`` = logits [B, L', V] over the batch's target positions (L' <= tgt_len, the
longest target in the batch); :func:`sequence_nll` turns them into the per-example loss.
``features(x)`` = the paper's "[EOS]" embedding: the decoder's last hidden state [B, d_model] at
the position of each target's final token (the one that emits ``</s>``), i.e. the contextual
embedding of the whole (source, target) pair. ``forward_features`` returns both from one pass.

The T5 is built with ``transformers`` from a config (trained from scratch: ``T5Config`` sizes
below) or loaded from a local Hugging Face folder (:func:`load_pretrained_t5`): nothing is fetched.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DataError

PAD_ID = 0  # T5's pad id, also its decoder start token


def t5_config(vocab_size: int, d_model: int, layers: int, heads: int, d_ff: int,
              dropout: float = 0.0):
    """A ``transformers.T5Config`` for a T5 trained from scratch (pad 0, ``</s>`` 1, start = pad,
    tied embeddings, eager attention: see :func:`load_pretrained_t5`). ``d_model=512, layers=6,
    heads=8, d_ff=2048`` with a 32,128-token vocabulary is T5-small's shape."""
    from transformers import T5Config

    return T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff,
                    num_layers=layers, num_decoder_layers=layers, num_heads=heads,
                    dropout_rate=dropout, pad_token_id=PAD_ID, eos_token_id=1,
                    decoder_start_token_id=PAD_ID, tie_word_embeddings=True,
                    attn_implementation="eager")


PRETRAINED_FILES = ("config.json",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def check_pretrained_folder(path: Path) -> None:
    """DataError naming what is missing when ``path`` is not a complete local T5 folder
    (config.json, weights as model.safetensors or pytorch_model.bin, and tokenizer.json)."""
    if not path.is_dir():
        raise DataError(f"t5_path={path} is not a folder. Give the local folder of a Hugging Face "
                        "T5 checkpoint (e.g. t5-small saved with save_pretrained): config.json, "
                        "model.safetensors and tokenizer.json; nothing is downloaded")
    missing = [f for f in PRETRAINED_FILES if not (path / f).is_file()]
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if not (path / "tokenizer.json").is_file():
        missing.append("tokenizer.json (save the fast tokenizer with save_pretrained)")
    if missing:
        raise DataError(f"the T5 folder {path} is incomplete: it lacks {', '.join(missing)}")


def load_pretrained_t5(path: Path):
    """A ``T5ForConditionalGeneration`` from the local folder ``path`` (checked first; never a hub
    download: ``local_files_only``), with eager attention (torch's fused attention on the CPU
    has no double backward, which the bi-level methods need). A folder that fails to load is a
    DataError."""
    check_pretrained_folder(path)
    from transformers import T5ForConditionalGeneration

    try:
        return T5ForConditionalGeneration.from_pretrained(path, local_files_only=True,
                                                          attn_implementation="eager")
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise DataError(f"could not load the T5 checkpoint in {path}: {e}") from None


class Seq2Seq(nn.Module):
    """``t5`` (a ``T5ForConditionalGeneration``) on packed rows ``[source | target]``.

    src_len, tgt_len: the packed widths; pad_id: the padding (and decoder start) id.
    """

    def __init__(self, t5: nn.Module, src_len: int, tgt_len: int, pad_id: int = PAD_ID) -> None:
        super().__init__()
        self.t5 = t5
        self.src_len, self.tgt_len, self.pad_id = src_len, tgt_len, pad_id

    def _unpack(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.src_len + self.tgt_len:
            raise ValueError(f"expected packed token ids [B, {self.src_len + self.tgt_len}], "
                             f"got {list(x.shape)}")
        src, tgt = x[:, : self.src_len], x[:, self.src_len:]
        src_mask = src != self.pad_id
        tgt_mask = tgt != self.pad_id
        s = max(int(src_mask.sum(1).max()), 1)  # drop columns that are padding in every row
        t = max(int(tgt_mask.sum(1).max()), 1)
        return src[:, :s], src_mask[:, :s], tgt[:, :t], tgt_mask[:, :t]

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [B, L', V], "[EOS]" embedding [B, d_model]) from one teacher-forced pass."""
        src, src_mask, tgt, tgt_mask = self._unpack(x)
        start = torch.full_like(tgt[:, :1], self.pad_id)
        decoder_in = torch.cat([start, tgt[:, :-1]], dim=1)
        seen: list[Tensor] = []
        # the decoder's output (its final hidden states, after T5's last layer norm), caught on
        # its way to the LM head: the same tensor under torch.func and higher's patched copies
        hook = self.t5.get_decoder().register_forward_hook(
            lambda module, args, output: seen.append(output[0]))
        try:
            out = self.t5(input_ids=src, attention_mask=src_mask.long(),
                          decoder_input_ids=decoder_in,
                          decoder_attention_mask=torch.cat(
                              [torch.ones_like(start, dtype=torch.bool), tgt_mask[:, :-1]], dim=1
                          ).long(), use_cache=False, return_dict=True)
        finally:
            hook.remove()
        hidden = seen[-1]  # [B, L', d]
        last = (tgt_mask.sum(1) - 1).clamp(min=0)
        eos = hidden[torch.arange(len(x), device=x.device), last]
        return out.logits, eos

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]

    def features(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[1]

    @torch.no_grad()
    def generate(self, src: Tensor, max_len: int) -> Tensor:
        """Greedy decoding: token ids [B, <= max_len] for source ids ``src`` [B, src_len] (pad
        after ``</s>``). The model is put in eval mode meanwhile."""
        was_training = self.training
        self.eval()
        try:
            mask = src != self.pad_id
            s = max(int(mask.sum(1).max()), 1)
            out = self.t5.generate(input_ids=src[:, :s], attention_mask=mask[:, :s].long(),
                                   max_new_tokens=max_len, do_sample=False, num_beams=1)
        finally:
            self.train(was_training)
        return out[:, 1:]  # without the start token


def sequence_nll(logits: Tensor, target: Tensor, pad_id: int = PAD_ID) -> Tensor:
    """Per-example loss l(z; θ): the mean token negative log-likelihood over each example's
    target tokens, padding masked. logits [B, L', V] (L' <= L: the model dropped all-padding
    columns), target [B, L] token ids. Returns [B]."""
    t = logits.shape[1]
    kept = target[:, :t]
    token = F.cross_entropy(logits.transpose(1, 2), kept, reduction="none",
                            ignore_index=pad_id)  # [B, L']
    mask = (kept != pad_id).to(token.dtype)
    return (token * mask).sum(1) / mask.sum(1).clamp(min=1.0)
