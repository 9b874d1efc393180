"""Graded tests for chapter 4, BitFit. Each test carries points and a hint for the student.

They judge behaviour (which tensors train, which move, what is reported), counted by parameter
name on a tiny random model, so any correct implementation of the notebook's API gets full marks.
"""

import torch

from curriculum import points
from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig

CHAPTER = "bitfit"

N_LAYERS = 2
# The backbone bias each subset must select, as name suffixes inside backbone.blocks.{i}.
PER_BLOCK = {
    "query": ["attn.q_proj.bias"],
    "key": ["attn.k_proj.bias"],
    "value": ["attn.v_proj.bias"],
    "attention_output": ["attn.out_proj.bias"],
    "intermediate": ["mlp.fc1.bias"],
    "output": ["mlp.fc2.bias"],
    "layernorm": ["ln_1.bias", "ln_2.bias"],
}
HEAD = {"head.weight", "head.bias"}


def tiny_classifier(seed=0) -> SequenceClassifier:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=N_LAYERS, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    model = SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()
    with torch.no_grad():  # pretrained-like, non-zero biases
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return model


def batch(seed=1):
    return torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(seed))


def expected_biases(subset: str) -> set[str]:
    """The backbone bias names a subset must select on the tiny model."""
    if subset == "all":
        return set().union(*(expected_biases(s) for s in PER_BLOCK))
    names = {f"backbone.blocks.{i}.{suffix}" for i in range(N_LAYERS) for suffix in PER_BLOCK[subset]}
    return names | ({"backbone.ln_f.bias"} if subset == "layernorm" else set())


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------- bias_names


@points(2, "bias_names must return exactly the biases of each subset, matched by parameter name "
           "(e.g. 'intermediate' = every block's mlp.fc1.bias, 'layernorm' = every LayerNorm's bias, "
           "'all' = every bias), each once.", part="bias_names")
def test_bias_names_select_each_subset(impl):
    model = tiny_classifier()
    for subset in [*PER_BLOCK, "all"]:
        names = list(impl.bias_names(model, [subset]))
        assert len(names) == len(set(names)), f"subset {subset!r} lists a name twice"
        backbone = {n for n in names if n.startswith("backbone.")}
        assert backbone == expected_biases(subset), f"wrong biases for subset {subset!r}: {sorted(backbone)}"
        assert set(names) - backbone <= {"head.bias"}, f"subset {subset!r} selects non-biases: {sorted(set(names) - backbone)}"
    both = set(impl.bias_names(model, ["query", "intermediate"]))
    assert both == expected_biases("query") | expected_biases("intermediate"), "several subsets must be combined"


@points(2, "An unknown subset name must raise a ValueError that names it and lists the valid subsets "
           "(a typo must not silently train nothing).", part="bias_names")
def test_unknown_subset_raises(impl):
    try:
        impl.bias_names(tiny_classifier(), ["query", "queries"])
    except ValueError as exc:
        assert "queries" in str(exc), "the message must name the unknown subset"
        assert "intermediate" in str(exc), "the message must list the valid subsets"
    else:
        raise AssertionError("subset 'queries' was accepted")


@points(1, "A subset that matches no parameter of the model (here: a model whose q_proj layers have no bias) "
           "must raise a ValueError that names the subset.", part="bias_names")
def test_subset_matching_nothing_raises(impl):
    model = tiny_classifier()
    for block in model.backbone.blocks:
        block.attn.q_proj.bias = None
    try:
        impl.bias_names(model, ["query"])
    except ValueError as exc:
        assert "query" in str(exc)
    else:
        raise AssertionError("subset 'query' matched nothing but no ValueError was raised")


# --------------------------------------------------------------------------- apply_bitfit


@points(3, "apply_bitfit must freeze everything except the selected biases and the task head: the trainable "
           "tensors are exactly those, and the trainable count is the sum of their sizes.", part="apply_bitfit")
def test_apply_trains_exactly_selected_biases_and_head(impl):
    for subsets in (["all"], ["query", "intermediate"], ["layernorm"], ["key"]):
        model = tiny_classifier()
        returned = impl.apply_bitfit(model, subsets, verbose=False)
        assert returned is model, "apply_bitfit must work in place and return the model"
        expected = expected_biases(subsets[0]) if len(subsets) == 1 else \
            expected_biases("query") | expected_biases("intermediate")
        assert trainable_names(model) == expected | HEAD, \
            f"subsets={subsets}: unexpected trainable tensors {sorted(trainable_names(model) ^ (expected | HEAD))}"
        params = dict(model.named_parameters())
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert n_trainable == sum(params[n].numel() for n in expected | HEAD)


