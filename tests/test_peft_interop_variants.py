"""Chapter 11's LoRA variants against Hugging Face PEFT: the same weights give the same outputs, the same gradients
and the same optimizer, and the files load both ways.

DoRA (`use_dora`) and rsLoRA (`use_rslora`) are compared in float64, where any difference beyond rounding would show;
PiSSA (`init_lora_weights="pissa"`) in float32, the only precision PEFT initialises it in (it refuses float64).
LoRA+ is compared through `create_loraplus_optimizer`: the same parameter groups, then the same AdamW steps.
`MAX_DIFFERENCE` collects every comparison's largest absolute difference (printed with `-s`).

The project does not depend on `peft`: this module skips itself where it is not installed (see
tests/test_peft_interop.py for how to make an environment with it).
"""

import json
import warnings

import pytest
import torch

peft = pytest.importorskip("peft")

from peft.optimizers import create_loraplus_optimizer as peft_loraplus  # noqa: E402

from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig  # noqa: E402
from minitransformer.peft import load_peft_model, save_peft_model  # noqa: E402
from solutions.lora import LoraConfig  # noqa: E402  (chapter 3's, the loader of LORA files: it refuses variants)
from solutions.lora_variants import (LoraVariantConfig, LoraVariantLinear, create_loraplus_optimizer,  # noqa: E402
                                     inject_lora_variant, merge_and_unload)

X = torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(1))
LABELS = torch.tensor([0, 1, 1])
TARGETS = ["q_proj", "v_proj", "fc1"]  # fc1 is 16 -> 32: one magnitude per output feature is not per input feature
VARIANTS = {"dora": dict(use_dora=True), "rslora": dict(use_rslora=True), "pissa": dict(init_lora_weights="pissa"),
            "dora_rslora": dict(use_dora=True, use_rslora=True), "dora_pissa": dict(use_dora=True, init_lora_weights="pissa")}
MAX_DIFFERENCE = {}  # comparison -> max |difference|


def tiny_classifier(dtype=torch.float32) -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).to(dtype).eval()


def ours(options: dict, dtype=torch.float32, modules_to_save=(), lora_dropout=0.0):
    config = LoraVariantConfig(r=2, lora_alpha=4, lora_dropout=lora_dropout, target_modules=TARGETS,
                               modules_to_save=list(modules_to_save), **options)
    with default_dtype(dtype):
        model = inject_lora_variant(tiny_classifier(dtype), config, verbose=False)
    return model, config


def theirs(options: dict, dtype=torch.float32, modules_to_save=(), lora_dropout=0.0):
    config = peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=lora_dropout, target_modules=TARGETS,
                             modules_to_save=list(modules_to_save) or None, **options)
    with default_dtype(dtype), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.get_peft_model(tiny_classifier(dtype), config)


class default_dtype:
    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.before = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.before)


def our_name(peft_name: str) -> str:
    """PEFT's parameter name -> ours: no `base_model.model.` prefix, no adapter name, DoRA's magnitude as one tensor,
    a modules_to_save copy as the module itself."""
    name = peft_name.removeprefix("base_model.model.")
    name = name.replace(".lora_magnitude_vector.default.weight", ".lora_magnitude_vector")
    return name.replace(".modules_to_save.default.", ".").replace(".default.", ".")


def trainable(model) -> dict:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def same_weights(model, peft_model, seed: int) -> None:
    """Give every trainable tensor of `model` a random value (B and m included) and copy them into `peft_model`."""
    generator = torch.Generator().manual_seed(seed)
    mine, other = trainable(model), {our_name(n): p for n, p in trainable(peft_model).items()}
    assert set(mine) == set(other), sorted(set(mine) ^ set(other))
    with torch.no_grad():
        for name, p in mine.items():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            other[name].copy_(p)


def logits(model, x=X) -> torch.Tensor:
    return model(input_ids=x).logits


def record(what: str, a: torch.Tensor, b: torch.Tensor) -> float:
    difference = (a - b).abs().max().item()
    MAX_DIFFERENCE[what] = max(difference, MAX_DIFFERENCE.get(what, 0.0))
    return difference


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\nmax |ours - PEFT|:")
    for what, difference in MAX_DIFFERENCE.items():
        print(f"  {what:<52} {difference:.2e}")


