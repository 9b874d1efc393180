"""The PEFT core (minitransformer/peft.py): target matching, modules_to_save, fingerprints, the file format, unload."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig
from minitransformer.peft import (CONFIG_NAME, KEY_PREFIX, PEFT_TYPES, WEIGHTS_NAME, PeftConfig, changed_tensors,
                                  find_targets, is_target, load_peft_model, mark_modules_to_save, read_peft_config,
                                  replace_module, save_peft_model, state_fingerprint, trainable_state_dict, unload)


def tiny_classifier(seed=0) -> SequenceClassifier:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()


@dataclass
class LayerNormConfig(PeftConfig):
    """A minimal method for these tests: train the LayerNorms named by `target_modules` (and modules_to_save)."""

    peft_type: ClassVar[str] = "TEST_LAYERNORM"
    target_modules: list = None

    def inject(self, model, verbose=False):
        model.requires_grad_(False)
        for name in find_targets(model, self.target_modules, nn.LayerNorm):
            model.get_submodule(name).requires_grad_(True)
        mark_modules_to_save(model, self.modules_to_save)
        return model


class Wrapper(nn.Module):
    """A wrapper layer as LoRA and adapters build them: the original kept as `base_layer`, plus a new tensor."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        self.base_layer = base_layer
        self.extra = nn.Parameter(torch.zeros(base_layer.out_features))

    def forward(self, x):
        return self.base_layer(x) + self.extra


# ----------------------------------------------------------------------------- target matching


def test_suffix_and_regex_rules_are_hf_peft_rules():
    name = "backbone.blocks.0.attn.q_proj"
    assert is_target(name, ["q_proj"]) and is_target(name, ["attn.q_proj"]) and is_target(name, [name])
    assert not is_target(name, ["proj"]), "a suffix must be a whole name component"
    assert is_target(name, r".*\.attn\.q_proj") and not is_target(name, r"q_proj"), "a regex must match the full name"


def test_find_targets_in_model_order_and_of_the_right_type():
    model = tiny_classifier()
    assert find_targets(model, ["v_proj", "q_proj"], nn.Linear) == [
        f"backbone.blocks.{i}.attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    assert find_targets(model, r".*blocks\.1\.mlp\.fc\d", nn.Linear) == ["backbone.blocks.1.mlp.fc1",
                                                                          "backbone.blocks.1.mlp.fc2"]
    with pytest.raises(ValueError, match=r"blocks.0.attn, a SelfAttention, but only Linear"):
        find_targets(model, ["attn"], nn.Linear)


@pytest.mark.parametrize("targets, named", [(["qproj"], "'qproj'"), (["q_proj", "vproj"], "'vproj'"),
                                            (r".*\.query", "query"), (["fc1", "fc3", "x"], "'fc3', 'x'")])
def test_any_target_that_matches_nothing_is_an_error_that_lists_the_names(targets, named):
    with pytest.raises(ValueError, match="matches no module") as error:
        find_targets(tiny_classifier(), targets)
    assert named in str(error.value) and "'q_proj'" in str(error.value) and "'fc2'" in str(error.value)


def test_empty_targets_are_an_error():
    for empty in ([], ""):
        with pytest.raises(ValueError, match="empty"):
            find_targets(tiny_classifier(), empty)


def test_modules_to_save_train_in_full_and_must_exist():
    model = tiny_classifier().requires_grad_(False)
    assert mark_modules_to_save(model, ["head"]) == ["head"]
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    with pytest.raises(ValueError, match="modules_to_save: 'classifier' matches no module"):
        mark_modules_to_save(model, ["classifier"])


# ----------------------------------------------------------------------------- fingerprints


def test_fingerprint_is_a_hash_per_tensor_and_sees_through_wrappers():
    model = tiny_classifier()
    fingerprint = state_fingerprint(model.backbone)
    assert set(fingerprint) == set(model.backbone.state_dict())
    assert all(isinstance(v, str) and len(v) == 64 for v in fingerprint.values()), "a sha256 per tensor, no copies"
    attn = model.backbone.blocks[0].attn
    replace_module(model.backbone, "blocks.0.attn.q_proj", Wrapper(attn.q_proj))
    assert changed_tensors(model.backbone, fingerprint) == [], "q_proj.base_layer.weight is q_proj.weight"
    with torch.no_grad():
        attn.q_proj.base_layer.weight[0, 0] += 1e-6
    assert changed_tensors(model.backbone, fingerprint) == ["blocks.0.attn.q_proj.weight"]


# ----------------------------------------------------------------------------- files


def trained_layer_norm_model(seed=0):
    config = LayerNormConfig(target_modules=["ln_1"])
    model = config.inject(tiny_classifier())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    return model, config


def test_save_and_load_dispatch_on_peft_type(tmp_path):
    model, config = trained_layer_norm_model()
    save_peft_model(model, config, tmp_path)
    saved = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert saved["peft_type"] == "TEST_LAYERNORM" and saved["modules_to_save"] == ["head"]
    tensors = load_file(tmp_path / WEIGHTS_NAME)
    assert set(tensors) == {KEY_PREFIX + n for n in trainable_state_dict(model)}
    assert PEFT_TYPES["TEST_LAYERNORM"] is LayerNormConfig
    assert read_peft_config(tmp_path) == config
    reloaded = load_peft_model(tiny_classifier(), tmp_path)
    x = torch.randint(1, 40, (2, 5))
    assert torch.equal(reloaded(x).logits, model(x).logits)


def test_load_refuses_what_it_cannot_honour(tmp_path):
    model, config = trained_layer_norm_model()
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_peft_model(tiny_classifier(), tmp_path / "nothing")
    save_peft_model(model, config, tmp_path)
    values = json.loads((tmp_path / CONFIG_NAME).read_text())
    # A method this course does not implement (an HF PEFT type). Not one of ours: which of our config classes are
    # registered depends on which chapters' solutions the session has imported.
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**values, "peft_type": "IA3"}))
    with pytest.raises(ValueError, match="IA3"):
        load_peft_model(tiny_classifier(), tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**values, "use_dora": True, "peft_version": "0.1"}))
    with pytest.raises(ValueError, match="use_dora"):
        load_peft_model(tiny_classifier(), tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**values, "target_modules": ["ln_2"]}))
    with pytest.raises(ValueError, match="does not fit this model"):
        load_peft_model(tiny_classifier(), tmp_path)


def test_merged_layers_are_not_saved(tmp_path):
    model, config = trained_layer_norm_model()
    model.backbone.blocks[0].merged = True
    with pytest.raises(ValueError, match="Unmerge"):
        save_peft_model(model, config, tmp_path)


def test_unload_puts_the_base_layers_back():
    model = tiny_classifier()
    original = model.backbone.blocks[1].mlp.fc2
    replace_module(model, "backbone.blocks.1.mlp.fc2", Wrapper(original))
    assert unload(model) is model and model.backbone.blocks[1].mlp.fc2 is original
