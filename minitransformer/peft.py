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
`peft_type`). A LoRA file is a valid HF PEFT LoRA adapter and the reverse; see
`docs/peft_file_format.md`. This module never imports `peft`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Union

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

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
METADATA_FIELDS = {"base_model_name_or_path", "revision", "task_type", "inference_mode", "peft_version",
                   "auto_mapping", "init_lora_weights", "megatron_core", "qalora_group_size"}


@dataclass
class PeftConfig:
    """Base of every method's config. Subclasses set `peft_type` and implement `inject`."""

    peft_type: ClassVar[str] = ""
    # Trained in full (the new task head). Keyword-only, so a subclass's own fields come first.
    modules_to_save: list[str] = field(default_factory=lambda: ["head"], kw_only=True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.peft_type:
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
        unsupported = {k: v for k, v in values.items()
                       if k not in known and k not in METADATA_FIELDS and v not in (None, False, "none", [], {})}
        if unsupported:
            raise ValueError(f"{cls.__name__} cannot honour {unsupported}: this implementation does not have "
                             f"these features. Save the adapter without them.")
        return cls(**{k: v for k, v in values.items() if k in known})


def save_peft_model(model: nn.Module, config: PeftConfig, directory: Union[str, Path]) -> Path:
    """Write `model`'s trainable tensors and `config` to `directory` in HF PEFT's format."""
    if any(getattr(m, "merged", False) for m in model.modules()):
        raise ValueError("Some layers are merged: merged weights are not adapter weights. Unmerge them "
                         "(e.g. unmerge_lora(model)) before saving.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {KEY_PREFIX + name: t for name, t in trainable_state_dict(model).items()}
    save_file(tensors, str(directory / WEIGHTS_NAME))
    (directory / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return directory


def read_peft_config(directory: Union[str, Path], config_class: Optional[type[PeftConfig]] = None) -> PeftConfig:
    """The config saved in `directory`, as the class registered for its `peft_type` (or `config_class`)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: a PEFT checkpoint is a folder with {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}, as save_peft_model writes it.")
    values = json.loads(path.read_text())
    peft_type = values.get("peft_type")
    cls = config_class or PEFT_TYPES.get(peft_type)
    if cls is None or cls.peft_type != peft_type:
        known = sorted(PEFT_TYPES) if config_class is None else [config_class.peft_type]
        raise ValueError(f"{path} has peft_type={peft_type!r}, but the methods defined here are {known}. "
                         f"Run the chapter that defines the {peft_type} method first.")
    return cls.from_dict(values)


def load_peft_model(model: nn.Module, directory: Union[str, Path], config_class: Optional[type[PeftConfig]] = None,
                    verbose: bool = False) -> nn.Module:
    """Apply the saved method to a fresh base `model` (in place), then load the saved tensors into it.

    The method is the one registered for the file's `peft_type`; pass `config_class` to choose it yourself.
    """
    config = read_peft_config(directory, config_class)
    config.inject(model, verbose=verbose)
    path = Path(directory) / WEIGHTS_NAME
    saved = {k.removeprefix(KEY_PREFIX): v for k, v in load_file(str(path)).items()}
    expected = trainable_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    wrong_shape = [k for k in set(saved) & set(expected) if saved[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(f"{path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}, "
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
