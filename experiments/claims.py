"""Every claim the course judges, in one place, with its threshold fixed before any run.

A claim names the paper and the paper's own number (printed beside ours), the task and
metric, the statistic (``ratio`` or ``difference`` of the method against a reference, or
the method's ``value``), the comparison and the threshold.  :func:`verdict_table` turns
the claims of a chapter into its verdict table, one short call in a lesson;
``python -m experiments verdicts`` prints every claim of the course.

One yardstick for "matches", "is competitive with" or "is enough" in every chapter:
**÷ reference ≥ 0.97** (within 3%, the gap the papers themselves call comparable: LoRA's
Table 2 puts BitFit at 0.986 and adapters at 0.977-0.988 of full FT on RoBERTa-base).
"""

from __future__ import annotations

from dataclasses import dataclass

from minitransformer.plots import METHOD_COLORS  # one colour per method, every chapter

MATCHES_FULL = 0.97  # "comparable to full fine-tuning": method ÷ full FT at least this
FAR_BELOW = 0.90  # "far below full fine-tuning": ÷ full FT at most this
FAR_ABOVE = 1.10  # "far better than a frozen model": ÷ frozen at least this
ENTITY_F1 = "validation entity F1 (exact span and type)"
SLOT_ACCURACY = "validation slot accuracy (share of each MR's attributes realised)"


@dataclass(frozen=True)
class Claim:
    id: str
    chapter: int
    statement: str  # the paper's claim, in one line
    paper: str  # where the paper says it
    paper_value: str  # the paper's own number, as comparable to ours as it gets
    task: str
    method: str
    reference: str | None  # the method it is compared with (None: statistic "value")
    statistic: str  # "ratio", "difference" or "value"
    comparison: str  # ">=" or "<=": the claim holds when the statistic is on this side of the threshold
    threshold: float
    metric: str = "validation accuracy"
    versus: tuple[str, str] | None = None  # statistic "ratio_gain": (method ÷ reference) − (versus[0] ÷ versus[1])

    @property
    def methods(self) -> list[str]:
        """Every method whose runs the claim reads, the claim's method first."""
        return [self.method] + ([self.reference] if self.reference else []) + list(self.versus or ())

    def epochs(self, method: str) -> int:
        """The method's final budget on the claim's task."""
        from experiments.tasks import task_module

        return task_module(self.task).epochs_of(method)

    def exact(self, method: str) -> bool:
        """Fit to convergence by construction (the L-BFGS linear probe, a hand-written prompt): no doubled run."""
        from experiments.tasks import task_module

        return task_module(self.task).exact(method)

    @property
    def rule(self) -> str:
        what = {"ratio": f"{self.method} ÷ {self.reference}", "difference": f"{self.method} − {self.reference}",
                "value": self.method,
                "ratio_gain": f"{self.method} ÷ {self.reference} − " + " ÷ ".join(self.versus or ("?", "?"))
                }[self.statistic]
        return f"{what} {self.comparison} {self.threshold:g}"


