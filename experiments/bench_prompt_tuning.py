"""Chapter 10's prompt-tuning runs on sentiment (the first version of chapter 6's experiments, read at [EOS]):
the learning-rate sweep at 20 epochs and the d=128 runs at three times that budget. Chapter 6 is judged by the
protocol instead (:mod:`experiments.sentiment`, methods ``prompt_tuning*``); chapter 10 moves there next."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from minitransformer import recipes
from minitransformer.evaluation import evaluate_accuracy
from minitransformer.training import progress_bar

from experiments.results_io import RESULTS_DIR, load_results, write_results

# ============================================================================= prompt tuning (chapter 6)
# Everything of `python -m experiments.benchmark prompt_tuning` / `prompt_tuning_sweep` is in this block.
#
#     python -m experiments.benchmark prompt_tuning_sweep   # the lr sweep (4 runs, d=128): ~15 min
#     python -m experiments.benchmark prompt_tuning         # init and length at a 3x budget (6 runs): ~40 min
#
# (CPU time at 1 thread; an idle 2-core laptop needs about that in wall time, a busy one several times more).
# Prompt tuning reads the class from the frozen LM head (a verbaliser), so it needs no task head; the runs use the sentiment setup, seeds and schedule of the
# standard recipe, with the learning rate and number of epochs from the recorded sweep below.

PT_VERBALIZER = [" bad", " good"]  # label words of classes 0 and 1; each one token
PT_INIT_TEXT = " bad good"  # "class-label" init (TEXT): the label words, repeated to fill the prompt
# (lr, epochs): three lrs on the standard recipe's budget
PT_SWEEP = tuple((lr, recipes.EPOCHS) for lr in (0.03, 0.1, 0.3, 1.0))
PT_LR = 0.3  # the sweep's choice (pt_sweep_best, benchmarks/prompt_tuning_sweep.md), checked by a test
PT_EPOCHS = recipes.EPOCHS
PT_MAX_PROMPT = 32  # the context left: max_seq_len 128 - inputs truncated to 96 tokens


@dataclass(frozen=True)
class PromptTuningRun:
    name: str
    backbone: str = "gpt"
    method: str = "prompt_tuning"  # or "full" (full fine-tuning of the same backbone, for the scale ratio)
    num_virtual_tokens: int = 20
    init: str = "TEXT"
    seed: int = 0
    epochs: Optional[int] = None  # None: PT_EPOCHS (full fine-tuning: the standard recipe's)
    lr: Optional[float] = None  # None: PT_LR (full fine-tuning: the standard recipe's)


def _pt_runs() -> list[PromptTuningRun]:
    # Chapter 10's prompt-tuning runs on sentiment (d=128, three times the standard budget, read at [EOS]): the
    # label-init prompt, the other inits and the lengths. Chapter 6 itself is judged by the protocol
    # (`python -m experiments run sentiment`, methods prompt_tuning*), read after a template.
    runs = [PromptTuningRun("gpt_text_3x_epochs", epochs=3 * PT_EPOCHS)]
    runs += [PromptTuningRun(f"gpt_{init.lower()}_3x_epochs", init=init, epochs=3 * PT_EPOCHS)
             for init in ("SAMPLE_VOCAB", "RANDOM")]
    runs += [PromptTuningRun(f"gpt_text_p{p}_3x_epochs", num_virtual_tokens=p, epochs=3 * PT_EPOCHS)
             for p in (1, 5, PT_MAX_PROMPT)]
    return runs


PT_RUNS = {r.name: r for r in _pt_runs()}


def prompt_tuning_config(run: PromptTuningRun):
    from solutions.prompt_tuning import PromptTuningConfig

    return PromptTuningConfig(num_virtual_tokens=run.num_virtual_tokens, prompt_tuning_init=run.init,
                              prompt_tuning_init_text=PT_INIT_TEXT if run.init == "TEXT" else None,
                              verbalizer=list(PT_VERBALIZER), init_seed=run.seed)


def run_prompt_tuning(run: PromptTuningRun, lr: Optional[float] = None, epochs: Optional[int] = None,
                      progress: bool = True) -> tuple[dict, Optional[torch.Tensor]]:
    """One run on the sentiment setup: (its record, the trained (P, d) prompt or None for full fine-tuning)."""
    from minitransformer.training import fit_and_evaluate

    setup = recipes.sentiment_setup(seed=run.seed)  # the ladder shares the shipped tokenizer, so the same loaders
    if run.method == "full":
        model = recipes.fresh_classifier(run.backbone, seed=run.seed)
        lr, epochs = recipes.LEARNING_RATES["full"], recipes.EPOCHS
    else:
        from solutions.prompt_tuning import PromptTuningClassifier

        backbone, tokenizer = recipes.fresh_backbone(run.backbone, seed=run.seed)  # the recipe's dropout
        model = PromptTuningClassifier(backbone, tokenizer, prompt_tuning_config(run))
        lr, epochs = lr or run.lr or PT_LR, epochs or run.epochs or PT_EPOCHS
    e = fit_and_evaluate(run.name, model, setup.train_loader, setup.val_loader, epochs=epochs, lr=lr,
                         warmup_ratio=recipes.WARMUP_RATIO, schedule=recipes.SCHEDULE, track_curve=True,
                         progress=progress)
    record = {"name": run.name, **{k: v for k, v in vars(run).items() if k not in ("name", "epochs")}, "lr": lr,
              "epochs": epochs,
              "validation": round(e.score, 4), "test": round(evaluate_accuracy(e.model, setup.test_loader), 4),
              "curve": [round(s, 4) for s in e.curve], "train_accuracy": round(e.train_accuracy, 4),
              "majority": round(e.majority, 4), "on_plateau": e.on_plateau, "trainable": e.trainable,
              "total": e.total, "backbone_parameters": sum(p.numel() for p in e.model.backbone.parameters()),
              "seconds": round(e.seconds, 1), "losses": [round(x, 4) for x in e.losses]}
    prompt = None if run.method == "full" else e.model.soft_prompt.weight.detach().clone()
    return record, prompt


def _pt_recipe() -> dict:
    return {"n_train": recipes.N_TRAIN, "batch_size": recipes.BATCH_SIZE, "warmup_ratio": recipes.WARMUP_RATIO,
            "schedule": recipes.SCHEDULE, "lr": PT_LR, "epochs": PT_EPOCHS, "verbalizer": PT_VERBALIZER,
            "init_text": PT_INIT_TEXT, "full_lr": recipes.LEARNING_RATES["full"], "full_epochs": recipes.EPOCHS,
            "dropout": recipes.DROPOUT}


def prompt_tuning_table(results: dict) -> str:
    from minitransformer.training import still_rising

    lines = [f"Prompt tuning on sentiment (validation accuracy, 500 reviews), seed 0. Each row shows its epochs and "
             f"learning rate (by default {PT_EPOCHS} epochs at lr {PT_LR:g}; AdamW, {recipes.WARMUP_RATIO:.0%} warmup, "
             f"linear decay); verbaliser {PT_VERBALIZER}. Full fine-tuning: the standard recipe. The runs on file took "
             f"{results['seconds'] / 60:.0f} min of wall time in all, summed over the commands that produced them "
             f"({results['threads']} thread per run).",
             "",
             "| run | backbone | method | P | init | epochs | lr | trainable | validation | test | train accuracy "
             "| plateau? | curve still rising? |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results["runs"]:
        full = r["method"] == "full"
        lines.append(f"| {r['name']} | {r['backbone']} | {r['method']} | {'' if full else r['num_virtual_tokens']} | "
                     f"{'' if full else r['init']} | {r['epochs']} | {r['lr']:g} | {r['trainable']:,} | {r['validation']:.3f} | "
                     f"{r['test']:.3f} | {r['train_accuracy']:.3f} | {'yes' if r['on_plateau'] else 'no'} | "
                     f"{'yes' if still_rising(r['curve']) else 'no'} |")
    return "\n".join(lines) + "\n"


def pt_sweep_best(runs: list[dict]) -> dict:
    """The sweep's choice: the best validation score among runs that left the one-class plateau; if every run stayed
    on it (validation scores are then noise around the majority share), the lowest training loss over the last epoch."""
    trained = [r for r in runs if not r["on_plateau"]]
    if trained:
        return max(trained, key=lambda r: r["validation"])
    return min(runs, key=lambda r: statistics.fmean(r["losses"][-(-recipes.N_TRAIN // recipes.BATCH_SIZE):]))


def prompt_tuning_sweep_table(results: dict) -> str:
    best = pt_sweep_best(results["runs"])
    lines = [f"Prompt-tuning learning-rate sweep: d=128 backbone, P=20, TEXT init, seed 0 (validation accuracy; the "
             f"choice, in bold, becomes PT_LR: the best run off the one-class plateau, or, if every run is on it, the "
             f"lowest last-epoch training loss). Total runtime {results['seconds'] / 60:.0f} min of wall time "
             f"({results['threads']} thread, on a shared 2-core machine; about a third of that on an idle one).", "",
             "| lr | epochs | validation | train accuracy | last-epoch train loss | plateau? |",
             "|---:|---:|---:|---:|---:|---|"]
    for r in results["runs"]:
        score = f"**{r['validation']:.3f}**" if r is best else f"{r['validation']:.3f}"
        loss = statistics.fmean(r["losses"][-(-recipes.N_TRAIN // recipes.BATCH_SIZE):])
        lines.append(f"| {r['lr']:g} | {r['epochs']} | {score} | {r['train_accuracy']:.3f} | {loss:.4f} | "
                     f"{'yes' if r['on_plateau'] else 'no'} |")
    return "\n".join(lines) + "\n"


def load_prompts(name: str = "prompt_tuning", directory: Path = RESULTS_DIR) -> dict[str, torch.Tensor]:
    """The trained (P, d) prompts of a committed run (`prompt_tuning` or `prompt_tuning_sweep`), by run name."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / f"{name}_prompts.safetensors"))


