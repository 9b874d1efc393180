"""Chapter 10's benchmark: every method of the course on every task it applies to, in one table.

    python -m minitransformer.benchmark comparison             # the missing runs, the costs, the table
    python -m minitransformer.benchmark comparison --table     # only rebuild the table from committed files

Scores come from the chapters' own benchmarks, which hold every (method, seed) cell on their task:

    sentiment       benchmarks/sentiment.json (full FT, frozen probe, LoRA, BitFit, adapters; `benchmark sentiment`)
                    + benchmarks/comparison_sentiment.json (the soft-prompt methods, run by this command)
    NER             benchmarks/ner.json (every method, BERT backbone; `benchmark ner`)
    data-to-text    benchmarks/data_to_text.json (`benchmark data_to_text`)
    knowledge probe benchmarks/p_tuning.json (`benchmark p_tuning`)

This command runs what only the comparison needs: the soft-prompt methods on sentiment (their own
learning-rate sweep on seed 0, then seeds 1 and 2 at the best rate), and the cost of every method,
measured on the real tensors: trainable parameters, training-state memory, training step time and
inference latency (ratios to full fine-tuning and to the base model, measured in the same process),
and the size of the file a task needs. It writes `benchmarks/comparison.{json,md}`; chapter 10 loads
them and `tests/test_benchmark_comparison.py` re-runs one cell.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from . import recipes
from .training import evaluate_accuracy, progress_bar

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
SEEDS = (0, 1, 2)

# ----------------------------------------------------------------------------- soft prompts on sentiment
# The soft-prompt methods on the standard sentiment setup. Each one's learning rate comes from a sweep at the
# standard 20 epochs (seed 0); at that budget every one of their validation curves was still rising
# (training.still_rising), so their three seeds train three times as long, SOFT_PROMPT_EPOCHS, as chapter 6 found
# prompt tuning needs. Prompt tuning reads the frozen LM head through its verbaliser (chapter 6); prefix tuning on
# a classification task is the deep prompt with the MLP reparameterisation and a linear head (chapter 9's
# `p_tuning_v2_mlp`).
SOFT_PROMPT_EPOCHS = 3 * recipes.EPOCHS
SENTIMENT_SWEEP = {"p_tuning": [3e-4, 1e-3, 3e-3], "prefix_tuning": [1e-3, 3e-3, 1e-2],
                   "p_tuning_v2": [3e-2, 1e-1, 3e-1]}  # runs at 1e-2 (before the grids were narrowed) stay in the file
SENTIMENT_LABELS = {"prompt_tuning": "prompt tuning (P=20, verbaliser)", "p_tuning": "P-tuning (LSTM encoder)",
                    "prefix_tuning": "prefix tuning (MLP reparam.)", "p_tuning_v2": "P-tuning v2 (P=16)",
                    "p_tuning_v2_p4": "P-tuning v2 (P=4)", "p_tuning_v2_p32": "P-tuning v2 (P=32)"}


def _sentiment_prompt_tuning(seed: int, lr: float, epochs: int) -> dict:
    from .benchmark import PromptTuningRun, run_prompt_tuning

    record, _ = run_prompt_tuning(PromptTuningRun("gpt_text_3x_epochs", seed=seed, epochs=epochs), lr=lr,
                                  progress=False)
    return record


def _sentiment_p_tuning(seed: int, lr: float, epochs: int) -> dict:
    from solutions.p_tuning import cloze_loader, p_tune_sentiment

    from .training import PLATEAU_MARGIN
    from .world import load_task

    backbone, tokenizer = recipes.fresh_backbone(recipes.BACKBONE, seed)
    run = p_tune_sentiment(backbone, tokenizer, kind="LSTM", lr=lr, seed=seed, epochs=epochs, progress=False)
    test = load_task("sentiment").test
    test_loader = cloze_loader(test, tokenizer, "text", [ex["label"] for ex in test], batch_size=64)
    model = run["model"]
    return {"validation": round(run["validation"], 4), "test": round(evaluate_accuracy(model, test_loader), 4),
            "curve": [round(c, 4) for c in run["curve"]], "train_accuracy": round(run["train_accuracy"], 4),
            "majority": round(run["majority"], 4),
            "on_plateau": run["train_accuracy"] < run["majority"] + PLATEAU_MARGIN,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()), "seconds": round(run["seconds"], 1),
            "epochs": epochs}


def _sentiment_ptv2(method: str, num_virtual_tokens: int = 16) -> Callable[[int, float], dict]:
    def run(seed: int, lr: float, epochs: int) -> dict:
        from .benchmark import run_ptv2_cell

        record = run_ptv2_cell("sentiment", recipes.BACKBONE, method, seed, lr=lr,
                               num_virtual_tokens=num_virtual_tokens, progress=False, epochs=epochs)
        return {**record, "epochs": epochs}

    return run


SENTIMENT_RUNNERS = {"prompt_tuning": _sentiment_prompt_tuning, "p_tuning": _sentiment_p_tuning,
                     "prefix_tuning": _sentiment_ptv2("p_tuning_v2_mlp"), "p_tuning_v2": _sentiment_ptv2("p_tuning_v2")}
# Chapter 9's prompt length on sentiment (seed 0, P-tuning v2's sentiment lr): P = 4 and 32 beside the default 16
# (32 is the most the context leaves: reviews are cut to 96 of the 128 positions).
PTV2_SENTIMENT_LENGTHS = {"p_tuning_v2_p4": 4, "p_tuning_v2_p32": 32}
EXTRA_RUNNERS = {name: _sentiment_ptv2("p_tuning_v2", n) for name, n in PTV2_SENTIMENT_LENGTHS.items()}
KEEP = ("validation", "test", "curve", "train_accuracy", "majority", "on_plateau", "trainable", "total", "seconds",
        "epochs")


def run_sentiment_cell(method: str, seed: int, lr: float, epochs: int = recipes.EPOCHS, threads: int = 1) -> dict:
    """One soft-prompt run on the sentiment setup, as a JSON-able dict."""
    runners = {**SENTIMENT_RUNNERS, **EXTRA_RUNNERS}
    if method not in runners:
        raise ValueError(f"Unknown soft-prompt method {method!r}; choose from {list(runners)}.")
    torch.set_num_threads(threads)
    record = runners[method](seed, lr, epochs)
    return {"method": method, "label": SENTIMENT_LABELS[method], "seed": seed, "lr": lr,
            **{k: record[k] for k in KEEP}}


def _key(run: dict) -> tuple:
    return run["method"], run["seed"], run["lr"], run["epochs"]


def _cell(args: tuple) -> dict:
    return run_sentiment_cell(*args)


def sentiment_sweep_best(runs: list[dict], method: str) -> dict:
    """The method's sweep choice (seed 0): the best validation score among the runs off the one-class plateau."""
    swept = [r for r in runs if r["method"] == method and r["seed"] == 0 and r["lr"] in SENTIMENT_SWEEP[method]
             and r["epochs"] == recipes.EPOCHS]
    trained = [r for r in swept if not r["on_plateau"]] or swept
    return max(trained, key=lambda r: r["validation"])