CLAIMS = [
    Claim("frozen.far_below_full", 2, "A frozen backbone with a new head is far below fine-tuning",
          "Ben Zaken et al. 2021 (BitFit), 'Frozen' baseline", "far below (no single number)",
          "sentiment", "frozen", "full", "ratio", "<=", FAR_BELOW),
    Claim("lora.matches_full", 3, "LoRA matches or beats full fine-tuning",
          "Hu et al. 2021 (LoRA), Table 2, RoBERTa-base GLUE avg", "87.2 / 86.4 = 1.009",
          "sentiment", "lora", "full", "ratio", ">=", MATCHES_FULL),
    Claim("lora.small_rank_enough", 3, "A small rank (r = 4-8) is enough",
          "Hu et al. 2021 (LoRA), Table 6, GPT-3", "r = 4-8 score like r = 64",
          "sentiment", "lora_r4", "lora_r16", "ratio", ">=", MATCHES_FULL),
    Claim("lora.rank_1_enough", 3, "Even r = 1 is enough for q and v",
          "Hu et al. 2021 (LoRA), Table 6, GPT-3, WikiSQL, Wq,Wv", "r = 1: 73.4, r = 8: 73.8 (÷ 0.995)",
          "sentiment", "lora_r1", "lora", "ratio", ">=", MATCHES_FULL),
    Claim("lora.alpha_is_a_learning_rate", 3, "With Adam, the choice of alpha is a choice of learning rate: "
          "with the rate swept, a fixed alpha does as well as alpha = 2r",
          "Hu et al. 2021 (LoRA), section 4.1", "'tuning alpha is roughly the same as tuning the learning rate' "
          "(no number)", "sentiment", "lora_r16_a16", "lora_r16", "ratio", ">=", MATCHES_FULL),
    Claim("lora.spread_over_matrices", 3, "The same parameter budget does better spread over q, k, v, o than in one matrix",
          "Hu et al. 2021 (LoRA), Table 5, GPT-3", "Wq,Wk,Wv,Wo r=2 beat Wq r=8",
          "sentiment", "lora_qkvo_r2", "lora_q_r8", "difference", ">=", 0.0),
    Claim("bitfit.competitive", 4, "BitFit is competitive with full fine-tuning on small and medium data",
          "Hu et al. 2021 (LoRA), Table 2, RoBERTa-base GLUE avg", "85.2 / 86.4 = 0.986",
          "sentiment", "bitfit", "full", "ratio", ">=", MATCHES_FULL),
    Claim("bitfit.beats_frozen", 4, "BitFit is far better than a frozen model",
          "Ben Zaken et al. 2021 (BitFit), Table 1", "far better (no single number)",
          "sentiment", "bitfit", "frozen", "ratio", ">=", FAR_ABOVE),
    Claim("bitfit.qi_close_to_all", 4, "Training only the query and FFN-intermediate biases gets close to all biases",
          "Ben Zaken et al. 2021 (BitFit), section 4", "close, with about 0.04% of the parameters",
          "sentiment", "bitfit_qi", "bitfit", "ratio", ">=", MATCHES_FULL),
    Claim("bitfit.beats_random_subset", 4, "The biases are special: as many parameters drawn at random do worse",
          "Ben Zaken et al. 2021 (BitFit), section 4 ('rand uniform')", "substantially worse on every GLUE task "
          "(no single number)", "sentiment", "bitfit", "bitfit_random", "difference", ">=", 0.0),
    Claim("adapters.competitive", 5, "Adapters land close to full fine-tuning",
          "Houlsby et al. 2019, GLUE test, BERT-large", "80.0 / 80.4 = 0.995 (3.6% of the parameters)",
          "sentiment", "adapters", "full", "ratio", ">=", MATCHES_FULL),
    Claim("adapters.beats_frozen", 5, "Training adapters inside the frozen model beats training a head on it",
          "the low baseline every PEFT paper assumes (BitFit's 'Frozen')", "better (no single number)",
          "sentiment", "adapters", "frozen", "ratio", ">=", 1.0),
    # Chapter 6: prompt tuning (Lester et al. 2021), read through a verbaliser after a template.
    Claim("prompt_tuning.learns", 6, "A soft prompt alone, on a frozen model, learns the task",
          "Lester et al. 2021, Figure 1", "well above chance at every T5 size",
          "sentiment", "prompt_tuning", "frozen", "ratio", ">=", 1.0),
    Claim("prompt_tuning.weak_on_small_models", 6, "On a small model, prompt tuning is far below fine-tuning",
          "Lester et al. 2021, Figure 1, T5-Small / T5-Base", "far below model tuning (parity only near 11B)",
          "sentiment", "prompt_tuning", "full", "ratio", "<=", FAR_BELOW),
    Claim("prompt_tuning.gap_closes_with_scale", 6, "The gap to fine-tuning closes as the model grows",
          "Lester et al. 2021, Figure 1", "T5-Small → XXL: from far below to parity",
          "sentiment", "prompt_tuning", "full", "ratio_gain", ">=", 0.0, versus=("prompt_tuning_d32", "full_d32")),
    Claim("prompt_tuning.label_init_beats_random", 6, "Initialising the prompt from the class labels beats random init",
          "Lester et al. 2021, Figure 3(b)", "class label > sampled vocab > random, largest gap on small models",
          "sentiment", "prompt_tuning", "prompt_tuning_random", "difference", ">=", 0.0),
    Claim("prompt_tuning.20_tokens_enough", 6, "About 20 prompt tokens are enough",
          "Lester et al. 2021, Figure 3(a)", "20 tokens about as good as 100-150 (beyond T5-Small)",
          "sentiment", "prompt_tuning", "prompt_tuning_p32", "ratio", ">=", MATCHES_FULL),
    # Chapter 7: P-tuning (Liu et al. 2021) on the knowledge probe, GPT backbone.
    Claim("p_tuning.beats_handwritten", 7, "Continuous prompts beat hand-written ones on knowledge probing",
          "Liu et al. 2021 (GPT Understands, Too), Table 1, LAMA", "P-tuning far above manual prompts, every model",
          "probe", "p_tuning", "handwritten", "difference", ">=", 0.0, metric="validation accuracy (probes)"),
    Claim("p_tuning.encoder_beats_plain", 7, "The LSTM prompt encoder beats training the vectors directly",
          "Liu et al. 2021, section 3 (reparameterisation)", "the encoder trains better (no single number)",
          "probe", "p_tuning", "p_tuning_none", "difference", ">=", 0.0, metric="validation accuracy (probes)"),
    Claim("p_tuning.anchors_help", 7, "An anchor word in the template helps",
          "Liu et al. 2021, section 3 (anchors, on RTE)", "helps where it marks a relation between inputs",
          "probe", "p_tuning_anchors", "p_tuning", "difference", ">=", 0.0, metric="validation accuracy (probes)"),
    # Chapter 8: prefix tuning (Li & Liang 2021) on data-to-text, every training MR, GPT backbone. The metric is
    # the slots an output gets right (its content), not BLEU: a template that names every slot scores what
    # fluent text that ignores the MR scores in BLEU (chapter 8 shows both, with intervals).
    Claim("prefix.matches_full", 8, "Prefix tuning is comparable to full fine-tuning on table-to-text (full data)",
          "Li & Liang 2021 (Prefix-Tuning), Table 1, E2E, GPT-2 medium", "BLEU 69.7 vs 68.2 (÷ 1.02)",
          "data_to_text", "prefix", "full", "ratio", ">=", MATCHES_FULL, metric=SLOT_ACCURACY),
    Claim("prefix.mlp_helps", 8, "Optimising the prefix directly, without the MLP, trains worse",
          "Li & Liang 2021, section 4.3 (reparametrization)", "unstable, a slight drop (no single number)",
          "data_to_text", "prefix_no_mlp", "prefix", "ratio", "<=", 1.0, metric=SLOT_ACCURACY),
    Claim("prefix.embedding_only_weaker", 8, "Tuning only the input embeddings (a prompt) is far weaker than a prefix",
          "Li & Liang 2021, Table 4 (E2E), EMB-10 against PREFIX", "BLEU 62.2 vs 70.3 (÷ 0.88)",
          "data_to_text", "prompt", "prefix", "ratio", "<=", FAR_BELOW, metric=SLOT_ACCURACY),
    # Low data: 100 training MRs, each method scored at its best epoch on validation loss (data_to_text.VARIANTS).
    Claim("prefix.low_data_better", 8, "In low-data settings prefix tuning beats fine-tuning",
          "Li & Liang 2021, section 6.3 and Figure 3 (E2E, 50 to 500 examples)", "+2.9 BLEU on average",
          "data_to_text", "prefix_low", "full_low", "difference", ">=", 0.0, metric=SLOT_ACCURACY),
    # Scale: the same recipe on the shipped d = 32 GPT against the main d = 128 one (chapter 6's test for prompts).
    Claim("prefix.gap_closes_with_scale", 8, "Prefix tuning keeps up with fine-tuning better as the model grows",
          "Li & Liang 2021, section 6.1 (GPT-2 medium → large)", "keeps pace at large; no single number",
          "data_to_text", "prefix", "full", "ratio_gain", ">=", 0.0, metric=SLOT_ACCURACY,
          versus=("prefix_d32", "full_d32")),
    # Prefix length: P = 10 (the main prefix) against P = 1 and P = 20, each at its own swept rate
    # (data_to_text.PREFIX_LENGTHS). The paper: "performance increases as the prefix length increases up to a threshold
    # (200 for summarization, 10 for table-to-text), and then a slight performance drop occurs".
    Claim("prefix.longer_helps", 8, "A longer prefix trains better, up to the threshold (P = 1 against P = 10)",
          "Li & Liang 2021, section 7.1 and Figure 4 (table-to-text)", "rises with the length up to 10 (no single number)",
          "data_to_text", "prefix", "prefix_p1", "difference", ">=", 0.0, metric=SLOT_ACCURACY),
    Claim("prefix.no_gain_past_threshold", 8, "Past the threshold a longer prefix no longer helps (P = 20 against 10)",
          "Li & Liang 2021, section 7.1 and Figure 4 (table-to-text)", "a slight drop past 10 (no single number)",
          "data_to_text", "prefix_p20", "prefix", "difference", "<=", 0.0, metric=SLOT_ACCURACY),
    # Chapter 9: P-tuning v2 (Liu et al. 2022) on NER, entity F1 (experiments/ner.py); BERT unless the method says GPT.
    Claim("p_tuning_v2.matches_full_ner", 9, "Deep prompts match fine-tuning on sequence labelling (NER)",
          "Liu et al. 2022 (P-Tuning v2), Table 3, CoNLL03", "within about a point of fine-tuning on RoBERTa-large "
          "and DeBERTa-xlarge", "ner", "p_tuning_v2", "full", "ratio", ">=", MATCHES_FULL, metric=ENTITY_F1),
    Claim("p_tuning_v2.matches_full_ner_gpt", 9, "... on a GPT backbone too (across model types)",
          "Liu et al. 2022, section 4 (GLM, BERT, RoBERTa, DeBERTa)", "comparable across backbones (no single number)",
          "ner", "p_tuning_v2_gpt", "full_gpt", "ratio", ">=", MATCHES_FULL, metric=ENTITY_F1),
    Claim("p_tuning_v2.far_above_frozen", 9, "Deep prompts are far better than a frozen model with a trained head",
          "Liu et al. 2022, Table 3 (the frozen-backbone methods they improve on)", "no single number",
          "ner", "p_tuning_v2", "frozen", "ratio", ">=", FAR_ABOVE, metric=ENTITY_F1),
    Claim("p_tuning_v2.beats_prompt_tuning_ner", 9, "Deep prompts beat a prompt at the input only on NER",
          "Liu et al. 2022, Table 3, CoNLL03, BERT-large", "PT-2 far above PT (no verbaliser can tag tokens)",
          "ner", "p_tuning_v2", "prompt_tuning", "difference", ">=", 0.0, metric=ENTITY_F1),
    # Chapter 11: LoRA's descendants, each against plain LoRA in chapter 3's setting (q, v, r = 8, alpha = 16; rsLoRA
    # at r = 16 against LoRA at r = 16, the same alpha = 32), each at its own swept rate. "Beats" is a difference of
    # accuracies >= 0, as for chapter 3's spread_over_matrices.
    Claim("dora.beats_lora", 11, "DoRA (a trained magnitude per output feature, LoRA on the direction) beats LoRA",
          "Liu et al. 2024 (DoRA), Table 1, LLaMA-7B, commonsense reasoning avg", "78.4 vs 74.7: +3.7 points",
          "sentiment", "dora", "lora", "difference", ">=", 0.0),
    Claim("rslora.beats_lora_at_r16", 11, "At the same rank and alpha, the scale alpha/sqrt(r) trains better than alpha/r",
          "Kalajdzievski 2023 (rsLoRA), fine-tuning across ranks at one learning rate",
          "higher ranks help with alpha/sqrt(r), not with alpha/r (no single number)",
          "sentiment", "rslora_r16", "lora_r16", "difference", ">=", 0.0),
    Claim("pissa.beats_lora", 11, "Starting A and B from W's principal singular vectors, the rest frozen, beats LoRA",
          "Meng et al. 2024 (PiSSA), abstract (NeurIPS), Gemma-7B on GSM8K", "77.7 vs 74.53: +3.2 points",
          "sentiment", "pissa", "lora", "difference", ">=", 0.0),
    Claim("lora_plus.beats_lora", 11, "B at 2^4 times A's learning rate beats one rate for both",
          "Hayou et al. 2024 (LoRA+), abstract", "1-2% better than LoRA, up to about 2x faster (no single number)",
          "sentiment", "lora_plus", "lora", "difference", ">=", 0.0),
    # Chapter 12: QLoRA against chapter 3's LoRA on the float32 base, with the course's one yardstick for "matches".
    Claim("qlora.matches_lora", 12, "LoRA on an NF4 + double-quantised base matches LoRA on the full-precision base",
          "Dettmers et al. 2023 (QLoRA), Table 3, mean 5-shot MMLU of LLaMA 7B-65B", "BF16 53.0, NF4 + DQ 53.1",
          "sentiment", "qlora", "lora", "ratio", ">=", MATCHES_FULL),
]
BY_ID = {c.id: c for c in CLAIMS}


