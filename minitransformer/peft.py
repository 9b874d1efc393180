"""The PEFT core that every method chapter shares, with the names and file format of Hugging Face PEFT.

A method chapter (LoRA, BitFit, adapters, ...) teaches only what is special about its method:
its layers and how it changes a model (`inject_lora`, `apply_bitfit`, `inject_adapters`).
Everything else is the same for every method and lives here, taught once in chapter 3:

    find_targets(model, target_modules)     which modules a config names (HF PEFT's matching rules)
    mark_modules_to_save(model, names)      modules that train in full, e.g. a new task head
    print_trainable_parameters(model)       "trainable params: ... || all params: ... || trainable%: ..."
    state_fingerprint / changed_tensors     prove that the frozen backbone did not change, bit for bit
    trainable_state_dict(model)             what a PEFT checkpoint stores: the trainable tensors only
    PeftConfig                              base class of every method's config; knows its `peft_type`
    save_peft_model / load_peft_model       one file format for every method, dispatched on `peft_type`
    replace_module / unload                 model surgery, and undoing it

Files. `save_peft_model` writes `adapter_model.safetensors` (tensor names prefixed with
`base_model.model.`, as HF PEFT does) and `adapter_config.json` (the config's fields plus
`peft_type`). A LoRA file is a valid HF PEFT LoRA adapter and the reverse. A soft prompt (prompt
tuning, P-tuning, prefix tuning, P-tuning v2) is written as HF PEFT writes prompt learning: one
tensor `prompt_embeddings` (the prompt encoder's output), `task_type`, the backbone's sizes, and
P-tuning v2 as `PREFIX_TUNING` (`PromptFileFormat`, `PROMPT_FORMATS`). `load_peft_model` reads
these files, HF PEFT's, and the files written before. See `docs/peft_file_format.md`. This module
never imports `peft`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Optional, Union

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .model import SequenceClassifier, TokenClassifier
from .training import count_parameters

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
KEY_PREFIX = "base_model.model."  # HF PEFT stores `base_model.model.<module path>.<tensor>`

Targets = Union[str, list[str], tuple[str, ...]]

# ----------------------------------------------------------------------------- finding modules by name


def is_target(name: str, targets: Targets) -> bool:
    """HF PEFT's rule (`check_target_module_exists`): a string is a regular expression that must
    match the full name; a list matches a name equal to an entry or ending in "." + entry."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def find_targets(model: nn.Module, targets: Targets, module_type: type = nn.Module,
                 what: str = "target_modules") -> list[str]:
    """Names of the modules that `targets` matches (see `is_target`), in model order.

    A target that matches nothing is an error, and so is a list in which any entry matches
    nothing (a typo must not silently adapt fewer layers). Every match must be a `module_type`.
    """
    entries = [targets] if isinstance(targets, str) else list(targets)
    if not any(entries):
        raise ValueError(f"{what} is empty; name at least one module, e.g. ['q_proj', 'v_proj'].")
    names = [name for name, _ in model.named_modules()]
    # Each entry on its own: one typo in a list must not hide behind the entries that match.
    missing = [t for t in entries if not any(is_target(n, t if isinstance(targets, str) else [t]) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names if n} - {str(i) for i in range(len(names))})
        raise ValueError(f"{what}: {', '.join(map(repr, missing))} matches no module of this {type(model).__name__}. "
                         f"Fix the name(s); the model's module names end in: {leaves}.")
    found = [n for n in names if is_target(n, targets)]
    for name in found:
        module = model.get_submodule(name)
        if not isinstance(module, module_type):
            raise ValueError(f"{what}={targets!r} matches {name}, a {type(module).__name__}, but only "
                             f"{module_type.__name__} modules can be targets: name those layers (and start from a "
                             f"fresh base model if this one is already adapted).")
    return found


def mark_modules_to_save(model: nn.Module, modules_to_save: Targets) -> list[str]:
    """Make every module named in `modules_to_save` (same matching rules) train in full. Returns their names."""
    if not modules_to_save:
        return []
    names = find_targets(model, modules_to_save, what="modules_to_save")
    for name in names:
        model.get_submodule(name).requires_grad_(True)
    return names


