"""A causal language model behind the suite's model contract (``forward``, ``features``, one-pass
``forward_features``), for instruction fine-tuning, with the chat format it is trained on.

Rows. Methods see a batch as tensors ``x`` and ``y`` and concatenate batches row-wise, so every
example is one row of a fixed width L: ``x`` = token ids, right-padded with :data:`PAD_X` (−1,
never a real id, so that a tokenizer whose pad token is also a real token needs no special case);
``y`` = the labels, the token id where the loss counts (the assistant's tokens, including the
``<|im_end|>`` that closes each assistant turn) and :data:`IGNORE` (−100) elsewhere (system and
user turns, headers, padding). The model drops the columns that are padding in every row of a
batch, so the fixed width costs nothing per step.

Outputs: ``forward(x)`` = logits [B, L', V] (L' <= L); :func:`assistant_nll` turns them into the
per-example loss: the mean next-token NLL over the example's labelled tokens (the assistant-only
loss of Tülu/LESS instruction tuning). ``features(x)`` = the mean of the example's input token
embeddings [B, d] over its tokens (the paper's weight-network input for the LLM experiment).

Chat format: ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``), the format SmolLM2-Instruct
was tuned with; a from-scratch model learns it. Each piece is tokenised separately and the ids
concatenated (:func:`encode_chat`), so the label mask is exact whatever the tokenizer merges.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PAD_X = -1
IGNORE = -100
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_SPECIAL = (IM_START, IM_END)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def special_id(tokenizer, token: str) -> int:
    """The id of special token ``token``; ValueError when the tokenizer lacks it."""
    got = tokenizer.token_to_id(token)
    if got is None:
        raise ValueError(f"the tokenizer has no {token} token (the ChatML format needs "
                         f"{' and '.join(CHAT_SPECIAL)})")
    return got


def encode_chat(tokenizer, messages: Sequence[tuple[str, str]], max_len: int,
                generation_prompt: bool = False, answer_prefix: str = "",
                truncate: str = "end") -> tuple[list[int], list[int]]:
    """Token ids and labels of a conversation in ChatML, at most ``max_len`` tokens. Labels are
    the ids of assistant content and its closing ``<|im_end|>``, IGNORE elsewhere.
    ``generation_prompt`` appends the header of an assistant turn (``<|im_start|>assistant\\n``,
    unlabelled) and then ``answer_prefix`` (e.g. ``The answer is (``), for decoding or scoring an
    answer. A longer conversation is cut at the end (``truncate="end"``, training rows) or loses
    the first tokens of its first user message (``"left"``, a question whose options and answer
    must stay; as lm-eval truncates on the left)."""
    start, end = special_id(tokenizer, IM_START), special_id(tokenizer, IM_END)
    newline = _ids(tokenizer, "\n")
    pieces: list[tuple[list[int], bool, str]] = []  # (ids, labelled, role)
    for role, content in messages:
        pieces.append(([start, *_ids(tokenizer, f"{role}\n")], False, ""))
        pieces.append(([*_ids(tokenizer, content), end], role == "assistant", role))
        pieces.append((newline, False, ""))
    if generation_prompt:
        pieces.append(([start, *_ids(tokenizer, "assistant\n"),
                        *(_ids(tokenizer, answer_prefix) if answer_prefix else [])], False, ""))
    excess = sum(len(p) for p, _, _ in pieces) - max_len
    if excess > 0 and truncate == "left":
        k = next((i for i, (_, _, role) in enumerate(pieces) if role == "user"), None)
        if k is not None:
            body = pieces[k][0]
            cut = min(excess, len(body) - 2)  # keep the body's last token and <|im_end|>
            pieces[k] = (body[max(cut, 0):], False, "user")
    ids = [i for p, _, _ in pieces for i in p]
    labels = [i if labelled else IGNORE for p, labelled, _ in pieces for i in p]
    return ids[:max_len], labels[:max_len]


def pack_rows(rows: Sequence[tuple[list[int], list[int]]], width: int | None = None
              ) -> tuple[Tensor, Tensor]:
    """(x, y) [N, width] from (ids, labels) pairs; width defaults to the longest row."""
    width = width or max((len(ids) for ids, _ in rows), default=1)
    x = torch.full((len(rows), width), PAD_X, dtype=torch.long)
    y = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):
        x[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        y[i, : len(labels)] = torch.tensor(labels, dtype=torch.long)
    return x, y


class CausalLM(nn.Module):
    """``lm`` (a ``transformers`` causal LM, e.g. ``LlamaForCausalLM``) on padded rows ``x``."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def _trim(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 2:
            raise ValueError(f"expected token ids [B, L], got {list(x.shape)}")
        mask = x != PAD_X
        width = max(int(mask.sum(1).max()), 1)
        return x[:, :width].clamp(min=0), mask[:, :width]

    @staticmethod
    def _mean(embeddings: Tensor, mask: Tensor) -> Tensor:
        """Mean over each row's tokens of embeddings [B, L', d] under mask [B, L']: [B, d]."""
        m = mask.unsqueeze(-1).to(embeddings.dtype)
        return (embeddings * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [B, L', V], mean input token embedding [B, d]) from one pass."""
        ids, mask = self._trim(x)
        embeddings = self.lm.get_input_embeddings()(ids)  # [B, L', d]
        logits = self.lm(inputs_embeds=embeddings, attention_mask=mask.long(), use_cache=False,
                         return_dict=True).logits
        return logits, self._mean(embeddings, mask)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]

    def features(self, x: Tensor) -> Tensor:
        ids, mask = self._trim(x)
        return self._mean(self.lm.get_input_embeddings()(ids), mask)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: int
                 ) -> list[list[int]]:
        """Greedy decoding of each prompt (token ids), at most ``max_new_tokens`` new tokens,
        stopping at ``eos_id`` (not returned). Prompts are left-padded into one batch; the model
        is in eval mode meanwhile."""
        was_training = self.training
        self.eval()
        try:
            device = next(self.lm.parameters()).device
            width = max(len(p) for p in prompts)
            ids = torch.full((len(prompts), width), eos_id, dtype=torch.long, device=device)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(prompts):
                ids[i, width - len(p):] = torch.tensor(list(p), device=device)
                mask[i, width - len(p):] = 1
            out = self.lm.generate(input_ids=ids, attention_mask=mask,
                                   max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                   eos_token_id=eos_id, pad_token_id=eos_id)
        finally:
            self.train(was_training)
        new = out[:, width:].tolist()
        return [row[: row.index(eos_id)] if eos_id in row else row for row in new]


def assistant_nll(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example loss l(z; θ): the mean next-token NLL over the labelled (assistant) tokens.
    logits [B, L', V] (L' <= L: the model dropped all-padding columns), target [B, L] labels
    (IGNORE where the loss does not count). Returns [B]; 0 for a row without labelled tokens."""
    width = logits.shape[1]
    labels = target[:, 1:width]
    token = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, reduction="none",
                            ignore_index=IGNORE)  # [B, L'-1]
    mask = (labels != IGNORE).to(token.dtype)
    return (token * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def token_accuracy(logits: Tensor, target: Tensor) -> float:
    """Teacher-forced next-token accuracy over the labelled tokens of a batch."""
    width = logits.shape[1]
    labels = target[:, 1:width]
    mask = labels != IGNORE
    hits = (logits[:, :-1].argmax(-1) == labels) & mask
    return float(hits.sum() / mask.sum().clamp(min=1))