def claims_of(chapter: int | None = None) -> list[Claim]:
    found = [c for c in CLAIMS if chapter is None or c.chapter == chapter]
    if chapter is not None and not found:
        chapters = sorted({c.chapter for c in CLAIMS})
        raise ValueError(f"No registered claim for chapter {chapter}; chapters with claims: {chapters}.")
    return found


def verdicts(chapter: int | None = None, *, root=None) -> list:
    """The verdict of every claim of ``chapter`` (every chapter for None)."""
    from experiments.protocol import judge

    return [judge(c, root=root) for c in claims_of(chapter)]


def verdict_table(chapter: int | None = None, *, root=None, markdown: bool = False) -> str:
    """The chapter's verdict table: claim, paper's number, ours with its 95% interval, rule, outcome.

    Below it, the convergence record of every method the claims read.
    """
    rows = []
    notes: dict[tuple[str, str], str] = {}  # keyed by task too: "full" at NER is not "full" at sentiment
    for v in verdicts(chapter, root=root):
        c = v.claim
        ours = v.interval.text() if v.interval is not None else \
            f"{v.point:.3f} (one seed)" if v.point is not None else "—"
        seeds = f"{len(v.seeds)}" if v.seeds else "0"
        rows.append((c.id, c.paper_value, ours, seeds, c.rule, v.outcome))
        for conv in v.convergence:
            notes.setdefault((c.task, conv.method), conv.text())
        for sweep in v.sweeps:
            notes.setdefault((c.task, f"{sweep.method} lr"), sweep.text())
        if v.interval is None and v.reason:
            notes.setdefault((c.task, c.id), f"{c.id}: {v.reason}")
    several_tasks = len({task for task, _ in notes}) > 1
    notes = {key: f"{key[0]}, {text}" if several_tasks else text for key, text in notes.items()}
    header = ("claim", "paper", "ours [95% interval]", "seeds", "rule", "outcome")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        if notes:
            lines += ["", "Convergence (seed 0 at twice the budget), learning-rate sweeps, and claims without a verdict:", ""]
            lines += [f"- {text}" for text in notes.values()]
        return "\n".join(lines)
    else:
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in rows]
    if notes:
        lines += ["", "convergence (seed 0 at twice the budget: converged if the gain is within the method's noise), "
                      "learning-rate sweeps, and claims without a verdict:"]
        lines += [f"  {text}" for text in notes.values()]
    return "\n".join(lines)




