"""Chapter 11's pieces that the rest of the course relies on, checked without `peft` (tests/test_peft_interop_variants.py
compares the variants with PEFT itself where it is installed):

* the variants' config does not take over the loading of LORA files (`register=False`), and chapter 3's LoraConfig
  refuses a variant's file instead of loading it wrong (a PiSSA file's A and B belong on the residual);
* `loraplus_by_parametrization`, which the protocol's `lora_plus` runs use, trains exactly as LoRA+'s parameter
  groups do, with SGD and with AdamW;
* the protocol knows the chapter's methods, and each builds on a model.
"""

import pytest
import torch

from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig
from minitransformer.peft import PEFT_TYPES, load_peft_model, save_peft_model
from solutions.lora import LoraConfig
from solutions.lora_variants import (LoraVariantConfig, LoraVariantLinear, create_loraplus_optimizer,
                                     inject_lora_variant, loraplus_by_parametrization)

X = torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(1))
LABELS = torch.tensor([0, 1, 1])


def tiny_classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()


def test_the_variants_config_leaves_lora_files_to_chapter_3():
    assert PEFT_TYPES["LORA"] is not LoraVariantConfig and PEFT_TYPES["LORA"].__name__ == LoraConfig.__name__
    assert LoraVariantConfig.peft_type == "LORA" and LoraVariantConfig().to_dict()["peft_type"] == "LORA"


@pytest.mark.parametrize("options, field", [(dict(use_dora=True), "use_dora"),
                                            (dict(init_lora_weights="pissa"), "init_lora_weights")])
def test_chapter_3_refuses_a_variant_file_that_the_variant_config_loads(tmp_path, options, field):
    config = LoraVariantConfig(r=2, lora_alpha=4, **options)
    model = inject_lora_variant(tiny_classifier(), config, verbose=False)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    save_peft_model(model, config, tmp_path)
    with pytest.raises(ValueError, match=field):
        load_peft_model(tiny_classifier(), tmp_path)
    reloaded = load_peft_model(tiny_classifier(), tmp_path, config_class=LoraVariantConfig)
    assert torch.equal(reloaded(X).logits, model(X).logits)


def test_a_plain_lora_file_still_loads_in_chapter_3(tmp_path):
    """init_lora_weights=True (the default, and what PEFT writes for LoRA) stays metadata."""
    config = LoraVariantConfig(r=2, lora_alpha=4)
    model = inject_lora_variant(tiny_classifier(), config, verbose=False)
    save_peft_model(model, config, tmp_path)
    assert type(load_peft_model(tiny_classifier(), tmp_path).backbone.blocks[0].attn.q_proj).__name__ == "LoraLinear"


@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_loraplus_by_parametrization_trains_as_the_parameter_groups(optimizer):
    def train(parametrized: bool, ratio: float) -> list[torch.Tensor]:
        model = inject_lora_variant(tiny_classifier(), LoraVariantConfig(r=2, lora_alpha=4, use_dora=True),
                                    verbose=False).train()
        make = getattr(torch.optim, optimizer)
        kwargs = {"weight_decay": 0.0} if optimizer == "AdamW" else {}
        if parametrized:
            loraplus_by_parametrization(model, ratio)
            opt = make([p for p in model.parameters() if p.requires_grad], lr=1e-2, **kwargs)
        else:
            opt = create_loraplus_optimizer(model, make, lr=1e-2, loraplus_lr_ratio=ratio, **kwargs)
        for _ in range(4):
            opt.zero_grad()
            model(input_ids=X, labels=LABELS).loss.backward()
            opt.step()
        layers = [m for m in model.modules() if isinstance(m, LoraVariantLinear)]
        return [t.detach().clone() for m in layers for t in (m.lora_A.weight, m.lora_B.weight, m.lora_magnitude_vector)] \
            + [model.head.weight.detach().clone(), model.head.bias.detach().clone()]

    groups, parametrized, one_rate = train(False, 16), train(True, 16), train(False, 1)
    assert max((a - b).abs().max().item() for a, b in zip(groups, parametrized)) < 1e-6
    assert max((a - b).abs().max().item() for a, b in zip(groups, one_rate)) > 1e-3  # the ratio matters


def test_the_protocol_knows_the_chapter_s_methods():
    from experiments import claims, sentiment
    from experiments.methods import ALL_METHODS, LORA_VARIANT_METHODS

    assert set(LORA_VARIANT_METHODS) == {"dora", "rslora_r16", "pissa", "lora_plus"}
    for c in claims.claims_of(11):
        assert c.task == "sentiment" and all(m in ALL_METHODS for m in c.methods)
    for name, method in LORA_VARIANT_METHODS.items():
        assert sentiment.epochs_of(name) == sentiment.epochs_of("lora")
        model = method.prepare(tiny_classifier())
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all("lora" in n or n.startswith("head.") for n in trainable), (name, sorted(trainable))
        assert model(input_ids=X, labels=LABELS).loss.isfinite()
    dora = LORA_VARIANT_METHODS["dora"].prepare(tiny_classifier())
    assert any(isinstance(m, LoraVariantLinear) and m.use_dora for m in dora.modules())
    rslora = LORA_VARIANT_METHODS["rslora_r16"].prepare(tiny_classifier())
    assert {m.scaling for m in rslora.modules() if isinstance(m, LoraVariantLinear)} == {32 / 16 ** 0.5}
