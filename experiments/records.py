"""Protocol runs on disk: one JSON file per (task, method, budget, seed), so a long benchmark resumes.

Layout: ``benchmarks/protocol/<task>/<method>/<epochs>ep_seed<seed>.json``, and the method's learning-rate
sweep (seed 0, one file per rate) in ``benchmarks/protocol/<task>/<method>/sweep/<epochs>ep_lr<lr>.json``,
a record of the same schema with ``"sweep": true``. Schema (version 1)::

    {
      "schema": 1,
      "task": "sentiment", "method": "lora", "label": "LoRA q,v r=8",
      "seed": 0, "epochs": 20, "budget": 1,            # budget: multiple of the method's standard epochs
      "lr": 0.003, "schedule": "linear", "warmup_ratio": 0.1, "batch_size": 32, "n_train": 1000,
      "validation": {"accuracy": 0.912, "loss": 0.27, "correct": "0110...", "examples": "<sha256 of the ids>",
                     "texts": "<sha256 of the examples' texts and labels>"},
      "test":       {"accuracy": 0.908, "loss": 0.29, "correct": "1011...", "examples": "<sha256>"},
      "curve": [0.52, ...],                             # validation accuracy after each epoch
      "train_accuracy": 1.0, "majority": 0.511, "on_plateau": false,
      "trainable": 16384, "total": 1072130,
      "seconds": 290.1, "threads": 1, "torch": "2.13.0+cpu"
    }

``correct`` holds one character per evaluation example, ``1`` for a correct prediction,
in the evaluation set's order. A task whose per-example score is a fraction (data-to-text: the share of an
MR's slots realised) records ``scores`` instead, a list whose mean is ``accuracy``; a corpus score such as
NER's entity F1 records ``counts``, one [correct, predicted, gold] row per sentence, and ``accuracy`` holds
the F1 of their sums. ``texts`` fingerprints that set (its texts and labels, in order)
and ``examples`` its encoding (the token ids), so runs scored on different sets are never
compared, while runs that read the same reviews through another template are.  The frozen probe has no curve and ``epochs`` 0 (it is
fit to convergence by L-BFGS).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

SCHEMA = 1
RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "protocol"


class RecordError(ValueError):
    """A protocol run on disk is missing or malformed."""


def cpu_id() -> str:
    """The CPU a run was made on: its model name and the vector instructions PyTorch uses on it. Two runs with one
    seed are bit-identical only on the same CPU (``machine`` alone, x86_64, does not say which kernels ran)."""
    import platform

    import torch

    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model or platform.machine()} ({torch.backends.cpu.get_cpu_capability()})"


def run_path(task: str, method: str, epochs: int, seed: int, root: Path | None = None) -> Path:
    return (root or RESULTS_DIR) / task / method / f"{epochs}ep_seed{seed}.json"


def sweep_path(task: str, method: str, epochs: int, lr: float, root: Path | None = None) -> Path:
    return (root or RESULTS_DIR) / task / method / "sweep" / f"{epochs}ep_lr{lr:g}.json"


def path_of(task: str, spec, root: Path | None = None) -> Path:
    """Where the record of a run spec (``method``, ``epochs``, ``seed``, and ``lr`` for a sweep run) lives."""
    if getattr(spec, "lr", None) is not None:
        return sweep_path(task, spec.method, spec.epochs, spec.lr, root)
    return run_path(task, spec.method, spec.epochs, spec.seed, root)


WEIGHTS_LIMIT = 10_000  # runs that train at most this many numbers keep them beside the record


def save_run(record: dict, root: Path | None = None) -> Path:
    """Write one run atomically (a run stopped half-way leaves no half-written file).

    A record may carry ``"_weights"``, the run's trained tensors by name (a soft prompt): they are written
    beside it as ``<record>.safetensors`` (:func:`load_weights`), not into the JSON.
    """
    weights = record.pop("_weights", None)
    check_record(record)
    path = (sweep_path(record["task"], record["method"], record["epochs"], record["lr"], root) if record.get("sweep")
            else run_path(record["task"], record["method"], record["epochs"], record["seed"], root))
    path.parent.mkdir(parents=True, exist_ok=True)
    if weights:
        from safetensors.torch import save_file

        tmp_weights = path.with_suffix(".safetensors.tmp")
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_weights))
        os.replace(tmp_weights, path.with_suffix(".safetensors"))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_run(task: str, method: str, epochs: int, seed: int, root: Path | None = None) -> dict | None:
    path = run_path(task, method, epochs, seed, root)
    if not path.exists():
        return None
    return load_run_file(path)


def load_weights(path: Path) -> dict:
    """The trained tensors saved beside the record at ``path`` (``{}`` when the run kept none)."""
    weights = Path(path).with_suffix(".safetensors")
    if not weights.exists():
        return {}
    from safetensors.torch import load_file

    return load_file(str(weights))


def load_run_file(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise RecordError(f"{path} is not valid JSON ({exc}); delete it and run the benchmark again.") from None
    check_record(record, path)
    return record


def load_sweep(task: str, method: str, epochs: int, root: Path | None = None) -> list[dict]:
    """The method's sweep records at ``epochs`` (seed 0), by increasing learning rate."""
    folder = (root or RESULTS_DIR) / task / method / "sweep"
    found = []
    for path in sorted(folder.glob(f"{epochs}ep_lr*.json")):
        found.append(load_run_file(path))
    return sorted(found, key=lambda r: r["lr"])