def sentiment_learning_rates(runs: list[dict]) -> dict[str, float]:
    from .benchmark import PT_LR

    return {"prompt_tuning": PT_LR, **{m: sentiment_sweep_best(runs, m)["lr"] for m in SENTIMENT_SWEEP}}


def _sentiment_recipe() -> dict:
    """The standard recipe (the sweep grid is stored beside it: widening a grid keeps the finished cells)."""
    from .benchmark import _recipe

    recipe = _recipe()
    # The standard methods' learning rates and budgets do not touch these runs (each records its lr and epochs).
    del recipe["learning_rates"], recipe["method_epochs"]
    return recipe


def _run_plan(ready: list[tuple], jobs: int, total: int, on_done: Callable[[dict], list[tuple]]) -> None:
    """Run cells `jobs` at a time (one process each), the longest ready cell first; `on_done(run)` records a
    finished run and returns the cells it makes ready. No barrier between the sweep and the seeds: a method's
    seeds start as soon as its own sweep has finished, while the other sweeps still run."""
    ready = list(ready)

    def next_cell() -> tuple:
        ready.sort(key=lambda c: (c[0] != "prompt_tuning", -c[3]))  # prompt tuning's 60 epochs are the longest
        return ready.pop(0)

    with progress_bar(total=total, desc="soft prompts on sentiment", unit="run") as bar:
        if jobs == 1:
            while ready:
                ready += on_done(_cell(next_cell()))
                bar.update(1)
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            running = set()
            while ready or running:
                while ready and len(running) < jobs:
                    running.add(pool.submit(_cell, next_cell()))
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    ready += on_done(future.result())
                    bar.update(1)


