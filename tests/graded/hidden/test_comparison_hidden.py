"""Hidden graded tests for chapter 10: each deployment's limits must pick, on the measured table
(`benchmarks/comparison.json`), the method that the deployment's description picks. Left out of the student
release; they use only the chapter's public API (`choose_method`, `deployments`)."""

from curriculum import points

CHAPTER = "comparison"

# The descriptions of section 8, as limits: 16 KiB of float32 numbers, 4.5 MiB of training state.
REFERENCE = {
    "phone": dict(task="sentiment", max_latency_b1=1.10, tolerance=0.01),
    "service": dict(task="sentiment", max_stored_parameters=16 * 1024 // 4, max_latency_b32=1.5, tolerance=0.01),
    "tagger": dict(task="ner", max_train_memory=4.5 * 2**20, max_latency_b1=1.10, tolerance=0.01),
}


def rows(task):
    from experiments import comparison

    return [r for r in comparison.load_results()["rows"] if r["task"] == task]


def reference_choice(spec):
    """The rule of section 8, written independently of the solution."""
    limits = {"max_latency_b1": "latency_b1_vs_base", "max_latency_b32": "latency_b32_vs_base",
              "max_stored_parameters": "stored_parameters"}
    kept = []
    for r in rows(spec["task"]):
        ok = all(spec.get(k) is None or r[col] <= spec[k] for k, col in limits.items())
        ok = ok and (spec.get("max_train_memory") is None or r["memory"]["total"] <= spec["max_train_memory"])
        if ok:
            kept.append(r)
    top = max(r["mean"] for r in kept)
    near = sorted((r for r in kept if r["mean"] >= top - spec.get("tolerance", 0.0)),
                  key=lambda r: (r["stored_parameters"], r["latency_b1_vs_base"]))
    return near[0]["method"]


def check(impl, name):
    spec = impl.deployments()[name]
    limits = {k: v for k, v in spec.items() if k != "task"}
    got = impl.choose_method(rows(spec["task"]), **limits)
    expected = reference_choice(REFERENCE[name])
    assert spec["task"] == REFERENCE[name]["task"], f"{name}: which task does the description name?"
    assert got == expected, f"{name}: your limits choose {got!r}; reread the description's units and batch size"


@points(1, "The phone deployment's limits must choose the method its description chooses on the measured table.",
        part="deployments")
def test_phone(impl):
    check(impl, "phone")


@points(1, "The service deployment's limits must choose the method its description chooses on the measured table.",
        part="deployments")
def test_service(impl):
    check(impl, "service")


@points(1, "The tagger deployment's limits must choose the method its description chooses on the measured table.",
        part="deployments")
def test_tagger(impl):
    check(impl, "tagger")
