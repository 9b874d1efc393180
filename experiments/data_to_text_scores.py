"""What a data-to-text score means: three baselines that train nothing, BLEU and slot accuracy with 95%
intervals, and the same MRs rendered by every method with each slot error marked (chapter 8).

Baselines (each reads only the MR, or the training set):

    template   one hand-written sentence pattern that names every slot: no slot error by construction,
               so its BLEU is what a content-perfect but monotonous text earns
    copy MR    the meaning representation itself, as the "text"
    nearest    the first reference of the training MR that shares the most slot values: fluent text
               about another venue (validation venues never occur in training)
    fixed      one training reference said for every MR (the one that fits most training MRs): the best
               a system that ignores the MR can do, the bar a method must clear to have learned the task

Intervals follow :mod:`experiments.stats`: the seeds' spread (Student's t) and a bootstrap over the
evaluation MRs, added in quadrature. BLEU is a corpus statistic, not a mean, so its bootstrap
resamples each MR's n-gram counts (sacrebleu's, summed exactly as ``corpus_bleu`` sums them).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from experiments.stats import BOOTSTRAP_REPLICATES, Z_95, Interval, paired_interval, t_quantile_95

FAMILY = {"yes": "family-friendly", "no": "not family-friendly"}
PRICE = {"cheap": "cheap", "moderate": "moderately priced", "expensive": "expensive"}


def template(record: dict[str, str]) -> str:
    """One fixed sentence pattern that realises every slot the record has."""
    head = record["name"] + " is a"
    head += f" {record['food']}" if "food" in record else ""
    head += f" {record.get('eat_type', 'venue')}"
    head += f" in the {record['area']}" if "area" in record else ""
    head += f" near {record['near']}" if "near" in record else ""
    rest = [PRICE[record["price"]]] if "price" in record else []
    rest += [f"rated {record['rating']}"] if "rating" in record else []
    rest += [FAMILY[record["family_friendly"]]] if "family_friendly" in record else []
    if not rest:
        return head + "."
    listed = rest[0] if len(rest) == 1 else ", ".join(rest[:-1]) + " and " + rest[-1]
    return f"{head}. It is {listed}."


def nearest_reference(record: dict[str, str], train: Sequence[dict]) -> str:
    """The first reference of the training example sharing the most (slot, value) pairs (the first on ties)."""
    pairs = set(record.items())
    best = max(train, key=lambda ex: len(pairs & set(ex["record"].items())))
    return best["references"][0]


FIXED_CANDIDATES, FIXED_FIT = 300, 200  # the one fixed text: the best of this many training references on this many


def fixed_text(train: Sequence[dict]) -> str:
    """The one text a system that ignores the MR would say every time: of the first ``FIXED_CANDIDATES`` training
    references, the one that realises the most slots of the first ``FIXED_FIT`` training MRs (chosen on training data
    only). A method whose slot accuracy is not above this text's shows no sign of reading the MR."""
    from minitransformer.world.metrics import slot_errors

    fit = [ex["record"] for ex in train[:FIXED_FIT]]
    candidates = [ex["references"][0] for ex in train[:FIXED_CANDIDATES]]
    key = (tuple(ex["meaning_representation"] for ex in train[:FIXED_FIT]), tuple(candidates))
    if key not in _FIXED:  # a few seconds: kept for the session
        _FIXED[key] = max(candidates, key=lambda text: sum(len(r) - len(slot_errors(r, text)) for r in fit))
    return _FIXED[key]  # max: the first on ties


_FIXED: dict[tuple, str] = {}


def baselines(examples: Sequence[dict], train: Sequence[dict]) -> dict[str, list[str]]:
    """Each baseline's output for every example, in order."""
    return {"template": [template(ex["record"]) for ex in examples],
            "copy MR": [ex["meaning_representation"] for ex in examples],
            "nearest training reference": [nearest_reference(ex["record"], train) for ex in examples],
            "one fixed text": [fixed_text(train)] * len(examples)}