def sentiment_soft_prompts(out: Path = RESULTS_DIR, jobs: int = 2, threads: int = 1,
                           prompt_lengths: bool = False) -> dict:
    """The sweep (seed 0), then seeds 0-2 at each method's best rate; cells already in `out` (same recipe and
    thread count) are kept, and every finished run is saved at once, so an interrupted command resumes where it
    stopped. `prompt_lengths` adds chapter 9's P-tuning v2 prompt lengths on sentiment (EXTRA_RUNNERS, seed 0 at
    P-tuning v2's rate): the comparison itself does not read them."""
    path = Path(out) / "comparison_sentiment.json"
    recipe = _sentiment_recipe()
    done: dict[tuple, dict] = {}
    if path.exists():
        old = json.loads(path.read_text())
        if old["recipe"] == recipe and old["threads"] == threads:
            done = {_key(r): r for r in old["runs"]}
    started = time.perf_counter()
    results = {"recipe": recipe, "sweep_grid": SENTIMENT_SWEEP, "threads": threads}

    def save(order: list[tuple]) -> None:
        results["runs"] = [done[c] for c in order if c in done] + [r for c, r in done.items() if c not in order]
        Path(out).mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(path)

    from .benchmark import PT_LR

    lrs = {"prompt_tuning": PT_LR}
    prompt_tuning_seed0 = _committed_prompt_tuning_seed0(out, PT_LR, threads)
    if prompt_tuning_seed0 is not None:  # chapter 6's committed 3x-budget run is this cell
        done.setdefault(_key(prompt_tuning_seed0), prompt_tuning_seed0)
    sweep = {m: [(m, 0, lr, recipes.EPOCHS) for lr in grid] for m, grid in SENTIMENT_SWEEP.items()}

    def seed_cells(method: str) -> list[tuple]:
        cells = [(method, s, lrs[method], SOFT_PROMPT_EPOCHS) for s in SEEDS]
        if method == "p_tuning_v2" and prompt_lengths:  # chapter 9's prompt lengths, at P-tuning v2's rate
            cells += [(name, 0, lrs[method], recipes.EPOCHS) for name in EXTRA_RUNNERS]
        return cells

    def unlock(method: str) -> list[tuple]:
        """The method's seed cells once its sweep is complete (its best rate is then known)."""
        if method not in sweep or method in lrs or not all(c in done for c in sweep[method]):
            return []
        lrs[method] = sentiment_sweep_best([done[c] for c in sweep[method]], method)["lr"]
        return [c for c in seed_cells(method) if c not in done]

    def on_done(run: dict) -> list[tuple]:
        done[_key(run)] = run
        save(list(done))
        return [(*c, threads) for c in unlock(run["method"])]

    ready = [c for cells in sweep.values() for c in cells if c not in done]
    ready += [c for c in seed_cells("prompt_tuning") if c not in done]
    for method in SENTIMENT_SWEEP:
        ready += unlock(method)
    total = len(ready) + sum(len(SEEDS) + (len(EXTRA_RUNNERS) if m == "p_tuning_v2" and prompt_lengths else 0)
                             for m in SENTIMENT_SWEEP if m not in lrs)  # seed cells not unlocked yet
    _run_plan([(*c, threads) for c in ready], jobs, total, on_done)
    results["learning_rates"] = {m: lrs[m] for m in SENTIMENT_RUNNERS}
    results["seconds"] = round(time.perf_counter() - started)
    # The plan's cells in the plan's order, then any other run on this recipe (the 20-epoch seeds that showed the
    # soft prompts still rising, kept as evidence).
    plan = [c for cells in sweep.values() for c in cells] + [c for m in SENTIMENT_RUNNERS for c in seed_cells(m)]
    save(plan)
    return results


def _committed_prompt_tuning_seed0(out: Path, lr: float, threads: int) -> Optional[dict]:
    path = Path(out) / "prompt_tuning.json"
    if not path.exists():
        return None
    committed = json.loads(path.read_text())
    for run in committed["runs"]:
        if run["name"] == "gpt_text_3x_epochs" and run["lr"] == lr and committed["threads"] == threads:
            return {"method": "prompt_tuning", "label": SENTIMENT_LABELS["prompt_tuning"], "seed": 0, "lr": lr,
                    **{k: run[k] for k in KEEP}}
    return None


# ----------------------------------------------------------------------------- costs, measured on the real tensors
# The methods of the table, in the order of the course, and what each one is on each task (None: does not apply).
METHODS = ("full", "frozen", "bitfit", "adapters", "lora", "lora_merged", "prompt_tuning", "p_tuning", "prefix_tuning",
           "p_tuning_v2")
LABELS = {"full": "full fine-tuning", "frozen": "frozen + head", "bitfit": "BitFit", "adapters": "adapters m=8",
          "lora": "LoRA r=8", "lora_merged": "LoRA r=8, merged", "prompt_tuning": "prompt tuning",
          "p_tuning": "P-tuning", "prefix_tuning": "prefix tuning", "p_tuning_v2": "P-tuning v2"}
