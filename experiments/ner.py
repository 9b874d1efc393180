"""The protocol's NER runs (chapter 9): P-tuning v2 against fine-tuning and the frozen baseline on sequence labelling.

    python -m experiments sweep ner --methods p_tuning_v2 --lrs 0.03 0.1 0.3   # seed 0, one run per rate
    python -m experiments run ner                                              # seeds 1, 2 and the doubled run

The first NER benchmark (``experiments/bench_ner.py``, 10 epochs) left most runs still rising at
their end, including every P-tuning v2 seed and the frozen baseline, so the protocol trains
``EPOCHS`` and checks that by its doubled-budget test. The frozen baseline is what chapter 2 made
it for sentiment: a linear probe on the frozen backbone's features, here one example per labelled
token, fit to convergence by L-BFGS (no budget, no learning rate).

The score is entity F1 (exact span and type, CoNLL's micro F1). It is not a mean over sentences,
so a record keeps, per sentence, the counts it is computed from (``counts``: correct, predicted
and gold spans), and the verdicts' bootstrap resamples sentences (:data:`experiments.stats.REDUCERS`).
Methods are chapter 9's (``experiments.methods.NER_METHODS``) on BERT, and a ``_gpt`` twin of the
main ones on the GPT backbone.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from experiments import records

TASK = "ner"
REDUCE = "entity_f1"
METRIC = "validation entity F1"
MAIN_METHODS = ("full", "frozen", "p_tuning_v2")
EPOCHS = 40  # every trained method's final budget (the doubled-budget test trains 80)
GPT_TWINS = ("full", "frozen", "p_tuning_v2")
EXACT_NOTE = "fit to convergence (L-BFGS)"
# Seconds per epoch on one thread of the 2-core reference machine, two runs at a time; for the time estimate only.
SECONDS_PER_EPOCH = 4.5
PROBE_SECONDS = 30.0


def known_methods() -> dict:
    from experiments.methods import NER_METHODS

    # Chapter 9's methods adapt the BERT-mode backbone (bidirectional attention, as the paper's NER models);
    # the `_gpt` twins the course's causal one.
    methods = {name: replace(m, backbone="bert") for name, m in NER_METHODS.items()}
    for name in GPT_TWINS:
        m = NER_METHODS[name]
        methods[f"{name}_gpt"] = replace(m, name=f"{name}_gpt", label=f"{m.label} (GPT)", family=m.lr_key,
                                         backbone="gpt")
    methods["frozen"] = replace(methods["frozen"], label="frozen + linear probe (L-BFGS)", prepare=None)
    methods["frozen_gpt"] = replace(methods["frozen_gpt"], label="frozen + linear probe (L-BFGS, GPT)", prepare=None)
    return methods


def _method(name: str):
    methods = known_methods()
    if name not in methods:
        raise ValueError(f"Unknown {TASK} method {name!r}; choose from {list(methods)}.")
    return methods[name]


def epochs_of(method: str) -> int:
    return 0 if _method(method).prepare is None else EPOCHS


def exact(method: str) -> bool:
    return epochs_of(method) == 0


@dataclass(frozen=True)
class RunSpec:
    """One protocol run to make."""

    method: str
    seed: int
    budget: int  # multiple of EPOCHS
    lr: float | None = None  # set for a sweep run (seed 0 at this rate); None: the sweep's chosen rate

    @property
    def epochs(self) -> int:
        return epochs_of(self.method) * self.budget

    def estimate_seconds(self) -> float:
        return PROBE_SECONDS if not self.epochs else SECONDS_PER_EPOCH * self.epochs

    def __str__(self) -> str:
        if self.lr is not None:
            return f"{self.method} sweep, lr {self.lr:g}, {self.epochs} epochs"
        return f"{self.method} seed {self.seed}, {self.epochs} epochs" if self.epochs else \
            f"{self.method} seed {self.seed} (L-BFGS probe)"


def sweep_check(method: str, epochs: int, used, root=None):
    from experiments.sweeps import check_from_records, protocol_sweep_cells

    return check_from_records(method, epochs, used, protocol_sweep_cells(TASK, method, epochs, root))


def learning_rate(method: str, root=None):
    """The rate the method's sweep at its final budget chose (None: the probe); a ValueError naming the command."""
    from experiments import tasks

    epochs = epochs_of(method)
    return None if not epochs else tasks.swept_rate(TASK, method, sweep_check(method, epochs, None, root))


def runnable(methods) -> tuple[list[str], list[str]]:
    from experiments import tasks

    return tasks.runnable(learning_rate, methods)


def claimed_methods() -> tuple[str, ...]:
    from experiments import tasks

    return tasks.claimed_methods(TASK, MAIN_METHODS)