# ----------------------------------------------------------------------------- what trains, what must not change


def print_trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """Print the trainable share in the format Hugging Face PEFT uses, and return (trainable, total)."""
    trainable, total = count_parameters(model)
    print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")
    return trainable, total


def _original_name(name: str) -> str:
    """A wrapped layer keeps the original as `base_layer`: `q_proj.base_layer.weight` is `q_proj.weight`."""
    return name.replace(".base_layer.", ".")


def state_fingerprint(module: nn.Module) -> dict[str, str]:
    """A sha256 per parameter and buffer, by its original name (see `_original_name`); no copy of the values."""
    return {_original_name(k): hashlib.sha256(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()).hexdigest()
            for k, v in module.state_dict().items()}


def changed_tensors(module: nn.Module, fingerprint: dict[str, str]) -> list[str]:
    """Names of the fingerprinted tensors that are gone or differ (bit for bit); new tensors (LoRA's, adapters') are ignored."""
    now = state_fingerprint(module)
    return [k for k, digest in fingerprint.items() if now.get(k) != digest]


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a PEFT checkpoint stores: every trainable parameter, by name, detached, on the CPU (not copied)."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


# ----------------------------------------------------------------------------- configs and files

PEFT_TYPES: dict[str, type["PeftConfig"]] = {}  # peft_type -> config class; every subclass registers itself

# Fields of HF PEFT's adapter_config.json that say nothing about the weights: skipped when loading.
# (tokenizer_name_or_path, tokenizer_kwargs and init_weights only say how HF PEFT starts a new prompt.)
METADATA_FIELDS = {"base_model_name_or_path", "revision", "task_type", "inference_mode", "peft_version",
                   "auto_mapping", "init_lora_weights", "megatron_core", "qalora_group_size",
                   "tokenizer_name_or_path", "tokenizer_kwargs", "init_weights"}
# ... except an init_lora_weights that also rewrites the frozen base weight (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA keep a
# residual there): such a file's A and B are right only on that residual, so a config without the field refuses it.
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


@dataclass
class PeftConfig:
    """Base of every method's config. Subclasses set `peft_type` and implement `inject`."""

    peft_type: ClassVar[str] = ""
    # Trained in full (the new task head). Keyword-only, so a subclass's own fields come first.
    modules_to_save: list[str] = field(default_factory=lambda: ["head"], kw_only=True)

    def __init_subclass__(cls, register: bool = True, **kwargs):
        super().__init_subclass__(**kwargs)
        # register=False: a config that writes another method's peft_type (chapter 11's LoRA variants write "LORA")
        # is used where it is named (load_peft_model(..., config_class=...)); it does not take over that type's files.
        if cls.peft_type and register:
            PEFT_TYPES[cls.peft_type] = cls

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        """Change `model` in place as this method does (each method's config implements it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement inject(model, verbose).")

    def to_dict(self) -> dict:
        """The adapter_config.json contents: `peft_type`, HF PEFT's metadata fields, then this config's fields."""
        return {"peft_type": self.peft_type, "base_model_name_or_path": None, "task_type": None,
                **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "PeftConfig":
        """Build a config from adapter_config.json contents. Unknown fields must be unset (None, False, empty,
        "none"): a file that asks for a feature this implementation lacks (e.g. use_dora) is refused."""
        values = dict(values)
        if values.pop("peft_type", cls.peft_type) != cls.peft_type:
            raise ValueError(f"this is not a {cls.peft_type} config")
        known = {f.name for f in dataclasses.fields(cls)}
        rewrites_base = {k for k, v in values.items() if k == "init_lora_weights" and isinstance(v, str)
                         and v.lower().startswith(BASE_REWRITING_INITS)}
        unsupported = {k: v for k, v in values.items() if k not in known and (k not in METADATA_FIELDS or k in
                       rewrites_base) and v not in (None, False, "none", [], {})}
        if unsupported:
            raise ValueError(f"{cls.__name__} cannot honour {unsupported}: this implementation does not have "
                             f"these features. Save the adapter without them.")
        return cls(**{k: v for k, v in values.items() if k in known})


# ----------------------------------------------------------------------------- soft prompts in HF PEFT's layout

PROMPT_KEY = "prompt_embeddings"  # HF PEFT stores a prompt-learning method's prompt as this one tensor
PROMPT_MODULE_PREFIX = "base_model."  # ... and the modules_to_save of such a model as base_model.<module path>
# task_type -> the model class HF PEFT builds for it (PeftModelFor...) and what that means for our models.
TASK_TYPES = {"CAUSAL_LM": "a GPT-mode language model (PeftModelForCausalLM)",
              "FEATURE_EXTRACTION": "a BERT-mode model (PeftModelForFeatureExtraction; HF PEFT has no masked-LM task)",
              "SEQ_CLS": "a SequenceClassifier (PeftModelForSequenceClassification)",
              "TOKEN_CLS": "a TokenClassifier (PeftModelForTokenClassification)"}
BACKBONE_SIZES = {"token_dim": "d_model", "num_layers": "n_layers", "num_attention_heads": "n_heads"}
# HF PEFT's PromptTuningConfig wants a tokenizer name with prompt_tuning_init="TEXT" (it reads it only to start a new
# prompt, never to load a trained one); the curriculum encodes the init text with the project's tokenizer.
PROJECT_TOKENIZER = "minitransformer/checkpoints/tokenizer.json"
INPUT_SLOT, ANSWER_SLOT = "[X]", "[Y]"  # P-tuning's template slots (chapter 7)


def _backbone_config(model: nn.Module):
    """The TransformerConfig of the model's backbone (every prompt-learning model here has `.backbone`), or None."""
    return getattr(getattr(model, "backbone", None), "config", None)