@points(1, "apply_bitfit must not re-initialise anything: the model's outputs right after it are unchanged.",
        part="apply_bitfit")
def test_apply_keeps_outputs(impl):
    model = tiny_classifier()
    x = batch()
    before = model(x).logits.detach()
    impl.apply_bitfit(model, ["all"], verbose=False)
    assert torch.equal(model(x).logits, before)


@points(2, "After training, every non-bias weight of the backbone (and every bias outside the chosen subsets) must "
           "be bit-for-bit unchanged, while the chosen biases and the head do move.", part="apply_bitfit")
def test_training_moves_only_selected_biases(impl):
    model = tiny_classifier()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    impl.apply_bitfit(model, ["query", "intermediate"], verbose=False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = model(batch(), labels=torch.tensor([0, 1, 1])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    selected = expected_biases("query") | expected_biases("intermediate")
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, original[n])}
    assert moved - HEAD <= selected, f"frozen tensors changed: {sorted(moved - HEAD - selected)}"
    assert selected <= moved, f"selected biases did not train: {sorted(selected - moved)}"
    assert HEAD <= moved, "the task head must train too"


# --------------------------------------------------------------------------- bias_changes


@points(2, "bias_changes must report, per subset and per block, the mean absolute change (1/n)·|b - b0|_1 of that "
           "block's bias (ln_1 and ln_2 pooled for 'layernorm'), and ignore every non-bias weight.",
        part="bias_changes")
def test_bias_changes_per_subset_and_block(impl):
    model = tiny_classifier()
    reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
    blocks = model.backbone.blocks
    with torch.no_grad():
        blocks[1].attn.q_proj.bias += 0.5
        blocks[0].mlp.fc1.bias[:16] -= 1.0  # half of the 32 entries: mean change 0.5
        blocks[1].ln_1.bias += 0.4  # pooled with the unchanged ln_2.bias: 0.2
        blocks[0].attn.k_proj.weight += 1.0  # a weight, not a bias: must not count
    changes = impl.bias_changes(model, reference)
    expected = {subset: [0.0] * N_LAYERS for subset in PER_BLOCK}
    expected["query"][1], expected["intermediate"][0], expected["layernorm"][1] = 0.5, 0.5, 0.2
    assert set(changes) == set(expected), f"expected one entry per subset {sorted(expected)}, got {sorted(changes)}"
    for subset, values in expected.items():
        got = [float(v) for v in changes[subset]]
        assert len(got) == N_LAYERS and all(abs(g - e) < 1e-5 for g, e in zip(got, values)), \
            f"{subset}: expected {values}, got {[round(g, 4) for g in got]}"


# --------------------------------------------------------------------------- BitFitConfig (the PEFT core's files)


@points(1, "Saving and loading must give the same model: BitFitConfig.inject calls your apply_bitfit, so the "
           "core's save_peft_model stores only the biases it left trainable (and the head), and load_peft_model must "
           "rebuild an identical model on a fresh base model.", part="apply_bitfit")
def test_save_and_load_round_trip(impl):
    import json
    import tempfile
    from pathlib import Path

    from safetensors.torch import load_file

    from minitransformer.peft import load_peft_model, save_peft_model

    model = tiny_classifier()
    config = impl.BitFitConfig(subsets=["query", "intermediate"])
    config.inject(model)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    x = batch()
    with tempfile.TemporaryDirectory() as tmp:
        save_peft_model(model, config, tmp)
        assert json.loads((Path(tmp) / "adapter_config.json").read_text())["peft_type"] == "BITFIT"
        stored = {k.removeprefix("base_model.model.") for k in load_file(Path(tmp) / "adapter_model.safetensors")}
        assert stored == expected_biases("query") | expected_biases("intermediate") | HEAD, \
            f"the file must hold exactly the selected biases and the head, not {sorted(stored)}"
        reloaded = load_peft_model(tiny_classifier(), tmp, config_class=impl.BitFitConfig)
    assert torch.equal(reloaded(x).logits, model(x).logits), "the reloaded model gives different outputs"