# ----------------------------------------------------------------------------- the layers, same weights


@pytest.mark.parametrize("variant", ["dora", "rslora", "dora_rslora"])
def test_forward_and_gradients_equal_peft_in_float64(variant):
    options = VARIANTS[variant]
    model, _ = ours(options, torch.float64)
    peft_model = theirs(options, torch.float64)
    for mine, other in zip((m for m in model.modules() if isinstance(m, LoraVariantLinear)),
                           (m for m in peft_model.modules() if isinstance(m, peft.tuners.lora.Linear))):
        assert mine.scaling == other.scaling["default"], "the scale: lora_alpha / r, or / sqrt(r) with use_rslora"
        if options.get("use_dora"):  # before any change: both magnitudes start at the norm of W0, per output feature
            record(f"{variant}: magnitude at init", mine.lora_magnitude_vector,
                   other.lora_magnitude_vector["default"].weight)
            assert mine.lora_magnitude_vector.shape == (mine.base_layer.out_features,)
    same_weights(model, peft_model, seed=2)
    assert record(f"{variant}: logits (float64)", logits(model), logits(peft_model)) < 1e-12
    assert not torch.allclose(logits(model), logits(tiny_classifier(torch.float64)))  # the update matters
    for m in (model, peft_model):
        m.zero_grad()
        m(input_ids=X, labels=LABELS).loss.backward()
    others = {our_name(n): p for n, p in trainable(peft_model).items()}
    worst = max(record(f"{variant}: gradients (float64)", p.grad, others[n].grad) for n, p in trainable(model).items())
    assert worst < 1e-12, "DoRA's norm must be detached as PEFT detaches it"


def test_dora_with_dropout_in_training_equals_peft():
    """With lora_dropout active, both terms of DoRA's output use the dropped input (same seed, same masks)."""
    model, _ = ours(VARIANTS["dora"], torch.float64, lora_dropout=0.5)
    peft_model = theirs(VARIANTS["dora"], torch.float64, lora_dropout=0.5)
    same_weights(model, peft_model, seed=4)
    model.train(), peft_model.train()
    torch.manual_seed(7)
    mine = logits(model)
    torch.manual_seed(7)
    other = logits(peft_model)
    assert record("dora: logits, training with dropout (float64)", mine, other) < 1e-12
    torch.manual_seed(8)
    assert not torch.allclose(logits(model), mine), "the check can fail: another dropout mask gives other logits"


def test_dora_merge_equals_peft():
    model, _ = ours(VARIANTS["dora"], torch.float64)
    peft_model = theirs(VARIANTS["dora"], torch.float64)
    same_weights(model, peft_model, seed=5)
    before = logits(model).detach()
    merged, peft_merged = merge_and_unload(model), peft_model.merge_and_unload()
    for name, weight in merged.state_dict().items():
        record("dora: merged weights (float64)", weight, peft_merged.state_dict()[name])
    assert MAX_DIFFERENCE["dora: merged weights (float64)"] < 1e-12
    assert record("dora: merged vs unmerged logits (float64)", logits(merged), before) < 1e-12


@pytest.mark.parametrize("variant", ["pissa", "dora_pissa"])
def test_pissa_init_equals_peft(variant):
    """The same SVD, split and residual as PEFT (float32), so the same model at step 0 and after the same update."""
    options = VARIANTS[variant]
    model, _ = ours(options)
    peft_model = theirs(options)
    mine, other = dict(model.named_parameters()), {our_name(n): p for n, p in peft_model.named_parameters()}
    for name, p in mine.items():
        if ".lora_" in name or ".base_layer.weight" in name:  # A, B, m and the residual left in base_layer
            record(f"{variant}: A, B, m and residual at init (float32)", p, other[name])
    assert MAX_DIFFERENCE[f"{variant}: A, B, m and residual at init (float32)"] < 1e-6
    assert record(f"{variant}: logits at init (float32)", logits(model), logits(peft_model)) < 1e-5
    same_weights(model, peft_model, seed=6)
    assert record(f"{variant}: logits after the same update (float32)", logits(model), logits(peft_model)) < 1e-5


