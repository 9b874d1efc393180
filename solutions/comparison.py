"""Generated from notebooks/10_comparison.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import torch.nn as nn

FAMILIES = ("full", "selective", "additive", "reparameterisation", "head only")


def taxonomy(model: nn.Module, adapt, ignore: tuple = ("head.",)) -> dict:
    """Apply `adapt` (model -> adapted model) and sort the trainable parameters of the result, by name:

    selected: parameters the model had before (same tensor objects) that train;
    rewritten: new parameters inside a module with `get_delta_weight` (or below one): a mergeable update;
    added: every other new parameter.
    Parameters whose name starts with one of `ignore` (the task head) are left out. The family is
    "reparameterisation" if anything is rewritten, else "additive" if anything is added, else "full" if every
    original parameter trains, else "selective" if some do, else "head only".
    Returns {"added": [...], "selected": [...], "rewritten": [...], "family": str}.
    """
    original = {id(p): p for p in model.parameters()}  # keeps them alive: a freed object's id can be reused
    n_original = sum(1 for name, _ in model.named_parameters() if not name.startswith(ignore))
    adapted = adapt(model)
    modules = dict(adapted.named_modules())
    out = {"added": [], "selected": [], "rewritten": []}
    for name, p in adapted.named_parameters():
        if name.startswith(ignore) or not p.requires_grad:
            continue
        if id(p) in original:
            out["selected"].append(name)
            continue
        parts = name.split(".")[:-1]  # the owning module's path, then its ancestors
        owners = [modules[".".join(parts[:i])] for i in range(len(parts), 0, -1)]
        out["rewritten" if any(hasattr(m, "get_delta_weight") for m in owners) else "added"].append(name)
    if out["rewritten"]:
        family = "reparameterisation"
    elif out["added"]:
        family = "additive"
    elif out["selected"]:
        family = "full" if len(out["selected"]) == n_original else "selective"
    else:
        family = "head only"
    out["family"] = family
    return out


def pareto_front(points: list) -> list:
    """The names of the points no other point dominates, in order of increasing cost.

    `points` is a list of (cost, score, name). A point is dominated if another one has cost <= its cost and
    score >= its score, with at least one of the two strict. Equal points do not dominate each other.
    """
    front = []
    for cost, score, name in points:
        dominated = any(c <= cost and s >= score and (c < cost or s > score) for c, s, _ in points)
        if not dominated:
            front.append((cost, score, name))
    return [name for _, _, name in sorted(front, key=lambda p: (p[0], -p[1]))]


def choose_method(cells: list, *, max_latency_b1=None, max_latency_b32=None, max_stored_parameters=None,
                  max_train_memory=None, tolerance: float = 0.0) -> str:
    """The method to deploy, from the measured rows of one task (see the table above for the limits).

    Keep the rows that meet every limit given (None: no limit); among those within `tolerance` of the best mean
    score, return the method that stores the fewest parameters, ties broken by the lower latency at batch 1.
    Raise a ValueError naming the limits when no row meets them.
    """
    limits = {"max_latency_b1": (max_latency_b1, lambda r: r["latency_b1_vs_base"]),
              "max_latency_b32": (max_latency_b32, lambda r: r["latency_b32_vs_base"]),
              "max_stored_parameters": (max_stored_parameters, lambda r: r["stored_parameters"]),
              "max_train_memory": (max_train_memory, lambda r: r["memory"]["total"])}
    kept = [r for r in cells if all(bound is None or value(r) <= bound for bound, value in limits.values())]
    if not kept:
        given = {name: bound for name, (bound, _) in limits.items() if bound is not None}
        raise ValueError(f"no method meets every limit {given}: relax one of them.")
    top = max(r["mean"] for r in kept)
    equal = [r for r in kept if r["mean"] >= top - tolerance]
    return min(equal, key=lambda r: (r["stored_parameters"], r["latency_b1_vs_base"]))["method"]


def deployments() -> dict:
    """The three deployments of the text as limits: {"phone": dict(task=..., tolerance=..., ...), "service": ...,
    "tagger": ...}, every key but `task` a keyword argument of choose_method."""
    return {
        "phone": dict(task="sentiment", max_latency_b1=1.10, tolerance=0.01),
        "service": dict(task="sentiment", max_stored_parameters=16 * 1024 // 4, max_latency_b32=1.5, tolerance=0.01),
        "tagger": dict(task="ner", max_train_memory=4.5 * 2**20, max_latency_b1=1.10, tolerance=0.01),
    }
