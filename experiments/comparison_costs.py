"""Chapter 10's costs, measured on the real tensors: parameters, memory, step time, latency and file size."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Callable

import torch

from minitransformer import recipes
from minitransformer.training import progress_bar

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
SEEDS = (0, 1, 2)

# ----------------------------------------------------------------------------- costs, measured on the real tensors
# The methods of the table, in the order of the course, and what each one is on each task (None: does not apply).
# Chapters 11 and 12 (LoRA's descendants, QLoRA) are judged on sentiment only, where their protocol runs are.
LORA_DESCENDANTS = ("dora", "rslora_r16", "pissa", "lora_plus", "qlora")
METHODS = ("full", "frozen", "bitfit", "adapters", "lora", "lora_merged", "prompt_tuning", "p_tuning", "prefix_tuning",
           "p_tuning_v2", *LORA_DESCENDANTS)
LABELS = {"full": "full fine-tuning", "frozen": "frozen + head", "bitfit": "BitFit", "adapters": "adapters m=8",
          "lora": "LoRA r=8", "lora_merged": "LoRA r=8, merged", "prompt_tuning": "prompt tuning",
          "p_tuning": "P-tuning", "prefix_tuning": "prefix tuning", "p_tuning_v2": "P-tuning v2",
          "dora": "DoRA r=8", "rslora_r16": "rsLoRA r=16", "pissa": "PiSSA r=8", "lora_plus": "LoRA+ r=8",
          "qlora": "QLoRA r=8 (NF4 base)"}
TASKS = ("sentiment", "ner", "data_to_text", "probe")
TASK_LABELS = {"sentiment": "sentiment (GPT, accuracy)", "ner": "NER (BERT, entity F1)",
               "data_to_text": "data-to-text (GPT, slot accuracy)", "probe": "knowledge probe (GPT, accuracy)"}
# Each task's key of each method in its chapter's benchmark file.
NER_NAMES = {"full": "full", "frozen": "frozen", "bitfit": "bitfit", "adapters": "adapters", "lora": "lora",
             "prompt_tuning": "prompt_tuning", "p_tuning": "p_tuning", "prefix_tuning": "p_tuning_v2_mlp",
             "p_tuning_v2": "p_tuning_v2"}
D2T_NAMES = {"full": "full", "bitfit": "bitfit", "adapters": "adapters", "lora": "lora", "prompt_tuning": "prompt",
             "prefix_tuning": "prefix", "p_tuning_v2": "prefix_no_mlp"}
PROBE_NAMES = {"frozen": None, "prompt_tuning": "NONE", "p_tuning": "LSTM"}  # frozen: the best hand-written prompt


def definition(task: str, method: str) -> str:
    """What the row (task, method) is exactly: the module, its size and its readout. One label names a family, and the
    tasks were built by different chapters, so a label can mean different models on different tasks (prefix tuning is
    chapter 9's deep prompt with an MLP on sentiment and NER, chapter 8's `PrefixTuningModel` on data-to-text); this
    says what differs, and the table prints it."""
    from experiments.bench_data_to_text import RECIPE as D2T
    from experiments.bench_prompt_tuning import PT_RUNS
    from experiments.methods import PT_TEMPLATE, PTV2_LENGTH

    if not applies(task, method):
        raise ValueError(f"{method!r} does not apply to {task!r}; the methods of {task!r}: "
                         f"{[m for m in METHODS if applies(task, m)]}")
    base = "lora" if method == "lora_merged" else method
    head = {"sentiment": "a new classification head on the last token", "ner": "a new token-classification head",
            "data_to_text": "the frozen LM head (tied to the embeddings) generates", "probe": "the frozen LM head"}[task]
    p2 = D2T["num_virtual_tokens"]
    lora = D2T["lora"] if task == "data_to_text" else {"r": 8, "lora_alpha": 16}  # experiments.methods._lora()
    common = {
        "full": f"every weight trains, and {head}" if task != "data_to_text" else "every weight trains, the tied LM "
                                                                                   "head with the embeddings",
        "frozen": f"only {head} trains" if task != "probe" else "no training: the best hand-written prompt per relation",
        "bitfit": f"every bias of the backbone (chapter 4) and {head}",
        "adapters": f"bottleneck adapters m=8 after attention and MLP, the LayerNorms (chapter 5), and {head}",
        "lora": f"LoRA on q_proj, v_proj, r={lora['r']}, lora_alpha={lora['lora_alpha']} (chapter 3"
                + ("; merged into W0 for serving" if method == "lora_merged" else "") + f"), and {head}",
        "dora": f"chapter 11's DoRA: LoRA q_proj, v_proj r=8 on the direction and a magnitude per output feature "
                f"(use_dora), and {head}",
        "rslora_r16": f"chapter 11's rsLoRA: LoRA q_proj, v_proj r=16, lora_alpha=32, scaled by alpha/sqrt(r) "
                      f"(use_rslora), and {head}",
        "pissa": f"chapter 11's PiSSA: LoRA q_proj, v_proj r=8 started from W's top-8 singular vectors, the residual "
                 f"frozen (init_lora_weights=\"pissa\"), and {head}",
        "lora_plus": f"chapter 11's LoRA+: chapter 3's LoRA with B trained at {_loraplus_ratio()}x A's rate, "
                     f"and {head}",
        "qlora": f"chapter 12's QLoRA: chapter 3's LoRA on a base whose linear layers are stored in NF4 with double "
                 f"quantisation (dequantised to float32 in each forward pass), and {head}",
    }
    if base in common:
        return common[base]
    per_task = {
        ("sentiment", "prompt_tuning"): f"chapter 6: {PT_RUNS['gpt_text_3x_epochs'].num_virtual_tokens} input "
                                        f"vectors initialised from the label words, the class read by the LM head "
                                        f"after \"{PT_TEMPLATE.strip()}\" (no new head)",
        ("sentiment", "p_tuning"): "chapter 7: 3 + 3 input vectors around the review from an LSTM + MLP encoder "
                                   "(dropped for serving), the class read by the LM head (no new head)",
        ("ner", "prompt_tuning"): f"chapter 9 at input depth: {PTV2_LENGTH} input vectors (sampled-vocabulary "
                                  f"init), and {head}",
        ("ner", "p_tuning"): f"chapter 9 at input depth: {PTV2_LENGTH} input vectors from an LSTM + MLP encoder "
                             f"(hidden 128, dropped for serving), and {head}",
        ("data_to_text", "prompt_tuning"): f"chapter 8's embedding-only prefix: {p2} input vectors, trained "
                                           f"directly, {head}",
        ("probe", "prompt_tuning"): "chapter 7 without an encoder: the template's vectors trained directly",
        ("probe", "p_tuning"): "chapter 7: the template's vectors from an LSTM + MLP encoder (dropped for serving)",
    }
    if (task, base) in per_task:
        return per_task[task, base]
    if task == "data_to_text":  # chapter 8's PrefixTuningModel
        mlp = f"from an MLP (hidden {D2T['encoder_hidden_size']}, dropped for serving)" if base == "prefix_tuning" \
            else "trained directly (no MLP)"
        return f"chapter 8's PrefixTuningModel: {p2} keys and values per layer {mlp}, {head}"
    mlp = "from an MLP (hidden 128, dropped for serving)" if base == "prefix_tuning" else "trained directly (no MLP)"
    return f"chapter 9's deep prompt: {PTV2_LENGTH} keys and values per layer {mlp}, and {head}"


def _loraplus_ratio() -> float:
    from experiments.methods import LORAPLUS_LR_RATIO

    return LORAPLUS_LR_RATIO


def applies(task: str, method: str) -> bool:
    base = "lora" if method == "lora_merged" else method
    return base in {"sentiment": METHODS, "ner": NER_NAMES, "data_to_text": D2T_NAMES, "probe": PROBE_NAMES}[task]


def sentiment_adapter(method: str) -> Callable:
    """The function that turns a fresh sentiment classifier (recipes.fresh_classifier) into `method`'s model, as
    its chapter does: in place for the methods that keep the classifier, or around its backbone for the
    verbaliser methods (prompt tuning, P-tuning), which read the frozen LM head instead of a new one."""
    from experiments.bench_prompt_tuning import PT_RUNS, prompt_tuning_config
    from experiments.methods import METHODS as SENTIMENT_METHODS, NER_METHODS
    from minitransformer import load_pretrained

    base = "lora" if method == "lora_merged" else method
    if base == "full":
        return lambda model: model
    if base == "frozen":
        return _head_only
    if base in ("bitfit", "adapters", "lora"):
        return SENTIMENT_METHODS[base].prepare
    if base in LORA_DESCENDANTS:
        from experiments.methods import ALL_METHODS

        return ALL_METHODS[base].prepare
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


@functools.lru_cache(maxsize=None)
def _first_batch(task: str, seed: int) -> dict:
    """The first training batch of the task's loaders, the same for every method: a shuffling loader gives another
    batch (and another padded length) on every new iteration, which would make methods' costs incomparable."""
    return next(iter(_setup(task, seed).train_loader))