# ----------------------------------------------------------------------------- LoRA+


def test_loraplus_groups_and_steps_equal_peft():
    """The same learning rate and weight decay for every tensor (B, A, DoRA's m, the head), then the same AdamW steps."""
    model, _ = ours(VARIANTS["dora"], torch.float64, modules_to_save=["head"])
    peft_model = theirs(VARIANTS["dora"], torch.float64, modules_to_save=["head"])
    same_weights(model, peft_model, seed=8)
    kwargs = dict(lr=1e-3, loraplus_lr_ratio=16, loraplus_weight_decay=0.05)
    optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, **kwargs)
    peft_optimizer = peft_loraplus(peft_model, torch.optim.AdamW, **kwargs)

    def settings(opt, names):
        return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}

    mine = settings(optimizer, {id(p): n for n, p in model.named_parameters()})
    other = settings(peft_optimizer, {id(p): our_name(n) for n, p in peft_model.named_parameters()})
    assert mine == other
    assert {lr for n, (lr, _) in mine.items() if "lora_B" in n} == {16e-3}
    assert {lr for n, (lr, _) in mine.items() if "lora_A" in n} == {1e-3}
    model.train(), peft_model.train()
    for _ in range(3):
        for m, opt in ((model, optimizer), (peft_model, peft_optimizer)):
            opt.zero_grad()
            m(input_ids=X, labels=LABELS).loss.backward()
            opt.step()
    others = {our_name(n): p for n, p in trainable(peft_model).items()}
    worst = max(record("lora+: parameters after 3 AdamW steps (float64)", p, others[n])
                for n, p in trainable(model).items())
    assert worst < 1e-12


# ----------------------------------------------------------------------------- files, both ways


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_our_file_loads_in_peft(tmp_path, variant):
    options = VARIANTS[variant]
    model, config = ours(options, modules_to_save=["head"])
    peft_model = theirs(options, modules_to_save=["head"])
    same_weights(model, peft_model, seed=9)
    save_peft_model(model, config, tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and all(saved[k] == v for k, v in options.items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = peft.PeftModel.from_pretrained(tiny_classifier(), str(tmp_path)).eval()
    for k, v in options.items():
        assert getattr(loaded.peft_config["default"], k) == v
    assert record(f"{variant}: our file in PEFT, logits", logits(loaded), logits(model)) < 1e-5


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_peft_file_loads_here(tmp_path, variant):
    options = VARIANTS[variant]
    model, _ = ours(options, modules_to_save=["head"])
    peft_model = theirs(options, modules_to_save=["head"])
    same_weights(model, peft_model, seed=10)
    peft_model.save_pretrained(str(tmp_path))
    if options.get("use_dora"):
        with pytest.raises(ValueError, match="use_dora"):  # chapter 3's LoraConfig, the LORA loader, has no DoRA
            load_peft_model(tiny_classifier(), tmp_path)
    loaded = load_peft_model(tiny_classifier(), tmp_path, config_class=LoraVariantConfig).eval()
    assert all(getattr(layer, k) == v for layer in loaded.modules() if isinstance(layer, LoraVariantLinear)
               for k, v in options.items())
    assert record(f"{variant}: PEFT's file here, logits", logits(loaded), logits(peft_model.eval())) < 1e-5


def test_chapter_3s_loader_refuses_a_pissa_file(tmp_path):
    """PiSSA's A and B are right only on the residual it leaves in the base weight: a loader that does not compute
    that residual (chapter 3's LoraConfig) must refuse the file instead of loading A and B onto the full W0."""
    theirs(VARIANTS["pissa"]).save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "adapter_config.json").read_text())["init_lora_weights"] == "pissa"
    with pytest.raises(ValueError, match="init_lora_weights"):
        load_peft_model(tiny_classifier(), tmp_path)
    with pytest.raises(ValueError, match="init_lora_weights"):
        load_peft_model(tiny_classifier(), tmp_path, config_class=LoraConfig)
