"""Every exact check a lesson asserts must be able to fail: here each one fails on a broken input.

A lesson's `assert` that compares a computation with an explicit reference (merged == unmerged, soft prompt ==
the same tokens written out, a count == its formula, a prefix == a KV cache, ...) only means something if a wrong
implementation would break it. Each test below recomputes one lesson's check on a tiny random model (seeded, the
same comparison and tolerance as the lesson), shows that the correct code passes it, and that a deliberately broken
input fails it: a dropped term, an unmerged or unscaled LoRA update, a prompt in the wrong place, shuffled labels, a
backbone that was not frozen, a layout with two axes swapped. Test names say which chapter's assert they cover,
and a comment or docstring names the notebook cell (its index in the notebook's cells when this was written).

tests/test_lesson_checks.py covers chapter 1's attention-by-hand check and chapter 10's gated-sum check;
tests/test_training.py covers chapter 3's (and chapter 5's) "merged LoRA costs what the base model costs" check.
"""

import copy
import tempfile
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minitransformer import (MiniTransformer, SequenceClassifier, TokenClassifier, TransformerConfig, changed_tensors,
                             count_parameters, freeze, state_fingerprint, train, training_state_memory)
from minitransformer.checkpoint import CHECKPOINT_DIR
from minitransformer.data import make_loader
from minitransformer.linear_probe import fit_linear_probe, pooled_features
from minitransformer.measure import forward_cost
from minitransformer.peft import load_peft_model, save_peft_model, unload
from minitransformer.recipes import SCHEDULE, WARMUP_RATIO
from minitransformer.tokenizer import load_tokenizer
from solutions.adapters import AdapterConfig, BottleneckAdapter, adapter_layers, inject_adapters
from solutions.bitfit import BIAS_TYPES, apply_bitfit, bias_names
from solutions.comparison import taxonomy
from solutions.lora import LoraConfig, LoraLinear, inject_lora, merge_and_unload, merge_lora, unmerge_lora
from solutions.p_tuning import (PromptEncoder, PromptEncoderConfig, PTuningModel, assemble, encode_piece,
                                lstm_parameter_count)
from solutions.p_tuning_v2 import PTuningV2Config, inject_p_tuning_v2
from solutions.prefix_tuning import PrefixEncoder, PrefixTuningConfig, PrefixTuningModel, drop_prefix_mlp
from solutions.prompt_tuning import PromptTuningClassifier, PromptTuningConfig, SoftPrompt, verbalizer_logits

TOKENIZER = load_tokenizer(CHECKPOINT_DIR / "tokenizer.json")
VOCAB = TOKENIZER.get_vocab_size()  # 2048: the verbalisers' words must be real tokens
D, LAYERS, HEADS = 16, 2, 2
LORA_CONFIG = dict(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])


def backbone(mode="gpt", seed=0, vocab=VOCAB) -> MiniTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=vocab, max_seq_len=32, d_model=D, n_layers=LAYERS, n_heads=HEADS, d_ff=32,
                               dropout=0.0, mode=mode)
    return MiniTransformer(config).eval()


def classifier(mode="gpt", seed=0) -> SequenceClassifier:
    return SequenceClassifier(backbone(mode, seed), num_labels=2, dropout=0.0).eval()