def missing_runs(chapter: int, *, root=None) -> list[str]:
    """What the chapter's verdicts still lack, as the commands that make it ([] when every run is on file).

    A method needs three seeds at its final budget and seed 0 at twice it. A method with no sweep at all gets a
    sweep on the grid of its family's sweep (a LoRA variant: LoRA's); one whose sweep chose a rate at the grid's
    edge gets the runner's own reason and the rate to add; then one `run` command for every method short of runs.
    """
    from experiments import records
    from experiments.protocol import DOUBLED, SEEDS
    from experiments.sweeps import sentiment_sweep_check
    from experiments.tasks import swept_rate, task_module

    lines, short = [], {}
    for c in claims_of(chapter):
        module = task_module(c.task)
        for m in c.methods:
            epochs = c.epochs(m)
            complete = len(records.load_runs(c.task, m, epochs, SEEDS, root)) == len(SEEDS) and (
                c.exact(m) or records.load_run(c.task, m, DOUBLED * epochs, 0, root) is not None)
            if complete or m in short.get(c.task, ()):
                continue
            short.setdefault(c.task, []).append(m)
            if c.exact(m):
                continue
            check = sentiment_sweep_check(m, epochs, None, root) if c.task == "sentiment" else \
                module.sweep_check(m, epochs, None)
            if not check.grid:
                family = getattr(module.known_methods()[m], "lr_key", m)  # a variant borrows its family's grid
                grid = sorted(r["lr"] for r in records.load_sweep(c.task, family, epochs, root))
                rates = " ".join(f"{lr:g}" for lr in grid) or "... (a grid of rates about 3x apart)"
                lines.append(f"python -m experiments sweep {c.task} --methods {m} --lrs {rates}")
                continue
            try:
                swept_rate(c.task, m, check)
            except ValueError as exc:  # swept, but the best rate sits at the grid's edge
                lines.append(f"# {exc}")
    for task, methods in short.items():
        lines.append(f"python -m experiments run {task} --methods {' '.join(methods)}")
    return lines


