"""Committed benchmark results: where they live, how they are written, merged and put into README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional


from minitransformer import recipes

from experiments.methods import ALL_METHODS

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def load_results(name: str = "sentiment", directory: Path = RESULTS_DIR) -> dict:
    """The committed results of `python -m experiments.benchmark NAME`."""
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"No benchmark results at {path}; run `python -m experiments.benchmark {name}`.")
    return json.loads(path.read_text())



README = Path(__file__).resolve().parents[1] / "README.md"
README_START, README_END = "<!-- benchmark:sentiment -->", "<!-- /benchmark:sentiment -->"
VERDICTS_START, VERDICTS_END = "<!-- experiments:verdicts -->", "<!-- /experiments:verdicts -->"


def fill_readme_section(readme_text: str, start: str, end: str, body: str) -> str:
    """`readme_text` with the text between the markers `start` and `end` replaced by `body`."""
    if start not in readme_text or end not in readme_text:
        raise ValueError(f"README has no {start} ... {end} section to fill.")
    head, rest = readme_text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def sentiment_recipe() -> dict:
    return {"backbone": recipes.BACKBONE, "n_train": recipes.N_TRAIN, "epochs": recipes.EPOCHS,
            "method_epochs": dict(recipes.METHOD_EPOCHS), "batch_size": recipes.BATCH_SIZE,
            "warmup_ratio": recipes.WARMUP_RATIO, "schedule": recipes.SCHEDULE,
            "dropout": recipes.DROPOUT,
            "learning_rates": dict(recipes.LEARNING_RATES)}


def write_results(results: dict, name: str, table: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(results, indent=1) + "\n"), (".md", table)):
        tmp = out / f".{name}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(out / f"{name}{suffix}")
    print(table)
    print(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")



def same_recipe(a: dict, b: dict) -> bool:
    """Equal recipes, apart from the learning rates (which the sweep itself decides) and the per-method budgets (each
    run's own budget is its curve's length, checked per cell)."""
    ignore = ("learning_rates", "method_epochs")
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def run_epochs(run: dict) -> Optional[int]:
    """How many epochs a committed run trained (its curve has one point per epoch); None for the frozen probe."""
    return len(run["curve"]) if run.get("curve") else None


def merged_runs(runs: list[dict], path: Path, seed: Optional[int], key: Callable[[dict], object], order: list[str],
            at_standard_lr: bool = True) -> list[dict]:
    """`runs` plus the committed file's other cells (by `key`), when they used the same recipe and seed.

    So `sweep --methods full --lrs 3e-3` adds one cell to the committed sweep, `ablations --methods full_bert`
    one row to the ablations, and `sentiment --methods full` replaces only full fine-tuning's seeds. With
    `at_standard_lr`, a kept cell must also have run at today's LEARNING_RATES for its method: after the
    sweep changes a rate, that method's old cells are dropped, not mixed in.
    """
    if not path.exists():
        return runs
    old = json.loads(path.read_text())
    if old.get("seed") != seed or not same_recipe(old["recipe"], sentiment_recipe()):
        return runs

    def current(run: dict) -> bool:
        spec = ALL_METHODS.get(run["method"])
        return not at_standard_lr or spec is None or spec.prepare is None or \
            (run["lr"] == recipes.LEARNING_RATES[spec.lr_key] and run_epochs(run) == recipes.epochs_for(spec.lr_key))

    new = {key(r) for r in runs}
    kept = [r for r in old["runs"] if key(r) not in new and current(r)]
    return sorted(kept + runs, key=lambda r: (order.index(r["method"]), run_epochs(r) or 0, r["lr"] or 0, r["seed"]))