def _prompt_tuning_command(args) -> int:
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.command == "prompt_tuning_sweep":
        grid = [(lr, PT_EPOCHS) for lr in args.lrs] if args.lrs else list(PT_SWEEP)
        runs, prompts, seconds = [], {}, 0
        path = args.out / "prompt_tuning_sweep.json"
        if args.lrs and path.exists():  # add cells to the committed sweep, if it ran on the same recipe
            old = json.loads(path.read_text())
            if _pt_recipe() | {"lr": None} == old.get("recipe", {}) | {"lr": None}:
                old_prompts = load_prompts("prompt_tuning_sweep", args.out)
                runs = [r for r in old["runs"] if (r["lr"], r["epochs"]) not in grid]
                prompts = {f"lr{r['lr']:g}_ep{r['epochs']}": old_prompts[f"lr{r['lr']:g}_ep{r['epochs']}"] for r in runs}
                seconds = old["seconds"]
        for lr, ep in progress_bar(grid, desc="prompt tuning sweep", unit="run"):
            record, prompts[f"lr{lr:g}_ep{ep}"] = run_prompt_tuning(PromptTuningRun(f"sweep_lr{lr:g}_ep{ep}"), lr=lr,
                                                                    epochs=ep)
            runs.append(record)
        runs.sort(key=lambda r: (r["lr"], r["epochs"]))
        results = {"recipe": _pt_recipe(), "threads": args.threads,
                   "seconds": seconds + round(time.perf_counter() - started), "runs": runs}
        args.out.mkdir(parents=True, exist_ok=True)
        save_file(prompts, str(args.out / "prompt_tuning_sweep_prompts.safetensors"))
        write_results(results, "prompt_tuning_sweep", prompt_tuning_sweep_table(results), args.out)
        return 0
    if args.combine:  # the results of several `--runs ... --out DIR` invocations (run in parallel), in PT_RUNS order
        parts = [load_results("prompt_tuning", d) for d in args.combine]
        by_name = {r["name"]: r for part in parts for r in part["runs"]}
        prompts = {k: v for d in args.combine for k, v in load_prompts("prompt_tuning", d).items()}
        missing = [n for n in PT_RUNS if n not in by_name]
        if missing or any(p["recipe"] != _pt_recipe() for p in parts):
            raise SystemExit(f"cannot combine: runs missing {missing}, or a part ran on another recipe")
        runs, seconds = [by_name[n] for n in PT_RUNS], sum(p["seconds"] for p in parts)
    else:
        runs, prompts = [], {}
        for name in progress_bar(args.runs or list(PT_RUNS), desc="prompt tuning", unit="run"):
            record, prompt = run_prompt_tuning(PT_RUNS[name])
            runs.append(record)
            if prompt is not None:
                prompts[name] = prompt.contiguous()
        seconds = round(time.perf_counter() - started)
    results = {"recipe": _pt_recipe(), "threads": args.threads, "seconds": seconds, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(prompts, str(args.out / "prompt_tuning_prompts.safetensors"))
    write_results(results, "prompt_tuning", prompt_tuning_table(results), args.out)
    return 0


def _add_prompt_tuning_parsers(sub) -> None:
    pt = sub.add_parser("prompt_tuning", help="chapter 6: init, length, budget and scale runs (16 runs, ~50 CPU-min)")
    pt.add_argument("--runs", nargs="+", choices=list(PT_RUNS), help="a subset of the runs (default: all)")
    pt.add_argument("--combine", nargs="+", type=Path, metavar="DIR",
                    help="merge the results of several --runs subsets (written with --out DIR) into --out")
    sweep = sub.add_parser("prompt_tuning_sweep", help="chapter 6: the lr sweep on d=128 (4 runs, ~15 CPU-min)")
    sweep.add_argument("--lrs", type=float, nargs="+", help="run only these learning rates and merge them into the "
                       "committed sweep (same recipe)")
    for p in (pt, sweep):
        p.add_argument("--out", type=Path, default=RESULTS_DIR)
        p.add_argument("--threads", type=int, default=1, help="torch threads; results are reproducible per count")