def _task_type_by_mode(model: nn.Module) -> Optional[str]:
    config = _backbone_config(model)
    mode = getattr(config, "mode", None)
    return {"gpt": "CAUSAL_LM", "bert": "FEATURE_EXTRACTION"}.get(mode)


def _past_to_rows(past) -> torch.Tensor:
    """L pairs (key, value) of (1, H, P, h) -> (P, L*2*d), HF PEFT's layout of a prefix: row p is
    [layer 0 key | layer 0 value | layer 1 key | ...], each d = H*h wide."""
    kv = torch.stack([t[0] for pair in past for t in pair])  # (2L, H, P, h)
    return kv.permute(2, 0, 1, 3).reshape(kv.shape[2], -1)  # (P, 2L*H*h)


@contextmanager
def _evaluation(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode (no dropout) and no autograd, then each module's own mode back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


class PromptFileFormat:
    """How one prompt-learning method of ours is written in HF PEFT's layout, and read back.

    HF PEFT saves the prompt as its encoder's output at inference (`get_prompt_embedding_to_save`): one
    tensor, `prompt_embeddings`, with `inference_mode: true` in the config; it picks the model class from
    `task_type` and needs the backbone's sizes (`token_dim`, `num_layers`, `num_attention_heads`,
    `num_transformer_submodules`). A subclass names our module that makes the prompt and the parameter
    that holds a loaded one.
    """

    file_type: str = ""  # the peft_type written: HF PEFT's name of the method
    prompt_module: str = ""  # our module that makes the prompt: its trainable tensors are replaced by its output
    holder: str = ""  # the parameter that holds a loaded prompt (in the model that `from_file`'s config builds)

    def applies(self, model: nn.Module, config: PeftConfig) -> bool:
        """Whether `model` is one this layout describes (else the file keeps the project's own layout)."""
        return _backbone_config(model) is not None and isinstance(
            getattr(model, self.prompt_module.split(".")[0], None), nn.Module)

    def prompt(self, model: nn.Module) -> torch.Tensor:
        """The prompt as HF PEFT stores it (called in eval mode, without autograd)."""
        raise NotImplementedError

    def task_type(self, model: nn.Module) -> Optional[str]:
        """HF PEFT's task_type for `model` (None: a model HF PEFT has no task for)."""
        return _task_type_by_mode(model)

    def modules_to_save(self, names: list[str]) -> list[str]:
        """modules_to_save as written, from the exact paths of the modules (see _DeepPromptFormat)."""
        return names

    def to_file(self, values: dict) -> dict:
        """Our config's values -> the config written: HF PEFT marks a stored prompt `inference_mode: true`."""
        return {**values, "inference_mode": True}

    def from_file(self, values: dict) -> dict:
        """Config values read from a file in this layout -> our config values that build `holder`."""
        return values


class _SoftPromptFormat(PromptFileFormat):
    """PROMPT_TUNING (chapter 6): PromptTuningClassifier.soft_prompt, P vectors trained directly."""

    file_type, prompt_module, holder = "PROMPT_TUNING", "soft_prompt", "soft_prompt.weight"

    def prompt(self, model):
        return model.soft_prompt.weight

    def to_file(self, values):
        values = super().to_file(values)
        if values.get("prompt_tuning_init") == "TEXT" and not values.get("tokenizer_name_or_path"):
            values["tokenizer_name_or_path"] = PROJECT_TOKENIZER
        return values


class _PromptEncoderFormat(PromptFileFormat):
    """P_TUNING (chapter 7): PTuningModel.prompt_encoder; the file holds its output, the LSTM/MLP is dropped."""

    file_type, prompt_module, holder = "P_TUNING", "prompt_encoder", "prompt_encoder.embedding.weight"

    def prompt(self, model):
        return model.prompt_encoder()

    def from_file(self, values):
        values = {**values, "inference_mode": True}  # the stored vectors, no encoder (as export_prompt)
        if "template" not in values:  # HF PEFT's P-tuning: every virtual token in front of the input
            values["template"] = [values.get("num_virtual_tokens"), INPUT_SLOT, ANSWER_SLOT]
        return values


class _PrefixFormat(PromptFileFormat):
    """PREFIX_TUNING (chapter 8): PrefixTuningModel.prefix_encoder; the file holds the prefix it makes (the MLP's
    output, or the keys and values of an embedding-only prefix), (P, L*2*d), which loads as a plain table."""

    file_type, prompt_module, holder = "PREFIX_TUNING", "prefix_encoder", "prefix_encoder.embedding.weight"

    def prompt(self, model):
        return _past_to_rows(model.get_prefix(1))

    def from_file(self, values):
        values = {**values, "prefix_projection": False, "embedding_only": False}  # the table itself
        if values.get("encoder_hidden_size") is None:  # HF PEFT's default; unused without the projection
            values.pop("encoder_hidden_size", None)
        return values


class _DeepPromptFormat(PromptFileFormat):
    """P_TUNING_V2 (chapter 9): a SequenceClassifier or TokenClassifier whose backbone (a PromptedBackbone) holds
    a deep prompt. HF PEFT has no P-tuning v2 type: it is PREFIX_TUNING with prefix_projection=false, for
    task_type SEQ_CLS or TOKEN_CLS. The input-only comparison variants (prompt_depth="input") drop the prompt
    positions before the head, which no HF PEFT class does: they keep the project's own layout."""

    file_type, prompt_module, holder = ("PREFIX_TUNING", "backbone.prompt_encoder",
                                        "backbone.prompt_encoder.embedding.weight")
    VARIANT_FIELDS = ("prompt_depth", "encoder_reparameterization_type", "prompt_tuning_init")

    def applies(self, model, config):
        return getattr(config, "prompt_depth", None) == "all_layers" and self.task_type(model) is not None \
            and isinstance(getattr(model.backbone, "prompt_encoder", None), nn.Module)

    def prompt(self, model):
        return _past_to_rows(model.backbone.prompt_encoder(1))

    def task_type(self, model):
        if isinstance(model, TokenClassifier):
            return "TOKEN_CLS"
        return "SEQ_CLS" if isinstance(model, SequenceClassifier) else None

    def modules_to_save(self, names):
        # HF PEFT matches modules_to_save by plain suffix (`key.endswith(name)`): "head" would also wrap an lm_head.
        # PeftModelForSequence/TokenClassification match these names against their own module names too, where our
        # head is "base_model.head", a name that no other module ends in.
        return [PROMPT_MODULE_PREFIX + n for n in names]

    def to_file(self, values):
        values = {k: v for k, v in values.items() if k not in self.VARIANT_FIELDS}  # all_layers: their defaults
        return {**super().to_file(values), "prefix_projection": False}

    def from_file(self, values):
        values = {**values, "prefix_projection": False}  # the table itself (HF PEFT: the prefix, not an MLP)
        if values.get("encoder_hidden_size") is None:
            values.pop("encoder_hidden_size", None)
        return values


# our peft_type -> how its files are written in HF PEFT's layout
PROMPT_FORMATS: dict[str, PromptFileFormat] = {"PROMPT_TUNING": _SoftPromptFormat(), "P_TUNING": _PromptEncoderFormat(),
                                               "PREFIX_TUNING": _PrefixFormat(), "P_TUNING_V2": _DeepPromptFormat()}
# (peft_type, task_type) in a file -> our peft_type, where they differ: HF PEFT's prefix tuning for a classifier
# is our P-tuning v2 (chapter 9); for a language model it is prefix tuning (chapter 8).
FILE_TYPE_ALIASES = {("PREFIX_TUNING", "SEQ_CLS"): "P_TUNING_V2", ("PREFIX_TUNING", "TOKEN_CLS"): "P_TUNING_V2"}
# modules_to_save that HF PEFT's PeftModelForSequence/TokenClassification add by themselves (HF models' heads)
PEFT_AUTO_MODULES = {"SEQ_CLS": ("classifier", "score"), "TOKEN_CLS": ("classifier", "score")}


def _prompt_file(model: nn.Module, config: PeftConfig, fmt: PromptFileFormat) -> tuple[dict, dict]:
    """(tensors, config values) of `model` in HF PEFT's prompt-learning layout."""
    saved_modules = (find_targets(model, config.modules_to_save, what="modules_to_save")
                     if config.modules_to_save else [])
    trainable = trainable_state_dict(model)

    def inside(name: str, module: str) -> bool:
        return name.startswith(module + ".")

    stray = [n for n in trainable if not inside(n, fmt.prompt_module) and not any(inside(n, m) for m in saved_modules)]
    if stray:
        raise ValueError(f"{stray[:3]} train, but they are neither the prompt ({fmt.prompt_module}) nor in "
                         f"modules_to_save={config.modules_to_save}; a {config.peft_type} file holds only those. Add "
                         f"their modules to modules_to_save, or freeze them, before saving.")
    with _evaluation(model):
        prompt = fmt.prompt(model).detach().cpu().contiguous()
    tensors = {PROMPT_KEY: prompt}
    tensors.update({PROMPT_MODULE_PREFIX + n: t for n, t in trainable.items()
                    if any(inside(n, m) for m in saved_modules)})
    backbone = _backbone_config(model)
    values = fmt.to_file(config.to_dict())
    values.update(peft_type=fmt.file_type, task_type=fmt.task_type(model), num_transformer_submodules=1,
                  modules_to_save=fmt.modules_to_save(saved_modules),
                  **{name: getattr(backbone, ours) for name, ours in BACKBONE_SIZES.items()})
    return tensors, values


def save_peft_model(model: nn.Module, config: PeftConfig, directory: Union[str, Path]) -> Path:
    """Write `model`'s trainable tensors and `config` to `directory` in HF PEFT's format.

    A soft prompt (a type in PROMPT_FORMATS) is written as HF PEFT writes prompt learning: the prompt its
    encoder makes, as `prompt_embeddings`, and the config HF PEFT needs to rebuild it."""
    if any(getattr(m, "merged", False) for m in model.modules()):
        raise ValueError("Some layers are merged: merged weights are not adapter weights. Unmerge them "
                         "(e.g. unmerge_lora(model)) before saving.")
    fmt = PROMPT_FORMATS.get(config.peft_type)
    if fmt is not None and fmt.applies(model, config):
        tensors, values = _prompt_file(model, config, fmt)
    else:
        tensors = {KEY_PREFIX + name: t for name, t in trainable_state_dict(model).items()}
        values = config.to_dict()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / WEIGHTS_NAME))
    (directory / CONFIG_NAME).write_text(json.dumps(values, indent=2) + "\n")
    return directory