def _bleu_stats(outputs: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """(n, 10): per output, sacrebleu's matched and total n-gram counts (orders 1-4), its length and the
    reference length it is compared with."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(effective_order=True)  # only sentence scores use it; the counts are the same
    rows = []
    for out, refs in zip(outputs, references):
        s = bleu.sentence_score(out, list(refs))
        rows.append([*s.counts, *s.totals, s.sys_len, s.ref_len])
    return np.asarray(rows, dtype=np.float64)


def _bleu_of(stats: np.ndarray) -> float:
    """Corpus BLEU (0-100) from summed statistics, with corpus_bleu's default (exponential) smoothing."""
    from sacrebleu.metrics import BLEU

    return BLEU.compute_bleu([int(round(x)) for x in stats[:4]], [int(round(x)) for x in stats[4:8]],
                             int(round(stats[8])), int(round(stats[9])), smooth_method="exp").score


def bleu_interval(outputs_per_seed: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                  replicates: int = 1000, seed: int = 0) -> Interval:
    """Mean corpus BLEU over seeds with its 95% interval (seed spread and a bootstrap over the MRs)."""
    stats = np.stack([_bleu_stats(o, references) for o in outputs_per_seed])  # (k, n, 10)
    k, n, _ = stats.shape
    per_seed = np.array([_bleu_of(s.sum(axis=0)) for s in stats])
    estimate = float(per_seed.mean())
    seed_half = t_quantile_95(k - 1) * float(per_seed.std(ddof=1)) / math.sqrt(k) if k > 1 else 0.0
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=replicates)  # (R, n)
    summed = np.einsum("rn,knc->rkc", counts.astype(np.float64), stats)  # each replicate's corpus statistics
    boot = np.array([[_bleu_of(summed[r, s]) for s in range(k)] for r in range(replicates)]).mean(axis=1)
    sample_half = Z_95 * float(boot.std(ddof=1))
    half = math.hypot(seed_half, sample_half)
    return Interval(estimate, estimate - half, estimate + half, seed_half, sample_half, k, n)


def slot_interval(scores_per_seed: Sequence[Sequence[float]]) -> Interval:
    """Mean slot accuracy over seeds with its 95% interval (:func:`experiments.stats.paired_interval`)."""
    return paired_interval(scores_per_seed, statistic="value", replicates=BOOTSTRAP_REPLICATES)


def marked(record: dict[str, str], output: str) -> str:
    """The output with the slots it gets wrong listed after it (✗ slot), or ✓ when every slot is right."""
    from minitransformer.world.metrics import slot_errors

    errors = slot_errors(record, output)
    return output + ("  ✓" if not errors else "  ✗ " + ", ".join(errors))


def recorded(method: str, root=None) -> dict[int, dict]:
    """The method's protocol runs at its final budget, by seed (``{}`` when none is on file)."""
    from experiments import records
    from experiments.data_to_text import TASK, epochs_of
    from experiments.protocol import SEEDS

    return records.load_runs(TASK, method, epochs_of(method), SEEDS, root)


def score_table(methods: Sequence[str], examples: Sequence[dict], train: Sequence[dict], split: str = "validation",
                root=None) -> str:
    """Baselines and methods on one split: BLEU and slot accuracy with 95% intervals, and the corpus SER.

    A method's row pools its recorded seeds; a method with no run on file is listed as such."""
    from minitransformer.world.metrics import slot_error_rate

    from experiments.data_to_text import slot_scores

    references = [ex["references"] for ex in examples]
    records_ = [ex["record"] for ex in examples]
    lines = [f"{split}: {len(examples)} MRs (venues unseen in training); 95% intervals over seeds and MRs",
             "", "| system | seeds | BLEU | slot accuracy | SER |", "|---|---:|---|---|---:|"]
    for name, outputs in baselines(examples, train).items():
        lines.append(f"| baseline: {name} | — | {bleu_interval([outputs], references).text(1)} | "
                     f"{slot_interval([slot_scores(examples, outputs)]).text(3)} | "
                     f"{slot_error_rate(records_, outputs):.3f} |")
    for m in methods:
        runs = recorded(m, root)
        if not runs:
            lines.append(f"| {m} | 0 | not run | | |")
            continue
        outputs = [runs[s][split]["outputs"] for s in sorted(runs)]
        if any(len(o) != len(examples) for o in outputs):
            raise ValueError(f"{m}'s runs were scored on another {split} set than the one given; re-run them.")
        ser = sum(runs[s][split]["slot_error_rate"] for s in runs) / len(runs)
        lines.append(f"| {runs[min(runs)]['label']} | {len(runs)} | {bleu_interval(outputs, references).text(1)} | "
                     f"{slot_interval([runs[s][split]['scores'] for s in sorted(runs)]).text(3)} | {ser:.3f} |")
    return "\n".join(lines)