TASKS = ("sentiment", "ner", "data_to_text", "probe")
TASK_LABELS = {"sentiment": "sentiment (GPT, accuracy)", "ner": "NER (BERT, entity F1)",
               "data_to_text": "data-to-text (GPT, BLEU)", "probe": "knowledge probe (GPT, accuracy)"}
# Each task's key of each method in its chapter's benchmark file.
NER_NAMES = {"full": "full", "frozen": "frozen", "bitfit": "bitfit", "adapters": "adapters", "lora": "lora",
             "prompt_tuning": "prompt_tuning", "p_tuning": "p_tuning", "prefix_tuning": "p_tuning_v2_mlp",
             "p_tuning_v2": "p_tuning_v2"}
D2T_NAMES = {"full": "full", "bitfit": "bitfit", "adapters": "adapters", "lora": "lora", "prompt_tuning": "prompt",
             "prefix_tuning": "prefix", "p_tuning_v2": "prefix_no_mlp"}
PROBE_NAMES = {"frozen": None, "prompt_tuning": "NONE", "p_tuning": "LSTM"}  # frozen: the best hand-written prompt


def applies(task: str, method: str) -> bool:
    base = "lora" if method == "lora_merged" else method
    return base in {"sentiment": METHODS, "ner": NER_NAMES, "data_to_text": D2T_NAMES, "probe": PROBE_NAMES}[task]


def sentiment_adapter(method: str) -> Callable:
    """The function that turns a fresh sentiment classifier (recipes.fresh_classifier) into `method`'s model, as
    its chapter does: in place for the methods that keep the classifier, or around its backbone for the
    verbaliser methods (prompt tuning, P-tuning), which read the frozen LM head instead of a new one."""
    from .benchmark import METHODS as SENTIMENT_METHODS, NER_METHODS, PT_RUNS, prompt_tuning_config
    from . import load_pretrained

    base = "lora" if method == "lora_merged" else method
    if base == "full":
        return lambda model: model
    if base == "frozen":
        return _head_only
    if base in ("bitfit", "adapters", "lora"):
        return SENTIMENT_METHODS[base].prepare
    if base in ("prefix_tuning", "p_tuning_v2"):
        return NER_METHODS[{"prefix_tuning": "p_tuning_v2_mlp", "p_tuning_v2": "p_tuning_v2"}[base]].prepare
    _, tokenizer = load_pretrained(recipes.BACKBONE)
    if base == "prompt_tuning":
        from solutions.prompt_tuning import PromptTuningClassifier

        return lambda model: PromptTuningClassifier(model.backbone, tokenizer,
                                                    prompt_tuning_config(PT_RUNS["gpt_text_3x_epochs"]))
    if base == "p_tuning":
        from solutions.p_tuning import ANSWER_SLOT, INPUT_SLOT, SENTIMENT_VERBALIZER, PromptEncoderConfig, PTuningModel

        config = PromptEncoderConfig(template=[3, INPUT_SLOT, 3, ANSWER_SLOT], encoder_reparameterization_type="LSTM")
        return lambda model: PTuningModel(model.backbone, tokenizer, config, SENTIMENT_VERBALIZER)
    raise ValueError(f"Unknown method {method!r}; choose from {METHODS}.")


@functools.lru_cache(maxsize=None)
def _setup(task: str, seed: int):
    """The task's loaders (tokenised once per process: `measure_costs` builds every method on them)."""
    return recipes.sentiment_setup(seed=seed) if task == "sentiment" else recipes.ner_setup("bert", seed=seed)