def plan(methods=None, seeds=(0, 1, 2), doubled: bool = True) -> list[RunSpec]:
    """Every run the NER verdicts read: each method for every seed, then seed 0 at twice the budget (not the probe)."""
    methods = runnable(claimed_methods())[0] if methods is None else tuple(methods)
    return [RunSpec(m, s, 1) for s in seeds for m in methods] + \
        ([RunSpec(m, 0, 2) for m in methods if not exact(m)] if doubled else [])


def sweep_plan(methods, lrs) -> list[RunSpec]:
    for m in methods:
        if exact(m):
            raise ValueError(f"{m} is fit exactly (no learning rate): nothing to sweep.")
    return [RunSpec(m, 0, 1, lr=float(lr)) for m in methods for lr in lrs]


def texts_of(split: str) -> str:
    """The fingerprint of an evaluation split: its sentences and tags, in order."""
    from minitransformer.world import load_task

    return records.text_fingerprint(getattr(load_task(TASK), split), "tokens", "tags")


@torch.no_grad()
def score(model, loader, labels, split: str) -> dict:
    """Entity F1 with its per-sentence counts, and the mean token cross-entropy, of ``model`` on ``loader``."""
    from minitransformer.evaluation import entity_counts, f1_of_counts

    counts = [list(r) for r in entity_counts(model, loader, labels)]
    losses = []
    for batch in loader:
        gold = batch.pop("labels")
        logits = model(**batch).logits
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=-100,
                                      reduction="sum").item() / max(int((gold != -100).sum()), 1))
    texts = texts_of(split)
    return {"accuracy": f1_of_counts(counts), "counts": counts, "loss": round(sum(losses) / len(losses), 5),
            "texts": texts, "examples": texts}


def run(spec: RunSpec, progress: bool = True, reuse_sweep: bool = True) -> dict:
    """Train (or fit) and score one run; returns its record (not yet saved)."""
    from minitransformer import recipes
    from minitransformer.linear_probe import fit_linear_probe, token_features
    from minitransformer.training import freeze

    method = _method(spec.method)
    lr = spec.lr if spec.lr is not None else learning_rate(spec.method)
    if reuse_sweep:
        reused = records.reused_run(TASK, spec, lr)
        if reused is not None:
            return reused
    setup = recipes.ner_setup(method.backbone, seed=spec.seed)
    model = recipes.fresh_tagger(setup, seed=spec.seed)
    if method.prepare is None:
        freeze(model.backbone)
        experiment = fit_linear_probe(method.label, model, setup.train_loader, setup.val_loader,
                                      features=token_features)
    else:
        experiment = recipes.train_ner(method.label, method.prepare(model), setup, method.lr_key, lr=lr,
                                       epochs=spec.epochs, progress=progress)
    return {
        "schema": records.SCHEMA, "task": TASK, "method": spec.method, "label": method.label, "seed": spec.seed,
        "sweep": spec.lr is not None, "backbone": method.backbone, "epochs": spec.epochs, "budget": spec.budget,
        "lr": lr, "schedule": recipes.SCHEDULE, "warmup_ratio": recipes.WARMUP_RATIO,
        "batch_size": recipes.NER_BATCH_SIZE, "n_train": recipes.NER_N_TRAIN,
        "validation": score(experiment.model, setup.val_loader, setup.labels, "validation"),
        "test": score(experiment.model, setup.test_loader, setup.labels, "test"),
        "curve": [round(s, 4) for s in experiment.curve],
        "train_accuracy": None if experiment.train_accuracy is None else round(experiment.train_accuracy, 4),
        "majority": round(experiment.majority, 4), "on_plateau": experiment.on_plateau,
        "trainable": experiment.trainable, "total": experiment.total, "seconds": round(experiment.seconds, 1),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(), "cpu": records.cpu_id(),
    }


# ---------------------------------------------------------------------------------------------------------------
# What chapter 9 prints from the records: a trivial baseline, the score table, and tagged samples.

def lexicon_tags(tokens, lexicon: dict[str, str]) -> list[str]:
    """Each token's most frequent training tag (``O`` for a word never seen in training)."""
    return [lexicon.get(t, "O") for t in tokens]


def lexicon_predictions(split: str = "validation", n_train: int | None = None) -> list[list[str]]:
    """The trivial tagger's tags for every sentence of the split (see :func:`lexicon_baseline`)."""
    from collections import Counter, defaultdict

    from minitransformer.recipes import NER_N_TRAIN
    from minitransformer.world import load_task

    task = load_task(TASK)
    seen: dict[str, Counter] = defaultdict(Counter)
    for sentence in task.train[: NER_N_TRAIN if n_train is None else n_train]:
        for token, tag in zip(sentence["tokens"], sentence["tags"]):
            seen[token][tag] += 1
    lexicon = {token: tags.most_common(1)[0][0] for token, tags in seen.items()}
    return [lexicon_tags(s["tokens"], lexicon) for s in getattr(task, split)]


