"""The standard recipe the method chapters share, so that their numbers are comparable.

Every method chapter adapts the same backbone to sentiment classification with the same
data, order, schedule, budget and seed:

    data       the first N_TRAIN of 2,000 training reviews, batches of BATCH_SIZE, validation 500
    optimizer  AdamW, linear warmup over the first WARMUP_RATIO of the steps, then linear decay to 0
               (the schedule of BERT fine-tuning: Hugging Face's get_linear_schedule_with_warmup)
    budget     EPOCHS epochs, or METHOD_EPOCHS for the methods that need longer: each method trains
               until its validation curve has flattened (chapter 2 shows the curves). Full fine-tuning
               and LoRA flatten within 20 epochs; BitFit and adapters were still rising there
               (BitFit 0.834 at 20 epochs, 0.942 at 60, seed 0), so they get 60
    lr         one per method, LEARNING_RATES, picked by the protocol's recorded sweep at the method's budget
               (benchmarks/protocol/sentiment/<method>/sweep/; `python -m experiments sweep sentiment ...`), as
               the papers tune per method
    dropout    DROPOUT = 0 in the backbone while fine-tuning (see below)

and against the same two reference points:

    full fine-tuning   every weight trains
    frozen probe       a linear probe on the frozen backbone's features: an L2 logistic regression
                       on standardised features, fit to convergence (`fit_linear_probe`)

Why the backbone's dropout is off. The pooled [EOS] vectors of different reviews differ little
(per-feature spread 0.075 across reviews, class means 0.086 apart), while the backbone's own dropout
(p = 0.1, kept from pretraining) moves the same vector by 0.255 per feature from one forward pass to
the next. With the backbone frozen, a new head then sees mostly dropout noise: BitFit stayed on the
one-class plateau at every learning rate, and LoRA and adapters left it late
(benchmarks/lr_sweep_dropout_0.1.md). Many current fine-tuning recipes train with dropout off
(LLaMA-style models have none); every method here, full fine-tuning included, trains that way.
LoRA's own `lora_dropout` and the adapters' layers are separate settings.

The backbone is the GPT-mode checkpoint, pooled at its last token ([EOS]). Chapter 2 shows
why: fine-tuned the same way, it learns the task faster than the BERT-mode checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn
from torch.utils.data import DataLoader

from .checkpoint import load_pretrained
from .model import SequenceClassifier, TokenClassifier
import torch

from .data import classification_loader
from .linear_probe import fit_linear_probe, fit_logistic_regression
from .training import Experiment, fit_and_evaluate, freeze, set_dropout, set_seed

BACKBONE = "gpt"
N_TRAIN = 1000  # training reviews (of 2000): the low/medium-data regime PEFT papers care about
EPOCHS = 20
# The budget of the methods whose validation curves still rose at EPOCHS (training.still_rising, seed 0, at the
# 20-epoch sweep's best rate); their learning rate is swept again at this budget.
METHOD_EPOCHS = {"bitfit": 60, "adapters": 60, "prompt_tuning": 120}
BATCH_SIZE = 32
WARMUP_RATIO = 0.1
SCHEDULE = "linear"
SEED = 0
DROPOUT = 0.0  # the backbone's dropout while fine-tuning (pretraining used 0.1); see the docstring

# Peak learning rate per method, from the protocol's sweep (seed 0, at the method's own budget, epochs_for(method);
# benchmarks/protocol/sentiment/<method>/sweep/): the best validation accuracy, near-ties (within the noise of one
# accuracy) broken by the lowest validation loss (experiments.sweeps.check_from_records).
LEARNING_RATES = {
    "full": 3e-4,
    "lora": 1e-3,
    "bitfit": 1e-2,
    "adapters": 1e-2,
}


def epochs_for(method: str) -> int:
    """The standard budget of `method` (a LEARNING_RATES key): METHOD_EPOCHS, else EPOCHS."""
    return METHOD_EPOCHS.get(method, EPOCHS)


@dataclass
class SentimentSetup:
    tokenizer: object
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader


def sentiment_setup(n_train: int = N_TRAIN, seed: int = SEED, backbone: str = BACKBONE,
                    template: str | None = None) -> SentimentSetup:
    """Loaders for the sentiment task, encoded for `backbone` (the standard one by default).

    `template` (GPT mode): each review is followed by the template's tokens instead of [EOS], for readouts that
    predict the next word (chapter 6's verbaliser reads it after " Overall, it was a")."""
    from .world import load_task

    task = load_task("sentiment")
    model, tokenizer = load_pretrained(backbone)
    mode = model.config.mode  # "gpt" or "bert": how the text is wrapped in special tokens
    return SentimentSetup(
        tokenizer,
        classification_loader(task.train[:n_train], tokenizer, mode, batch_size=BATCH_SIZE, shuffle=True, seed=seed,
                              template=template),
        classification_loader(task.validation, tokenizer, mode, batch_size=100, template=template),
        classification_loader(task.test, tokenizer, mode, batch_size=100, template=template),
    )


def fresh_backbone(name: str = BACKBONE, seed: int = SEED, dropout: float = DROPOUT):
    """(backbone, tokenizer): the pretrained checkpoint `name`, freshly loaded, with the recipe's dropout.

    Seeds the RNGs first, so that whatever a method adds next (a head, a prompt) starts the same for a given
    seed. Every chapter trains on a backbone from here, so "dropout off" holds for every method.
    """
    set_seed(seed)
    backbone, tokenizer = load_pretrained(name)
    set_dropout(backbone, dropout)
    return backbone, tokenizer


def fresh_classifier(name: str = BACKBONE, num_labels: int = 2, seed: int = SEED,
                     dropout: float = DROPOUT) -> SequenceClassifier:
    """A new classifier on a freshly loaded pretrained backbone; the same head init for a given seed.

    Every dropout layer (the backbone's and the head's) gets probability `dropout`: the recipe's DROPOUT.
    """
    backbone, _ = fresh_backbone(name, seed, dropout)
    model = SequenceClassifier(backbone, num_labels=num_labels)
    set_dropout(model, dropout)
    return model


def train_standard(name: str, model: nn.Module, setup: SentimentSetup, method: str, *, lr: float = None,
                   epochs: int = None, track_curve: bool = False, progress: bool = True) -> Experiment:
    """Train `model` (its trainable parameters already chosen) with the standard recipe and score it.

    `method` picks the learning rate from LEARNING_RATES unless `lr` is given, and the budget, epochs_for(method),
    unless `epochs` is given.
    """
    if epochs is None:
        epochs = epochs_for(method)
    if lr is None:
        if method not in LEARNING_RATES:
            raise ValueError(f"No standard learning rate for method {method!r}; known: {sorted(LEARNING_RATES)}. "
                             f"Pass lr=... or add it to LEARNING_RATES after a sweep.")
        lr = LEARNING_RATES[method]
    return fit_and_evaluate(name, model, setup.train_loader, setup.val_loader, epochs=epochs, lr=lr,
                            warmup_ratio=WARMUP_RATIO, schedule=SCHEDULE,
                            track_curve=track_curve, progress=progress)


def frozen_probe(setup: SentimentSetup, seed: int = SEED) -> Experiment:
    """The frozen reference point: a linear probe on the frozen pretrained backbone."""
    model = fresh_classifier(seed=seed)
    freeze(model.backbone)
    return fit_linear_probe("frozen probe", model, setup.train_loader, setup.val_loader)


def baselines(setup: SentimentSetup, seed: int = SEED, track_curve: bool = False,
              progress: bool = True) -> tuple[Experiment, Experiment]:
    """(full fine-tuning, frozen probe) on the standard setup."""
    full = train_standard("full fine-tuning", fresh_classifier(seed=seed), setup, "full", track_curve=track_curve,
                          progress=progress)
    return full, frozen_probe(setup, seed)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def bag_of_ngrams_baseline(n_train: int = N_TRAIN, ngram: int = 2) -> tuple[float, float, int]:
    """The no-pretraining baseline: L2 logistic regression on word uni- to n-gram presence.

    Fit on the same `n_train` reviews, L2 strength chosen on validation. Returns
    (validation accuracy, test accuracy, number of n-gram features).
    """
    from .world import load_task

    task = load_task("sentiment")

    def grams(text: str) -> set[str]:
        w = words(text)
        return {" ".join(w[i:i + n]) for n in range(1, ngram + 1) for i in range(len(w) - n + 1)}

    train = task.train[:n_train]
    vocabulary = {g: i for i, g in enumerate(sorted(set().union(*(grams(ex["text"]) for ex in train))))}

    def featurise(examples) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.zeros(len(examples), len(vocabulary))
        for row, ex in enumerate(examples):
            for g in grams(ex["text"]):
                if g in vocabulary:
                    x[row, vocabulary[g]] = 1.0
        return x, torch.tensor([int(ex["label"]) for ex in examples])

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = map(featurise, (train, task.validation, task.test))
    val_score, _, weight, bias, _ = fit_logistic_regression(x_train, y_train, x_val, y_val)
    test_score = ((x_test @ weight.T + bias).argmax(-1) == y_test).float().mean().item()
    return val_score, test_score, len(vocabulary)


# ----------------------------------------------------------------------------- NER (token classification)
# The NER counterpart of the standard recipe, used by the P-tuning v2 chapter and `benchmark ner`: the same
# optimizer and schedule (AdamW, 10% warmup, linear decay), a task head on every token, entity-level F1 on the
# 300 validation sentences (their held-out names never occur in training, see docs/world_and_tasks.md).

NER_N_TRAIN = 800  # training sentences (of 1,500)
NER_EPOCHS = 10
NER_BATCH_SIZE = 32

# Peak learning rate per method on NER (BERT backbone, seed 0, validation entity F1), from the sweep in
# benchmarks/ner_lr_sweep.md (`python -m experiments.benchmark ner-sweep`); the GPT backbone reuses them.
NER_LEARNING_RATES = {
    "full": 0.003,
    "frozen": 0.3,
    "p_tuning_v2": 0.1,
    "p_tuning_v2_mlp": 0.01,
    "prompt_tuning": 0.3,
    "p_tuning": 0.3,
    "lora": 0.01,
    "bitfit": 0.03,
    "adapters": 0.01,
}


@dataclass
class NerSetup:
    tokenizer: object
    labels: list
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    backbone: str


def ner_setup(backbone: str = "bert", n_train: int = NER_N_TRAIN, seed: int = SEED) -> NerSetup:
    """Loaders for the NER task, encoded for `backbone` ("bert" or "gpt")."""
    from .data import token_classification_loader
    from .world import load_task

    task = load_task("ner")
    _, tokenizer = load_pretrained(backbone)

    def loader(examples, **kwargs):
        return token_classification_loader(examples, tokenizer, backbone, task.labels, **kwargs)

    return NerSetup(tokenizer, list(task.labels),
                    loader(task.train[:n_train], batch_size=NER_BATCH_SIZE, shuffle=True, seed=seed),
                    loader(task.validation, batch_size=100), loader(task.test, batch_size=100), backbone)


def fresh_tagger(setup: NerSetup, seed: int = SEED, dropout: float = DROPOUT) -> TokenClassifier:
    """A new token classifier on a freshly loaded pretrained backbone (the recipe's dropout); the same head init
    for a given seed."""
    backbone, _ = fresh_backbone(setup.backbone, seed, dropout)
    model = TokenClassifier(backbone, num_labels=len(setup.labels))
    set_dropout(model, dropout)
    return model


def train_ner(name: str, model: nn.Module, setup: NerSetup, method: str, *, lr: float = None, epochs: int = NER_EPOCHS,
              progress: bool = True) -> Experiment:
    """Train `model` (its trainable parameters already chosen) with the NER recipe; score = validation entity F1,
    with the curve tracked after every epoch."""
    from .evaluation import evaluate_entity_f1

    if lr is None:
        if method not in NER_LEARNING_RATES:
            raise ValueError(f"No NER learning rate for method {method!r}; known: {sorted(NER_LEARNING_RATES)}. "
                             f"Pass lr=... or add it to NER_LEARNING_RATES after a sweep.")
        lr = NER_LEARNING_RATES[method]
    return fit_and_evaluate(name, model, setup.train_loader, setup.val_loader, epochs=epochs, lr=lr,
                            warmup_ratio=WARMUP_RATIO, schedule=SCHEDULE, track_curve=True, progress=progress,
                            metric=lambda m, loader: evaluate_entity_f1(m, loader, setup.labels))