def build(task: str, method: str, seed: int = 0):
    """(the model `method` trains on `task`, a training batch of 32, the task's base model) on fresh weights."""
    from .benchmark import NER_METHODS
    from .world import load_task

    base = "lora" if method == "lora_merged" else method
    if task == "sentiment":
        setup = _setup(task, seed)
        batch = next(iter(setup.train_loader))
        reference = recipes.fresh_classifier(seed=seed)
        model = sentiment_adapter(method)(recipes.fresh_classifier(seed=seed))
        if base == "p_tuning":  # its own loader: the template around the review
            from solutions.p_tuning import cloze_loader

            train = load_task("sentiment").train[:32]
            batch = next(iter(cloze_loader(train, setup.tokenizer, "text", [ex["label"] for ex in train],
                                           batch_size=32)))
    elif task == "ner":
        setup = _setup(task, seed)
        batch, reference = next(iter(setup.train_loader)), recipes.fresh_tagger(setup, seed=seed)
        model = NER_METHODS[NER_NAMES[base]].prepare(recipes.fresh_tagger(setup, seed=seed))
    elif task == "data_to_text":
        from .benchmark_data_to_text import RECIPE, build as build_d2t
        from .data_to_text import data_to_text_loader

        backbone, tokenizer = recipes.fresh_backbone(RECIPE["backbone"], seed)
        model = build_d2t(D2T_NAMES[base], backbone)
        reference, _ = recipes.fresh_backbone(RECIPE["backbone"], seed)
        batch = next(iter(data_to_text_loader(load_task("data_to_text").train[:32], tokenizer, batch_size=32,
                                              max_len=RECIPE["max_len"])))
    elif task == "probe":
        from solutions.p_tuning import (DISCRETE_PROMPTS, PromptEncoderConfig, PTuningModel, discrete_template,
                                        probe_config, probe_loader, probe_splits)

        backbone, tokenizer = recipes.fresh_backbone(seed=seed)
        relation = next(iter(DISCRETE_PROMPTS))
        splits, candidates = probe_splits(load_task("probing"), relation)
        batch = next(iter(probe_loader(splits[0], tokenizer, candidates, batch_size=32)))
        discrete = PromptEncoderConfig(num_virtual_tokens=0, encoder_reparameterization_type="NONE",
                                       template=discrete_template(DISCRETE_PROMPTS[relation][0], "gpt"))
        reference = PTuningModel(backbone, tokenizer, discrete, candidates)
        model = reference if base == "frozen" else PTuningModel(
            recipes.fresh_backbone(seed=seed)[0], tokenizer, probe_config(PROBE_NAMES[base], False, "gpt", relation),
            candidates)
    else:
        raise ValueError(f"Unknown task {task!r}; choose from {TASKS}.")
    return model, batch, reference


def _head_only(model):
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


def stored_tensors(model, method: str) -> dict[str, torch.Tensor]:
    """What one task needs on disk after training: every weight for full fine-tuning; otherwise the trainable
    tensors, after the chapters' exports (P-tuning drops its encoder, prefix tuning its MLP)."""
    from solutions.p_tuning_v2 import DeepPrompt, InputPrompt
    from solutions.prefix_tuning import PrefixTuningModel, drop_prefix_mlp

    from .peft import trainable_state_dict

    if method == "full":
        return {n: p.detach().contiguous() for n, p in model.named_parameters()}
    with torch.no_grad():
        if hasattr(model, "export_prompt") and getattr(model, "prompt_encoder", None) is not None:
            model.export_prompt()
        if isinstance(model, PrefixTuningModel):
            drop_prefix_mlp(model)
        tensors = trainable_state_dict(model)
        for name, module in model.named_modules():
            reparameterised = (isinstance(module, DeepPrompt) and module.transform is not None) or (
                isinstance(module, InputPrompt) and (module.lstm is not None or module.mlp is not None))
            if reparameterised:  # the encoder's output, computed once: (P, L*2*d) or (P, d)
                tensors = {k: v for k, v in tensors.items() if not k.startswith(name + ".")}
                prompt = module(1)
                flat = torch.cat([t.reshape(-1) for pair in prompt for t in pair]) if isinstance(prompt, tuple) \
                    else prompt.reshape(-1)
                tensors[f"{name}.prompt"] = flat.detach().contiguous()
    return tensors


def file_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Size of the safetensors file holding `tensors`."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "task.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        return path.stat().st_size


ROUNDS = 10  # timing rounds per measurement (the interleaved rounds of training.compare_latency)


def _rows(batch: dict, n: int) -> dict:
    return {k: v[:n] for k, v in batch.items()}


