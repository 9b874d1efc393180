"""The methods the benchmarks run, declared once: each as a `prepare(model) -> model` that chooses what trains.

A method is applied with the configuration its chapter teaches, from the reference solutions
(`solutions/`, generated from the lessons). `METHODS` are the sentiment benchmark's main configurations,
`ABLATIONS` the chapters' variants, `PROMPT_TUNING_METHODS` chapter 6's and `CONTROLS` the papers' controls (both
judged by the protocol only),
`NER_METHODS` the sequence-labelling runs (chapters 9-10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


from experiments.controls import random_subset
from minitransformer import recipes


@dataclass(frozen=True)
class Method:
    name: str  # the key in the results
    label: str  # what the tables print
    prepare: Optional[Callable] = None  # model -> model, choosing what trains; None for the frozen probe
    family: str = ""  # the LEARNING_RATES key (default: name)
    backbone: str = recipes.BACKBONE  # the pretrained checkpoint it adapts
    template: Optional[str] = None  # text after each review instead of [EOS] (a verbaliser reads the next word)

    @property
    def lr_key(self) -> str:
        return self.family or self.name


def _lora(r: int = 8, targets: tuple = ("q_proj", "v_proj"), alpha: Optional[int] = None):
    """Chapter 3's LoRA; lora_alpha = 2r (the course's rule) unless `alpha` fixes it."""
    def prepare(model):
        from solutions.lora import LoraConfig, inject_lora

        config = LoraConfig(r=r, lora_alpha=2 * r if alpha is None else alpha, target_modules=list(targets))
        return inject_lora(model, config, verbose=False)

    return prepare


def _bitfit(subsets: tuple = ("all",)):
    def prepare(model):
        from solutions.bitfit import apply_bitfit

        return apply_bitfit(model, list(subsets), verbose=False)

    return prepare


def _adapters(bottleneck_size: int = 8):
    def prepare(model):
        from solutions.adapters import AdapterConfig, inject_adapters

        return inject_adapters(model, AdapterConfig(bottleneck_size=bottleneck_size), verbose=False)

    return prepare


# Prompt tuning (chapter 6) reads the class from the frozen LM head after a template: no task head at all.
PT_TEMPLATE = " Overall, it was a"  # the reviews' own verdict phrasing ("Overall, it was a good evening")
PT_VERBALIZER = [" bad", " good"]  # label words of classes 0 and 1; each one token
PT_INIT_TEXT = " bad good"  # "class-label" init (TEXT): the label words, repeated to fill the prompt
PT_MAX_PROMPT = 32  # the context left: max_seq_len 128 - inputs truncated to 96 tokens


def _prompt_tuning(num_virtual_tokens: int = 20, init: str = "TEXT"):
    def prepare(model):
        import torch

        from minitransformer.checkpoint import CHECKPOINT_DIR
        from minitransformer.tokenizer import load_tokenizer
        from solutions.prompt_tuning import PromptTuningClassifier, PromptTuningConfig

        tokenizer = load_tokenizer(CHECKPOINT_DIR / "tokenizer.json")  # every backbone of the ladder shares it
        config = PromptTuningConfig(num_virtual_tokens=num_virtual_tokens, prompt_tuning_init=init,
                                    prompt_tuning_init_text=PT_INIT_TEXT if init == "TEXT" else None,
                                    verbalizer=PT_VERBALIZER,
                                    init_seed=torch.initial_seed())  # the run's seed (fresh_classifier set it)
        return PromptTuningClassifier(model.backbone, tokenizer, config)

    return prepare


# The main configuration of every method: the chapters' headline runs.
METHODS = {m.name: m for m in [
    Method("full", "full fine-tuning", lambda model: model),
    Method("frozen", "frozen probe"),
    Method("lora", "LoRA q,v r=8", _lora()),
    Method("bitfit", "BitFit (all biases)", _bitfit()),
    Method("adapters", "adapters m=8", _adapters()),
]}

# The chapters' ablations, at their family's learning rate (seed 0).
ABLATIONS = {m.name: m for m in [
    Method("lora_r1", "LoRA q,v r=1", _lora(1), "lora"),
    Method("lora_r4", "LoRA q,v r=4", _lora(4), "lora"),
    Method("lora_r16", "LoRA q,v r=16", _lora(16), "lora"),
    Method("lora_q_r8", "LoRA q r=8", _lora(8, ("q_proj",)), "lora"),
    Method("lora_qkvo_r2", "LoRA q,k,v,o r=2", _lora(2, ("q_proj", "k_proj", "v_proj", "out_proj")), "lora"),
    Method("bitfit_qi", "BitFit query+intermediate", _bitfit(("query", "intermediate")), "bitfit"),
    Method("adapters_m2", "adapters m=2", _adapters(2), "adapters"),
    Method("adapters_m32", "adapters m=32", _adapters(32), "adapters"),
    Method("full_bert", "full fine-tuning, BERT-mode backbone", lambda model: model, "full", backbone="bert"),
]}
# Chapter 6: prompt tuning, its init and length variants, and the scale ladder (narrower backbones). Judged by the
# protocol only (`python -m experiments run sentiment`), not by the ablation benchmark.
PROMPT_TUNING_METHODS = {m.name: m for m in [
    Method("prompt_tuning", "prompt tuning P=20, label init", _prompt_tuning(), template=PT_TEMPLATE),
    Method("prompt_tuning_random", "prompt tuning P=20, random init", _prompt_tuning(init="RANDOM"), "prompt_tuning",
           template=PT_TEMPLATE),
    Method("prompt_tuning_p32", f"prompt tuning P={PT_MAX_PROMPT}, label init", _prompt_tuning(PT_MAX_PROMPT),
           "prompt_tuning", template=PT_TEMPLATE),
    *(Method(f"prompt_tuning_{size}", f"prompt tuning P=20, label init, {size}", _prompt_tuning(), "prompt_tuning",
             backbone=f"gpt_{size}", template=PT_TEMPLATE) for size in ("d16", "d32")),
    *(Method(f"full_{size}", f"full fine-tuning, {size}", lambda model: model, "full", backbone=f"gpt_{size}")
      for size in ("d16", "d32")),
]}
# Judged by the protocol only (`python -m experiments sweep/run sentiment --methods ...`), not by the ablation benchmark:
# chapter 3's alpha rule at r = 16 with alpha fixed at 16 (scale alpha/r = 1 instead of 2), each at its own swept rate;
# the papers' controls, what a method is compared with to show that its choice of parameters matters.
CONTROLS = {m.name: m for m in [
    Method("lora_r16_a16", "LoRA q,v r=16, alpha=16 (fixed alpha)", _lora(16, alpha=16), "lora"),
    Method("bitfit_random", "random subset, BitFit's count", lambda model: random_subset(model), "bitfit"),
]}
ALL_METHODS = {**METHODS, **ABLATIONS, **PROMPT_TUNING_METHODS, **CONTROLS}


def _ptv2(**kwargs):
    def prepare(model):
        from solutions.p_tuning_v2 import PTuningV2Config, inject_p_tuning_v2

        return inject_p_tuning_v2(model, PTuningV2Config(**kwargs), verbose=False)

    return prepare


def _frozen_head(model):
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


PTV2_LENGTH = 16  # the chapter's default num_virtual_tokens
NER_METHODS = {m.name: m for m in [
    Method("full", "full fine-tuning", lambda model: model),
    Method("frozen", "frozen + head", _frozen_head),
    Method("p_tuning_v2", "P-tuning v2 (deep prompts)", _ptv2(num_virtual_tokens=PTV2_LENGTH)),
    Method("p_tuning_v2_mlp", "P-tuning v2 + MLP reparam.",
           _ptv2(num_virtual_tokens=PTV2_LENGTH, prefix_projection=True, encoder_hidden_size=128)),
    Method("prompt_tuning", "prompt tuning (input only)",
           _ptv2(num_virtual_tokens=PTV2_LENGTH, prompt_depth="input", prompt_tuning_init="SAMPLE_VOCAB")),
    Method("p_tuning", "P-tuning (input, LSTM encoder)",
           _ptv2(num_virtual_tokens=PTV2_LENGTH, prompt_depth="input", encoder_reparameterization_type="LSTM",
                 encoder_hidden_size=128)),
    # Chapters 3-5's methods on NER (the comparison chapter), in the configurations those chapters teach.
    Method("lora", "LoRA q,v r=8", _lora()),
    Method("bitfit", "BitFit (all biases)", _bitfit()),
    Method("adapters", "adapters m=8", _adapters()),
]}


# Chapter 11: LoRA's descendants, in chapter 3's setting (q, v, alpha = 2r) with one change each, judged by the protocol
# only (`python -m experiments sweep sentiment --methods dora ...`, then `python -m experiments run sentiment`).
LORAPLUS_LR_RATIO = 16  # LoRA+'s eta_B / eta_A, the paper's advice 2^4 (Hayou et al. 2024)


def _lora_variant(r: int = 8, **options):
    def prepare(model):
        from solutions.lora_variants import LoraVariantConfig, inject_lora_variant

        return inject_lora_variant(model, LoraVariantConfig(r=r, lora_alpha=2 * r, **options), verbose=False)

    return prepare


def _lora_plus(ratio: float = LORAPLUS_LR_RATIO):
    """Chapter 3's LoRA trained as LoRA+ by a runner with one learning rate: each tensor LoRA+ gives the rate
    lr * ratio is computed as ratio * p, p getting the unscaled gradient (chapter 11's loraplus_by_parametrization):
    exactly the update at lr * ratio for the recipe's AdamW, which has no weight decay."""
    def prepare(model):
        from solutions.lora_variants import loraplus_by_parametrization

        return loraplus_by_parametrization(_lora()(model), ratio)

    return prepare


LORA_VARIANT_METHODS = {m.name: m for m in [
    Method("dora", "DoRA q,v r=8", _lora_variant(use_dora=True), "lora"),
    Method("rslora_r16", "rsLoRA q,v r=16", _lora_variant(16, use_rslora=True), "lora"),
    Method("pissa", "PiSSA q,v r=8", _lora_variant(init_lora_weights="pissa"), "lora"),
    Method("lora_plus", f"LoRA+ q,v r=8, ratio {LORAPLUS_LR_RATIO}", _lora_plus(), "lora"),
]}
ALL_METHODS.update(LORA_VARIANT_METHODS)


# Chapter 12: QLoRA, chapter 3's LoRA (q, v, r = 8, alpha = 16) on the backbone's linear layers stored in NF4 with double
# quantisation (the task head stays in float32), judged by the protocol only.
def _qlora(r: int = 8, targets: tuple = ("q_proj", "v_proj")):
    def prepare(model):
        import torch

        from solutions.qlora import BitsAndBytesConfig, prepare_model_for_kbit_training, replace_with_bnb_linear

        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.float32)
        return _lora(r, targets)(prepare_model_for_kbit_training(replace_with_bnb_linear(model, config)))

    return prepare


QLORA_METHODS = {m.name: m for m in [Method("qlora", "QLoRA q,v r=8 on an NF4 base", _qlora(), "lora")]}
ALL_METHODS.update(QLORA_METHODS)