def build(task: str, method: str, seed: int = 0):
    """(the model `method` trains on `task`, a training batch of 32, the task's base model) on fresh weights."""
    from experiments.methods import NER_METHODS
    from minitransformer.world import load_task

    base = "lora" if method == "lora_merged" else method
    if task == "sentiment":
        setup = _setup(task, seed)
        batch = _first_batch(task, seed)
        reference = recipes.fresh_classifier(seed=seed)
        model = sentiment_adapter(method)(recipes.fresh_classifier(seed=seed))
        if base == "p_tuning":  # its own loader: the template around the review
            from solutions.p_tuning import cloze_loader

            train = load_task("sentiment").train[:32]
            batch = next(iter(cloze_loader(train, setup.tokenizer, "text", [ex["label"] for ex in train],
                                           batch_size=32)))
    elif task == "ner":
        setup = _setup(task, seed)
        batch, reference = _first_batch(task, seed), recipes.fresh_tagger(setup, seed=seed)
        model = NER_METHODS[NER_NAMES[base]].prepare(recipes.fresh_tagger(setup, seed=seed))
    elif task == "data_to_text":
        from experiments.bench_data_to_text import RECIPE, build as build_d2t
        from minitransformer.data_to_text import data_to_text_loader

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


@torch.no_grad()
def deploy(model):
    """The model as it is served after training (in place): what only helped training is gone, and every output
    is unchanged. P-tuning drops its prompt encoder (`export_prompt`), prefix tuning its MLP (`drop_prefix_mlp`),
    and a deep or input prompt made by an encoder (an MLP, or an LSTM then an MLP) becomes the table that
    encoder computes. A prefix with no MLP is already its table and stays as it is: an embedding-only one (prompt
    tuning) keeps its P input vectors, not the P x L*2*d keys and values the frozen layers make from them."""
    import torch.nn as nn
    from solutions.p_tuning_v2 import DeepPrompt, InputPrompt
    from solutions.prefix_tuning import PrefixTuningModel, drop_prefix_mlp

    if hasattr(model, "export_prompt") and getattr(model, "prompt_encoder", None) is not None:
        model.export_prompt()
    if isinstance(model, PrefixTuningModel) and model.peft_config.prefix_projection:
        drop_prefix_mlp(model)
    for module in list(model.modules()):
        if isinstance(module, DeepPrompt) and module.transform is not None:
            table = module.transform(module.embedding.weight)  # (P, L*2*d)
            module.embedding, module.transform = nn.Embedding.from_pretrained(table.clone(), freeze=False), None
        elif isinstance(module, InputPrompt) and (module.lstm is not None or module.mlp is not None):
            table = module(1)[0]  # (P, d)
            module.embedding = nn.Embedding.from_pretrained(table.clone(), freeze=False)
            module.lstm = module.mlp = None
    return model


