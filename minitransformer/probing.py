"""Knowledge probing: does the model "know" a fact it only saw during pretraining?

Each probe is a cloze, e.g. "Mira Okafor works as a [MASK] ." with a set of candidate
answers. The model ranks the candidates; the probe is right when the true answer ranks first.

* GPT mode scores a candidate by the log-probability of its tokens after the prefix.
* BERT mode puts one [MASK] per candidate token and sums the log-probabilities of the
  candidate's tokens at those positions (the usual multi-token cloze scoring).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .tokenizer import CLS, MASK, SEP


def fill_template(text: str, answer: str) -> tuple[str, int]:
    """Put `answer` in place of [MASK] with the corpus's spacing ("a [MASK] ." -> "a baker.").

    Returns the sentence and the character offset where the answer starts.
    """
    before, _, after = text.partition("[MASK]")
    if after[:1] == " " and after[1:2] in tuple(".,;:!?"):
        after = after[1:]
    return before + answer + after, len(before)


def masked_cloze(tokenizer, text: str, answer: str) -> tuple[list[int], list[int], list[int]]:
    """A BERT cloze: the filled-in sentence tokenized as in pretraining, answer tokens masked.

    Returns (ids with [CLS] and [SEP], the masked positions, the answer's token ids there).
    Writing "[MASK]" into the text instead tokenizes badly with byte-level BPE: "a [MASK] ."
    gives stray space tokens that never occur in the corpus.
    """
    filled, start = fill_template(text, answer)
    end = start + len(answer)
    encoding = tokenizer.encode(filled, add_special_tokens=False)
    positions = [i for i, (a, b) in enumerate(encoding.offsets) if a < end and b > start]
    ids = list(encoding.ids)
    targets = [ids[i] for i in positions]
    for i in positions:
        ids[i] = tokenizer.token_to_id(MASK)
    return [tokenizer.token_to_id(CLS), *ids, tokenizer.token_to_id(SEP)], [i + 1 for i in positions], targets


def _candidate_ids(tokenizer, candidate: str) -> list[int]:
    return tokenizer.encode(" " + candidate.strip(), add_special_tokens=False).ids


@torch.no_grad()
def candidate_scores(model, tokenizer, example: dict) -> torch.Tensor:
    """Log-likelihood of each candidate in `example["candidates"]`, shape (num_candidates,)."""
    mode = model.config.mode
    rows = []  # (input ids, positions scored, token ids expected there)
    if mode == "gpt":
        prefix = tokenizer.encode(example["prefix"], add_special_tokens=False).ids
        for candidate in example["candidates"]:
            cand = _candidate_ids(tokenizer, candidate)
            rows.append((prefix + cand, list(range(len(prefix), len(prefix) + len(cand))), cand))
    else:
        rows = [masked_cloze(tokenizer, example["text"], candidate) for candidate in example["candidates"]]
    longest = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.zeros(len(rows), longest, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for r, (ids, _, _) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention_mask[r, : len(ids)] = 1
    device = next(model.parameters()).device
    logits = model(input_ids.to(device), attention_mask.to(device)).logits.float()
    log_probs = F.log_softmax(logits, dim=-1)
    scores = []
    for r, (_, positions, cand) in enumerate(rows):
        # GPT predicts token t from position t-1; BERT predicts the masked position itself.
        shift = 1 if mode == "gpt" else 0
        scores.append(sum(log_probs[r, p - shift, tok].item() for p, tok in zip(positions, cand)))
    return torch.tensor(scores)


def probe_accuracy(model, tokenizer, examples: Sequence[dict]) -> float:
    """Share of probes whose true answer gets the highest score among the candidates."""
    was_training = model.training
    model.eval()
    correct = 0
    for ex in examples:
        scores = candidate_scores(model, tokenizer, ex)
        correct += int(ex["candidates"][int(scores.argmax())] == ex["answer"])
    model.train(was_training)
    return correct / max(len(examples), 1)


def answer_concentration(model, tokenizer, examples: Sequence[dict]) -> dict[str, dict]:
    """Per relation: accuracy, the answer the model gives most often and the share of probes it gives it to.

    A model that knows facts answers differently for different subjects; one that only learned which answers
    are common after "works as a" gives the same word whatever the subject (a share near 1).
    """
    from collections import Counter, defaultdict

    was_training = model.training
    model.eval()
    given: dict[str, Counter] = defaultdict(Counter)
    correct: Counter = Counter()
    for ex in examples:
        answer = ex["candidates"][int(candidate_scores(model, tokenizer, ex).argmax())]
        given[ex["relation"]][answer] += 1
        correct[ex["relation"]] += int(answer == ex["answer"])
    model.train(was_training)
    out = {}
    for relation, counts in given.items():
        n = sum(counts.values())
        top, times = counts.most_common(1)[0]
        out[relation] = {"probes": n, "accuracy": round(correct[relation] / n, 4), "most_given": top,
                         "most_given_share": round(times / n, 4)}
    return out


def corpus_phrasing_probes(world, subjects: Sequence[str]) -> list[dict]:
    """The facts of `subjects` in the pretraining corpus's own words, as cloze probes (the fields of
    load_task("probing")). The corpus states them as "{venue}, the {food} {eat_type} near {near}, ..." and
    "{person}, the {profession} from {hometown}, ..." (world/corpus.py); the probe's templates ("The cuisine at
    {venue} is [MASK] .") are paraphrases. A model that knows a fact should at least recall it here."""
    from .world import CUISINES, PROFESSIONS

    towns = sorted(t.name for t in world.towns)
    people, venues = {p.name: p for p in world.people}, {v.name: v for v in world.venues}
    unknown = [s for s in subjects if s not in people and s not in venues and s not in towns]
    if unknown:
        raise ValueError(f"{unknown[:3]} are not people, venues or towns of this world; pass subjects from its "
                         "probing task, e.g. sorted({ex['subject'] for ex in load_task('probing').test}).")
    probes = []
    for subject in subjects:
        if subject in venues:
            v = venues[subject]
            rows = [("cuisine", f"{v.name}, the [MASK] {v.eat_type} near {v.near} .", v.food, sorted(CUISINES))]
        elif subject in people:
            p = people[subject]
            rows = [("profession", f"{p.name}, the [MASK] from {p.hometown} .", p.profession, sorted(PROFESSIONS)),
                    ("hometown", f"{p.name}, the {p.profession} from [MASK] .", p.hometown, towns)]
        else:
            continue  # towns: the corpus states their products in many phrasings, none fixed
        for relation, text, answer, candidates in rows:
            probes.append({"subject": subject, "relation": relation, "text": text,
                           "prefix": text.split(" [MASK]")[0], "answer": answer, "candidates": list(candidates)})
    return probes
