"""Imported once by the grading forkserver: do torch's lazy first-use work before forking.

The first optimizer step imports ``torch._dynamo``, which takes seconds and rewraps a few
torch functions (``torch.manual_seed``); an optimizer class also patches its own ``step``
on first use.  Doing both here means every grading process starts from the same state
(so the tamper snapshot does not mistake them for a submission's changes) and fast.
"""

import torch

import minitransformer  # noqa: F401 - imported for the graded tests
from curriculum import isolation  # noqa: F401

_param = torch.nn.Parameter(torch.zeros(2))
for _optimizer in (torch.optim.AdamW([_param], lr=0.1), torch.optim.Adam([_param]), torch.optim.SGD([_param], lr=0.1)):
    _param.grad = torch.ones(2)
    _optimizer.step()
    _optimizer.zero_grad()
del _param, _optimizer
