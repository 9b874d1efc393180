"""Pretrain a MiniTransformer from scratch: `python -m minitransformer.pretrain --mode gpt`.

By default the corpus is the generated world's text (`minitransformer.world`); `--text FILE`
pretrains on your own plain-text file instead (paragraphs separated by blank lines, or one
document per line). The run is deterministic for a given seed and step count, shows a
progress bar with an ETA, and writes `<out>/<name>.safetensors` plus a JSON model card.

    GPT mode:  next-token prediction on 128-token windows of the document stream
    BERT mode: masked-LM, 15% of tokens chosen; of those 80% -> [MASK], 10% random, 10% kept
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import CHECKPOINT_DIR, save_checkpoint
from .model import MiniTransformer, TransformerConfig
from .probing import probe_accuracy
from .tokenizer import CLS, EOS, MASK, SEP, SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from .training import set_seed


def read_text_file(path: str | Path) -> list[str]:
    """Documents from a UTF-8 text file: blank-line separated paragraphs, else one per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--text {path}: no such file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--text {path} is not UTF-8 text ({exc}). Convert it, e.g. with `iconv -t utf-8`.") from exc
    docs = [p.strip() for p in text.split("\n\n") if p.strip()]
    if len(docs) < 10:
        docs = [line.strip() for line in text.splitlines() if line.strip()]
    if len(docs) < 10:
        raise ValueError(f"--text {path} holds only {len(docs)} non-empty documents; give at least 10 (more is better).")
    return docs


def token_stream(docs: list[str], tokenizer, separator: str) -> torch.Tensor:
    sep = tokenizer.token_to_id(separator)
    ids: list[int] = []
    for enc in tokenizer.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(sep)
    return torch.tensor(ids, dtype=torch.long)


def sample_batch(stream: torch.Tensor, batch_size: int, seq_len: int, mode: str, tokenizer, generator: torch.Generator):
    """A batch of random windows. GPT: (inputs, next tokens). BERT: (masked inputs, MLM labels)."""
    body = seq_len if mode == "gpt" else seq_len - 2
    starts = torch.randint(0, len(stream) - body - 1, (batch_size,), generator=generator)
    windows = torch.stack([stream[s : s + body + 1] for s in starts.tolist()])  # (B, body+1)
    if mode == "gpt":
        return windows[:, :-1], windows[:, 1:]
    cls, sep = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    ids = torch.cat([torch.full((batch_size, 1), cls), windows[:, :-1], torch.full((batch_size, 1), sep)], dim=1)
    special = ids < len(SPECIAL_TOKENS)
    chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    action = torch.rand(ids.shape, generator=generator)
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


def pretrain(mode: str = "gpt", steps: int = 1500, batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
             text_file: str | None = None, out_dir: str | Path = CHECKPOINT_DIR, name: str | None = None,
             d_model: int = 128, n_layers: int = 4, n_heads: int = 4, max_seq_len: int = 128, vocab_size: int = 2048,
             progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    name = name or mode
    set_seed(seed)
    started = time.perf_counter()
    docs = read_text_file(text_file) if text_file else world_corpus(seed)
    tokenizer_path = out_dir / "tokenizer.json"
    if tokenizer_path.is_file():
        tokenizer = load_tokenizer(tokenizer_path)
    else:
        tokenizer = train_tokenizer(docs, vocab_size)
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(tokenizer_path))
    # Every 50th document is held out for the validation loss.
    train_docs = [d for i, d in enumerate(docs) if i % 50]
    val_docs = [d for i, d in enumerate(docs) if i % 50 == 0]
    separator = EOS if mode == "gpt" else SEP
    train_stream = token_stream(train_docs, tokenizer, separator)
    val_stream = token_stream(val_docs, tokenizer, separator)
    for split, stream in (("training", train_stream), ("validation (every 50th document)", val_stream)):
        if len(stream) <= max_seq_len + 1:
            raise ValueError(
                f"The {split} text has only {len(stream)} tokens, too few for windows of max_seq_len={max_seq_len}. "
                "Give a larger text file or a smaller --max-seq-len."
            )

    config = TransformerConfig(vocab_size=tokenizer.get_vocab_size(), max_seq_len=max_seq_len, d_model=d_model,
                               n_layers=n_layers, n_heads=n_heads, d_ff=4 * d_model, mode=mode)
    model = MiniTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=f"pretrain {name}", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=max(1, steps // 20))
        inputs, labels = sample_batch(train_stream, batch_size, max_seq_len, mode, tokenizer, generator)
        loss = lm_loss(model, inputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    train_seconds = time.perf_counter() - started
    model.eval()
    val_loss = validation_loss(model, val_stream, mode, tokenizer)
    card = {
        "name": name,
        "objective": "causal language modelling" if mode == "gpt" else "masked language modelling (15%, 80/10/10)",
        "corpus": f"text file {Path(text_file).name}" if text_file else f"generated world, seed {seed}",
        "documents": len(docs),
        "train_tokens_available": len(train_stream),
        "tokens_seen": steps * batch_size * (max_seq_len if mode == "gpt" else max_seq_len - 2),
        "steps": steps, "batch_size": batch_size, "peak_lr": lr, "seed": seed,
        "wall_time_seconds": round(train_seconds, 1),
        "final_train_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
        "validation_loss": round(val_loss, 4),
        "validation_perplexity": round(math.exp(val_loss), 2),
        "validation_protocol": "20 batches of 32 windows from every 50th document, generator seed 1234",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    if not text_file:
        from .world import load_task

        card["probe_accuracy_test"] = round(probe_accuracy(model, tokenizer, load_task("probing", seed).test), 4)
    save_checkpoint(model, out_dir / f"{name}.safetensors", card)
    return card


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["gpt", "bert"], default="gpt")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500: about 8 min on 2 CPU cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text", help="pretrain on this UTF-8 text file instead of the generated world")
    parser.add_argument("--out", default=str(CHECKPOINT_DIR), help="output folder (tokenizer.json is reused if present)")
    parser.add_argument("--name", help="checkpoint name (default: the mode)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0:
        parser.error("--steps and --batch-size must be positive integers")
    card = pretrain(mode=args.mode, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    text_file=args.text, out_dir=args.out, name=args.name, d_model=args.d_model,
                    n_layers=args.n_layers, n_heads=args.n_heads, max_seq_len=args.max_seq_len, vocab_size=args.vocab_size)
    print({k: card[k] for k in ("name", "steps", "tokens_seen", "wall_time_seconds", "validation_loss") if k in card})


if __name__ == "__main__":
    main()
