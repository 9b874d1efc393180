"""Graded tests for chapter 10, the comparison. Each test carries points and a hint for the student.

`taxonomy` is judged on tiny hand-built adaptations (one per family), so it needs none of the other chapters'
solutions; `pareto_front` on small point sets with ties and duplicates.
"""

import torch
import torch.nn as nn

from curriculum import points
from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig

CHAPTER = "comparison"


def tiny_classifier(seed=0) -> SequenceClassifier:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="gpt")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0)


class LowRank(nn.Module):
    """A made-up reparameterisation: W0 frozen, W0 + B A mergeable (it has get_delta_weight)."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base_layer = base.requires_grad_(False)
        self.A = nn.Linear(base.in_features, 2, bias=False)
        self.B = nn.Linear(2, base.out_features, bias=False)

    def get_delta_weight(self):
        return self.B.weight @ self.A.weight

    def forward(self, x):
        return self.base_layer(x) + self.B(self.A(x))


class Prompted(nn.Module):
    """A made-up additive method: a trainable prompt beside the frozen model (the head stays)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.prompt = nn.Parameter(torch.zeros(3, 16))


def biases_only(model):
    model.requires_grad_(False)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.requires_grad_(True)
    return model


def low_rank_q(model):
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    for block in model.backbone.blocks:
        block.attn.q_proj = LowRank(block.attn.q_proj)
    return model


def prompted(model):
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return Prompted(model)


def head_only(model):
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


@points(2, "A method that only unfreezes some of the model's own parameters is 'selective': list them under "
           "'selected' (the tensors that existed before `adapt`, compared by identity, that train), leave 'added' "
           "and 'rewritten' empty, and skip the task head (names starting with an entry of `ignore`).",
        part="taxonomy")
def test_selective(impl):
    model = tiny_classifier()
    expected = {n for n, _ in model.named_parameters() if n.endswith("bias") and not n.startswith("head.")}
    out = impl.taxonomy(model, biases_only)
    assert set(out["selected"]) == expected, f"selected: {sorted(out['selected'])}"
    assert not out["added"] and not out["rewritten"], f"nothing new was added: {out}"
    assert out["family"] == "selective", f"family {out['family']!r}, expected 'selective'"


@points(2, "New parameters inside a module that can merge its update into a base weight (the module, or one of "
           "its parents, has `get_delta_weight`) are 'rewritten', and the family is 'reparameterisation'. The "
           "frozen base weights they wrap do not train, so they are not listed.", part="taxonomy")
def test_reparameterisation(impl):
    out = impl.taxonomy(tiny_classifier(), low_rank_q)
    expected = {f"backbone.blocks.{i}.attn.q_proj.{ab}.weight" for i in range(2) for ab in "AB"}
    assert set(out["rewritten"]) == expected, f"rewritten: {sorted(out['rewritten'])}"
    assert not out["added"] and not out["selected"], f"only rewritten tensors train here: {out}"
    assert out["family"] == "reparameterisation"


@points(2, "New parameters anywhere else are 'added' and the family is 'additive'. Note the names change when "
           "`adapt` wraps the model (here 'model.head.weight'): ignore names that start with an `ignore` entry "
           "after the wrapping too, or pass the right prefix.", part="taxonomy")
def test_additive(impl):
    out = impl.taxonomy(tiny_classifier(), prompted, ignore=("model.head.",))
    assert out["added"] == ["prompt"], f"added: {out['added']}"
    assert not out["selected"] and not out["rewritten"], f"{out}"
    assert out["family"] == "additive"


@points(1, "When every original parameter (except the ignored head) trains, the family is 'full'; when nothing "
           "but the head trains, it is 'head only'.", part="taxonomy")
def test_full_and_head_only(impl):
    model = tiny_classifier()
    out = impl.taxonomy(model, lambda m: m)
    assert out["family"] == "full", f"family {out['family']!r} for full fine-tuning"
    assert len(out["selected"]) == sum(1 for n, _ in model.named_parameters() if not n.startswith("head."))
    assert impl.taxonomy(tiny_classifier(), head_only)["family"] == "head only"


@points(2, "pareto_front must keep exactly the points no other point dominates (cost <= and score >=, one of "
           "them strictly), and return their names sorted by increasing cost.", part="pareto_front")