def _read_values(directory: Union[str, Path]) -> tuple[Path, dict]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: a PEFT checkpoint is a folder with {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}, as save_peft_model writes it.")
    return path, json.loads(path.read_text())


def _in_prompt_layout(directory: Union[str, Path], values: dict) -> bool:
    """Whether the folder holds a prompt in HF PEFT's layout (`prompt_embeddings`), not the project's old one."""
    weights = Path(directory) / WEIGHTS_NAME
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as f:
            return PROMPT_KEY in f.keys()
    return values.get("num_transformer_submodules") is not None


def _our_type(values: dict) -> str:
    """Our peft_type for a file: its own, or the method HF PEFT's (peft_type, task_type) stands for here."""
    return FILE_TYPE_ALIASES.get((values.get("peft_type"), values.get("task_type")), values.get("peft_type"))


def _config_class(path: Path, values: dict, config_class: Optional[type[PeftConfig]]) -> type[PeftConfig]:
    peft_type, ours = values.get("peft_type"), _our_type(values)
    cls = config_class or PEFT_TYPES.get(ours)
    if cls is None or cls.peft_type not in (ours, peft_type):
        known = sorted(PEFT_TYPES) if config_class is None else [config_class.peft_type]
        what = peft_type if ours == peft_type else (f"{ours} (HF PEFT writes it as peft_type={peft_type!r} with "
                                                    f"task_type={values.get('task_type')!r})")
        raise ValueError(f"{path} holds a {what} adapter, but the methods defined here are {known}. "
                         f"Run the chapter that defines the {ours} method first.")
    return cls