def samples(methods: Sequence[str], examples: Sequence[dict], train: Sequence[dict], indices: Sequence[int],
            split: str = "validation", root=None) -> str:
    """The MRs at ``indices`` rendered by a reference, every baseline and every method's seed-0 run, each output
    followed by its slot errors."""
    made = baselines([examples[i] for i in indices], train)
    runs = {m: recorded(m, root).get(0) for m in methods}
    width = max(len(n) for n in [*made, *(r["label"] for r in runs.values() if r), "reference"]) + 2
    blocks = []
    for j, i in enumerate(indices):
        ex = examples[i]
        rows = [("reference", marked(ex["record"], ex["references"][0]))]
        rows += [(name, marked(ex["record"], outputs[j])) for name, outputs in made.items()]
        rows += [(r["label"], marked(ex["record"], r[split]["outputs"][i])) for r in runs.values() if r]
        rows += [(m, "(no run on file)") for m, r in runs.items() if not r]
        blocks.append(f"MR {i}: {ex['meaning_representation']}\n"
                      + "\n".join(f"  {name:<{width}}{text}" for name, text in rows))
    return "\n\n".join(blocks)


def slot_error_breakdown(methods: Sequence[str], examples: Sequence[dict], train: Sequence[dict],
                         split: str = "validation", root=None) -> dict[str, dict[str, float]]:
    """Per system, per slot: the share of the MRs with that slot whose output gets it wrong (a method's seeds
    pooled). Names (``name``, ``near``) must be copied from the MR; every other slot has a few values seen in
    training."""
    from minitransformer.world.metrics import slot_errors

    def rates(outputs_per_seed) -> dict[str, float]:
        wrong, seen = {}, {}
        for outputs in outputs_per_seed:
            for ex, out in zip(examples, outputs):
                errors = set(slot_errors(ex["record"], out))
                for slot in ex["record"]:
                    seen[slot] = seen.get(slot, 0) + 1
                    wrong[slot] = wrong.get(slot, 0) + (slot in errors)
        return {slot: wrong[slot] / seen[slot] for slot in seen}

    table = {"baseline: nearest training reference": rates([baselines(examples, train)["nearest training reference"]])}
    for m in methods:
        runs = recorded(m, root)
        if runs:
            table[runs[min(runs)]["label"]] = rates([runs[s][split]["outputs"] for s in sorted(runs)])
    return table


def breakdown_table(table: dict[str, dict[str, float]]) -> str:
    from minitransformer.world.tasks import DATA_TO_TEXT_SLOTS

    lines = ["| system | " + " | ".join(DATA_TO_TEXT_SLOTS) + " |", "|---|" + "---:|" * len(DATA_TO_TEXT_SLOTS)]
    for system, rates in table.items():
        lines.append(f"| {system} | " + " | ".join(f"{rates[s]:.2f}" if s in rates else "—"
                                                  for s in DATA_TO_TEXT_SLOTS) + " |")
    return "\n".join(lines)


def _legend(split: str) -> str:
    return (f"{split} slot accuracy; 95% intervals over seeds and MRs; 'converged': seed 0 at twice the budget "
            "gains no more than the noise")


