"""Pretrain a MiniTransformer from scratch: `python -m minitransformer.pretrain --mode gpt --out DIR`.

By default the corpus is the generated world's text (`minitransformer.world`); `--text FILE`
pretrains on your own plain-text file instead (paragraphs separated by blank lines, or one
document per line). The run is deterministic for a given seed and step count, shows a
progress bar with an ETA, and writes `<out>/<name>.safetensors`, a JSON model card and
`<out>/tokenizer.json`. Load the result with `load_pretrained(name, out)`.

Safety rules:
  * The shipped checkpoints (minitransformer/checkpoints/) are never written unless you pass
    --overwrite-shipped. Without --out, a run writes to a new folder named after its text
    (book.txt -> ./book_checkpoints/) or, for the world, ./world_seed<seed>_checkpoints/.
  * Every input is checked before any work starts, and every file is written under a
    temporary name and then renamed, so a failed run leaves nothing behind.
  * A run trains its own tokenizer unless you pass --tokenizer FILE to reuse one.
  * An existing checkpoint of the same name is replaced only with --overwrite.

    GPT mode:  next-token prediction on 128-token windows of the document stream
    BERT mode: masked-LM, 15% of tokens chosen; of those 80% -> [MASK], 10% random, 10% kept
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import math
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import (CHECKPOINT_DIR, SHIPPED, CheckpointError, commit_staged, discard_staged, list_checkpoints,
                         load_checkpoint, read_card, sha256_of, stage_checkpoint, stage_file)
from .model import ConfigError, MiniTransformer, TransformerConfig
from .probing import probe_accuracy
from .tokenizer import CLS, EOS, MASK, SEP, SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from .training import progress_bar, set_seed

DEFAULT_VOCAB_SIZE = 2048
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # byte-level BPE starts from 256 byte symbols, plus the special tokens
MIN_DOCUMENTS = 10


class PretrainError(ValueError):
    """A pretraining input that cannot work; the message names the problem and the fix."""


class TextFileNotFound(PretrainError, FileNotFoundError):
    """`--text` names no file."""


def _read_corpus(path: str | Path) -> tuple[list[str], dict]:
    """Documents from a UTF-8 text file, and the file's name, size and sha256 for the model card."""
    path = Path(path)
    if path.is_dir():
        raise PretrainError(f"--text {path} is a folder; give one plain-text file (concatenate several with `cat`).")
    if not path.is_file():
        raise TextFileNotFound(f"--text {path}: no such file. Check the path (it is relative to {Path.cwd()}).")
    data = path.read_bytes()
    if not data.strip():
        raise PretrainError(f"--text {path} is empty; give a plain-text file with at least {MIN_DOCUMENTS} paragraphs.")
    try:
        if b"\x00" in data:  # valid UTF-8 can hold NUL bytes, but text never does
            raise UnicodeDecodeError("utf-8", data, data.index(b"\x00"), data.index(b"\x00") + 1, "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PretrainError(
            f"--text {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); it looks like a binary file. "
            "Give a plain-text file, or convert it first, e.g. with `iconv -t utf-8`."
        ) from None
    docs = [p.strip() for p in text.split("\n\n") if p.strip()]
    if len(docs) < MIN_DOCUMENTS:
        docs = [line.strip() for line in text.splitlines() if line.strip()]
    if len(docs) < MIN_DOCUMENTS:
        raise PretrainError(f"--text {path} holds only {len(docs)} non-empty documents; give at least {MIN_DOCUMENTS} "
                            "(more is better), separated by blank lines or one per line.")
    info = {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return docs, info


def read_text_file(path: str | Path) -> list[str]:
    """Documents from a UTF-8 text file: blank-line separated paragraphs, else one per line."""
    return _read_corpus(path)[0]


def token_stream(docs: list[str], tokenizer, separator: str) -> torch.Tensor:
    sep = tokenizer.token_to_id(separator)
    ids: list[int] = []
    for enc in tokenizer.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(sep)
    return torch.tensor(ids, dtype=torch.long)


MASKING = ("token", "whole_word", "salient")
# Words that name nothing (parts of multi-word names and values such as "The Olive Tree", "5 out of 5").
NOT_SALIENT = {"The", "the", "a", "an", "of", "and", "at", "in", "on", "out", "yes", "no"}


def salient_words(seed: int) -> set[str]:
    """The world's entity names and fact values, word by word ("Mira", "Okafor", "baker", "Marton", ...).

    Salient span masking (Guu et al., 2020, REALM) masks such spans on purpose, since they are what a knowledge
    probe asks for; REALM finds them with a named-entity tagger, here the generated world is the gazetteer.
    """
    from .world import generate_world

    words: set[str] = set()
    for subject, _, value in generate_world(seed).facts():
        for text in (subject, value):
            words.update(w for w in re.findall(r"[A-Za-z]+", text) if w not in NOT_SALIENT and len(w) > 1)
    return words


def salient_stream(docs: list[str], tokenizer, words: set[str]) -> torch.Tensor:
    """Bool per token of `token_stream(docs, ...)`: True for every token of a word in `words` (separators False)."""
    flags: list[bool] = []
    for doc, enc in zip(docs, tokenizer.encode_batch(docs, add_special_tokens=False)):
        salient_word: dict[int, bool] = {}
        for word in enc.word_ids:
            if word not in salient_word:
                start, end = enc.word_to_chars(word)
                salient_word[word] = doc[start:end].strip() in words
            flags.append(salient_word[word])
        flags.append(False)
    return torch.tensor(flags, dtype=torch.bool)


def word_boundaries(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Per vocabulary id: (does the token begin a new word, does it end in a letter or digit).

    With byte-level BPE a word's first token carries the space marker "Ġ"; punctuation is a word
    of its own. Used by whole-word masking to find which tokens belong together.
    """
    size = tokenizer.get_vocab_size()
    begins, alnum_end = torch.ones(size, dtype=torch.bool), torch.zeros(size, dtype=torch.bool)
    for token, i in tokenizer.get_vocab().items():
        if i < len(SPECIAL_TOKENS) or not token:
            continue
        text = token[1:] if token.startswith("Ġ") else token
        begins[i] = token.startswith("Ġ") or not text[:1].isalnum()
        alnum_end[i] = text[-1:].isalnum()
    return begins, alnum_end


def word_starts(ids: torch.Tensor, boundaries: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(B, T) bool: True where a token starts a new word (see `word_boundaries`)."""
    begins, alnum_end = boundaries
    special = ids < len(SPECIAL_TOKENS)
    starts = begins[ids] | special
    starts[:, 1:] |= ~alnum_end[ids[:, :-1]] | special[:, :-1]
    return starts


def sample_batch(stream: torch.Tensor, batch_size: int, seq_len: int, mode: str, tokenizer, generator: torch.Generator,
                 masking: str = "token", boundaries: tuple[torch.Tensor, torch.Tensor] | None = None,
                 mask_prob: float = 0.15, salient: torch.Tensor | None = None, salient_prob: float = 0.5):
    """A batch of random windows. GPT: (inputs, next tokens). BERT: (masked inputs, MLM labels).

    BERT masking: "token" chooses `mask_prob` (15%) of the tokens independently (the original BERT
    recipe); "whole_word" chooses `mask_prob` of the words and masks every token of a chosen word together (BERT's
    later whole-word masking), so a name split into several tokens must be predicted from context
    alone, as in the knowledge probe. The 80/10/10 split is then drawn once per word. "salient" is whole-word
    masking where the words flagged in `salient` (aligned with `stream`; see `salient_stream`) are chosen with
    probability `salient_prob` and every other word with `mask_prob` (salient span masking, REALM).
    """
    body = seq_len if mode == "gpt" else seq_len - 2
    starts = torch.randint(0, len(stream) - body - 1, (batch_size,), generator=generator)
    windows = torch.stack([stream[s : s + body + 1] for s in starts.tolist()])  # (B, body+1)
    if masking == "salient":
        if salient is None or len(salient) != len(stream):
            raise PretrainError("salient masking needs the salient flags of the same token stream (salient_stream).")
        flags = torch.stack([salient[s : s + body] for s in starts.tolist()])  # (B, body)
    if mode == "gpt":
        return windows[:, :-1], windows[:, 1:]
    cls, sep = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    ids = torch.cat([torch.full((batch_size, 1), cls), windows[:, :-1], torch.full((batch_size, 1), sep)], dim=1)
    special = ids < len(SPECIAL_TOKENS)
    if masking == "token":
        chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & ~special
        action = torch.rand(ids.shape, generator=generator)
    elif masking in ("whole_word", "salient"):
        if boundaries is None:
            boundaries = word_boundaries(tokenizer)
        word = word_starts(ids, boundaries).long().cumsum(dim=1).clamp(max=ids.shape[1] - 1)  # (B, T) word of token
        per_word = torch.rand(2, *ids.shape, generator=generator)  # draws for words 1..T (index 0 unused)
        prob = torch.full(ids.shape, mask_prob)
        if masking == "salient":  # a word is salient if any of its tokens is
            token_flags = torch.cat([torch.zeros(batch_size, 1), flags.float(), torch.zeros(batch_size, 1)], dim=1)
            word_flags = torch.zeros(ids.shape).scatter_reduce(1, word, token_flags, "amax").gather(1, word)
            prob = torch.where(word_flags > 0, salient_prob, mask_prob)
        chosen = (per_word[0].gather(1, word) < prob) & ~special
        action = per_word[1].gather(1, word)
    else:
        raise PretrainError(f"--masking must be one of {MASKING}, got {masking!r}.")
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    random_ids = torch.randint(len(SPECIAL_TOKENS), tokenizer.get_vocab_size(), ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = tokenizer.token_to_id(MASK)
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels


@torch.no_grad()
def validation_loss(model, stream, mode, tokenizer, batch_size=32, batches=20, seed=1234) -> float:
    """Mean loss on held-out text; the same windows (and masks) every time for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    losses = []
    for _ in range(batches):
        inputs, labels = sample_batch(stream, batch_size, model.config.max_seq_len, mode, tokenizer, generator)
        losses.append(lm_loss(model, inputs, labels).item())
    model.train(was_training)
    return sum(losses) / len(losses)


def lm_loss(model, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the positions that have a label. For BERT only ~15% of positions do,
    so the vocabulary projection is applied to those rows alone."""
    hidden = model(inputs, return_logits=False).hidden_states  # (B, T, d)
    keep = labels != -100
    return F.cross_entropy(model.lm_logits(hidden[keep]), labels[keep])


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # cosine down to 10% of peak


def world_corpus(seed: int) -> list[str]:
    from .world import generate_world, pretraining_corpus

    return pretraining_corpus(generate_world(seed), seed=seed)


def default_out_dir(text_file: str | Path | None, seed: int = 0) -> Path:
    """Where a run without --out writes: a new folder in the current directory named after the text."""
    if text_file is None:
        return Path(f"world_seed{seed}_checkpoints")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text_file).stem).strip("._") or "text"
    return Path(f"{stem}_checkpoints")


def _missing_dirs(out_dir: Path) -> list[Path]:
    """The folders that must be created for out_dir, deepest first."""
    missing = []
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _check_out_dir(out_dir: Path) -> list[Path]:
    """out_dir is a folder (or can be made) and we can write in it; returns the folders to create."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PretrainError(f"--out {out_dir} is a file, not a folder. Choose a folder path (it is created if missing).")
    missing = _missing_dirs(out_dir)
    existing = missing[-1].parent if missing else out_dir
    if not existing.is_dir():
        raise PretrainError(f"--out {out_dir}: {existing} is a file, so no folder can be made inside it. "
                            "Choose another --out.")
    try:  # the only reliable test of writability (permissions, read-only mounts) is to write
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".pretrain-probe-"):
            pass
    except OSError as exc:
        raise PretrainError(f"--out {out_dir}: cannot write into {existing} ({exc.strerror or exc}). "
                            "Choose a folder you can write to, e.g. one in your home folder.") from None
    return missing


@dataclass
class RunPlan:
    """Everything `pretrain` checked before starting work."""

    out_dir: Path
    name: str
    config: TransformerConfig  # vocab_size is the requested one until the tokenizer exists
    dirs_to_create: list[Path]
    docs: list[str]
    corpus: dict
    tokenizer_source: Path | None  # a tokenizer file to reuse, or None to train one
    vocab_size: int


def plan_run(mode="gpt", steps=1500, batch_size=32, lr=2e-3, seed=0, text_file=None, out_dir=None, name=None,
             d_model=128, n_layers=4, n_heads=4, max_seq_len=128, vocab_size=None, tokenizer=None,
             overwrite=False, overwrite_shipped=False, masking="token", mask_prob=0.15, init_from=None,
             salient_prob=0.5) -> RunPlan:
    """Check every input of a pretraining run, cheapest first, before any training. Raises PretrainError."""
    for flag, value in (("--steps", steps), ("--batch-size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise PretrainError(f"{flag} must be a positive integer, got {value!r}.")
    if not lr > 0 or not math.isfinite(lr):
        raise PretrainError(f"--lr must be a positive number, got {lr!r} (the shipped runs use 2e-3).")
    if mode not in ("gpt", "bert"):
        raise PretrainError(f"--mode must be 'gpt' or 'bert', got {mode!r}.")
    if masking not in MASKING:
        raise PretrainError(f"--masking must be one of {', '.join(MASKING)}, got {masking!r}.")
    if not 0 < mask_prob < 1:
        raise PretrainError(f"--mask-prob must be between 0 and 1 (exclusive), got {mask_prob!r} (BERT used 0.15).")
    if not 0 < salient_prob <= 1:
        raise PretrainError(f"--salient-prob must be in (0, 1], got {salient_prob!r}.")
    if masking == "salient" and text_file is not None:
        raise PretrainError("--masking salient needs the generated world's names (its gazetteer); a --text corpus has "
                            "none. Use --masking whole_word or token with --text.")
    if salient_prob != 0.5 and masking != "salient":
        raise PretrainError("--salient-prob applies to --masking salient only; drop it or add --masking salient.")
    if (masking != "token" or mask_prob != 0.15) and mode != "bert":
        raise PretrainError("--masking and --mask-prob apply to --mode bert only (GPT predicts every next token); "
                            "drop them or use --mode bert.")
    name = name or mode
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name == "tokenizer" or name.endswith((".json", ".safetensors")):
        raise PretrainError(f"--name {name!r} cannot be a checkpoint name: use letters, digits, '_', '-' or '.' "
                            "(not 'tokenizer', no extension), e.g. --name austen_gpt.")
    if vocab_size is not None and vocab_size < MIN_VOCAB_SIZE:
        raise PretrainError(f"--vocab-size {vocab_size} is too small: a byte-level BPE needs at least {MIN_VOCAB_SIZE} "
                            f"(256 byte symbols + {len(SPECIAL_TOKENS)} special tokens). Try {DEFAULT_VOCAB_SIZE}.")
    try:  # the model config, with the vocabulary size we expect to get
        config = TransformerConfig(vocab_size=vocab_size or DEFAULT_VOCAB_SIZE, max_seq_len=max_seq_len,
                                   d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ff=4 * d_model, mode=mode)
    except ConfigError as exc:
        raise PretrainError(f"Invalid model size: {exc}") from None
    if mode == "bert" and max_seq_len < 3:
        raise PretrainError("--max-seq-len must be at least 3 in bert mode ([CLS] + a token + [SEP]).")

    if init_from is not None:  # continue pretraining a checkpoint of the same size and mode
        init_path = Path(init_from)
        if not init_path.is_file():
            raise PretrainError(f"--init-from {init_path}: no such checkpoint file; give a .safetensors file written by "
                                "this command (e.g. minitransformer/checkpoints/bert.safetensors).")
        try:
            init_config = TransformerConfig.from_dict(read_card(init_path)["config"])
        except (CheckpointError, KeyError, ValueError, OSError) as exc:
            raise PretrainError(f"--init-from {init_path}: cannot read its model card ({exc}).") from None
        asked = {**config.to_dict(), "vocab_size": init_config.vocab_size}
        if init_config.to_dict() != asked:
            raise PretrainError(f"--init-from {init_path} is a {init_config.mode} model with {init_config.to_dict()}, but "
                                f"this run asks for {asked}; pass the same --mode and sizes, or drop --init-from.")

    # The output folder: never the shipped checkpoints by accident.
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(text_file, seed)
    shipped = out_dir.resolve() == CHECKPOINT_DIR.resolve()
    if shipped and not overwrite_shipped:
        raise PretrainError(f"--out {out_dir} is the shipped checkpoint folder, which every lesson loads. Write to "
                            "another folder with --out DIR; to re-pretrain the shipped gpt/bert on purpose, add "
                            "--overwrite-shipped.")
    if not shipped and out_dir.resolve().is_relative_to(CHECKPOINT_DIR.resolve()):
        raise PretrainError(f"--out {out_dir} is inside the shipped checkpoint folder; write your checkpoints "
                            "elsewhere, e.g. --out my_checkpoints.")
    if overwrite_shipped:
        if not shipped:
            raise PretrainError("--overwrite-shipped only applies to the shipped folder minitransformer/checkpoints; "
                                "drop it, or use --overwrite to replace a checkpoint in your own --out folder.")
        if text_file is not None or name not in SHIPPED:
            raise PretrainError("--overwrite-shipped re-pretrains the shipped 'gpt' or 'bert' on the generated world "
                                "only; pretrain on --text into your own --out folder instead.")
        overwrite = True
        if tokenizer is None:  # the other shipped checkpoint depends on this tokenizer
            tokenizer = CHECKPOINT_DIR / "tokenizer.json"
    dirs_to_create = _check_out_dir(out_dir)
    clashes = [f"{name}{ext}" for ext in (".safetensors", ".json") if (out_dir / f"{name}{ext}").exists()]
    if clashes and not overwrite:
        raise PretrainError(f"{out_dir} already holds a checkpoint named {name!r} ({', '.join(clashes)}). Choose another "
                            "--name or --out, or pass --overwrite to replace it.")

    # The tokenizer: trained for this run unless one is named explicitly.
    dest = out_dir / "tokenizer.json"
    if tokenizer is not None:
        source = Path(tokenizer)
        try:
            loaded = load_tokenizer(source)
        except (FileNotFoundError, ValueError) as exc:
            raise PretrainError(f"--tokenizer: {exc}") from None
        size = loaded.get_vocab_size()
        if vocab_size is not None and vocab_size != size:
            raise PretrainError(f"--tokenizer {source} has {size} tokens but --vocab-size is {vocab_size}. Drop "
                                f"--vocab-size to use the tokenizer's {size}, or drop --tokenizer to train a new one.")
        if dest.exists() and not dest.resolve() == source.resolve() and sha256_of(dest) != sha256_of(source):
            raise PretrainError(f"{dest} already exists and differs from --tokenizer {source}; the checkpoints in "
                                f"{out_dir} use it. Reuse it with --tokenizer {dest}, or choose another --out.")
        vocab_size = size
        config = TransformerConfig.from_dict({**config.to_dict(), "vocab_size": size})
    else:
        users = [n for n in list_checkpoints(out_dir) if n != name]
        if dest.exists() and (users or not overwrite):
            used_by = f" (used by {', '.join(users)})" if users else ""
            raise PretrainError(f"{out_dir} already has a tokenizer.json{used_by}, and this run would train a new one. "
                                f"Reuse it with --tokenizer {dest}, or choose another --out.")
        vocab_size = vocab_size or DEFAULT_VOCAB_SIZE
        source = None

    # The corpus, and a cheap upper bound on its token count (a byte-level token covers at least one byte).
    if text_file is not None:
        docs, corpus = _read_corpus(text_file)
        corpus = {"source": "text file", **corpus}
    else:
        docs, corpus = world_corpus(seed), {"source": "generated world", "seed": seed}
    corpus["documents"] = len(docs)
    for split, part in (("training", [d for i, d in enumerate(docs) if i % 50]),
                        ("validation (every 50th document)", docs[::50])):
        most = sum(len(d.encode("utf-8")) + 2 for d in part)  # + a prefix space and a separator per document
        if most <= max_seq_len + 1:
            raise PretrainError(f"The {split} text has at most {most} tokens, too few for windows of max_seq_len="
                                f"{max_seq_len}. Give a larger text file or a smaller --max-seq-len.")
    return RunPlan(out_dir=out_dir, name=name, config=config, dirs_to_create=dirs_to_create, docs=docs,
                   corpus=corpus, tokenizer_source=source, vocab_size=vocab_size)


def _call_repr(**kwargs) -> str:
    return "pretrain(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def pretrain(mode: str = "gpt", steps: int = 1500, batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
             text_file: str | Path | None = None, out_dir: str | Path | None = None, name: str | None = None,
             d_model: int = 128, n_layers: int = 4, n_heads: int = 4, max_seq_len: int = 128,
             vocab_size: int | None = None, tokenizer: str | Path | None = None, overwrite: bool = False,
             overwrite_shipped: bool = False, masking: str = "token", mask_prob: float = 0.15,
             init_from: str | Path | None = None, salient_prob: float = 0.5, progress: bool = True,
             command: str | None = None) -> dict:
    """Pretrain one checkpoint and write it (see the module docstring for the rules). Returns its model card.

    `out_dir=None` writes to `default_out_dir(text_file, seed)`. `tokenizer` reuses a tokenizer file
    instead of training one. Bad inputs raise PretrainError before any work, and nothing is written
    unless the whole run succeeds.
    """
    args = dict(mode=mode, steps=steps, batch_size=batch_size, lr=lr, seed=seed, text_file=text_file,
                out_dir=out_dir, name=name, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                max_seq_len=max_seq_len, vocab_size=vocab_size, tokenizer=tokenizer, overwrite=overwrite,
                overwrite_shipped=overwrite_shipped, masking=masking, mask_prob=mask_prob, init_from=init_from,
                salient_prob=salient_prob)
    started = time.perf_counter()
    plan = plan_run(**args)
    if command is None:  # called from Python: record the call itself
        defaults = {k: v.default for k, v in inspect.signature(pretrain).parameters.items()}
        command = _call_repr(**{k: (str(v) if isinstance(v, Path) else v) for k, v in args.items() if v != defaults[k]})
    name, out_dir, docs = plan.name, plan.out_dir, plan.docs
    log = print if progress else (lambda *a, **k: None)
    what = (f"{plan.corpus['file']} ({plan.corpus['bytes'] / 1e6:.2f} MB, {len(docs):,} documents)"
            if text_file is not None else f"the generated world (seed {seed}, {len(docs):,} documents)")
    how = f"reusing {plan.tokenizer_source}" if plan.tokenizer_source else f"training a new one (vocab {plan.vocab_size})"
    log(f"Pretraining {name!r} ({mode}) on {what} into {out_dir}/; tokenizer: {how}.")

    set_seed(seed)
    if plan.tokenizer_source is not None:
        tokenizer_obj = load_tokenizer(plan.tokenizer_source)
        provenance = {"source": "reused", "from": str(plan.tokenizer_source)}
    else:
        tokenizer_obj = train_tokenizer(docs, plan.vocab_size)
        provenance = {"source": f"trained on this run's corpus (byte-level BPE, vocab_size {plan.vocab_size} requested)"}
        if tokenizer_obj.get_vocab_size() < plan.vocab_size:
            log(f"Note: the text is small, so the tokenizer stopped at {tokenizer_obj.get_vocab_size()} tokens "
                f"(asked for {plan.vocab_size}).")
    # Every 50th document is held out for the validation loss.
    train_docs = [d for i, d in enumerate(docs) if i % 50]
    val_docs = [d for i, d in enumerate(docs) if i % 50 == 0]
    separator = EOS if mode == "gpt" else SEP
    train_stream = token_stream(train_docs, tokenizer_obj, separator)
    val_stream = token_stream(val_docs, tokenizer_obj, separator)
    for split, stream in (("training", train_stream), ("validation (every 50th document)", val_stream)):
        if len(stream) <= max_seq_len + 1:
            raise PretrainError(
                f"The {split} text has only {len(stream)} tokens, too few for windows of max_seq_len={max_seq_len}. "
                "Give a larger text file or a smaller --max-seq-len. Nothing was written."
            )
    words = sum(len(d.split()) for d in docs)

    config = TransformerConfig.from_dict({**plan.config.to_dict(), "vocab_size": tokenizer_obj.get_vocab_size()})
    model = MiniTransformer(config)
    init_card = None
    if init_from is not None:  # already checked by plan_run; read before anything is overwritten
        init_card = read_card(init_from)
        model.load_state_dict(load_checkpoint(init_from).state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(seed)
    boundaries = word_boundaries(tokenizer_obj) if masking in ("whole_word", "salient") else None
    salient = salient_stream(train_docs, tokenizer_obj, salient_words(seed)) if masking == "salient" else None
    model.train()
    losses = []
    bar = progress_bar(range(steps), desc=f"pretrain {name}", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=max(1, steps // 20))
        inputs, labels = sample_batch(train_stream, batch_size, max_seq_len, mode, tokenizer_obj, generator,
                                      masking, boundaries, mask_prob, salient, salient_prob)
        loss = lm_loss(model, inputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}", refresh=False)  # drawn with the bar
    train_seconds = time.perf_counter() - started
    model.eval()
    val_loss = validation_loss(model, val_stream, mode, tokenizer_obj)
    corpus = plan.corpus
    card = {
        "name": name,
        "objective": ("causal language modelling" if mode == "gpt" else
                      f"masked language modelling ({mask_prob:.0%}, 80/10/10)" if masking == "token" else
                      f"masked language modelling, whole-word masking ({mask_prob:.0%} of words, 80/10/10 per word)"
                      if masking == "whole_word" else
                      f"masked language modelling, salient span masking ({salient_prob:.0%} of the world's entity "
                      f"and value words, {mask_prob:.0%} of other words, 80/10/10 per word)"),
        "corpus": (f"text file {corpus['file']} ({corpus['bytes']:,} bytes, sha256 {corpus['sha256'][:12]}...)"
                   if text_file is not None else f"generated world, seed {seed}"),
        "corpus_details": corpus,
        "command": command,
        "documents": len(docs),
        "train_tokens_available": len(train_stream),
        "tokens_per_word": round((len(train_stream) + len(val_stream) - len(docs)) / max(1, words), 3),
        "tokens_seen": steps * batch_size * (max_seq_len if mode == "gpt" else max_seq_len - 2),
        "steps": steps, "batch_size": batch_size, "peak_lr": lr, "seed": seed,
        **({"masking": masking, "mask_prob": mask_prob} if mode == "bert" else {}),
        **({"salient_prob": salient_prob, "salient_share": round(salient.float().mean().item(), 4)}
           if masking == "salient" else {}),
        **({"init_from": {"file": Path(init_from).name, "sha256": init_card.get("sha256"), "steps": init_card.get("steps"),
                          "objective": init_card.get("objective"), "tokens_seen": init_card.get("tokens_seen")},
            "total_steps": steps + int(init_card.get("total_steps", init_card.get("steps", 0)))} if init_card else {}),
        "wall_time_seconds": round(train_seconds, 1),
        "first_train_loss": round(losses[0], 4),
        "final_train_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
        "train_loss_curve": [round(x, 4) for x in losses],  # one per optimizer step
        "validation_loss": round(val_loss, 4),
        "validation_perplexity": round(math.exp(val_loss), 2),
        "validation_protocol": "20 batches of 32 windows from every 50th document, generator seed 1234"
                               + (" (BERT: token masking, whatever the training masking)" if mode == "bert" else ""),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    if text_file is None:
        from .world import load_task

        card["probe_accuracy_test"] = round(probe_accuracy(model, tokenizer_obj, load_task("probing", seed).test), 4)

    # Write everything under temporary names, then rename: all or nothing.
    dest = out_dir / "tokenizer.json"
    staged: list = []
    created: list[Path] = []
    try:
        for folder in reversed(plan.dirs_to_create):
            folder.mkdir()
            created.append(folder)
        if plan.tokenizer_source is not None and dest.exists() and dest.resolve() == plan.tokenizer_source.resolve():
            tokenizer_sha = sha256_of(dest)  # reused in place: nothing to write
        else:
            if plan.tokenizer_source is not None:
                tmp = stage_file(dest, lambda t: shutil.copyfile(plan.tokenizer_source, t), staged)
            else:
                tmp = stage_file(dest, lambda t: tokenizer_obj.save(str(t)), staged)
            tokenizer_sha = sha256_of(tmp)
        card["tokenizer"] = {"file": "tokenizer.json", "sha256": tokenizer_sha,
                             "vocab_size": tokenizer_obj.get_vocab_size(), **provenance}
        card = stage_checkpoint(model, out_dir / f"{name}.safetensors", card, staged)
        commit_staged(staged)
    except BaseException:
        discard_staged(staged)
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    log(f"Wrote {name}.safetensors, {name}.json and tokenizer.json to {out_dir}/. "
        f"Load it with load_pretrained({name!r}, {str(out_dir)!r}).")
    return card


# Errors caused by the user's input: one line, exit code 2.
USER_ERRORS = (PretrainError, ConfigError, CheckpointError, FileNotFoundError)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message}. Run with --help to see every option.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m minitransformer.pretrain", description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["gpt", "bert"], default="gpt")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500: about 8 min on 2 CPU cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text", help="pretrain on this UTF-8 text file instead of the generated world")
    parser.add_argument("--out", help="output folder (default: a new folder named after the text, e.g. "
                                      "book_checkpoints/, or world_seed0_checkpoints/)")
    parser.add_argument("--name", help="checkpoint name (default: the mode)")
    parser.add_argument("--tokenizer", metavar="FILE", help="reuse this tokenizer.json instead of training a new one")
    parser.add_argument("--vocab-size", type=int, help=f"tokenizer vocabulary size (default {DEFAULT_VOCAB_SIZE}; "
                                                       "with --tokenizer it must match the tokenizer's)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--masking", choices=list(MASKING), default="token",
                        help="bert only: mask 15%% of tokens independently (token, the default), 15%% of words with "
                             "all their tokens (whole_word), or whole words with the world's names and fact values "
                             "chosen more often (salient, see --salient-prob)")
    parser.add_argument("--mask-prob", type=float, default=0.15, help="bert only: share of tokens (or words) masked "
                                                                       "(default 0.15, as in BERT)")
    parser.add_argument("--salient-prob", type=float, default=0.5,
                        help="--masking salient only: share of the world's entity and value words masked (default 0.5; "
                             "other words get --mask-prob)")
    parser.add_argument("--init-from", metavar="FILE", help="continue pretraining this checkpoint (.safetensors of the "
                                                              "same mode and size) instead of starting from random weights")
    parser.add_argument("--overwrite", action="store_true", help="replace a checkpoint of the same name in --out")
    parser.add_argument("--overwrite-shipped", action="store_true",
                        help="allow writing into the shipped minitransformer/checkpoints (maintainers only)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "python -m minitransformer.pretrain " + shlex.join(argv)
    try:
        card = pretrain(mode=args.mode, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        text_file=args.text, out_dir=args.out, name=args.name, d_model=args.d_model,
                        n_layers=args.n_layers, n_heads=args.n_heads, max_seq_len=args.max_seq_len,
                        vocab_size=args.vocab_size, tokenizer=args.tokenizer, overwrite=args.overwrite,
                        overwrite_shipped=args.overwrite_shipped, masking=args.masking,
                        mask_prob=args.mask_prob, init_from=args.init_from, salient_prob=args.salient_prob,
                        command=command.strip())
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("pretrain: interrupted; nothing was written.", file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # always one line
        print(f"pretrain: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # a bug or the machine (e.g. out of memory): still no traceback unless asked
        if args.debug:
            raise
        message = " ".join(str(exc).split())
        print(f"pretrain: unexpected {type(exc).__name__}: {message}. Nothing was written; rerun with --debug "
              "for the traceback.", file=sys.stderr)
        raise SystemExit(1) from None
    print({k: card[k] for k in ("name", "steps", "tokens_seen", "wall_time_seconds", "validation_loss") if k in card})


if __name__ == "__main__":
    main()