def curve_label(task: str) -> str:
    """What a run record's ``curve`` holds for this task (the task module's ``CURVE``, else its ``METRIC``)."""
    from experiments.tasks import task_module

    module = task_module(task)
    return getattr(module, "CURVE", getattr(module, "METRIC", "validation accuracy"))


def plot_convergence(chapter: int, *, root=None, ax=None):
    """Validation accuracy after each epoch of seed 0, at the final budget (solid) and at twice it (dashed),
    for every method the chapter's claims read: the picture behind the convergence test.

    The x axis is the fraction of the run's own budget, so both schedules (warmup, then linear decay to 0)
    line up: a method has converged when the dashed curve ends no higher than the solid one, within noise.
    """
    import matplotlib.pyplot as plt

    from experiments import records
    from experiments.protocol import DOUBLED

    from matplotlib.colors import to_hex

    ax = ax or plt.subplots(figsize=(6.5, 3.6))[1]
    taken = {to_hex(c) for c in METHOD_COLORS.values()}
    spare = iter(c for c in plt.get_cmap("Dark2").colors + plt.get_cmap("tab20b").colors
                 if to_hex(c) not in taken)  # for the variants: colours no method owns
    methods = {}  # method -> the claim that reads it (its task and budget)
    for c in claims_of(chapter):
        for m in c.methods:
            if m not in methods and not c.exact(m):
                methods[m] = c
    colors = {m: METHOD_COLORS.get(m) or next(spare) for m in methods}
    for m, claim in methods.items():
        epochs = claim.epochs(m)
        for budget, style in ((1, "-"), (DOUBLED, "--")):
            run = records.load_run(claim.task, m, budget * epochs, 0, root)
            if run is None or not run["curve"]:
                continue
            curve = run["curve"]
            x = [(i + 1) / len(curve) for i in range(len(curve))]
            ax.plot(x, curve, style, color=colors[m], label=f"{m}, {budget * epochs} epochs")
    metrics = {curve_label(c.task) for c in methods.values()}
    ax.set(xlabel="fraction of the run's budget", ylabel=" / ".join(sorted(metrics)) or "validation accuracy",
           title="Seed 0: budget and twice it")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_validation_curves(methods, *, task: str = "sentiment", root=None, ax=None):
    """Validation accuracy after each epoch of every recorded seed of each method at its final budget (thin
    lines) and their mean (thick): the numbers the verdicts read, as they grew. Training loss says whether a
    method fits its training set; these curves say whether that carried over to reviews it never saw."""
    import matplotlib.pyplot as plt

    from experiments import records
    from experiments.protocol import SEEDS
    from experiments.tasks import task_module

    ax = ax or plt.subplots(figsize=(6.5, 3.6))[1]
    module = task_module(task)
    for m in methods:
        epochs = module.epochs_of(m)
        curves = [r["curve"] for r in records.load_runs(task, m, epochs, SEEDS, root).values() if r.get("curve")]
        if not curves:
            continue
        color = METHOD_COLORS.get(m)
        x = range(1, len(curves[0]) + 1)
        for curve in curves:
            ax.plot(x, curve, color=color, lw=0.7, alpha=0.45)
        mean = [sum(values) / len(values) for values in zip(*curves)]
        ax.plot(x, mean, color=color, lw=2, label=f"{m} ({len(curves)} seeds, {epochs} epochs)")
    metric = curve_label(task)
    ax.set(xlabel="epoch", ylabel=metric, title=f"{metric[0].upper()}{metric[1:]} per epoch: seeds and mean")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def convergence_report(methods=None, *, task: str = "sentiment", root=None) -> str:
    """The convergence test of each method (default: the methods the task's claims read), one line each."""
    from experiments import records
    from experiments.protocol import SEEDS, convergence_of
    from experiments.tasks import task_module

    module = task_module(task)
    lines = []
    for m in methods or getattr(module, "MAIN_METHODS", None) or module.claimed_methods():
        epochs = module.epochs_of(m)
        runs = records.load_runs(task, m, epochs, SEEDS, root)
        if not runs:
            lines.append(f"{m}: no recorded runs (python -m experiments run {task})")
            continue
        lines.append(convergence_of(task, m, epochs, runs, exact=not epochs, root=root).text())
    return "\n".join(lines)


def readme_with_verdicts(readme_text: str, *, root=None) -> str:
    """README with its verdict section replaced by the markdown verdict table of every claim."""
    from experiments.results_io import VERDICTS_END, VERDICTS_START, fill_readme_section

    return fill_readme_section(readme_text, VERDICTS_START, VERDICTS_END, verdict_table(markdown=True, root=root) + "\n")