def load_runs(task: str, method: str, epochs: int, seeds: Iterable[int], root: Path | None = None) -> dict[int, dict]:
    """The recorded runs among ``seeds``, by seed."""
    found = {}
    for seed in seeds:
        record = load_run(task, method, epochs, seed, root)
        if record is not None:
            found[seed] = record
    return found


def check_record(record: dict, where: object = "a run record") -> None:
    """Raise :class:`RecordError` naming what is wrong with a record."""
    if record.get("schema") != SCHEMA:
        raise RecordError(f"{where}: schema {record.get('schema')!r}, expected {SCHEMA}; re-run it with this version.")
    missing = [k for k in ("task", "method", "seed", "epochs", "validation") if k not in record]
    if missing:
        raise RecordError(f"{where}: missing {missing}.")
    for split in ("validation", "test"):
        scores = record.get(split)
        if scores is None:
            continue
        if "counts" in scores:  # per-example counts of a corpus score (NER: correct, predicted and gold spans)
            rows = scores["counts"]
            if not rows or any(len(r) != 3 or min(r) < 0 or r[0] > min(r[1], r[2]) for r in rows):
                raise RecordError(f"{where}: {split}.counts must hold one [correct, predicted, gold] row of "
                                  f"non-negative counts per example, correct at most predicted and gold.")
            correct, predicted, gold = (sum(r[i] for r in rows) for i in range(3))
            f1 = 2 * correct / (predicted + gold) if predicted + gold else 0.0
            if abs(f1 - scores["accuracy"]) > 1e-6:
                raise RecordError(f"{where}: {split}.accuracy {scores['accuracy']} is not the entity F1 of its "
                                  f"counts ({f1:.6f}).")
            continue
        if "scores" in scores:  # fractional per-example scores (data-to-text: the share of an MR's slots realised)
            values = scores["scores"]
            if not values or any(not 0.0 <= v <= 1.0 for v in values):
                raise RecordError(f"{where}: {split}.scores must hold one score in [0, 1] per example.")
            if abs(sum(values) / len(values) - scores["accuracy"]) > 1e-6:
                raise RecordError(f"{where}: {split}.accuracy {scores['accuracy']} is not the mean of its scores.")
            continue
        correct = scores.get("correct", "")
        if not correct or set(correct) - {"0", "1"}:
            raise RecordError(f"{where}: {split}.correct must be a string of 0s and 1s, one per example.")
        if abs(correct.count("1") / len(correct) - scores["accuracy"]) > 1e-9:
            raise RecordError(f"{where}: {split}.accuracy {scores['accuracy']} does not match its correct string "
                              f"({correct.count('1')}/{len(correct)}).")


def text_fingerprint(examples, text_key: str = "text", label_key: str = "label") -> str:
    """sha256 (16 hex digits) of an evaluation set's texts and labels, in order."""
    import hashlib

    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex[text_key], ex[label_key]]).encode())
    return digest.hexdigest()[:16]


def correct_vector(record: dict, split: str = "validation") -> list[float]:
    """The per-example scores of a run on a split: 1.0 correct, 0.0 wrong, a record's fractional ``scores``, or its
    per-example ``counts`` (rows of a corpus score's counts, :data:`experiments.stats.REDUCERS`)."""
    if "counts" in record[split]:
        return [[float(x) for x in row] for row in record[split]["counts"]]
    if "scores" in record[split]:
        return [float(v) for v in record[split]["scores"]]
    return [1.0 if c == "1" else 0.0 for c in record[split]["correct"]]


def reused_run(task: str, spec, lr: float | None, root: Path | None = None) -> dict | None:
    """The record of ``spec`` when the other half of the protocol already made that very run, else None.

    Seed 0 at the chosen rate and the final budget is also the sweep's cell at that rate: runs are deterministic,
    so whichever of the two exists is copied (with its ``sweep`` flag and saved weights set for its new role)."""
    if spec.seed != 0 or spec.budget != 1 or lr is None:
        return None
    if spec.lr is None:
        other, sweep = sweep_path(task, spec.method, spec.epochs, lr, root), False
    else:
        other, sweep = run_path(task, spec.method, spec.epochs, 0, root), True
    if not other.exists():
        return None
    record = load_run_file(other)
    if abs(record["lr"] - lr) > 1e-12 * max(1.0, abs(lr)):
        return None
    record["sweep"] = sweep
    record["_weights"] = load_weights(other)
    return record