def padded_batch(seed=1, rows=3, length=7):
    """Right-padded rows (the second and any later ones are shorter), pad id 0."""
    ids = torch.randint(6, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[1, length - 3:] = 0
    mask[2:, length - 1:] = 0
    return ids * mask, mask


def logits(model, *inputs):
    with torch.no_grad():
        return model.eval()(*inputs).logits


def randomize(model, names=None, seed=1, scale=0.3):
    """Random values in the trainable tensors (or the named ones): a stand-in for a trained method."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (names is None and p.requires_grad) or (names is not None and any(n in name for n in names)):
                p.copy_(scale * torch.randn(p.shape, generator=generator))
    return model


def take_steps(model, loss_fn, steps=2):
    """A handful of AdamW steps on whatever requires grad (the run the lesson's frozen-backbone check follows)."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model).backward()
        optimizer.step()
    return model.eval()


# --------------------------------------------------------------------------- chapter 2


def finetune(model, loader, *, epochs, lr, warmup_ratio=WARMUP_RATIO, max_steps=None, weight_decay=0.0,
             pool_last=True):
    """Chapter 2's written-out loop (cell 6). The two keyword flags break it on purpose: AdamW's default
    weight decay (0.01) instead of none, and pooling the first token instead of each review's last real one."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    warmup = max(1, round(warmup_ratio * total))

    def lr_multiplier(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, 1 - (step - warmup) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier)
    losses = []
    model.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            if len(losses) == total:
                break
            hidden = model.backbone(batch["input_ids"], batch["attention_mask"], return_logits=False).hidden_states
            last = batch["attention_mask"].sum(dim=1) - 1 if pool_last else torch.zeros(len(hidden), dtype=torch.long)
            logits = model.head(hidden[torch.arange(len(last)), last])
            loss = F.cross_entropy(logits, batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    model.eval()
    return losses


def test_chapter_2s_written_out_loop_check_fails_with_weight_decay_or_the_wrong_token():
    generator = torch.Generator().manual_seed(3)
    items = [(torch.randint(6, VOCAB, (int(n),), generator=generator).tolist(), i % 2)
             for i, n in enumerate(torch.randint(3, 9, (12,), generator=generator))]
    loader = make_loader(items, TOKENIZER, batch_size=4, shuffle=True, seed=0)  # reshuffles per epoch, seeded

    def run(**broken):
        ours, theirs = classifier(), classifier()
        hand = finetune(ours, loader, epochs=2, lr=1e-2, max_steps=5, **broken)
        package = train(theirs, loader, epochs=2, lr=1e-2, warmup_ratio=WARMUP_RATIO, schedule=SCHEDULE, max_steps=5,
                        progress=False)
        same_weights = all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters()))
        return hand == package.losses and same_weights  # the lesson's check

    assert run()
    assert not run(weight_decay=0.01), "AdamW's default weight decay is not the course's loop"
    assert not run(pool_last=False), "the first token is not the review's last real token"


def by_hand_probe(model, train_loader, val_loader) -> float:
    """Chapter 2, cell 17: standardise, L-BFGS per L2 strength, keep the best validation accuracy."""
    x_train, y_train = pooled_features(model, train_loader)
    x_val, y_val = pooled_features(model, val_loader)
    mu, sigma = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    z_train, z_val = (x_train - mu) / sigma, (x_val - mu) / sigma
    fits = {}
    for l2 in (1e-4, 1e-3, 1e-2, 1e-1):
        W = torch.zeros(2, z_train.shape[1], requires_grad=True)
        c = torch.zeros(2, requires_grad=True)
        lbfgs = torch.optim.LBFGS([W, c], max_iter=500, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

        def objective():
            lbfgs.zero_grad()
            loss = F.cross_entropy(z_train @ W.T + c, y_train) + l2 * W.pow(2).sum()
            loss.backward()
            return loss

        lbfgs.step(objective)
        with torch.no_grad():
            fits[l2] = ((z_val @ W.T + c).argmax(-1) == y_val).float().mean().item()
    return max(fits.values())


def test_chapter_2s_probe_fit_check_fails_for_a_probe_fit_on_shuffled_labels():
    model = freeze(classifier(mode="bert"))
    ids = torch.randint(6, VOCAB, (96, 6), generator=torch.Generator().manual_seed(4))
    features, _ = pooled_features(model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                           "labels": torch.zeros(96, dtype=torch.long)}])
    direction = torch.randn(D, generator=torch.Generator().manual_seed(5))
    labels = ((features - features.mean(0)) @ direction > 0).long()  # linearly separable labels

    def loader(rows, y):
        return [{"input_ids": ids[rows], "attention_mask": torch.ones_like(ids[rows]), "labels": y}]

    train_rows, val_rows = slice(0, 64), slice(64, 96)
    train_loader, val_loader = loader(train_rows, labels[train_rows]), loader(val_rows, labels[val_rows])
    reference = by_hand_probe(model, train_loader, val_loader)
    assert fit_linear_probe("probe", model, train_loader, val_loader).score == reference
    shuffled = labels[train_rows][torch.randperm(64, generator=torch.Generator().manual_seed(6))]
    broken = fit_linear_probe("probe", model, loader(train_rows, shuffled), val_loader)
    assert broken.score != reference, "features and labels out of step: the package's probe must disagree"


def test_chapter_2s_memory_ratio_check_fails_when_not_every_parameter_trains():
    ids, mask = padded_batch()
    batch = [{"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}]

    def ratio(model):
        memory = training_state_memory(model, train(model, batch, epochs=1, progress=False).optimizer)
        return memory["total"] / memory["parameters"]

    assert 3.9 < ratio(classifier()) < 4.1  # cell 32: weights + gradients + two AdamW moments
    assert not 3.9 < ratio(head_only(classifier())) < 4.1, "a frozen backbone holds no gradients or AdamW state"


def head_only(model):
    freeze(model.backbone)
    return model


# --------------------------------------------------------------------------- chapters 3 and 5: init, counts, merge


ZERO_INIT = {"lora": "lora_B", "adapters": "adapter.up"}


def adapted(method, model):
    if method == "lora":
        return inject_lora(model, LoraConfig(**LORA_CONFIG), verbose=False)
    return inject_adapters(model, AdapterConfig(bottleneck_size=4), verbose=False)


@pytest.mark.parametrize("method", ["lora", "adapters"])
def test_chapter_3_and_5s_identical_at_init_checks_fail_for_a_nonzero_start(method):
    ids, mask = padded_batch()

    def same_at_init(model):  # chapter 3 cell 19, chapter 5 cell 31
        reference = classifier()
        reference.head.load_state_dict(model.head.state_dict())
        return torch.equal(logits(model, ids, mask), logits(reference, ids, mask))

    assert same_at_init(adapted(method, classifier()))
    broken = randomize(adapted(method, classifier()), names=[ZERO_INIT[method]])
    assert not same_at_init(broken), f"{ZERO_INIT[method]} not zero: the adapted model must differ at init"


def test_chapter_3s_layer_init_check_fails_for_nonzero_B_or_zero_A():
    def check(layer, base, x):  # chapter 3, cell 10
        layer.zero_grad()
        layer(x).pow(2).sum().backward()
        return torch.equal(layer(x), base(x)) and layer.lora_B.weight.grad.norm() > 0

    torch.manual_seed(0)
    base, x = nn.Linear(8, 8), torch.randn(3, 8)
    assert check(LoraLinear(base, r=2, lora_alpha=4), base, x)
    nonzero_b = LoraLinear(base, r=2, lora_alpha=4)
    nn.init.normal_(nonzero_b.lora_B.weight)
    assert not check(nonzero_b, base, x), "B != 0: not the base layer at init"
    swapped = LoraLinear(base, r=2, lora_alpha=4)
    nn.init.zeros_(swapped.lora_A.weight)  # A = 0, B random: identical at init, but B never gets a gradient
    nn.init.normal_(swapped.lora_B.weight)
    assert not check(swapped, base, x), "A = 0: B gets no gradient"


def test_chapter_5s_adapter_init_and_count_checks_fail_for_zero_down_or_missing_biases():
    def check(adapter, h):  # chapter 5, cell 11
        adapter.zero_grad()
        adapter(h).pow(2).sum().backward()
        return torch.equal(adapter(h), h) and adapter.up.weight.grad.norm() > 0

    torch.manual_seed(0)
    h = torch.randn(3, 5, D)
    adapter = BottleneckAdapter(d_model=D, bottleneck_size=4)
    assert check(adapter, h)
    assert sum(p.numel() for p in adapter.parameters()) == 2 * D * 4 + D + 4
    not_zeroed = BottleneckAdapter(d_model=D, bottleneck_size=4)
    nn.init.normal_(not_zeroed.up.weight)
    assert not check(not_zeroed, h), "up != 0: not the identity at init"
    both_zero = BottleneckAdapter(d_model=D, bottleneck_size=4)
    nn.init.zeros_(both_zero.down.weight)
    nn.init.zeros_(both_zero.down.bias)
    assert not check(both_zero, h), "down = 0 too: gelu(0) = 0, so up gets no gradient"
    without_biases = BottleneckAdapter(d_model=D, bottleneck_size=4)
    without_biases.down, without_biases.up = nn.Linear(D, 4, bias=False), nn.Linear(4, D, bias=False)
    assert sum(p.numel() for p in without_biases.parameters()) != 2 * D * 4 + D + 4


def test_chapter_3s_lora_count_check_fails_for_other_targets():
    def n_lora(targets):  # chapter 3, cell 29: LoRA on q and v adds 2 * L * r * (d + d)
        model = inject_lora(classifier(), LoraConfig(r=2, target_modules=targets), verbose=False)
        return sum(p.numel() for n, p in model.backbone.named_parameters() if "lora_" in n)

    assert n_lora(["q_proj", "v_proj"]) == 2 * LAYERS * 2 * (D + D)
    assert n_lora(["q_proj", "k_proj", "v_proj"]) != 2 * LAYERS * 2 * (D + D)


def trained_lora():
    model = adapted("lora", classifier())
    return randomize(model, names=["lora_"])  # B != 0: a LoRA that has learned something


def test_chapter_3s_merge_checks_fail_for_a_double_counted_or_unscaled_update():
    ids, mask = padded_batch()
    model = trained_lora()
    unmerged = logits(model, ids, mask)
    merged_model = merge_lora(copy.deepcopy(model))
    assert torch.allclose(logits(merged_model, ids, mask), unmerged, atol=1e-5)  # cell 49

    counted_twice = merge_lora(copy.deepcopy(model))
    for layer in counted_twice.modules():
        if isinstance(layer, LoraLinear):
            layer.merged = False  # the update is in W and the branch still runs
    assert not torch.allclose(logits(counted_twice, ids, mask), unmerged, atol=1e-5)
    unscaled = copy.deepcopy(model)
    with torch.no_grad():
        for layer in unscaled.modules():
            if isinstance(layer, LoraLinear):
                layer.base_layer.weight += layer.lora_B.weight @ layer.lora_A.weight  # no lora_alpha / r
                layer.merged = True
    assert not torch.allclose(logits(unscaled, ids, mask), unmerged, atol=1e-5)

    original = classifier().backbone.state_dict()

    def restore_error(m):  # cell 49: after unmerge, max |W - W0|
        restored = {k.replace(".base_layer.", "."): v for k, v in m.backbone.state_dict().items() if "lora_" not in k}
        return max((restored[k] - original[k]).abs().max().item() for k in original)

    assert restore_error(unmerge_lora(copy.deepcopy(merged_model))) < 1e-6
    assert not restore_error(merged_model) < 1e-6, "an unmerge that does nothing leaves W0 + delta W"


def test_chapter_3s_merge_and_unload_checks_fail_without_the_merge_or_the_unload():
    ids, mask = padded_batch()
    model = trained_lora()
    merged = logits(merge_lora(copy.deepcopy(model)), ids, mask)

    def check(plain):  # chapter 3, cell 51
        return (type(plain.backbone.blocks[0].attn.q_proj) is nn.Linear
                and torch.allclose(logits(plain, ids, mask), merged, atol=1e-5))

    assert check(merge_and_unload(copy.deepcopy(model)))
    assert not check(unload(copy.deepcopy(model))), "unloaded without merging: the update is dropped"
    assert not check(merge_lora(copy.deepcopy(model))), "merged but not unloaded: still LoraLinear layers"


def test_chapter_5s_operation_count_check_fails_for_an_adapter_without_its_skip_connection():
    ids, mask = padded_batch()

    def ops(model):
        return forward_cost(lambda: model(ids, mask))[1]

    base_ops = ops(classifier())
    model = adapted("adapters", classifier()).eval()
    assert ops(model) == base_ops + 4 * 2 * LAYERS  # cell 43: down, act, up, + h; 2 adapters per block
    for adapter in adapter_layers(model):
        adapter.forward = types.MethodType(lambda self, h: self.up(self.act(self.down(h))), adapter)  # no h +
    assert ops(model) != base_ops + 4 * 2 * LAYERS


# --------------------------------------------------------------------------- round trips (chapters 3, 5-9)


def lora_case():
    config = LoraConfig(**LORA_CONFIG)
    return trained_lora(), config, adapted("lora", classifier()), classifier


def adapters_case():
    config = AdapterConfig(bottleneck_size=4)
    return randomize(adapted("adapters", classifier())), config, adapted("adapters", classifier()), classifier


def prompt_tuning_config():
    return PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", prompt_tuning_init_text=" good bad")


def prompt_tuning_case():
    config = prompt_tuning_config()
    model = randomize(PromptTuningClassifier(backbone(), TOKENIZER, config))
    return (model, config, PromptTuningClassifier(backbone(), TOKENIZER, prompt_tuning_config()),
            lambda: PromptTuningClassifier(backbone(), TOKENIZER))


def p_tuning_config():
    return PromptEncoderConfig(num_virtual_tokens=6, encoder_hidden_size=8, template=[3, "[X]", 3, "[Y]"])


def p_tuning_case():
    model = randomize(PTuningModel(backbone(), TOKENIZER, p_tuning_config(), ["bad", "good"]))
    config = model.export_prompt()  # chapter 7 saves the exported prompt
    return (model, config, PTuningModel(backbone(), TOKENIZER, p_tuning_config(), ["bad", "good"]),
            lambda: PTuningModel(backbone(), TOKENIZER, p_tuning_config(), ["bad", "good"]))


def prefix_case():
    model = randomize(PrefixTuningModel(backbone(), PrefixTuningConfig(num_virtual_tokens=3, encoder_hidden_size=8)))
    drop_prefix_mlp(model)  # chapter 8 saves after dropping the MLP
    return (model, model.peft_config, PrefixTuningModel(backbone(), PrefixTuningConfig(num_virtual_tokens=3)),
            lambda: PrefixTuningModel(backbone(), PrefixTuningConfig()))


def tagger():
    return TokenClassifier(backbone("bert"), num_labels=3, dropout=0.0)


def p_tuning_v2_case():
    config = PTuningV2Config(num_virtual_tokens=3)
    model = randomize(inject_p_tuning_v2(tagger(), config, verbose=False))
    return model, config, inject_p_tuning_v2(tagger(), PTuningV2Config(num_virtual_tokens=3), verbose=False), tagger


ROUND_TRIPS = {"lora": lora_case, "adapters": adapters_case, "prompt_tuning": prompt_tuning_case,
               "p_tuning": p_tuning_case, "prefix_tuning": prefix_case, "p_tuning_v2": p_tuning_v2_case}


@pytest.mark.parametrize("method", ROUND_TRIPS)
def test_chapters_3_to_9s_reload_checks_fail_when_the_file_is_not_loaded(method):
    """Chapter 3 cell 53, 5 cell 46, 6 cell 50, 7 cell 39, 8 cell 32, 9 cell 35: reloaded == trained. A loader that
    ignored the file would give the method's fresh start, which the same comparison tells apart."""
    model, config, not_loaded, fresh = ROUND_TRIPS[method]()
    ids, mask = padded_batch()
    trained = logits(model, ids, mask)
    with tempfile.TemporaryDirectory() as folder:
        save_peft_model(model, config, folder)
        # The config class named, as the lessons' own modules know it: PEFT_TYPES maps a peft_type to the config
        # class defined last, and another test may have defined one (a student's notebook, loaded in-process).
        reloaded = load_peft_model(fresh(), folder, config_class=type(config))
    assert torch.allclose(logits(reloaded, ids, mask), trained, atol=1e-6)
    assert not torch.allclose(logits(not_loaded, ids, mask), trained, atol=1e-6)


# --------------------------------------------------------------------------- frozen backbones (chapters 3-9)


def cls_loss(model):
    ids, mask = padded_batch()
    return model(ids, mask, labels=torch.tensor([0, 1, 1])).loss


def lm_loss(model):
    ids, mask = padded_batch()
    return model(ids, mask, labels=torch.where(mask.bool(), ids, -100)).loss


def tag_loss(model):
    ids, mask = padded_batch()
    return model(ids, mask, labels=torch.where(mask.bool(), ids % 3, -100)).loss


def frozen_case(method):
    """(model, the module the lesson fingerprints, its fingerprint before the method, the lesson's check on
    changed_tensors, a loss to train on)."""
    if method in ("lora", "adapters"):
        model = classifier()
        module, start = model.backbone, state_fingerprint(model.backbone)
        adapted(method, model)
        layer_norms = sorted(k for k in start if ".ln_" in k or k.startswith("ln_"))
        check = (lambda changed: not changed) if method == "lora" else (lambda changed: sorted(changed) == layer_norms)
        return model, module, start, check, cls_loss
    if method == "bitfit":
        model = classifier()
        start = state_fingerprint(model)
        apply_bitfit(model, ["all"], verbose=False)
        selected = set(bias_names(model, ["all"])) | {"head.weight"}
        return model, model, start, lambda changed: set(changed) <= selected, cls_loss
    if method == "p_tuning_v2":
        model = TokenClassifier(backbone("bert"), num_labels=3, dropout=0.0)
        start = state_fingerprint(model)
        inject_p_tuning_v2(model, PTuningV2Config(num_virtual_tokens=3), verbose=False)
        return model, model, start, lambda changed: not [k for k in changed if k.startswith("backbone.")], tag_loss
    frozen = backbone()
    start = state_fingerprint(frozen)
    if method == "prompt_tuning":
        model, loss = PromptTuningClassifier(frozen, TOKENIZER, PromptTuningConfig(num_virtual_tokens=3)), cls_loss
    elif method == "p_tuning":
        model, loss = PTuningModel(frozen, TOKENIZER, p_tuning_config(), ["bad", "good"]), cls_loss
    else:
        model = PrefixTuningModel(frozen, PrefixTuningConfig(num_virtual_tokens=3, encoder_hidden_size=8))
        loss = lm_loss
    return model, frozen, start, lambda changed: not changed, loss


@pytest.mark.parametrize("method", ["lora", "bitfit", "adapters", "prompt_tuning", "p_tuning", "prefix_tuning",
                                    "p_tuning_v2"])
def test_chapters_3_to_9s_frozen_backbone_checks_fail_when_the_backbone_trains(method):
    """Chapter 3 cell 21, 4 cell 27, 5 cell 33, 6 cell 29, 7 cells 32/50/59, 8 cell 27, 9 cell 31."""
    model, module, start, check, loss = frozen_case(method)
    take_steps(model, loss)
    assert check(changed_tensors(module, start))
    model, module, start, check, loss = frozen_case(method)
    take_steps(model.requires_grad_(True), loss)  # a method that forgot to freeze the backbone
    assert not check(changed_tensors(module, start))


def test_chapter_5s_layer_norm_check_fails_when_the_layer_norms_stay_frozen():
    model = classifier()
    start = state_fingerprint(model.backbone)
    inject_adapters(model, AdapterConfig(bottleneck_size=4, train_layer_norms=False), verbose=False)
    layer_norms = sorted(k for k in start if ".ln_" in k or k.startswith("ln_"))
    take_steps(model, cls_loss)
    assert sorted(changed_tensors(model.backbone, start)) != layer_norms


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning", "p_tuning_v2"])
def test_chapters_6_8_9s_trainable_count_checks_fail_when_the_backbone_trains(method):
    """Chapter 6 cells 23/29 (P x d), 8 cell 32 (P x L*2*d), 9 cell 22 (P*L*2*d + the head)."""
    model = frozen_case(method)[0]
    if method == "prompt_tuning":
        expected = 3 * D
    elif method == "prefix_tuning":
        expected = 3 * LAYERS * 2 * D
        assert count_parameters(model)[0] != expected, "a drop_prefix_mlp that kept the MLP"
        model = drop_prefix_mlp(model)
    else:
        prompt = sum(p.numel() for p in model.backbone.prompt_encoder.parameters())
        assert prompt == 3 * LAYERS * 2 * D
        expected = prompt + sum(p.numel() for p in model.head.parameters())
    assert count_parameters(model)[0] == expected
    model.requires_grad_(True)
    assert count_parameters(model)[0] != expected


# --------------------------------------------------------------------------- chapter 4


def transformer_counts(d, n_layers, vocab, positions, d_ff, token_types=0, pooler=False, layer_norm_biases=True):
    """Chapter 4, cell 19 (layer_norm_biases=False breaks it: the formula forgets the LayerNorm biases)."""
    block_weights = 4 * d * d + 2 * d * d_ff + 2 * d
    block_biases = 4 * d + d_ff + d + (2 * d if layer_norm_biases else 0)
    biases = n_layers * block_biases + d
    total = n_layers * (block_weights + block_biases) + (vocab + positions + token_types) * d + 2 * d
    if pooler:
        biases, total = biases + d, total + d * d + d
    return biases, total


def test_chapter_4s_count_formula_checks_fail_without_a_term():
    model = backbone()
    params = dict(model.named_parameters())
    real = (sum(params[n].numel() for n in bias_names(model, ["all"])), sum(p.numel() for p in model.parameters()))
    shape = dict(d=D, n_layers=LAYERS, vocab=VOCAB, positions=32, d_ff=32)
    assert transformer_counts(**shape) == real
    assert transformer_counts(**shape, layer_norm_biases=False) != real
    bert_base = dict(d=768, n_layers=12, vocab=30522, positions=512, d_ff=3072, token_types=2)
    assert 109_000_000 < transformer_counts(**bert_base, pooler=True)[1] < 110_000_000  # 109.5M, published
    assert not 109_000_000 < transformer_counts(**bert_base, pooler=False)[1] < 110_000_000, "without the pooler"


def test_chapter_4s_key_bias_checks_fail_for_normalised_keys_or_an_uncompensated_value_shift():
    ids, mask = padded_batch()

    def bitfit_probe(key_norm=False):
        probe = apply_bitfit(classifier(), ["all"], verbose=False).eval()
        if key_norm:  # QK-norm: keys normalised after k_proj, so adding b_k no longer shifts every score equally
            for block in probe.backbone.blocks:
                block.attn.k_proj.register_forward_hook(lambda module, args, out: F.layer_norm(out, out.shape[-1:]))
        return probe

    def key_gradient_ratio(probe):  # cell 21: RMS gradient of each bias subset
        probe.zero_grad()
        probe(ids, mask, labels=torch.tensor([0, 1, 1])).loss.backward()
        params = dict(probe.named_parameters())
        rms = {s: torch.cat([params[n].grad.flatten() for n in bias_names(probe, [s]) if n.startswith("backbone.")])
               .pow(2).mean().sqrt().item() for s in BIAS_TYPES}
        return rms["key"] / min(g for s, g in rms.items() if s != "key")

    def logit_change(probe, shift):
        torch.manual_seed(7)
        with torch.no_grad():
            before = probe(ids, mask).logits
            for block in probe.backbone.blocks:
                shift(block.attn)
            return (probe(ids, mask).logits - before).abs().max().item()

    def key_shift(attn):
        attn.k_proj.bias += torch.randn_like(attn.k_proj.bias)

    def value_trade(attn, sign=1.0):
        delta = torch.randn_like(attn.v_proj.bias)
        attn.v_proj.bias += delta
        attn.out_proj.bias -= sign * attn.out_proj.weight @ delta

    assert key_gradient_ratio(bitfit_probe()) < 1e-5
    assert logit_change(bitfit_probe(), key_shift) < 1e-4 and logit_change(bitfit_probe(), value_trade) < 1e-4
    assert not key_gradient_ratio(bitfit_probe(key_norm=True)) < 1e-5
    assert not logit_change(bitfit_probe(key_norm=True), key_shift) < 1e-4
    assert not logit_change(bitfit_probe(), lambda attn: value_trade(attn, sign=-1.0)) < 1e-4, "wrong sign"
    assert not logit_change(bitfit_probe(), lambda attn: attn.q_proj.bias.add_(torch.randn_like(attn.q_proj.bias))) \
        < 1e-4, "the query bias is not shift-invariant: the check tells biases apart"


# --------------------------------------------------------------------------- chapter 6


def test_chapter_6s_soft_prompt_check_fails_for_a_prompt_behind_the_input_or_masked_out():
    model = backbone()
    ids, mask = padded_batch()
    prompt_ids = torch.tensor(TOKENIZER.encode(" bad good bad good", add_special_tokens=False).ids)
    P = len(prompt_ids)
    explicit_ids = torch.cat([prompt_ids.expand(len(ids), -1), ids], dim=1)
    explicit_mask = torch.cat([torch.ones(len(ids), P, dtype=mask.dtype), mask], dim=1)
    with torch.no_grad():
        explicit = model(explicit_ids, explicit_mask).hidden_states
        soft = SoftPrompt(P, D, init=model.tok_emb.weight[prompt_ids])
        prompt = soft.weight.expand(len(ids), -1, -1)
        tokens = model.tok_emb(ids)
        variants = {"correct": soft(tokens, mask),
                    "behind the input": (torch.cat([tokens, prompt], 1), torch.cat([mask, explicit_mask[:, :P]], 1)),
                    "masked out": (torch.cat([prompt, tokens], 1), torch.cat([torch.zeros_like(mask[:, :P]), mask], 1)),
                    "no prompt at all": (tokens, mask)}

    def check(embeds, prompted_mask):  # cell 8 (there a wrong shape already breaks the line computing the gap)
        if embeds.shape != (len(ids), P + ids.shape[1], D) or not torch.equal(prompted_mask, explicit_mask):
            return False
        with torch.no_grad():
            hidden = model(inputs_embeds=embeds, attention_mask=prompted_mask).hidden_states
        return (hidden - explicit)[explicit_mask.bool()].abs().max().item() < 1e-5

    assert check(*variants.pop("correct"))
    for name, variant in variants.items():
        assert not check(*variant), name


def prompt_model(seed=0):
    config = PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", prompt_tuning_init_text=" good bad")
    return randomize(PromptTuningClassifier(backbone(seed=seed), TOKENIZER, config), scale=1.0)


def test_chapter_6s_mixed_task_check_fails_when_a_row_gets_the_other_tasks_prompt():
    model = prompt_model()
    generator = torch.Generator().manual_seed(8)
    rows = [torch.randint(6, VOCAB, (int(n),), generator=generator).tolist() for n in (5, 3, 6, 4, 2, 7)]
    task = torch.tensor([0, 1] * 3)
    bank = torch.stack([model.soft_prompt.weight.detach(), torch.randn(4, D, generator=generator)])
    label_sets = [model.label_ids, torch.tensor([11, 12, 13])]

    def pad(task_rows):
        ids, mask = torch.zeros(len(task_rows), 7, dtype=torch.long), torch.zeros(len(task_rows), 7, dtype=torch.long)
        for i, row in enumerate(task_rows):
            ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        return ids, mask

    def check(prompts):  # cell 48: one mixed batch against each task alone
        with torch.no_grad():
            hidden, mask = model.next_token_hidden(*pad(rows), prompts=prompts)
            for t in (0, 1):
                mixed = verbalizer_logits(hidden[task == t], mask[task == t], model.backbone.tok_emb.weight,
                                          label_sets[t])
                h, hm = model.next_token_hidden(*pad([r for r, k in zip(rows, task) if k == t]),
                                                prompts=bank[t].expand(3, -1, -1))
                if not torch.allclose(mixed, verbalizer_logits(h, hm, model.backbone.tok_emb.weight, label_sets[t]),
                                      atol=1e-5):
                    return False
        return True

    assert check(bank[task])
    assert not check(bank[torch.zeros_like(task)]), "every row given task 0's prompt"
    assert not check(bank[1 - task]), "the two tasks' prompts swapped"


def test_chapter_6s_ensemble_check_fails_when_reviews_and_prompts_are_misaligned():
    model = prompt_model()
    ids, mask = padded_batch(rows=3)
    bank = torch.randn(3, 4, D, generator=torch.Generator().manual_seed(9))  # K = 3 prompts
    K, B = len(bank), len(ids)
    with torch.no_grad():  # each prompt on its own: the reference (the lesson: each prompt's own recorded run)
        alone = torch.stack([model(ids, mask, prompts=p.expand(B, -1, -1)).logits.softmax(-1) for p in bank])

    def batched(tile_reviews=False):  # cell 46: one pass, review b repeated K times next to prompts 0..K-1
        repeated = (lambda x: x.repeat(K, 1)) if tile_reviews else (lambda x: x.repeat_interleave(K, dim=0))
        with torch.no_grad():
            out = model(repeated(ids), repeated(mask), prompts=bank.repeat(B, 1, 1)).logits
        return out.softmax(-1).view(B, K, -1).transpose(0, 1)  # (K, B, C)

    assert torch.allclose(batched(), alone, atol=1e-5)
    assert not torch.allclose(batched(tile_reviews=True), alone, atol=1e-5), "repeat instead of repeat_interleave"


# --------------------------------------------------------------------------- chapter 7


def test_chapter_7s_encoder_count_check_fails_for_a_one_directional_lstm():
    config = PromptEncoderConfig(num_virtual_tokens=6, token_dim=D, encoder_hidden_size=8)
    torch.manual_seed(0)
    encoder = PromptEncoder(config)
    assert encoder().shape == (6, D)  # cell 10
    assert sum(p.numel() for p in encoder.parameters()) == lstm_parameter_count(6, D, 8, 2)
    batch_kept = types.MethodType(lambda self: self.mlp_head(self.lstm_head(self.embedding.weight[None])[0]), encoder)
    assert batch_kept().shape != (6, D), "the LSTM's batch dimension not squeezed away"
    encoder.lstm_head = nn.LSTM(D, 8, num_layers=2, batch_first=True)  # not bidirectional
    assert sum(p.numel() for p in encoder.parameters()) != lstm_parameter_count(6, D, 8, 2)


@pytest.mark.parametrize("mode", ["gpt", "bert"])
def test_chapter_7s_template_checks_fail_for_a_prompt_in_the_wrong_place(mode):
    model_backbone = backbone(mode)
    sentences = [" The soup was cold", " Lovely staff and a warm room made our evening"]
    batch = next(iter(make_loader([(encode_piece(TOKENIZER, s), 0) for s in sentences], TOKENIZER, batch_size=2)))
    stand_in = TOKENIZER.encode(" we went there and it was", add_special_tokens=False).ids
    cls_id, sep_id, mask_id = (TOKENIZER.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    rows = [stand_in[:3] + encode_piece(TOKENIZER, s) + stand_in[3:] for s in sentences]
    if mode == "bert":
        rows = [[cls_id] + r + [mask_id] + encode_piece(TOKENIZER, ".") + [sep_id] for r in rows]
    answer_at = [len(r) - 3 if mode == "bert" else len(r) - 1 for r in rows]
    longest = max(map(len, rows))
    ids = torch.tensor([r + [0] * (longest - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows])
    with torch.no_grad():
        hidden = model_backbone(ids, mask, return_logits=False).hidden_states

    def check(template, read_at=0):  # cell 20, with the model's template and the explicit rows above
        model = PTuningModel(model_backbone, TOKENIZER, PromptEncoderConfig(template=template), ["bad", "good"]).eval()
        prompt = model_backbone.tok_emb.weight[stand_in]
        with torch.no_grad():
            embeds, assembled_mask, answer = assemble(model.segments, model_backbone.tok_emb, prompt,
                                                      batch["input_ids"], batch["attention_mask"], 32)
            out = model(batch["input_ids"], batch["attention_mask"], prompt=prompt).logits
            explicit = model_backbone.lm_logits(hidden[torch.arange(2), torch.tensor(answer_at) + read_at])
        return (torch.equal(assembled_mask, mask) and answer.tolist() == answer_at
                and torch.equal(embeds[mask.bool()], model_backbone.tok_emb(ids)[mask.bool()])
                and torch.equal(out, explicit[:, model.answer_ids]))

    tail = ["."] if mode == "bert" else []
    assert check([3, "[X]", 3, "[Y]"] + tail)
    assert not check([6, "[X]", "[Y]"] + tail), "all six prompt vectors in front of the input"
    assert not check([3, "[X]", 3, "[Y]"] + tail, read_at=-1), "the answer read one position early"


def test_chapter_7s_export_check_fails_when_the_encoders_input_is_kept():
    model = randomize(PTuningModel(backbone(), TOKENIZER, p_tuning_config(), ["bad", "good"]))
    ids, mask = padded_batch()
    before = logits(model, ids, mask)
    encoder_input = model.prompt_encoder.embedding.weight.detach().clone()
    model.export_prompt()
    after = logits(model, ids, mask)
    assert torch.equal(before.argmax(-1), after.argmax(-1)) and torch.allclose(before, after, atol=1e-5)  # cell 39
    with torch.no_grad():
        model.prompt_encoder.embedding.weight.copy_(encoder_input)  # exported e_1..e_P instead of the LSTM's output
    assert not torch.allclose(before, logits(model, ids, mask), atol=1e-5)


# --------------------------------------------------------------------------- chapter 8


def test_chapter_8s_count_checks_fail_for_an_input_only_prefix():
    model = backbone()
    P, k, width = 3, 8, LAYERS * 2 * D

    def with_mlp(**kwargs):  # cell 11
        config = PrefixTuningConfig(num_virtual_tokens=P, encoder_hidden_size=k, **kwargs).for_backbone(model)
        return sum(p.numel() for p in PrefixEncoder(config).parameters())

    assert with_mlp() == P * D + (D * k + k) + (k * width + width)
    assert with_mlp(prefix_projection=False) == P * width
    assert with_mlp(embedding_only=True) != P * D + (D * k + k) + (k * width + width), "a prefix at the input only"
    assert with_mlp(embedding_only=True, prefix_projection=False) != P * width


def kv_rows(pairs, heads_outside=False):
    """Chapter 8's table layout (drop_prefix_mlp) from L pairs of (1, H, P, h): [layer 0 key | layer 0 value | ...],
    heads inside. heads_outside=True breaks it: the heads outside the layers."""
    tensors = [t[0] for pair in pairs for t in pair]  # 2L of (H, P, h)
    stacked = torch.stack(tensors)  # (2L, H, P, h)
    P = stacked.shape[2]
    return (stacked.permute(2, 1, 0, 3) if heads_outside else stacked.permute(2, 0, 1, 3)).reshape(P, -1)


class PositionsFromZero(nn.Module):
    """A position embedding that restarts at 0 after a prefix: the real tokens no longer start at position P."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding

    def forward(self, positions):
        return self.embedding(positions - positions[0])


def test_chapter_8s_kv_cache_check_fails_for_swapped_keys_restarted_positions_or_a_hidden_prefix(monkeypatch):
    model = backbone()
    context = torch.randint(6, VOCAB, (1, 5), generator=torch.Generator().manual_seed(10))
    x, mask = padded_batch(rows=2)
    with torch.no_grad():
        cache = model(context, use_cache=True).past_key_values
        whole = model(torch.cat([context.expand(2, -1), x], 1),
                      torch.cat([torch.ones(2, 5, dtype=torch.long), mask], 1)).logits

    def check(pairs, positions_from_zero=False):  # cell 17: the context's cache handed over as the prefix
        as_prefix = PrefixTuningModel(backbone(), PrefixTuningConfig(num_virtual_tokens=5, prefix_projection=False))
        as_prefix.get_prefix = lambda batch_size: tuple((k.expand(batch_size, -1, -1, -1),
                                                         v.expand(batch_size, -1, -1, -1)) for k, v in pairs)
        if positions_from_zero:
            as_prefix.backbone.pos_emb = PositionsFromZero(as_prefix.backbone.pos_emb)
        with torch.no_grad():
            got = as_prefix.eval()(x, mask).logits
        n_real = mask.sum(1)
        return all(torch.allclose(got[i, :n_real[i]], whole[i, 5:5 + n_real[i]], atol=1e-5) for i in range(2))

    assert check(cache)
    assert not check([(v, k) for k, v in cache]), "keys and values swapped"
    assert not check(cache, positions_from_zero=True), "the real tokens' positions restart at 0"
    grow = MiniTransformer._key_padding_mask

    def prefix_hidden(self, attention_mask, B, P, T):  # the mask grown by P zeros instead of P ones
        allowed = grow(self, attention_mask, B, P, T)
        allowed[:, :P] = False
        return allowed

    monkeypatch.setattr(MiniTransformer, "_key_padding_mask", prefix_hidden)
    assert not check(cache), "the prefix masked out"


def test_chapter_8s_drop_mlp_check_fails_for_a_table_in_the_wrong_layout():
    model = randomize(PrefixTuningModel(backbone(), PrefixTuningConfig(num_virtual_tokens=3, encoder_hidden_size=8)))
    ids, mask = padded_batch()
    before = logits(model, ids, mask)
    broken = copy.deepcopy(model)
    drop_prefix_mlp(model)  # cell 32 (the lesson compares generations; logits are the stricter comparison)
    assert torch.allclose(logits(model, ids, mask), before, atol=1e-5)
    assert count_parameters(model)[0] == 3 * LAYERS * 2 * D
    with torch.no_grad():
        table = kv_rows(broken.get_prefix(1), heads_outside=True)
    config = PrefixTuningConfig(num_virtual_tokens=3, prefix_projection=False).for_backbone(broken.backbone)
    broken.peft_config, broken.prefix_encoder = config, PrefixEncoder(config)
    with torch.no_grad():
        broken.prefix_encoder.embedding.weight.copy_(table)
    assert not torch.allclose(logits(broken, ids, mask), before, atol=1e-5)


def test_chapter_8s_share_formula_check_fails_without_the_key_and_value_factor():
    def prefix_share(d_model, n_layers, vocab, P=10, per_layer=2):  # cell 34; per_layer=1 forgets the values
        return P * n_layers * per_layer * d_model / (n_layers * 12 * d_model ** 2 + vocab * d_model)

    torch.manual_seed(0)
    ours = MiniTransformer(TransformerConfig(vocab_size=2048, max_seq_len=128, d_model=128, n_layers=4, n_heads=4,
                                             d_ff=512, mode="gpt"))
    measured = 10 * 4 * 2 * 128 / count_parameters(ours)[1]
    assert abs(prefix_share(128, 4, 2048) - measured) < 0.001
    assert not abs(prefix_share(128, 4, 2048, per_layer=1) - measured) < 0.001


# --------------------------------------------------------------------------- chapter 9


def test_chapter_9s_deep_prompt_checks_fail_with_positions_from_zero_or_a_hidden_prefix():
    model = TokenClassifier(backbone("bert"), num_labels=3, dropout=0.0)
    inject_p_tuning_v2(model, PTuningV2Config(num_virtual_tokens=3), verbose=False)
    randomize(model)
    model.eval()
    ids, mask = padded_batch()
    P, T, base = 3, ids.shape[1], model.backbone.base_layer
    with torch.no_grad():
        pkv = model.backbone.prompt_encoder(len(ids))
        logits_ = model(ids, mask).logits
        explicit = model.head(base(ids, mask, past_key_values=pkv, return_logits=False).hidden_states)
        without_prompt = model.head(base(ids, mask, return_logits=False).hidden_states)

        def by_hand(first_position=P, prefix_visible=True):  # cell 24
            hidden = base.tok_emb(ids) + base.pos_emb(torch.arange(first_position, first_position + T))
            grown = torch.cat([torch.full((len(ids), P), prefix_visible), mask.bool()], dim=1)
            for block, layer_past in zip(base.blocks, pkv):
                hidden, _ = block(hidden, grown, layer_past)
            return model.head(base.ln_f(hidden))

        assert torch.equal(logits_, explicit) and torch.allclose(logits_, by_hand(), atol=1e-5)
        assert not torch.equal(logits_, without_prompt), "the prompt must reach the model's output"
        assert not torch.allclose(logits_, by_hand(first_position=0), atol=1e-5), "positions from 0"
        assert not torch.allclose(logits_, by_hand(prefix_visible=False), atol=1e-5), "the prefix masked out"


def test_chapter_9s_error_message_checks_fail_for_the_backbones_generic_errors(monkeypatch):
    model = TokenClassifier(backbone("bert"), num_labels=3, dropout=0.0)
    inject_p_tuning_v2(model, PTuningV2Config(num_virtual_tokens=3), verbose=False)
    base, ids, mask = model.backbone.base_layer, *padded_batch()

    def message(call):  # cell 28's show_error
        try:
            call()
        except ValueError as error:
            return str(error)
        raise AssertionError("expected a ValueError")

    too_long = torch.ones(1, 32 - 3 + 1, dtype=torch.long)
    said = message(lambda: model(too_long))
    assert "num_virtual_tokens" in said and "max_seq_len" in said
    # Without the prompt's own check, the backbone's message names max_seq_len but not the field to change:
    said = message(lambda: base(too_long, past_key_values=model.backbone.prompt_encoder(1)))
    assert not ("num_virtual_tokens" in said and "max_seq_len" in said)

    wrong_batch = model.backbone.prompt_encoder(1)  # a prefix for a batch of 1, used on a batch of 3
    assert "Expand a learned prefix to the batch size" in message(lambda: base(ids, mask, past_key_values=wrong_batch))
    monkeypatch.setattr(MiniTransformer, "_check_past", lambda self, past, batch_size: past[0][0].shape[2])
    with pytest.raises(RuntimeError):  # without the shape check: torch's own error, not the message the lesson reads
        message(lambda: base(ids, mask, past_key_values=wrong_batch))


# --------------------------------------------------------------------------- chapter 10


def test_chapter_10s_taxonomy_checks_fail_for_an_unmergeable_lora_or_an_unfrozen_bitfit(monkeypatch):
    def family(adapt):  # cell 6 runs taxonomy on each method
        return taxonomy(classifier(), adapt)["family"]

    def unfrozen_bitfit(model):
        return apply_bitfit(model, ["all"], verbose=False).requires_grad_(True)

    assert family(lambda m: adapted("lora", m)) == "reparameterisation"
    assert family(lambda m: apply_bitfit(m, ["all"], verbose=False)) == "selective"
    assert family(lambda m: adapted("adapters", m)) == "additive"
    assert family(lambda m: m) == "full"
    assert family(head_only) == "head only"
    assert family(unfrozen_bitfit) != "selective", "a BitFit that trains everything is full fine-tuning"
    monkeypatch.delattr(LoraLinear, "get_delta_weight")  # a low-rank branch that cannot be merged into W0
    assert family(lambda m: adapted("lora", m)) != "reparameterisation"


def test_chapter_10s_no_added_latency_check_fails_for_the_unmerged_lora():
    """Cell 23 reads the committed timings: merged LoRA within 10% of the base model at batch 1 and 32. The same
    check on the unmerged LoRA's row must fail, or it could not tell the two apart."""
    from experiments import comparison

    row = {(r["task"], r["method"]): r for r in comparison.load_results()["rows"]}

    def no_added_latency(r):
        return r["latency_b1_vs_base"] < 1.10 and r["latency_b32_vs_base"] < 1.10

    assert no_added_latency(row["sentiment", "lora_merged"])
    assert not no_added_latency(row["sentiment", "lora"])


def test_chapter_8s_relative_attention_check_fails_when_the_keys_change():
    """Section 8's identity (Petrov et al.): two prefixes leave layer 0's attention over the content the same once
    renormalised by 1 - alpha; a change of W_k, what LoRA or full fine-tuning can do, breaks it."""
    x, mask = padded_batch(rows=2)
    x, mask = x[1:], mask[1:]  # the padded row, as in the lesson

    def relative(model):  # cell 'layer0_softmax': (H, T, T) of the first block, divided by 1 - alpha
        seen = []
        hook = model.backbone.blocks[0].attn.attn_dropout.register_forward_hook(
            lambda m, args, out: seen.append(args[0][0]))
        with torch.no_grad():
            model.eval()(x, mask)
        hook.remove()
        alpha = seen[0][..., :4].sum(-1, keepdim=True)
        return seen[0][..., 4:] / (1 - alpha)

    models = []
    for seed in (0, 1):
        base = backbone()  # the same frozen weights for both
        torch.manual_seed(seed)  # a different prefix for each
        models.append(PrefixTuningModel(base, PrefixTuningConfig(num_virtual_tokens=4)))
    one, other = models
    assert not torch.equal(one.get_prefix(1)[0][0], other.get_prefix(1)[0][0])
    with torch.no_grad():  # the test backbone's small random W_q makes every query nearly 0: give them some size
        for model in (one, other):
            model.backbone.blocks[0].attn.q_proj.weight.add_(torch.randn(D, D, generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(relative(one), relative(other), rtol=1e-3, atol=1e-5)
    with torch.no_grad():
        other.backbone.blocks[0].attn.k_proj.weight.add_(torch.randn(D, D, generator=torch.Generator().manual_seed(2)))
    assert not torch.allclose(relative(one), relative(other), rtol=1e-3, atol=1e-5), "W_k changed"
