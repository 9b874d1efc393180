"""A byte-level BPE tokenizer trained with Hugging Face `tokenizers`, and the encodings both modes use.

GPT mode:   tokens ... [EOS]              (classification pools the last token)
BERT mode:  [CLS] tokens ... [SEP]        (classification pools [CLS])
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

PAD, UNK, CLS, SEP, MASK, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK, EOS]  # PAD gets id 0


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Tokenizer:
    """Train a byte-level BPE (as in GPT-2) on an iterator of texts. Deterministic for the same texts."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No tokenizer file at {path}. Run `python -m minitransformer.pretrain` to make one.")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise ValueError(f"The tokenizer file {path} is corrupted ({exc}). Restore it with `git checkout -- {path}`.") from exc
    for token in SPECIAL_TOKENS:
        if tokenizer.token_to_id(token) is None:
            raise ValueError(f"The tokenizer at {path} lacks the special token {token}; it was not made by this project.")
    return tokenizer


def special_id(tokenizer: Tokenizer, token: str) -> int:
    return tokenizer.token_to_id(token)


def encode(tokenizer: Tokenizer, text: str | Sequence[str], mode: str, max_len: int | None = None) -> list[int]:
    """Token ids for one text with the mode's special tokens. A list of words is taken as pre-split."""
    if isinstance(text, str):
        ids = tokenizer.encode(text, add_special_tokens=False).ids
    else:
        ids = tokenizer.encode(list(text), is_pretokenized=True, add_special_tokens=False).ids
    return wrap_special(tokenizer, ids, mode, max_len)


def wrap_special(tokenizer: Tokenizer, ids: list[int], mode: str, max_len: int | None = None) -> list[int]:
    """Add [CLS] ... [SEP] (bert) or ... [EOS] (gpt), truncating the body to fit max_len."""
    extra = 2 if mode == "bert" else 1
    if max_len is not None:
        ids = ids[: max_len - extra]
    if mode == "bert":
        return [special_id(tokenizer, CLS), *ids, special_id(tokenizer, SEP)]
    if mode == "gpt":
        return [*ids, special_id(tokenizer, EOS)]
    raise ValueError(f"mode must be 'gpt' or 'bert', got {mode!r}.")


def encode_words_with_labels(
    tokenizer: Tokenizer, words: Sequence[str], labels: Sequence[int], mode: str, max_len: int | None = None
) -> tuple[list[int], list[int]]:
    """Token ids and per-token labels for a pre-split sentence.

    The first sub-word of each word carries the word's label; later sub-words and special
    tokens get -100 so the loss and the metric ignore them.
    """
    if len(words) != len(labels):
        raise ValueError(f"{len(words)} words but {len(labels)} labels; they must align one to one.")
    enc = tokenizer.encode(list(words), is_pretokenized=True, add_special_tokens=False)
    token_labels, previous = [], None
    for word_id in enc.word_ids:
        token_labels.append(labels[word_id] if word_id is not None and word_id != previous else -100)
        previous = word_id
    ids = wrap_special(tokenizer, enc.ids, mode, max_len)
    body = token_labels[: len(ids) - (2 if mode == "bert" else 1)]
    token_labels = [-100, *body, -100] if mode == "bert" else [*body, -100]
    return ids, token_labels