def stored_tensors(model, method: str) -> dict[str, torch.Tensor]:
    """What one task needs on disk after training: every weight for full fine-tuning; otherwise the trainable
    tensors of the deployed model (:func:`deploy`: P-tuning without its encoder, prefix tuning without its MLP)."""
    from minitransformer.peft import trainable_state_dict

    if method == "full":
        return {n: p.detach().contiguous() for n, p in model.named_parameters()}
    return {k: v.detach().contiguous() for k, v in trainable_state_dict(deploy(model)).items()}


def file_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Size of the safetensors file holding `tensors`."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "task.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        return path.stat().st_size


def quantised_weights(model) -> tuple[int, int]:
    """(numbers, bytes) of the weights `model` stores in 4 bits (chapter 12's Linear4bit): each layer's
    out_features x in_features numbers, and the bytes of its packed indices and quantisation state (the code tables
    every layer shares counted once). (0, 0) for a model without 4-bit layers."""
    from solutions.qlora import Linear4bit

    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    storages = {b.untyped_storage().data_ptr(): b.untyped_storage().nbytes()
                for m in layers for b in m.buffers(recurse=False) if b is not None}
    return sum(m.in_features * m.out_features for m in layers), sum(storages.values())


ROUNDS = 10  # timing rounds per measurement (the interleaved rounds of measure.compare_latency)


