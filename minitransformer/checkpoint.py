"""Checkpoints: weights in safetensors, a JSON model card beside them, and integrity checks.

    minitransformer/checkpoints/
        tokenizer.json          shared by both modes
        gpt.safetensors         weights
        gpt.json                model card: config, sha256 of the weights, tokens seen, wall time, losses
        bert.safetensors, bert.json
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

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


def save_checkpoint(model: MiniTransformer, path: str | Path, card: Optional[dict] = None) -> Path:
    """Write `path` (.safetensors) and its model card (.json) with the config and a sha256."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The LM head is tied to tok_emb, so state_dict() holds each tensor once.
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(model.config.to_dict(), sort_keys=True)})
    card = dict(card or {})
    card.update(config=model.config.to_dict(), weights_file=path.name, sha256=sha256_of(path),
                num_parameters=sum(p.numel() for p in model.parameters()))
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
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


def load_pretrained(name: str = "gpt", checkpoint_dir: str | Path | None = None, verify: bool = True):
    """The shipped backbone and its tokenizer: `model, tokenizer = load_pretrained("bert")`.

    The weights are checked against the sha256 in the model card, so a corrupted file is
    an error rather than a silently different model.
    """
    if name not in SHIPPED:
        raise ValueError(f"Unknown pretrained model {name!r}; choose one of {SHIPPED}.")
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else CHECKPOINT_DIR
    model = load_checkpoint(directory / f"{name}.safetensors", verify=verify)
    tokenizer = load_tokenizer(directory / "tokenizer.json")
    if tokenizer.get_vocab_size() != model.config.vocab_size:
        raise CheckpointError(
            f"tokenizer.json has {tokenizer.get_vocab_size()} tokens but {name} expects {model.config.vocab_size}; "
            "the tokenizer and the weights come from different pretraining runs."
        )
    return model, tokenizer


def model_card(name: str = "gpt", checkpoint_dir: str | Path | None = None) -> dict:
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else CHECKPOINT_DIR
    return read_card(directory / f"{name}.json")
