"""Graded tests for chapter 11, LoRA's descendants. Each test carries points and a hint for the student.

They judge behaviour: outputs against the papers' formulas, gradients, which tensors train at which learning rate,
files that load back. The matrices are told apart by shape (a layer with 6 inputs and 5 outputs, so that one norm per
output feature cannot pass for one per input feature), and the layer's given API (`base_layer`, `get_delta_weight`,
`merge`) is the lesson's.
"""

import tempfile

import torch
import torch.nn as nn

from curriculum import points
from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig

CHAPTER = "lora_variants"
IN, OUT, R = 6, 5, 2


def linear(seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(IN, OUT)


def trainable(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


def by_shape(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(A, B, magnitude or None) among the layer's trainable tensors, told apart by shape."""
    tensors = trainable(layer)
    a = [p for p in tensors if tuple(p.shape) == (R, IN)]
    b = [p for p in tensors if tuple(p.shape) == (OUT, R)]
    m = [p for p in tensors if p.ndim == 1]
    assert len(a) == 1 and len(b) == 1, "expected one A (r x in_features) and one B (out_features x r) that train"
    return a[0], b[0], (m[0] if m else None)


def dora_layer(impl, seed=0, **kwargs):
    return impl.LoraVariantLinear(linear(seed), r=R, lora_alpha=4, use_dora=True, **kwargs)


def as_if_trained(layer: nn.Module, seed=1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trainable(layer):
            p.add_(0.5 * torch.randn(p.shape, generator=generator))


def weight_formula(layer, x, detach_norm=True) -> torch.Tensor:
    """DoRA's W' x + b, written out: m * V / ||V|| per output row, V = W0 + s B A (the layer's own tensors)."""
    a, b, m = by_shape(layer)
    v = layer.base_layer.weight + layer.scaling * b @ a  # (out, in)
    norm = v.norm(dim=1, keepdim=True)
    weight = m[:, None] * v / (norm.detach() if detach_norm else norm)
    return x @ weight.T + layer.base_layer.bias


def tiny_classifier(seed=0) -> SequenceClassifier:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()


def batch(seed=1):
    return torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(seed))


def round_trip(impl, **options):
    """A tiny classifier with the variant on q, v and fc1, as if trained; saved and loaded into a fresh one."""
    from minitransformer.peft import load_peft_model, save_peft_model

    config = impl.LoraVariantConfig(r=R, lora_alpha=4, target_modules=["q_proj", "v_proj", "fc1"], **options)
    model = impl.inject_lora_variant(tiny_classifier(), config, verbose=False)
    as_if_trained(model, seed=3)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_peft_model(model, config, tmp)
        reloaded = load_peft_model(tiny_classifier(), tmp, config_class=impl.LoraVariantConfig).eval()
    return model, reloaded


# --------------------------------------------------------------------------- DoRA


@points(2, "DoRA's magnitude is one number per OUTPUT feature, the norm of each row of W0 (out_features, in_features): "
           "a vector of length out_features, as HF PEFT's lora_magnitude_vector. At the start m / ||W0|| = 1, so the "
           "layer must give exactly the base layer's output.", part="dora")
def test_dora_magnitude_is_per_output_feature(impl):
    base = linear()
    layer = dora_layer(impl)
    _, _, m = by_shape(layer)
    assert m is not None, "with use_dora the layer must train a magnitude vector"
    assert tuple(m.shape) == (OUT,), f"one magnitude per output feature: shape ({OUT},), got {tuple(m.shape)}"
    assert torch.allclose(m, base.weight.norm(dim=1), atol=1e-6), "m must start at the norm of each row of W0"
    x = torch.randn(4, IN)
    assert torch.allclose(layer(x), base(x), atol=1e-6)


@points(3, "DoRA's output must be the weight formula W' x + b with W' = m * (W0 + s B A) / ||W0 + s B A||, the norm "
           "taken per output feature (over each row): the layer adds (m/n - 1) * W0 x + (m/n) * s B A x to "
           "base_layer(x), where W0 x is base_layer(x) without its bias.", part="dora")
def test_dora_output_is_the_weight_formula(impl):
    for use_rslora in (False, True):
        layer = dora_layer(impl, use_rslora=use_rslora).eval()
        as_if_trained(layer)
        x = torch.randn(4, IN)
        assert torch.allclose(layer(x), weight_formula(layer, x), atol=1e-5), f"use_rslora={use_rslora}"


@points(2, "The norm ||W0 + s B A|| must be treated as a constant in the backward pass (detached, the DoRA paper's "
           "section 4.3 and HF PEFT): A, B and m get the gradients of the weight formula with a detached norm.",
        part="dora")
def test_dora_norm_is_detached(impl):
    layer = dora_layer(impl).eval()
    as_if_trained(layer)
    x = torch.randn(4, IN)
    layer(x).pow(2).sum().backward()
    got = [p.grad.clone() for p in by_shape(layer)]
    for p in trainable(layer):
        p.grad = None
    weight_formula(layer, x, detach_norm=True).pow(2).sum().backward()
    expected = [p.grad.clone() for p in by_shape(layer)]
    for p in trainable(layer):
        p.grad = None
    weight_formula(layer, x, detach_norm=False).pow(2).sum().backward()
    differentiated = [p.grad.clone() for p in by_shape(layer)]
    assert not all(torch.allclose(e, d, atol=1e-4) for e, d in zip(expected, differentiated))  # the test can tell
    for name, g, e in zip("ABm", got, expected):
        assert torch.allclose(g, e, atol=1e-4, rtol=1e-4), f"the gradient of {name} differs from the detached formula's"


@points(1, "DoRA rescales W0 x only: the bias is not rescaled, and lora_dropout acts on the LoRA input only (with "
           "B = 0 and m = ||W0|| the layer gives base_layer(x) even in training mode with dropout).", part="dora")
def test_dora_leaves_the_bias_and_respects_dropout(impl):
    base = linear()
    x = torch.randn(64, IN)
    layer = dora_layer(impl, lora_dropout=0.5).train()
    assert torch.allclose(layer(x), base(x), atol=1e-6)
    layer.eval()
    _, _, m = by_shape(layer)
    with torch.no_grad():
        m.mul_(2.0)  # twice the magnitude: twice W0 x, the same bias
    assert torch.allclose(layer(x), 2 * (x @ base.weight.T) + base.bias, atol=1e-5)


@points(2, "merge() must fold DoRA's weight formula into base_layer.weight (the same outputs), and unmerge() restore "
           "W0; both use your get_weight_norm (the norm of the unmerged weight, per output feature).", part="dora")
def test_dora_merge_keeps_outputs(impl):
    base = linear()
    original = base.weight.detach().clone()
    layer = dora_layer(impl).eval()
    as_if_trained(layer)
    x = torch.randn(4, IN)
    before = layer(x).detach()
    layer.merge()
    assert torch.allclose(layer.base_layer(x), before, atol=1e-5), "the merged base layer must give DoRA's output"
    layer.unmerge()
    assert torch.allclose(layer.base_layer.weight, original, atol=1e-5)
    assert torch.allclose(layer(x), before, atol=1e-5)


@points(2, "A DoRA adapter saved with save_peft_model (its magnitudes included) and loaded into a fresh model with "
           "config_class=LoraVariantConfig must give the same outputs.", part="dora")
def test_dora_file_round_trip(impl):
    model, reloaded = round_trip(impl, use_dora=True)
    x = batch()
    assert torch.allclose(reloaded(x).logits, model(x).logits, atol=1e-6)


# --------------------------------------------------------------------------- PiSSA


@points(2, "PiSSA moves W0's top-r part into s B A and leaves the rest in base_layer: at the start the layer must "
           "give the original layer's output (to float rounding).", part="pissa")
def test_pissa_starts_as_the_base_layer(impl):
    original = linear()
    layer = impl.LoraVariantLinear(linear(), r=R, lora_alpha=4, init_lora_weights="pissa")
    x = torch.randn(4, IN)
    assert torch.allclose(layer(x), original(x), atol=1e-5)


@points(3, "s B A must be W0's best rank-r approximation, U_r diag(S_r) V_r^T from the SVD (divide the singular values "
           "by the scale s, whatever it is), and base_layer.weight the frozen residual W0 - s B A.", part="pissa")
def test_pissa_adapter_holds_the_top_r_part(impl):
    w0 = linear().weight.detach()
    u, s, vh = torch.linalg.svd(w0, full_matrices=False)
    top = u[:, :R] @ torch.diag(s[:R]) @ vh[:R]
    for use_rslora in (False, True):
        layer = impl.LoraVariantLinear(linear(), r=R, lora_alpha=4, use_rslora=use_rslora, init_lora_weights="pissa")
        a, b, _ = by_shape(layer)
        assert torch.allclose(layer.scaling * b @ a, top, atol=1e-5), f"s B A is not W0's top-{R} part " \
                                                                      f"(use_rslora={use_rslora})"
        assert torch.allclose(layer.base_layer.weight, w0 - top, atol=1e-5), "base_layer must hold W0 - s B A"
        assert not layer.base_layer.weight.requires_grad, "the residual stays frozen"


@points(2, "PiSSA splits the singular values evenly: A = sqrt(S_r / s) V_r^T and B = U_r sqrt(S_r / s), so that "
           "A A^T = B^T B (as HF PEFT).", part="pissa")
def test_pissa_split_is_even(impl):
    layer = impl.LoraVariantLinear(linear(), r=R, lora_alpha=4, init_lora_weights="pissa")
    a, b, _ = by_shape(layer)
    s = torch.linalg.svdvals(linear().weight.detach())[:R]
    assert torch.allclose(a @ a.T, b.T @ b, atol=1e-5)
    assert torch.allclose(a @ a.T, torch.diag(s / layer.scaling), atol=1e-5)


@points(1, "Unlike LoRA (B = 0, so A's first gradient is zero), PiSSA's A and B both get a gradient at the first step.",
        part="pissa")
def test_pissa_both_matrices_learn_at_step_0(impl):
    layer = impl.LoraVariantLinear(linear(), r=R, lora_alpha=4, init_lora_weights="pissa")
    layer(torch.randn(4, IN)).pow(2).sum().backward()
    a, b, _ = by_shape(layer)
    assert a.grad is not None and a.grad.abs().max() > 0 and b.grad.abs().max() > 0


@points(1, "A PiSSA adapter saved and loaded into a fresh model must give the same outputs: loading computes the "
           "residual again from the fresh W0 (the same SVD) before copying the saved A and B.", part="pissa")
def test_pissa_file_round_trip(impl):
    model, reloaded = round_trip(impl, init_lora_weights="pissa")
    x = batch()
    assert torch.allclose(reloaded(x).logits, model(x).logits, atol=1e-5)


# --------------------------------------------------------------------------- LoRA+


@points(3, "create_loraplus_optimizer must put every trainable tensor in one parameter group: the B matrices at "
           "lr * loraplus_lr_ratio, the A matrices (and the head's weight matrix) at lr, nothing frozen, and pass the "
           "other keyword arguments to optimizer_cls.", part="loraplus")
def test_loraplus_parameter_groups(impl):
    model = impl.inject_lora_variant(tiny_classifier(), impl.LoraVariantConfig(r=R, lora_alpha=4), verbose=False)
    optimizer = impl.create_loraplus_optimizer(model, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16,
                                               betas=(0.8, 0.95))
    assert isinstance(optimizer, torch.optim.AdamW)
    rate = {}
    for group in optimizer.param_groups:
        assert group["betas"] == (0.8, 0.95), "keyword arguments go to the optimizer"
        for p in group["params"]:
            assert id(p) not in rate, "a tensor is in two groups"
            rate[id(p)] = group["lr"]
    assert set(rate) == {id(p) for p in trainable(model)}, "every trainable tensor, and nothing frozen"
    layers = [m for m in model.modules() if isinstance(m, impl.LoraVariantLinear)]
    assert layers
    for layer in layers:
        a, b = layer.lora_A.weight, layer.lora_B.weight
        assert abs(rate[id(b)] - 16e-3) < 1e-12, "B trains at lr * loraplus_lr_ratio"
        assert abs(rate[id(a)] - 1e-3) < 1e-12, "A trains at lr"
    assert abs(rate[id(model.head.weight)] - 1e-3) < 1e-12, "a weight matrix that is not B trains at lr"


@points(2, "The ratio multiplies B's steps: in one Adam step each entry moves by about its learning rate, so B's "
           "entries must move about loraplus_lr_ratio times as far as A's.", part="loraplus")
def test_loraplus_ratio_multiplies_the_steps_of_B(impl):
    layer = impl.LoraVariantLinear(linear(), r=R, lora_alpha=4)
    as_if_trained(layer)  # B != 0, so that A has a gradient too
    a, b, _ = by_shape(layer)
    a0, b0 = a.detach().clone(), b.detach().clone()
    optimizer = impl.create_loraplus_optimizer(layer, torch.optim.Adam, lr=1e-3, loraplus_lr_ratio=8)
    layer(torch.randn(4, IN)).pow(2).sum().backward()
    optimizer.step()
    step_a, step_b = (a - a0).abs().max().item(), (b - b0).abs().max().item()
    assert 0.9e-3 < step_a < 1.01e-3, f"A moved by {step_a:.2e}, expected about lr = 1e-3"
    assert 7.2e-3 < step_b < 8.1e-3, f"B moved by {step_b:.2e}, expected about 8 x lr = 8e-3"