def _config_values(path: Path, values: dict, cls: type[PeftConfig], prompt_layout: bool,
                   model: Optional[nn.Module] = None) -> dict:
    """The file's values as `cls` reads them: a prompt in HF PEFT's layout becomes the config that holds it, and
    HF PEFT's prompt-learning fields are checked (against `model`'s backbone, if given) and dropped."""
    values = dict(values)
    fmt = PROMPT_FORMATS.get(cls.peft_type)
    if fmt is None:
        return values
    if prompt_layout:
        values = fmt.from_file(values)
    values["peft_type"] = cls.peft_type
    submodules = values.pop("num_transformer_submodules", None)
    if submodules not in (None, 1):
        raise ValueError(f"{path} has num_transformer_submodules={submodules}: HF PEFT wrote it for an encoder-decoder "
                         f"model (a prompt for the encoder and one for the decoder, task_type SEQ_2_SEQ_LM). These "
                         f"backbones are one stack: use a prompt saved for a decoder-only or encoder-only model "
                         f"(num_transformer_submodules=1).")
    backbone = _backbone_config(model) if model is not None else None
    if backbone is not None:
        wrong = {name: (values[name], getattr(backbone, ours_name)) for name, ours_name in BACKBONE_SIZES.items()
                 if values.get(name) is not None and values[name] != getattr(backbone, ours_name)}
        if wrong:
            saved = ", ".join(f"{k}={file_size}" for k, (file_size, _) in wrong.items())
            sizes = ", ".join(f"{BACKBONE_SIZES[k]}={size}" for k, (_, size) in wrong.items())
            raise ValueError(f"{path} was saved for a backbone with {saved}, but this model's backbone has {sizes}: "
                             f"load it into the base model it was trained on.")
    fields = {f.name for f in dataclasses.fields(cls)}
    for name in BACKBONE_SIZES:
        if name not in fields:
            values.pop(name, None)
    modules = values.get("modules_to_save")
    if isinstance(modules, (list, tuple)):
        module_names = [n for n, _ in model.named_modules()] if model is not None else None
        auto = PEFT_AUTO_MODULES.get(values.get("task_type"), ())
        kept = []
        for name in modules:
            name = name.removeprefix(PROMPT_MODULE_PREFIX)
            if name in auto and (module_names is None or not any(is_target(n, [name]) for n in module_names)):
                continue  # HF PEFT's own addition for transformers' heads; our classifiers' head is `head`
            if name not in kept:
                kept.append(name)
        values["modules_to_save"] = kept
    elif modules is None and "modules_to_save" in values:
        values["modules_to_save"] = []
    return values