def _converged(test) -> str:
    """A doubled-budget test in a table cell."""
    return "yes" if test.converged else "no run at 2x" if test.doubled is None else "STILL LEARNING"


# (backbone, prefix method, full fine-tuning method): the same recipe on each shipped GPT, narrowest first.
SCALE_PAIRS = (("gpt_d16", "prefix_d16", "full_d16"), ("gpt_d32", "prefix_d32", "full_d32"), ("gpt", "prefix", "full"))


def scale_table(pairs: Sequence[tuple[str, str, str]] = SCALE_PAIRS, split: str = "validation", root=None) -> str:
    """Prefix ÷ full fine-tuning on each backbone: both slot accuracies and their ratio, 95% intervals over the seeds
    both have and the MRs, with each method's doubled-budget test (a row whose runs are missing says which)."""
    from experiments import protocol
    from experiments.data_to_text import TASK, epochs_of

    lines = [_legend(split), "",
             "| backbone | parameters | full fine-tuning | prefix tuning | prefix ÷ full | converged (full, prefix) |",
             "|---|---:|---|---|---|---|"]
    for backbone, prefix, full in pairs:
        runs = {m: recorded(m, root) for m in (full, prefix)}
        seeds = sorted(set(runs[full]) & set(runs[prefix]))
        if not seeds:
            missing = " and ".join(m for m in (full, prefix) if not runs[m]) or f"the same seeds of {full}, {prefix}"
            lines.append(f"| {backbone} | | not run: {missing} | | | |")
            continue
        vectors = {m: [runs[m][s][split]["scores"] for s in seeds] for m in (full, prefix)}
        tests = [protocol.convergence_of(TASK, m, epochs_of(m), runs[m], split=split, root=root) for m in (full, prefix)]
        converged = ", ".join(_converged(t) for t in tests)
        total = runs[full][seeds[0]].get("total")  # the backbone's parameters (full fine-tuning trains them all)
        lines.append(f"| {backbone} | {f'{total:,}' if total else '?'} | "
                     f"{paired_interval(vectors[full], statistic='value').text(3)} | "
                     f"{paired_interval(vectors[prefix], statistic='value').text(3)} | "
                     f"{paired_interval(vectors[prefix], vectors[full], statistic='ratio').text(3)} | {converged} |")
    return "\n".join(lines)


LENGTHS = ("prefix_p1", "prefix", "prefix_p20")  # the prefix-length claim's methods, shortest first


def length_table(methods: Sequence[str] = LENGTHS, split: str = "validation", root=None) -> str:
    """Each prefix length P: what it stores, its slot accuracy and its difference from the main prefix (95% intervals
    over the seeds both have and the MRs), and its doubled-budget test (a length without runs says so)."""
    from experiments import protocol
    from experiments.data_to_text import TASK, epochs_of, variant

    main = recorded("prefix", root)
    lines = [_legend(split), "",
             "| P | stored numbers | slot accuracy | − the main prefix (P = 10) | converged |", "|---:|---:|---|---|---|"]
    for method in methods:
        runs, length = recorded(method, root), variant(method).num_virtual_tokens
        if not runs:
            lines.append(f"| {length} | | not run: {method} | | |")
            continue
        seeds = sorted(runs)
        vector = [runs[s][split]["scores"] for s in seeds]
        shared = sorted(set(runs) & set(main))
        difference = ("—" if method == "prefix" or not shared else paired_interval(
            [runs[s][split]["scores"] for s in shared], [main[s][split]["scores"] for s in shared],
            statistic="difference").text(3))
        test = protocol.convergence_of(TASK, method, epochs_of(method), runs, split=split, root=root)
        converged = _converged(test)
        stored = runs[seeds[0]].get("stored")
        lines.append(f"| {length} | {f'{stored:,}' if stored else '?'} | {paired_interval(vector, statistic='value').text(3)}"
                     f" | {difference} | {converged} |")
    return "\n".join(lines)
