"""The data-to-text task as language modelling: encode, batch, generate, score.

Every chapter that adapts the GPT backbone to the E2E-style task (`load_task("data_to_text")`)
trains and scores it the same way:

    training sequence   MR tokens  [SEP]  text tokens  [EOS]
    loss                on the text and [EOS] only (the MR is given, not predicted)
    generation          greedy, from "MR [SEP]", until [EOS]; optionally behind a prefix (past_key_values)
    scores              corpus BLEU against every reference, and the slot error rate (world/metrics.py)

    data_to_text_loader(examples, tokenizer, ...)     batches of (input_ids, attention_mask, labels)
    generate_texts(model, examples, tokenizer, ...)   one output string per example, batched by prompt length
    generate_with(model, examples, tokenizer)         the same for a model that carries a prefix (`get_prefix`)
    score_texts(examples, outputs)                    {"bleu": ..., "slot_error_rate": ...}
    evaluate_lm_loss(model, loader)                   teacher-forced loss per target token (validation curves)
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .tokenizer import EOS, SEP, special_id
from .data import make_loader

MAX_NEW_TOKENS = 64  # longer than every reference of the task (at most 57 tokens)


def prompt_ids(tokenizer, meaning_representation: str) -> list[int]:
    """What the model is given: the MR's tokens, then [SEP]."""
    return [*tokenizer.encode(meaning_representation, add_special_tokens=False).ids, special_id(tokenizer, SEP)]


def encode_pair(tokenizer, meaning_representation: str, text: str, max_len: Optional[int] = None) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one (MR, text) pair, labels already aligned with the inputs.

    labels[t] is the token the model must predict after input t: -100 (ignored) while reading the
    MR, then the text's tokens and [EOS]. A text that does not fit `max_len` is cut (the MR never is).
    """
    prompt = prompt_ids(tokenizer, meaning_representation)
    target = [*tokenizer.encode(text, add_special_tokens=False).ids, special_id(tokenizer, EOS)]
    if max_len is not None:
        if len(prompt) >= max_len:
            raise ValueError(f"The MR alone takes {len(prompt)} tokens, more than max_len={max_len}: "
                             f"raise max_len or use a shorter prefix.")
        target = target[: max_len - len(prompt)]
    ids = prompt + target
    labels = [-100] * (len(prompt) - 1) + target + [-100]  # the last input has nothing after it
    return ids, labels[: len(ids)]


def data_to_text_pairs(examples: Sequence[dict], references: str = "first") -> list[tuple[str, str]]:
    """(MR, text) training pairs: one per example with its first reference, or one per reference ("all")."""
    if references not in ("first", "all"):
        raise ValueError(f"references must be 'first' or 'all', got {references!r}.")
    return [(ex["meaning_representation"], ref) for ex in examples
            for ref in (ex["references"][:1] if references == "first" else ex["references"])]


def data_to_text_loader(examples: Sequence[dict], tokenizer, batch_size: int = 32, shuffle: bool = False, seed: int = 0,
                        max_len: int = 128, references: str = "first"):
    """A loader of right-padded LM batches {input_ids, attention_mask, labels} with the loss on the text only.

    `max_len` is the room left in the context: max_seq_len minus a prefix's length, if any.
    """
    items = [encode_pair(tokenizer, mr, text, max_len) for mr, text in data_to_text_pairs(examples, references)]
    return make_loader(items, tokenizer, batch_size, shuffle, seed)


def _expand(prefix, batch_size: int):
    """A prefix with batch size 1, repeated (as a view) to `batch_size`."""
    return tuple((k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1)) for k, v in prefix)


@torch.no_grad()
def generate_texts(model, examples: Sequence[dict], tokenizer, prefix=None, max_new_tokens: int = MAX_NEW_TOKENS,
                   batch_size: int = 64) -> list[str]:
    """Greedy outputs for every example's MR, in order.

    `model` is a GPT-mode MiniTransformer; `prefix` an optional learned prefix (L pairs of
    (1, H, P, h)) that is repeated to each batch and stays in front of the KV cache. `generate`
    needs prompts of equal length, so examples are batched by prompt length.
    """
    if model.config.mode != "gpt":
        raise ValueError("Generating text needs a GPT-mode (causal) backbone; this one is BERT-mode. "
                         "Load it with load_pretrained('gpt').")
    if prefix is not None and prefix[0][0].shape[0] != 1:
        raise ValueError(f"generate_texts repeats the prefix to each batch: pass it with batch size 1, "
                         f"got {prefix[0][0].shape[0]}.")
    P = 0 if prefix is None else prefix[0][0].shape[2]
    eos = special_id(tokenizer, EOS)
    prompts = [prompt_ids(tokenizer, ex["meaning_representation"]) for ex in examples]
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        by_length.setdefault(len(ids), []).append(i)
    outputs: list[str] = [""] * len(prompts)
    for length, indices in sorted(by_length.items()):
        room = model.config.max_seq_len - P - length
        if room <= 0:
            raise ValueError(f"A prompt of {length} tokens behind a prefix of {P} leaves no room in the context "
                             f"(max_seq_len={model.config.max_seq_len}): use a shorter prefix.")
        for start in range(0, len(indices), batch_size):
            rows = indices[start:start + batch_size]
            input_ids = torch.tensor([prompts[i] for i in rows], device=model.device)  # (b, length)
            past = None if prefix is None else _expand(prefix, len(rows))
            tokens = model.generate(input_ids, min(max_new_tokens, room), eos_token_id=eos, past_key_values=past)
            for i, row in zip(rows, tokens[:, length:].tolist()):
                outputs[i] = tokenizer.decode(row[: row.index(eos)] if eos in row else row).strip()
    return outputs


def score_texts(examples: Sequence[dict], outputs: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (0-100, every reference) and slot error rate (0 = every attribute realised) of `outputs`."""
    from .world.metrics import bleu, slot_error_rate

    return {"bleu": bleu(outputs, [ex["references"] for ex in examples]),
            "slot_error_rate": slot_error_rate([ex["record"] for ex in examples], outputs)}


@torch.no_grad()
def evaluate_lm_loss(model, loader) -> float:
    """Mean loss per target token over `loader` (teacher forcing): the validation curve of a generation task."""
    device = next(model.parameters()).device
    model.eval()
    total = count = 0.0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"] != -100).sum())
        total, count = total + model(**batch).loss.item() * n, count + n
    return total / max(count, 1)


def generate_with(model, examples: Sequence[dict], tokenizer, **kwargs) -> list[str]:
    """`generate_texts` for a plain (or LoRA, or fully fine-tuned) backbone, or for a wrapper that holds a
    `.backbone` and a learned prefix (`.get_prefix(batch_size)`, e.g. prefix tuning)."""
    if hasattr(model, "get_prefix"):
        model.eval()
        with torch.no_grad():
            prefix = model.get_prefix(1)
        return generate_texts(model.backbone, examples, tokenizer, prefix=prefix, **kwargs)
    return generate_texts(model, examples, tokenizer, **kwargs)
