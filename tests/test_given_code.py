"""The code the lessons give the student, checked on the reference solutions, outside the grade.

The grader awards points only for code the student writes (`tests/test_chapters.py` checks that every graded
test fails when its own part's solution regions are blanked). What a lesson hands over ready-made, such as a
config's validation or a model that freezes its backbone, still has to work: it is checked here.
"""

import pytest
import torch

from minitransformer import MiniTransformer, TransformerConfig
from minitransformer.checkpoint import CHECKPOINT_DIR
from minitransformer.peft import changed_tensors, state_fingerprint
from minitransformer.tokenizer import load_tokenizer


@pytest.mark.parametrize("settings, field", [
    (dict(bottleneck_size=0), "bottleneck_size"),
    (dict(bottleneck_size=-4), "bottleneck_size"),
    (dict(bottleneck_size=2.5), "bottleneck_size"),
    (dict(reduction_factor=0), "reduction_factor"),
    (dict(reduction_factor=-1.0), "reduction_factor"),
    (dict(non_linearity="sigmoidal"), "non_linearity"),
    (dict(mh_adapter=False, output_adapter=False), "_adapter"),
])
def test_adapter_config_refuses_bad_settings_naming_the_field(settings, field):
    from solutions.adapters import AdapterConfig

    with pytest.raises(ValueError, match=field):
        AdapterConfig(**settings)


@pytest.mark.parametrize("mode", ["gpt", "bert"])
def test_p_tuning_training_moves_only_the_prompt(mode):
    from solutions.p_tuning import PromptEncoderConfig, PTuningModel

    tokenizer = load_tokenizer(CHECKPOINT_DIR / "tokenizer.json")
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=tokenizer.get_vocab_size(), max_seq_len=32, d_model=16, n_layers=2,
                               n_heads=2, d_ff=32, dropout=0.0, mode=mode)
    backbone = MiniTransformer(config).eval()
    before = state_fingerprint(backbone)
    template = [3, "[X]", 3, " as", "[Y]"] + ([3] if mode == "bert" else [])
    model = PTuningModel(backbone, tokenizer, PromptEncoderConfig(num_virtual_tokens=9 if mode == "bert" else 6,
                                                                  template=template, encoder_hidden_size=8),
                         ["bad", "good"])
    rows = [tokenizer.encode(t, add_special_tokens=False).ids for t in (" The soup was cold", " Fine")]
    longest = max(map(len, rows))
    ids = torch.tensor([r + [0] * (longest - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    start = [p.detach().clone() for p in trainable]
    for _ in range(2):
        loss = model(ids, mask, labels=torch.tensor([0, 1])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert changed_tensors(backbone, before) == [], "the backbone changed during training"
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and not any(n.startswith("backbone.") for n in names), names
    assert any(not torch.equal(a, p) for a, p in zip(start, trainable)), "nothing trained: the check would be empty"