def read_peft_config(directory: Union[str, Path], config_class: Optional[type[PeftConfig]] = None) -> PeftConfig:
    """The config saved in `directory`, as the class registered for its `peft_type` (or `config_class`).

    HF PEFT's prefix tuning for a classifier (task_type SEQ_CLS or TOKEN_CLS) is read as P_TUNING_V2."""
    path, values = _read_values(directory)
    cls = _config_class(path, values, config_class)
    return cls.from_dict(_config_values(path, values, cls, _in_prompt_layout(directory, values)))


def _check_task_type(path: Path, values: dict, cls: type[PeftConfig], model: nn.Module) -> None:
    """A file with a task_type is for one kind of model: refuse another kind with one error."""
    saved, fmt = values.get("task_type"), PROMPT_FORMATS.get(cls.peft_type)
    if saved is None or fmt is None:
        return
    expected = fmt.task_type(model)
    if expected != saved:
        wanted = TASK_TYPES.get(saved, f"task_type {saved!r}")
        got = type(model).__name__ + (f" (task_type={expected!r})" if expected else "")
        raise ValueError(f"{path} is a {values.get('peft_type')} adapter with task_type={saved!r}, for {wanted}; this "
                         f"model is a {got}. Load it into {wanted.split(' (')[0]} built on the backbone it was "
                         f"trained on.")