def measure_costs(task: str, method: str, min_run_time: float = 0.03, seed: int = 0, timings: bool = True) -> dict:
    """Trainable parameters, training-state memory, seconds per training step, and the forward pass (batch 1 and
    32) timed against the task's base model; then the size of the task's file. Every clock reading is a short
    measurement of `min_run_time` seconds, repeated over ROUNDS. `timings=False` skips the clocks and keeps the
    exact measurements (counts and bytes)."""
    from solutions.lora import merge_lora

    from .training import compare_latency, count_parameters, measure_latency, training_state_memory

    torch.manual_seed(seed)
    model, batch, reference = build(task, method, seed)
    trainable, total = count_parameters(model)
    backbone_total = total if method == "full" else total - trainable
    out = {"task": task, "method": method, "trainable": trainable, "total": total, "backbone_total": backbone_total}
    if trainable:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-6)
        model.train()

        def step():
            optimizer.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            optimizer.step()

        step()
        out["memory"] = training_state_memory(model, optimizer)
        out["step_seconds"] = min(measure_latency(step, min_run_time, num_threads=1)
                                  for _ in range(ROUNDS)) if timings else None
        optimizer.zero_grad(set_to_none=True)
        del optimizer
    else:  # nothing trains (the probe's hand-written prompt): only the frozen weights
        out["memory"] = training_state_memory(model, torch.optim.AdamW([torch.zeros(1, requires_grad=True)]))
        out["memory"]["optimizer_state"] = 0
        out["memory"]["total"] = out["memory"]["parameters"]
        out["step_seconds"] = None
    model.eval()
    tensors = stored_tensors(model, method)
    out["stored_parameters"] = sum(t.numel() for t in tensors.values())
    out["file_bytes"] = file_bytes(tensors)
    if method == "lora_merged":
        merge_lora(model)
    inputs = {k: v for k, v in batch.items() if k != "labels" or task == "probe" or method in ("p_tuning",)}
    reference.eval()
    with torch.no_grad():
        for n in ((1, 32) if timings else ()):
            # In turns with the base model; the median of the within-round ratios (training.compare_latency).
            latency = compare_latency({"base_": lambda: reference(**_rows(inputs, n)),
                                       "": lambda: model(**_rows(inputs, n))}, rounds=ROUNDS, min_run_time=min_run_time)
            for name, seconds in latency.seconds.items():
                out[f"{name}latency_b{n}"] = seconds
            out[f"latency_b{n}_vs_base"] = latency.ratio[""]
    return out


def measure_all_costs(tasks=TASKS, min_run_time: float = 0.03, progress: bool = True) -> list[dict]:
    cells = [(t, m) for t in tasks for m in METHODS if applies(t, m)]
    return [measure_costs(t, m, min_run_time) for t, m in progress_bar(cells, desc="costs", unit="cell", disable=not progress)]


# ----------------------------------------------------------------------------- scores, from the chapters' benchmarks
SCORE_SPLIT = {"sentiment": "validation", "ner": "validation", "data_to_text": "validation", "probe": "test"}


def _load(name: str, directory: Path) -> dict:
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"No benchmark results at {path}: run `python -m minitransformer.benchmark "
                                f"{name.replace('comparison_sentiment', 'comparison')}` first.")
    return json.loads(path.read_text())


def _score(run: dict, score: float) -> dict:
    from .training import still_rising

    return {"seed": run["seed"], "score": score, "on_plateau": run["on_plateau"],
            "rising": bool(run.get("curve")) and still_rising(run["curve"])}


def task_scores(task: str, method: str, directory: Path = RESULTS_DIR) -> list[dict]:
    """The committed runs of `method` on `task` at its chosen learning rate: [{"seed", "score", "on_plateau"}]."""
    base = "lora" if method == "lora_merged" else method  # merging changes no prediction (asserted in chapter 3)
    if task == "sentiment":
        if base in SENTIMENT_RUNNERS:
            results = _load("comparison_sentiment", directory)
            runs = [r for r in results["runs"] if r["method"] == base and r["lr"] == results["learning_rates"][base]
                    and r["epochs"] == SOFT_PROMPT_EPOCHS]
        else:
            runs = [r for r in _load("sentiment", directory)["runs"] if r["method"] == base]
        return [_score(r, r["validation"]) for r in runs]
    if task == "ner":
        runs = [r for r in _load("ner", directory)["runs"] if r["backbone"] == "bert" and r["method"] == NER_NAMES[base]]
        return [_score(r, r["validation"]) for r in runs]
    if task == "data_to_text":
        from .benchmark_data_to_text import seed_runs

        runs = seed_runs(_load("data_to_text", directory), D2T_NAMES[base])
        # The curve is the validation loss (lower is better): chapter 8 checks its convergence, not still_rising.
        return [{"seed": r["seed"], "score": r["validation"]["bleu"], "on_plateau": False, "rising": False}
                for r in runs]
    if task == "probe":
        results = _load("p_tuning", directory)
        if base == "frozen":  # zero-shot: the best hand-written prompt per relation (picked on validation)
            return [{"seed": None, "score": results["discrete"]["gpt"]["best_test"], "on_plateau": False,
                     "rising": False}]
        runs = [r for r in results["runs"] if r["backbone"] == "gpt" and r["config"] == PROBE_NAMES[base]]
        return [_score(r, r["test"]) for r in runs]
    raise ValueError(f"Unknown task {task!r}; choose from {TASKS}.")


def summarise(task: str, method: str, directory: Path = RESULTS_DIR) -> dict:
    runs = task_scores(task, method, directory)
    scores = [r["score"] for r in runs]
    return {"n": len(scores), "seeds": [r["seed"] for r in runs], "scores": scores, "mean": statistics.fmean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0, "any_plateau": any(r["on_plateau"] for r in runs),
            "rising_seeds": sum(r["rising"] for r in runs)}


