"""Our LoRA files and Hugging Face PEFT's are the same format: each side loads the other's, with identical outputs.

The project does not depend on `peft`: this module skips itself where it is not installed. To run it,
use a separate environment, e.g. `python3 -m venv .venv-peft && . .venv-peft/bin/activate &&
pip install torch==2.13.0 peft -r requirements.txt` (see docs/peft_file_format.md).
"""

import json

import pytest
import torch

peft = pytest.importorskip("peft")

from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig  # noqa: E402
from minitransformer.peft import load_peft_model, save_peft_model  # noqa: E402
from solutions.lora import LoraConfig, LoraLinear, inject_lora  # noqa: E402

TARGETS = [["q_proj", "v_proj"], r".*\.attn\.(q_proj|out_proj)", ["fc1"]]


def tiny_classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()


def randomize_trainable(model: torch.nn.Module, seed: int) -> None:
    """Give every trainable tensor (LoRA's B included, zero at init) a random value, so outputs differ from the base."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn(p.shape, generator=generator))


def logits(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=x).logits


X = torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("target_modules", TARGETS, ids=["suffixes", "regex", "mlp"])
def test_our_lora_loads_in_peft(tmp_path, target_modules):
    ours = tiny_classifier()
    config = LoraConfig(r=2, lora_alpha=4, target_modules=target_modules)
    inject_lora(ours, config, verbose=False)
    randomize_trainable(ours, seed=2)
    assert not torch.allclose(logits(ours, X), logits(tiny_classifier(), X)), "the LoRA update must matter"
    save_peft_model(ours, config, tmp_path)

    theirs = peft.PeftModel.from_pretrained(tiny_classifier(), str(tmp_path)).eval()
    assert theirs.peft_config["default"].r == 2 and theirs.peft_config["default"].lora_alpha == 4
    assert torch.equal(logits(theirs, X), logits(ours, X))


@pytest.mark.parametrize("target_modules", TARGETS, ids=["suffixes", "regex", "mlp"])
def test_peft_lora_loads_here(tmp_path, target_modules):
    theirs = peft.get_peft_model(tiny_classifier(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=target_modules,
                                                                    modules_to_save=["head"]))
    randomize_trainable(theirs, seed=3)
    theirs.save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and "use_dora" in saved  # really peft's file, with its extra fields

    ours = load_peft_model(tiny_classifier(), tmp_path)
    assert any(isinstance(m, LoraLinear) for m in ours.modules())
    assert torch.equal(logits(ours.eval(), X), logits(theirs.eval(), X))


def test_peft_features_we_lack_are_refused(tmp_path):
    theirs = peft.get_peft_model(tiny_classifier(), peft.LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    theirs.save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="use_dora"):
        load_peft_model(tiny_classifier(), tmp_path)