def load_peft_model(model: nn.Module, directory: Union[str, Path], config_class: Optional[type[PeftConfig]] = None,
                    verbose: bool = False) -> nn.Module:
    """Apply the saved method to a fresh base `model` (in place), then load the saved tensors into it.

    The method is the one registered for the file's `peft_type` (HF PEFT's PREFIX_TUNING for a classifier is
    P_TUNING_V2); pass `config_class` to choose it yourself. Reads the project's files (old and new) and HF PEFT's.
    """
    path, values = _read_values(directory)
    cls = _config_class(path, values, config_class)
    prompt_layout = _in_prompt_layout(directory, values)
    _check_task_type(path, values, cls, model)
    config = cls.from_dict(_config_values(path, values, cls, prompt_layout, model))
    config.inject(model, verbose=verbose)
    weights = Path(directory) / WEIGHTS_NAME
    if prompt_layout:
        fmt = PROMPT_FORMATS.get(cls.peft_type)
        if fmt is None:
            raise ValueError(f"{weights} holds a soft prompt ({PROMPT_KEY}), but {cls.__name__} ({cls.peft_type}) is "
                             f"not a prompt-learning method: load it with the method it was saved with.")
        saved = {fmt.holder if k == PROMPT_KEY else k.removeprefix(PROMPT_MODULE_PREFIX): v
                 for k, v in load_file(str(weights)).items()}
    else:
        saved = {k.removeprefix(KEY_PREFIX): v for k, v in load_file(str(weights)).items()}
    expected = trainable_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    wrong_shape = [f"{k} {tuple(saved[k].shape)}, expected {tuple(expected[k].shape)}"
                   for k in sorted(set(saved) & set(expected)) if saved[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(f"{weights} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                         f"wrong shape {wrong_shape[:3]}): load it into the base model it was trained on.")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    return model


# ----------------------------------------------------------------------------- model surgery


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put `new` where the submodule `name` (e.g. "backbone.blocks.0.attn.q_proj") is. Returns the old one."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def unload(model: nn.Module) -> nn.Module:
    """Replace every wrapper layer (one with a `base_layer`) by its base layer, in place: the plain model again.

    What the wrappers added is dropped; LoRA's `merge_and_unload` merges it into the base layers first."""
    wrappers = [name for name, m in model.named_modules() if isinstance(getattr(m, "base_layer", None), nn.Module)]
    for name in wrappers:
        replace_module(model, name, model.get_submodule(name).base_layer)
    return model


def add_to_class(cls: type) -> Callable:
    """Decorator that adds a function to `cls` as a method, so a lesson can grow a class section by section (as d2l)."""
    def register(function: Callable) -> Callable:
        setattr(cls, function.__name__, function)
        return function
    return register
