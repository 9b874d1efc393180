"""The standard setup the method chapters share, so that their numbers are comparable.

Every method chapter adapts the same backbone to sentiment classification with the same
data, order, epochs and seed, and compares against the same two baselines:

    full fine-tuning   every weight trains                          (lr FULL_LR)
    frozen + head      only the linear head on the last token trains (lr HEAD_LR)

The backbone is the GPT-mode checkpoint, pooled at its last token ([EOS]). Chapter 2 shows
why: fine-tuned the same way, it learns the task faster than the BERT-mode checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import DataLoader

from .checkpoint import load_pretrained
from .model import SequenceClassifier
from .training import Experiment, classification_loader, fit_and_evaluate, freeze, set_seed

BACKBONE = "gpt"
N_TRAIN = 1000  # training reviews (of 2000): the low/medium-data regime PEFT papers care about
EPOCHS = 5
BATCH_SIZE = 32
FULL_LR = 1e-3
HEAD_LR = 1e-2
SEED = 0


@dataclass
class SentimentSetup:
    tokenizer: object
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader


def sentiment_setup(n_train: int = N_TRAIN, seed: int = SEED) -> SentimentSetup:
    """Loaders for the sentiment task, encoded for the standard backbone."""
    from .world import load_task

    task = load_task("sentiment")
    _, tokenizer = load_pretrained(BACKBONE)
    return SentimentSetup(
        tokenizer,
        classification_loader(task.train[:n_train], tokenizer, BACKBONE, batch_size=BATCH_SIZE, shuffle=True, seed=seed),
        classification_loader(task.validation, tokenizer, BACKBONE, batch_size=100),
        classification_loader(task.test, tokenizer, BACKBONE, batch_size=100),
    )


def fresh_classifier(name: str = BACKBONE, num_labels: int = 2, seed: int = SEED) -> SequenceClassifier:
    """A new classifier on a freshly loaded pretrained backbone; the same head init for a given seed."""
    set_seed(seed)
    backbone, _ = load_pretrained(name)
    return SequenceClassifier(backbone, num_labels=num_labels)


def baselines(setup: SentimentSetup, epochs: int = EPOCHS, progress: bool = True) -> tuple[Experiment, Experiment]:
    """(full fine-tuning, frozen + head) on the standard setup."""
    full = fit_and_evaluate("full fine-tuning", fresh_classifier(), setup.train_loader, setup.val_loader,
                            epochs=epochs, lr=FULL_LR, progress=progress)
    frozen_model = fresh_classifier()
    freeze(frozen_model.backbone)
    frozen = fit_and_evaluate("frozen + head", frozen_model, setup.train_loader, setup.val_loader,
                              epochs=epochs, lr=HEAD_LR, progress=progress)
    return full, frozen