def lexicon_baseline(split: str = "validation", n_train: int | None = None) -> list[list[int]]:
    """The trivial tagger: every word gets its most frequent tag in the training sentences the methods train on.

    It knows every name seen in training and nothing else, so it shows how much of the task is memorising names.
    Returns the per-sentence (correct, predicted, gold) counts, as a run record keeps them."""
    from minitransformer.evaluation import span_counts
    from minitransformer.world import load_task

    gold = getattr(load_task(TASK), split)
    return [list(span_counts(tags, s["tags"])) for tags, s in zip(lexicon_predictions(split, n_train), gold)]


def recorded(method: str, root=None) -> dict[int, dict]:
    """The method's protocol runs at its final budget, by seed (``{}`` when none is on file)."""
    from experiments.protocol import SEEDS

    return records.load_runs(TASK, method, epochs_of(method), SEEDS, root)


def f1_interval(counts_per_seed):
    """Entity F1 pooled over seeds with its 95% interval (seed spread and the bootstrap over sentences)."""
    from experiments.stats import paired_interval

    return paired_interval(counts_per_seed, statistic="value", reduce=REDUCE)


def score_table(methods, root=None) -> str:
    """The lexicon baseline and each method's runs at its final budget: entity F1 on validation and test with
    95% intervals over seeds and sentences, and the share of weights that trains (``not run`` where none is on file)."""
    from minitransformer.world import load_task

    task = load_task(TASK)
    lines = [f"entity F1, 95% intervals over seeds and sentences (validation {len(task.validation)} sentences, "
             f"test {len(task.test)})", "",
             "| system | backbone | seeds | trainable | validation | test |", "|---|---|---:|---:|---|---|"]
    lines.append(f"| baseline: each word's most frequent training tag | — | — | 0 | "
                 f"{f1_interval([lexicon_baseline('validation')]).text()} | {f1_interval([lexicon_baseline('test')]).text()} |")
    for m in methods:
        method = _method(m)  # an unknown name: one ValueError listing the known ones
        runs = recorded(m, root)
        if not runs:
            lines.append(f"| {method.label} | {method.backbone} | 0 | | not run | |")
            continue
        seeds = sorted(runs)
        first = runs[seeds[0]]
        share = f"{100 * first['trainable'] / first['total']:.2f}%" if first.get("total") else "—"
        cells = [f1_interval([runs[s][split]["counts"] for s in seeds]).text() for split in ("validation", "test")]
        label = known_methods()[m.removesuffix("_gpt")].label  # the backbone has its own column
        lines.append(f"| {label} | {first['backbone']} | {len(seeds)} | {share} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


@torch.no_grad()
def predicted_tags(model, loader, labels) -> list[list[str]]:
    """Each sentence's predicted tag per word (the first sub-word's), in the loader's order."""
    model.eval()
    out = []
    for batch in loader:
        gold = batch.pop("labels")
        predictions = model(**batch).logits.argmax(dim=-1)
        out += [[labels[i] for i in row[keep].tolist()] for row, keep in zip(predictions, gold != -100)]
    return out


def bracketed(tokens, tags) -> str:
    """The sentence with each entity in brackets and its type: ``[Wanda Shepherd]PER met ...``."""
    from minitransformer.evaluation import bio_spans

    starts = {start: (end, kind) for start, end, kind in bio_spans(tags)}
    words, i = [], 0
    while i < len(tokens):
        if i in starts:
            end, kind = starts[i]
            words.append(f"[{' '.join(tokens[i:end])}]{kind}")
            i = end
        else:
            words.append(tokens[i])
            i += 1
    return " ".join(words)


def tagged_samples(systems: dict, indices, split: str = "validation") -> str:
    """The same sentences tagged by each system (name -> one tag list per sentence of the split), every entity
    bracketed with its type; a line ends with ✓ when its spans are exactly the gold ones, else ✗ and what is wrong."""
    from minitransformer.evaluation import bio_spans
    from minitransformer.world import load_task

    sentences = getattr(load_task(TASK), split)
    width = max(len(n) for n in ["gold", *systems])
    lines = []
    for i in indices:
        tokens, gold = sentences[i]["tokens"], sentences[i]["tags"]
        lines.append(f"{'gold'.ljust(width)}  {bracketed(tokens, gold)}")
        for name, tags in systems.items():
            missed, extra = bio_spans(gold) - bio_spans(tags[i]), bio_spans(tags[i]) - bio_spans(gold)
            what = "" if not (missed or extra) else " ✗ " + "; ".join(
                [f"missed {' '.join(tokens[s:e])} ({k})" for s, e, k in sorted(missed)]
                + [f"wrong {' '.join(tokens[s:e])} ({k})" for s, e, k in sorted(extra)])
            lines.append(f"{name.ljust(width)}  {bracketed(tokens, tags[i])}{'  ✓' if not what else ' ' + what}")
        lines.append("")
    return "\n".join(lines)
