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
    original = {id(p) for p in model.parameters()}
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
