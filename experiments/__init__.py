"""The course's experiments: what the methods achieve, judged by one protocol.

This package sits beside the backbone (``minitransformer/``) and the reference solutions
(``solutions/``): it imports both, and neither imports it.

- :mod:`experiments.stats`: the one statistics rule (seed spread and the finite evaluation
  set, combined into one 95% interval).
- :mod:`experiments.protocol`: the four outcomes, the doubled-budget convergence test, and
  the rule that joins them into a verdict.
- :mod:`experiments.claims`: every claim the course judges, with its paper's number and its
  threshold fixed before any run; ``verdict_table(chapter)`` is a lesson's verdict cell.
- :mod:`experiments.records`: the results' JSON schema, one file per run.
- :mod:`experiments.sweeps`: whether a method's learning rate was swept at its final budget
  (best inside the grid; near-ties broken by the validation loss).
- :mod:`experiments.runner`: the protocol's runs, resumable, with a progress bar and an ETA;
  :mod:`experiments.tasks` names the tasks it runs: :mod:`experiments.sentiment` (chapters 2-6)
  and :mod:`experiments.probe` (chapter 7's knowledge probe).
- :mod:`experiments.methods`: the methods the benchmarks run, declared once.
- :mod:`experiments.benchmark` (``python -m experiments.benchmark ...``): the chapters' own
  benchmarks (``bench_*.py``, ``comparison*.py``) and README's generated tables.

Command line::

    python -m experiments verdicts [--chapter N] [--json]    # every verdict of the course
    python -m experiments sweep sentiment --methods prompt_tuning --lrs 0.1 0.3 1
    python -m experiments run sentiment|probe [--workers 2] [--dry-run]
"""
