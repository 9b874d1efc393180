"""Metrics of the data-to-text task: the slot error rate and corpus BLEU."""

from __future__ import annotations

import re
from typing import Sequence

from .entities import CUISINES

# Surface forms accepted as realising a slot value. Patterns are tried in order and removed
# from the text once matched, so "not family-friendly" is not also read as "family-friendly".
SLOT_PATTERNS: dict[str, list[tuple[str, str]]] = {
    "eat_type": [("restaurant", r"restaurants?"), ("cafe", r"caf[eé]s?|coffee shops?"), ("pub", r"pubs?"),
                 ("bistro", r"bistros?"), ("diner", r"diners?")],
    "food": [(c, c) for c in CUISINES],
    "area": [("riverside", r"riverside|by the river|on the river"),
             ("city centre", r"city cent(?:re|er)|cent(?:re|er) of (?:the )?(?:town|city)|town cent(?:re|er)"),
             ("harbour", r"harbou?r"), ("old town", r"old town"), ("market square", r"market square"),
             ("outskirts", r"outskirts|edge of (?:the )?town")],
    "price": [("cheap", r"cheap(?:ly|er)?|inexpensive|budget"),
              ("moderate", r"moderate(?:ly)?|mid-priced|mid-range"),
              ("expensive", r"expensive|pricey|upmarket|costly")],
    "rating": [("low", r"low|poorly rated"), ("average", r"average"), ("high", r"high|highly rated")],
    "family_friendly": [
        ("no", r"(?:not|n't|never)\s+(?:very\s+)?(?:family|kid|child)[- ]friendly|adults[- ]only"
               r"|(?:not|n't)\s+welcome\s+(?:children|families|kids)|(?:children|kids)\s+are\s+not\s+welcome"),
        ("yes", r"(?:family|kid|child)[- ]friendly|welcomes\s+(?:children|families|kids)"
                r"|(?:children|kids)\s+are\s+welcome")],
}


def _slot_values_found(slot: str, text: str) -> set[str]:
    found = set()
    for value, pattern in SLOT_PATTERNS[slot]:
        regex = re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE)
        if regex.search(text):
            found.add(value)
            text = regex.sub(" ", text)
    return found


def slot_errors(record: dict[str, str], output: str) -> list[str]:
    """Slots of `record` that `output` fails to realise correctly (see `slot_error_rate`)."""
    text, errors = output, []
    # Names first (longest first), then blank them so words inside names ("Blue Heron Cafe") are not slot values.
    for slot in sorted(("name", "near"), key=lambda k: -len(record.get(k, ""))):
        if slot in record:
            pattern = re.compile(re.escape(record[slot]), re.IGNORECASE)
            if not pattern.search(text):
                errors.append(slot)
            text = pattern.sub(" ", text)
    for slot in SLOT_PATTERNS:
        if slot in record and _slot_values_found(slot, text) != {record[slot]}:
            errors.append(slot)
    return errors


def slot_error_rate(records: Sequence[dict[str, str]], outputs: Sequence[str]) -> float:
    """Share of record attributes that the outputs get wrong, over all attributes of all records.

    An attribute is correct when its value is realised and no *other* value of the same slot is:
    `name` and `near` must appear verbatim (case-insensitive); the other slots are matched with the
    word patterns in SLOT_PATTERNS, which cover every phrasing used by the references (e.g.
    family_friendly=yes: "family-friendly", "kid friendly", "welcomes families"; no: "not
    family-friendly", "adults only", "does not welcome children"; price=moderate: "moderately
    priced", "mid-priced"). Mentioning two prices, or "cheap" for an expensive venue, is an error.
    Attributes absent from a record are not checked. 0.0 is perfect, 1.0 all wrong."""
    if len(records) != len(outputs):
        raise ValueError(f"{len(records)} records but {len(outputs)} outputs")
    total = sum(len(r) for r in records)
    wrong = sum(len(slot_errors(r, o)) for r, o in zip(records, outputs))
    return wrong / max(total, 1)


def bleu(outputs: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0-100) with sacrebleu; each output may have a different number of references."""
    import sacrebleu  # optional dependency, only needed here

    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} reference lists")
    width = max((len(r) for r in references), default=1)
    # sacrebleu wants reference *streams*; None fills the gaps of outputs with fewer references.
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]
    return float(sacrebleu.corpus_bleu(list(outputs), streams).score)
