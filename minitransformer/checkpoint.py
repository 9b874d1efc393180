"""Checkpoints: weights in safetensors, a JSON model card beside them, and integrity checks.

    minitransformer/checkpoints/
        tokenizer.json          shared by both modes
        gpt.safetensors         weights
        gpt.json                model card: config, sha256 of the weights, tokens seen, wall time, losses
        bert.safetensors, bert.json

A folder written by `python -m minitransformer.pretrain --out DIR` has the same layout, and
`load_pretrained(name, DIR)` loads any checkpoint in it that has a card. Every file is written
under a temporary name and then renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .model import ConfigError, MiniTransformer, TransformerConfig
from .tokenizer import load_tokenizer

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
SHIPPED = ("gpt", "bert")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupted, or does not fit the model."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_path(path: Path) -> Path:
    """A hidden sibling of `path` to write into before renaming it over `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def stage_file(path: Path, write: Callable[[Path], None], staged: list) -> Path:
    """Write a file under its temporary name and remember it in `staged`; `commit_staged` renames it."""
    tmp = temporary_path(path)
    staged.append((tmp, path))
    write(tmp)
    return tmp


def commit_staged(staged: list) -> None:
    """Rename every staged file to its final name (os.replace is atomic within a folder)."""
    for tmp, final in staged:
        os.replace(tmp, final)
    staged.clear()


def discard_staged(staged: list) -> None:
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)
    staged.clear()


def stage_checkpoint(model: MiniTransformer, path: Path, card: Optional[dict], staged: list) -> dict:
    """Write the weights and the card of `path` under temporary names; return the full card."""
    # The LM head is tied to tok_emb, so state_dict() holds each tensor once.
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(model.config.to_dict(), sort_keys=True)}
    weights_tmp = stage_file(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), staged)
    card = dict(card or {})
    card.update(config=model.config.to_dict(), weights_file=path.name, sha256=sha256_of(weights_tmp),
                num_parameters=sum(p.numel() for p in model.parameters()))
    text = json.dumps(card, indent=2, sort_keys=True) + "\n"
    stage_file(path.with_suffix(".json"), lambda tmp: tmp.write_text(text), staged)
    return card


def save_checkpoint(model: MiniTransformer, path: str | Path, card: Optional[dict] = None) -> Path:
    """Write `path` (.safetensors) and its model card (.json) with the config and a sha256.

    Both files are written under temporary names first, then renamed: an interrupted save
    leaves the previous files (or nothing), never a half-written one.
    """
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    staged: list = []
    try:
        stage_checkpoint(model, path, card, staged)
        commit_staged(staged)
    finally:
        discard_staged(staged)
    return path


def read_card(path: str | Path) -> dict:
    card_path = Path(path).with_suffix(".json")
    if not card_path.is_file():
        raise CheckpointError(f"No model card at {card_path}; a checkpoint needs its .json card beside the weights.")
    try:
        return json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"The model card {card_path} is not valid JSON ({exc}). Restore it with git.") from exc


def load_checkpoint(path: str | Path, config: Optional[TransformerConfig] = None, verify: bool = True) -> MiniTransformer:
    """Load weights into a new MiniTransformer, checking hash, config and tensor shapes.

    `config`, if given, must equal the checkpoint's config: a mismatch is an error, not a partial load.
    """
    path = Path(path).with_suffix(".safetensors")
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train one with `python -m minitransformer.pretrain`.")
    card = read_card(path)
    if verify and card.get("sha256") != sha256_of(path):
        raise CheckpointError(
            f"{path.name} does not match the sha256 in its model card: the file is corrupted or was changed. "
            f"Restore it with `git checkout -- {path}` or retrain it."
        )
    try:
        saved_config = TransformerConfig.from_dict(card["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"The model card of {path.name} has no valid config: {exc}") from exc
    if config is not None and config != saved_config:
        diff = {k: (v, getattr(saved_config, k)) for k, v in config.to_dict().items() if getattr(saved_config, k) != v}
        raise CheckpointError(
            f"The checkpoint {path.name} was trained with a different config; differing fields "
            f"(yours, checkpoint's): {diff}. Load it without a config, or build the model from the card's config."
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"Cannot read {path} as safetensors ({exc}); the file is corrupted.") from exc
    model = MiniTransformer(saved_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{path.name} does not fit MiniTransformer({saved_config}): missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]}."
        )
    model.load_state_dict(tensors)
    model.eval()
    return model


def list_checkpoints(checkpoint_dir: str | Path | None = None) -> list[str]:
    """Names of the checkpoints in a folder: every `<name>.json` card with its `<name>.safetensors`."""
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    names = [p.stem for p in directory.glob("*.json") if p.name != "tokenizer.json" and p.with_suffix(".safetensors").is_file()]
    return sorted(names, key=lambda n: (n not in SHIPPED, SHIPPED.index(n) if n in SHIPPED else 0, n))


def load_pretrained(name: str = "gpt", checkpoint_dir: str | Path | None = None, verify: bool = True):
    """A pretrained backbone and its tokenizer: `model, tokenizer = load_pretrained("bert")`.

    With no folder it loads a shipped checkpoint ("gpt" or "bert"); `load_pretrained("mine", "my_dir")`
    loads any checkpoint that `python -m minitransformer.pretrain --out my_dir --name mine` wrote.
    The weights are checked against the sha256 in the model card, so a corrupted file is an
    error rather than a silently different model; so is the tokenizer, when the card records its hash.
    """
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else CHECKPOINT_DIR
    if not (directory / f"{name}.json").is_file():
        available = tuple(list_checkpoints(directory))
        if not directory.is_dir():
            raise ValueError(f"Unknown pretrained model {name!r}: there is no folder {directory}. "
                             "Check the path you passed as the checkpoint folder.")
        if not available:
            raise ValueError(f"Unknown pretrained model {name!r}: {directory} holds no checkpoints (no <name>.json "
                             f"card beside a <name>.safetensors). Make one with `python -m minitransformer.pretrain "
                             f"--out {directory}`.")
        raise ValueError(f"Unknown pretrained model {name!r} in {directory}; choose one of {available}.")
    model = load_checkpoint(directory / f"{name}.safetensors", verify=verify)
    tokenizer_path = directory / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_path)
    recorded = read_card(directory / f"{name}.json").get("tokenizer")  # absent from older cards
    if verify and isinstance(recorded, dict) and recorded.get("sha256") and tokenizer_path.is_file():
        if sha256_of(tokenizer_path) != recorded["sha256"]:
            raise CheckpointError(
                f"{tokenizer_path} is not the tokenizer {name} was trained with (its sha256 differs from the one in "
                f"{name}.json). Put the right tokenizer.json back, or pretrain {name} again."
            )
    if tokenizer.get_vocab_size() != model.config.vocab_size:
        raise CheckpointError(
            f"tokenizer.json has {tokenizer.get_vocab_size()} tokens but {name} expects {model.config.vocab_size}; "
            "the tokenizer and the weights come from different pretraining runs."
        )
    return model, tokenizer


def model_card(name: str = "gpt", checkpoint_dir: str | Path | None = None) -> dict:
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else CHECKPOINT_DIR
    return read_card(directory / f"{name}.json")
