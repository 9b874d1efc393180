"""Batching: encoding examples for the backbone and loaders whose shuffle order is seeded."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch.utils.data import DataLoader

from .tokenizer import PAD, encode, encode_words_with_labels


def _collate(pad_id: int) -> Callable:
    def collate(items: Sequence[tuple[list[int], object]]) -> dict[str, torch.Tensor]:
        longest = max(len(ids) for ids, _ in items)
        input_ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
        token_level = isinstance(items[0][1], list)
        labels = torch.full((len(items), longest), -100, dtype=torch.long) if token_level else torch.empty(len(items), dtype=torch.long)
        for row, (ids, label) in enumerate(items):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
            if token_level:
                labels[row, : len(label)] = torch.tensor(label)
            else:
                labels[row] = label
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    return collate


class SeededLoader(DataLoader):
    """A DataLoader whose shuffle order depends only on (seed, epoch).

    A plain DataLoader keeps drawing from one generator, so the second training run in a
    notebook would see a different order than the first. `train` calls `set_epoch`.
    """

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, generator=torch.Generator().manual_seed(seed), **kwargs)
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 100_003 + epoch)


def make_loader(items: list, tokenizer, batch_size: int = 32, shuffle: bool = False, seed: int = 0) -> SeededLoader:
    """A DataLoader over (ids, label) pairs that right-pads each batch. Shuffling is seeded per epoch."""
    return SeededLoader(items, batch_size=batch_size, shuffle=shuffle, seed=seed,
                        collate_fn=_collate(tokenizer.token_to_id(PAD)))


def classification_loader(examples: Iterable[dict], tokenizer, mode: str, batch_size: int = 32, shuffle: bool = False,
                          seed: int = 0, max_len: int = 96, text_key: str = "text", label_key: str = "label",
                          template: str | None = None) -> DataLoader:
    """Batches of (ids, label). With a `template` (GPT mode only), each row is the text followed by the template's
    tokens and no [EOS], so that the last real token is where the template asks for the answer (a verbaliser reads
    it there); the text, never the template, is truncated to fit `max_len`."""
    if template is None:
        items = [(encode(tokenizer, ex[text_key], mode, max_len), int(ex[label_key])) for ex in examples]
    else:
        items = [(encode_with_template(tokenizer, ex[text_key], template, mode, max_len), int(ex[label_key]))
                 for ex in examples]
    return make_loader(items, tokenizer, batch_size, shuffle, seed)


def encode_with_template(tokenizer, text: str, template: str, mode: str, max_len: int = 96) -> list[int]:
    """The text's tokens, then the template's (e.g. ' Overall, it was a'): the next token is the answer."""
    if mode != "gpt":
        raise ValueError(f"a template asks a GPT-mode model for the next token; got mode={mode!r}. Use a GPT-mode "
                         f"backbone, or template=None.")
    tail = tokenizer.encode(template, add_special_tokens=False).ids
    if not tail or len(tail) >= max_len:
        raise ValueError(f"template {template!r} is {len(tail)} tokens; it must be at least one and fewer than "
                         f"max_len={max_len}.")
    body = tokenizer.encode(text, add_special_tokens=False).ids[: max_len - len(tail)]
    return [*body, *tail]


def token_classification_loader(examples: Iterable[dict], tokenizer, mode: str, label_names: Sequence[str],
                                batch_size: int = 32, shuffle: bool = False, seed: int = 0, max_len: int = 96) -> DataLoader:
    index = {name: i for i, name in enumerate(label_names)}
    items = [encode_words_with_labels(tokenizer, ex["tokens"], [index[t] for t in ex["tags"]], mode, max_len) for ex in examples]
    return make_loader(items, tokenizer, batch_size, shuffle, seed)