def comparison_rows(costs: list[dict], directory: Path = RESULTS_DIR) -> list[dict]:
    """One row per (task, method): scores (mean ± sd over seeds, ÷ full FT) joined with the measured costs."""
    rows = []
    by_cell = {(c["task"], c["method"]): c for c in costs}
    for task in TASKS:
        full = by_cell.get((task, "full"))
        full_score = summarise(task, "full", directory)["mean"] if applies(task, "full") else None
        for method in METHODS:
            if not applies(task, method):
                continue
            cost, score = by_cell[(task, method)], summarise(task, method, directory)
            row = {"task": task, "method": method, "label": LABELS[method], **score, **cost,
                   "share": cost["trainable"] / cost["backbone_total"],
                   "vs_full": score["mean"] / full_score if full_score else None,
                   "step_vs_full": (cost["step_seconds"] / full["step_seconds"]
                                    if full and cost["step_seconds"] is not None else None)}
            rows.append(row)  # the latency ratios come with the costs (measure_costs: latency_b1_vs_base, ...)
    return rows


def markdown_table(results: dict) -> str:
    """Every method on every task it applies to: one table per task, printed by code from the results."""
    from .training import format_bytes

    lines = ["Every method on every task it applies to. Score: mean ± sd over seeds (validation; the probe: test, "
             "as in chapter 7), from the chapters' benchmarks; 'still rising': seeds whose validation curve still "
             f"rose at the end (training.still_rising). On sentiment the soft prompts train {SOFT_PROMPT_EPOCHS} "
             f"epochs, " + ", ".join(f"{m} {e}" for m, e in recipes.METHOD_EPOCHS.items())
             + f", the other methods {recipes.EPOCHS}. Costs measured by `python -m minitransformer.benchmark "
             f"comparison` on one CPU thread ({results['machine']}): training-state memory = parameters + gradients + "
             "AdamW state; step time ÷ full fine-tuning's; forward-pass latency ÷ the base model's; the file a task "
             "needs (safetensors).", ""]
    for task in TASKS:
        lines += [f"### {TASK_LABELS[task]}", "",
                  "| method | trainable | score | ÷ full FT | training memory | step ÷ full | latency b1 ÷ base | "
                  "latency b32 ÷ base | file |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in results["rows"] if r["task"] == task):
            score = f"{r['mean']:.3f} ± {r['sd']:.3f}" if task != "data_to_text" else f"{r['mean']:.1f} ± {r['sd']:.1f}"
            score += f" (n={r['n']})" + (" plateau!" if r["any_plateau"] else "") + (
                f", {r['rising_seeds']} still rising" if r["rising_seeds"] else "")
            ratio = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
            lines.append(f"| {r['label']} | {r['trainable']:,} ({100 * r['share']:.2f}%) | {score} | "
                         f"{ratio(r['vs_full'])} | {format_bytes(r['memory']['total'])} | {ratio(r['step_vs_full'])} | "
                         f"{r['latency_b1_vs_base']:.2f} | {r['latency_b32_vs_base']:.2f} | "
                         f"{format_bytes(r['file_bytes'])} |")
        lines.append("")
    return "\n".join(lines)


def load_results(directory: Path = RESULTS_DIR) -> dict:
    return _load("comparison", directory)


def main(argv: Optional[list[str]] = None) -> int:
    import platform

    parser = argparse.ArgumentParser(prog="python -m minitransformer.benchmark comparison",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--jobs", type=int, default=2, help="training runs in parallel (one process each)")
    parser.add_argument("--table", action="store_true", help="only rebuild the table from the committed results")
    parser.add_argument("--prompt-lengths", action="store_true",
                        help="also run chapter 9's P-tuning v2 prompt lengths on sentiment (P=4 and 32, seed 0, "
                             "2 runs of about 2 CPU-minutes); the comparison's table does not use them")
    parser.add_argument("--min-run-time", type=float, default=0.03,
                        help=f"seconds per timing (torch.utils.benchmark), repeated over {ROUNDS} rounds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.table:
        results = load_results(args.out)
    else:
        short = sum(map(len, SENTIMENT_SWEEP.values())) + (len(EXTRA_RUNNERS) if args.prompt_lengths else 0)
        long = len(SENTIMENT_RUNNERS) * len(SEEDS) - 1  # prompt tuning's seed 0 is chapter 6's committed run
        # CPU-minutes per run on an idle 2-core laptop (the committed runs' "seconds"): ~2 at 20 epochs, ~6 at 60,
        # ~8 for prompt tuning's 60; the costs of every (task, method) take ~4 minutes more.
        minutes = (2 * short + 6 * (long - 2) + 8 * 2) / max(1, min(args.jobs, 2)) + 4
        print(f"Soft prompts on sentiment: {short} runs of {recipes.EPOCHS} epochs and {long} of {SOFT_PROMPT_EPOCHS}, "
              f"{args.jobs} at a time, then the costs of every (task, method): about {minutes:.0f} min from scratch on "
              f"2 cores; the cells already in {args.out}/ are kept.")
        sentiment_soft_prompts(args.out, jobs=args.jobs, prompt_lengths=args.prompt_lengths)
        torch.set_num_threads(1)
        results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} thread, torch {torch.__version__}",
                   "min_run_time": args.min_run_time, "costs": measure_all_costs(min_run_time=args.min_run_time)}
    results["rows"] = comparison_rows(results["costs"], args.out)
    if not args.table:
        results["seconds"] = round(time.perf_counter() - started)
    table = markdown_table(results)
    for suffix, text in ((".json", json.dumps(results, indent=1) + "\n"), (".md", table)):
        (args.out / f"comparison{suffix}").write_text(text)
    print(table)
    return 0


# ----------------------------------------------------------------------------- the lesson's live re-run
def _ner_cell(args: tuple) -> float:
    from .benchmark import run_ptv2_cell

    method, seed = args
    torch.set_num_threads(1)  # the benchmark's thread count: the same numbers on the same machine
    return run_ptv2_cell("ner", "bert", NER_NAMES[method], seed, progress=False)["validation"]


def rerun_ner(seed: int = 0, jobs: int = 2, methods: Optional[list[str]] = None) -> dict[str, float]:
    """Seed `seed` of every method on NER, `jobs` runs at a time (one process and one thread each), as
    `benchmark ner` runs them: {method: validation entity F1}."""
    methods = [m for m in (methods or METHODS) if m in NER_NAMES]
    try:  # the longest runs first (by their committed time), so that the processes finish together
        seconds = {r["method"]: r["seconds"] for r in _load("ner", RESULTS_DIR)["runs"] if r["backbone"] == "bert"}
        order = sorted(methods, key=lambda m: -seconds.get(NER_NAMES[m], 0.0))
    except FileNotFoundError:
        order = methods
    with progress_bar(total=len(methods), desc=f"NER, seed {seed}, every method", unit="run") as bar:
        if jobs == 1:
            scores = {}
            for m in methods:
                scores[m] = _ner_cell((m, seed))
                bar.update(1)
            return scores
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_ner_cell, (m, seed)): m for m in order}
            scores = {}
            for future in as_completed(futures):
                scores[futures[future]] = future.result()
                bar.update(1)
            return {m: scores[m] for m in methods}