def _rows(batch: dict, n: int) -> dict:
    return {k: v[:n] for k, v in batch.items()}


def _logits(output) -> torch.Tensor:
    """The logits of any of the course's models' outputs (a ModelOutput, a ClozeOutput, or a tensor)."""
    return output if torch.is_tensor(output) else output.logits


def measure_costs(task: str, method: str, min_run_time: float = 0.03, seed: int = 0, timings: bool = True) -> dict:
    """Trainable parameters, training-state memory, the activations a training step keeps, seconds per training
    step; then the model is deployed (:func:`deploy`, outputs checked unchanged), its stored numbers and file size
    counted, and its forward pass (batch 1 and 32) timed against the task's base model. Every clock reading is a short
    measurement of `min_run_time` seconds, repeated over ROUNDS. `timings=False` skips the clocks and keeps the
    exact measurements (counts and bytes)."""
    from solutions.lora import merge_lora

    from minitransformer.measure import activation_memory, compare_latency, measure_latency, training_state_memory
    from minitransformer.training import count_parameters

    torch.manual_seed(seed)
    model, batch, reference = build(task, method, seed)
    trainable, total = count_parameters(model)
    quantised_numbers, quantised_bytes = quantised_weights(model)
    total += quantised_numbers  # QLoRA's 4-bit weights are buffers, not parameters: still numbers of the model
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
        if quantised_bytes:  # the frozen 4-bit weights (and their scales) hold the base model: counted with it
            out["memory"]["parameters"] += quantised_bytes
            out["memory"]["total"] += quantised_bytes
        # Activations kept for the backward pass at the training batch: the memory a PEFT method does not save
        # by freezing weights, since the gradient still flows through every frozen layer above a trainable one.
        out["activation_bytes"] = activation_memory(model, lambda: model(**batch).loss)
        out["step_seconds"] = min(measure_latency(step, min_run_time, num_threads=1)
                                  for _ in range(ROUNDS)) if timings else None
        optimizer.zero_grad(set_to_none=True)
        del optimizer
    else:  # nothing trains (the probe's hand-written prompt): only the frozen weights
        out["memory"] = training_state_memory(model, torch.optim.AdamW([torch.zeros(1, requires_grad=True)]))
        out["memory"]["optimizer_state"] = 0
        out["memory"]["total"] = out["memory"]["parameters"]
        out["step_seconds"] = None
        out["activation_bytes"] = 0
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels" or task == "probe" or method in ("p_tuning",)}
    with torch.no_grad():
        trained_form = _logits(model(**_rows(inputs, 4)))
        tensors = stored_tensors(model, method)  # deploys the model: what serves is what is timed
        assert torch.allclose(_logits(model(**_rows(inputs, 4))), trained_form, atol=1e-5), \
            f"{task} {method}: deploying changed the outputs"
    out["stored_parameters"] = sum(t.numel() for t in tensors.values())
    out["file_bytes"] = file_bytes(tensors)
    if method == "lora_merged":
        merge_lora(model)
    reference.eval()
    with torch.no_grad():
        for n in ((1, 32) if timings else ()):
            # In turns with the base model; the median of the within-round ratios (measure.compare_latency).
            latency = compare_latency({"base_": lambda: reference(**_rows(inputs, n)),
                                       "": lambda: model(**_rows(inputs, n))}, rounds=ROUNDS, min_run_time=min_run_time)
            for name, seconds in latency.seconds.items():
                out[f"{name}latency_b{n}"] = seconds
            out[f"latency_b{n}_vs_base"] = latency.ratio[""]
    return out


def measure_all_costs(tasks=TASKS, min_run_time: float = 0.03, progress: bool = True) -> list[dict]:
    cells = [(t, m) for t in tasks for m in METHODS if applies(t, m)]
    return [measure_costs(t, m, min_run_time) for t, m in progress_bar(cells, desc="costs", unit="cell", disable=not progress)]

