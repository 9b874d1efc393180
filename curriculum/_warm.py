"""torch's lazy first-use work, done once before graded tests run under a time limit.

The first optimizer step imports ``torch._dynamo``, which takes seconds (tens of seconds on
a busy machine: a time limit firing in the middle leaves a half-imported module behind) and
rewraps a few torch functions (``torch.manual_seed``); an optimizer class also patches its
own ``step`` on first use.  :func:`warm_up` does this outside any time limit.  The grading
forkserver imports this module, so every grading process starts warm, fast, and from the
same state (the tamper snapshot does not mistake torch's own patches for a submission's).
"""

from __future__ import annotations

_done = False


def warm_up() -> None:
    """Run one step of each common optimizer (idempotent)."""
    global _done
    if _done:
        return
    import torch

    param = torch.nn.Parameter(torch.zeros(2))
    for optimizer in (torch.optim.AdamW([param], lr=0.1), torch.optim.Adam([param]), torch.optim.SGD([param], lr=0.1)):
        param.grad = torch.ones(2)
        optimizer.step()
        optimizer.zero_grad()
    _done = True


warm_up()

import minitransformer  # noqa: E402,F401 - for the graded tests

from curriculum import isolation  # noqa: E402,F401