# ----------------------------------------------------------------------------- README
README_START, README_END = "<!-- benchmark:comparison -->", "<!-- /benchmark:comparison -->"


def summary_table(results: dict) -> str:
    """Methods x tasks: score ÷ full fine-tuning (the probe: its accuracy), the trainable share on sentiment, and
    the costs that decide deployment, printed by code for README."""
    from .training import format_bytes

    cell = {(r["task"], r["method"]): r for r in results["rows"]}
    head = ["method", "trainable (sentiment)", *(f"{t} ÷ full FT" for t in TASKS[:3]), "probe accuracy",
            "training memory", "latency b1 ÷ base", "file"]
    lines = ["Score ÷ full fine-tuning per task (mean over 3 seeds; the probe, which no method that changes the "
             "backbone applies to, shows its test accuracy), and the costs on the sentiment task, from "
             "`benchmarks/comparison.json` (`python -m minitransformer.benchmark comparison`; chapter 10).", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for method in METHODS:
        s = cell[("sentiment", method)]
        scores = [f"{cell[(t, method)]['vs_full']:.2f}" if (t, method) in cell else "-" for t in TASKS[:3]]
        probe = f"{cell[('probe', method)]['mean']:.3f}" if ("probe", method) in cell else "-"
        lines.append(f"| {s['label']} | {100 * s['share']:.2f}% | " + " | ".join(scores) + f" | {probe} | "
                     f"{format_bytes(s['memory']['total'])} | {s['latency_b1_vs_base']:.2f} | "
                     f"{format_bytes(s['file_bytes'])} |")
    return "\n".join(lines) + "\n"


def readme_with_results(readme_text: str, results: dict) -> str:
    from .benchmark import fill_readme_section

    return fill_readme_section(readme_text, README_START, README_END, summary_table(results))