def test_pareto_front(impl):
    points_ = [(100, 0.90, "full"), (10, 0.85, "lora"), (5, 0.70, "bitfit"), (20, 0.80, "adapters"),
               (1, 0.60, "prompt"), (10, 0.50, "weak")]
    assert impl.pareto_front(points_) == ["prompt", "bitfit", "lora", "full"]
    assert impl.pareto_front([(3, 0.5, "only")]) == ["only"]


@points(1, "Equal points do not dominate each other (both stay on the front), and a point with the same cost "
           "but a lower score is dominated.", part="pareto_front")
def test_pareto_front_ties(impl):
    assert sorted(impl.pareto_front([(10, 0.8, "a"), (10, 0.8, "b")])) == ["a", "b"]
    assert impl.pareto_front([(10, 0.8, "a"), (10, 0.7, "b")]) == ["a"]
    assert impl.pareto_front([(10, 0.8, "a"), (5, 0.8, "b")]) == ["b"]


# --------------------------------------------------------------------------- choosing a method


def cell(method, mean, stored, b1=1.0, b32=1.0, memory=4_000_000):
    return {"method": method, "mean": mean, "stored_parameters": stored, "latency_b1_vs_base": b1,
            "latency_b32_vs_base": b32, "memory": {"total": memory}}


TABLE = [cell("full", 0.93, 1_000_000, memory=17_000_000), cell("bitfit", 0.925, 6_000, b1=1.02),
         cell("lora", 0.92, 16_000, b1=1.20, b32=1.07), cell("lora_merged", 0.92, 16_000, b1=0.98),
         cell("prompt", 0.80, 2_500, b1=1.20, b32=1.45), cell("frozen", 0.65, 250)]


@points(2, "choose_method must keep only the rows that meet every limit given (latency at batch 1 and 32, stored "
           "parameters, training memory; None is no limit) and return the best mean score among them.",
        part="choose_method")
def test_choose_method_filters_then_takes_the_best(impl):
    assert impl.choose_method(TABLE) == "full"
    assert impl.choose_method(TABLE, max_stored_parameters=10_000) == "bitfit"
    assert impl.choose_method(TABLE, max_stored_parameters=5_000) == "prompt"
    assert impl.choose_method(TABLE, max_stored_parameters=5_000, max_latency_b32=1.4) == "frozen"
    assert impl.choose_method(TABLE, max_train_memory=5_000_000) == "bitfit"
    assert impl.choose_method(TABLE, max_train_memory=5_000_000, max_latency_b1=1.0) == "lora_merged"


@points(2, "Rows within `tolerance` of the best score count as equally good: among them choose_method must return "
           "the one that stores the fewest parameters, and between equal storage the faster at batch 1.",
        part="choose_method")
def test_choose_method_prefers_the_cheaper_of_equals(impl):
    assert impl.choose_method(TABLE, tolerance=0.006) == "bitfit"
    assert impl.choose_method(TABLE, tolerance=0.004) == "full"
    assert impl.choose_method(TABLE, tolerance=0.13) == "prompt"
    equal = [cell("lora", 0.92, 16_000, b1=1.20), cell("lora_merged", 0.92, 16_000, b1=0.98)]
    assert impl.choose_method(equal) == "lora_merged"


@points(1, "When no row meets the limits, choose_method must raise a ValueError that names them.", part="choose_method")
def test_choose_method_refuses_impossible_limits(impl):
    try:
        impl.choose_method(TABLE, max_stored_parameters=100)
    except ValueError as exc:
        assert "max_stored_parameters" in str(exc), f"the error must name the limit: {exc}"
    else:
        raise AssertionError("no row stores at most 100 numbers, yet a method was returned")


@points(1, "deployments() must return the three deployments, 'phone', 'service' and 'tagger', each a dict with a "
           "'task' of the table and, besides it, only keyword arguments of choose_method with numbers as values.",
        part="deployments")
def test_deployments_are_well_formed(impl):
    import inspect

    out = impl.deployments()
    assert set(out) == {"phone", "service", "tagger"}, f"deployments: {sorted(out)}"
    allowed = set(inspect.signature(impl.choose_method).parameters) - {"cells"}
    for name, spec in out.items():
        assert spec.get("task") in ("sentiment", "ner", "data_to_text", "probe"), f"{name}: task {spec.get('task')!r}"
        extra = set(spec) - {"task"} - allowed
        assert not extra, f"{name}: {sorted(extra)} are not arguments of choose_method"
        assert all(isinstance(v, (int, float)) for k, v in spec.items() if k != "task"), f"{name}: {spec}"
