"""Tests for the generated world, its pretraining corpus and the four tasks (whole file: a few seconds)."""

from __future__ import annotations

import random
import re
import time
from collections import Counter

import pytest

from minitransformer.world import (AREAS, CUISINES, DATA_TO_TEXT_SLOTS, EAT_TYPES, HOBBIES, NER_LABELS, PRICES,
                                   PROBE_RELATIONS, PROFESSIONS, RATINGS, SENTIMENT_CEILING, SENTIMENT_LABELS,
                                   TASK_NAMES, annotated_corpus, bleu, corpus_stats, generate_world, load_task,
                                   meaning_representation, pretraining_corpus, slot_error_rate, slot_errors,
                                   tokenize)


@pytest.fixture(scope="module")
def world():
    return generate_world(0)


@pytest.fixture(scope="module")
def corpus(world):
    return annotated_corpus(world, seed=0)


@pytest.fixture(scope="module")
def corpus_text(corpus):
    return "\n".join(d.text for d in corpus)


@pytest.fixture(scope="module")
def tasks(world):
    return {name: load_task(name, 0, world=world) for name in TASK_NAMES}


# -- world --------------------------------------------------------------------------------------

def test_world_is_deterministic_per_seed():
    assert generate_world(0) == generate_world(0)
    assert generate_world(3) == generate_world(3)
    assert generate_world(0) != generate_world(1)
    assert generate_world(0).people[:5] != generate_world(1).people[:5]


def test_world_does_not_touch_global_random_state():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_world(0)
    load_task("sentiment", 0)
    assert random.random() == expected


def test_world_entities_are_consistent(world):
    assert (len(world.towns), len(world.people), len(world.venues)) == (40, 200, 120)
    town_names = {t.name for t in world.towns}
    person_names = {p.name for p in world.people}
    venue_names = {v.name for v in world.venues}
    assert len(town_names) == 40 and len(person_names) == 200 and len(venue_names) == 120
    assert all(len(t.name.split()) == 1 for t in world.towns)
    assert all(len(p.name.split()) == 2 for p in world.people)
    assert all(len(v.name.split()) >= 2 for v in world.venues)
    for p in world.people:
        assert p.hometown in town_names and p.favourite in venue_names
        assert p.profession in PROFESSIONS and p.hobby in HOBBIES
    for v in world.venues:
        assert v.town in town_names and v.owner in person_names
        assert v.near in venue_names and v.near != v.name
        assert v.eat_type in EAT_TYPES and v.food in CUISINES and v.area in AREAS
        assert v.price in PRICES and v.rating in RATINGS
        landscape = world.town(v.town).landscape
        assert v.area != "riverside" or landscape == "river"
        assert v.area != "harbour" or landscape == "coast"
    assert len({v.owner for v in world.venues}) == 120  # one venue per owner
    assert len(world.facts()) == 40 * 3 + 200 * 4 + 120 * 9


# -- corpus -------------------------------------------------------------------------------------

def test_corpus_is_deterministic_and_prefix_stable(world):
    small = pretraining_corpus(world, seed=0, n_documents=300)
    assert small == pretraining_corpus(generate_world(0), seed=0, n_documents=300)
    assert small != pretraining_corpus(world, seed=1, n_documents=300)
    assert small != pretraining_corpus(generate_world(1), seed=1, n_documents=300)
    assert pretraining_corpus(world, seed=0, n_documents=100) == small[:100]


def test_default_corpus_size_and_vocabulary(corpus):
    stats = corpus_stats([d.text for d in corpus])
    assert 4_000_000 <= stats["chars"] <= 6_000_000
    assert stats["unique_words"] < 3000
    assert set(Counter(d.kind for d in corpus)) == {"person", "town", "venue", "news", "review", "listing"}
    assert all(d.text.strip() and len(d.text) < 1000 for d in corpus)


def test_corpus_generation_is_fast(world):
    start = time.perf_counter()
    pretraining_corpus(world, seed=0)
    assert time.perf_counter() - start < 10


def test_every_fact_is_stated_many_times(world, corpus):
    counts = Counter(f for d in corpus for f in set(d.facts))
    facts = [(s, r) for s, r, _ in world.facts()]
    assert set(counts) <= set(facts)
    assert min(counts[f] for f in facts) >= 15


def test_annotated_facts_are_really_in_the_text(world, corpus):
    # For facts whose value is a name or a plain word, the annotation must match the text.
    values = {(s, r): v for s, r, v in world.facts()}
    checked = 0
    for doc in corpus[:2000]:
        for subject, relation in doc.facts:
            value = values[(subject, relation)]
            assert subject in doc.text
            if relation in ("hometown", "favourite", "town", "near", "owner", "food", "product", "region"):
                assert value in doc.text, (subject, relation, value, doc.text)
                checked += 1
    assert checked > 1000


# -- tasks: shared ------------------------------------------------------------------------------

def test_unknown_task_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        load_task("translation")
    assert all(name in str(info.value) for name in TASK_NAMES)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_tasks_are_deterministic_fast_and_seed_dependent(name):
    start = time.perf_counter()
    first = load_task(name, 0)
    assert time.perf_counter() - start < 2
    again = load_task(name, 0)
    assert (first.train, first.validation, first.test) == (again.train, again.validation, again.test)
    other = load_task(name, 1)
    assert first.train != other.train
    assert first.name == name and first.description


@pytest.mark.parametrize("name,sizes", [("sentiment", (2000, 500, 500)), ("ner", (1500, 300, 300)),
                                        ("data_to_text", (1500, 200, 200)), ("probing", (300, 150, 300))])
def test_task_sizes(tasks, name, sizes):
    task = tasks[name]
    assert (len(task.train), len(task.validation), len(task.test)) == sizes


# -- sentiment ----------------------------------------------------------------------------------

def test_sentiment_format_balance_and_disjoint_splits(tasks):
    task = tasks["sentiment"]
    assert task.labels == SENTIMENT_LABELS == ["negative", "positive"]
    for split in (task.train, task.validation, task.test):
        assert all(set(ex) == {"text", "label"} and ex["label"] in (0, 1) for ex in split)
        assert 0.44 <= sum(ex["label"] for ex in split) / len(split) <= 0.56
    train = {ex["text"] for ex in task.train}
    assert not train & {ex["text"] for ex in task.test}
    assert not train & {ex["text"] for ex in task.validation}
    assert 0.95 <= SENTIMENT_CEILING <= 0.98


def test_sentiment_is_not_solvable_by_keywords(tasks):
    texts = [(ex["text"].lower(), ex["label"]) for ex in tasks["sentiment"].train]
    positive = {"delicious", "wonderful", "excellent", "tasty", "superb", "fresh", "lovely", "friendly", "helpful",
                "polite", "cheerful", "pleasant", "calm", "charming", "loved", "enjoyed", "happy", "good", "fair",
                "reasonable", "quickly", "recommend", "worth", "happily"}
    negative = {"bland", "cold", "greasy", "stale", "tasteless", "awful", "dry", "rude", "slow", "careless",
                "unfriendly", "grumpy", "noisy", "gloomy", "unpleasant", "unhappy", "disappointed", "bad", "waste",
                "poor", "never", "not"}

    def lexicon(text: str) -> int:
        words = re.findall(r"[a-z]+", text)
        return int(sum(w in positive for w in words) > sum(w in negative for w in words))

    assert sum(lexicon(t) == y for t, y in texts) / len(texts) < 0.7
    # Negation and contrast occur in both classes.
    for label in (0, 1):
        same = [t for t, y in texts if y == label]
        assert sum(bool(re.search(r"\bnot\b|n't|\bnever\b", t)) for t in same) / len(same) > 0.4
        assert sum(bool(re.search(r"\bbut\b|however|although|\byet\b", t)) for t in same) / len(same) > 0.3


def test_sentiment_reviews_are_not_copied_from_the_corpus(tasks, corpus):
    corpus_docs = {d.text for d in corpus}
    task = tasks["sentiment"]
    assert not any(ex["text"] in corpus_docs for ex in task.train + task.validation + task.test)


# -- ner ----------------------------------------------------------------------------------------

def _spans(tags: list[str]) -> list[tuple[str, int, int]]:
    spans, start = [], None
    for i, tag in enumerate(tags + ["O"]):
        if start is not None and not tag.startswith("I-"):
            spans.append((tags[start][2:], start, i))
            start = None
        if tag.startswith("B-"):
            start = i
    return spans


def test_ner_tags_are_valid_bio(tasks):
    task = tasks["ner"]
    assert task.labels == NER_LABELS
    seen = Counter()
    for ex in task.train + task.validation + task.test:
        tokens, tags = ex["tokens"], ex["tags"]
        assert len(tokens) == len(tags) > 0
        assert all(t and not re.search(r"\s", t) for t in tokens)
        assert tokenize(" ".join(tokens)) == tokens
        for i, tag in enumerate(tags):
            assert tag in NER_LABELS
            if tag.startswith("I-"):
                assert i > 0 and tags[i - 1][2:] == tag[2:] and tags[i - 1] != "O"
        seen.update(tags)
    assert all(seen[label] > 50 for label in NER_LABELS)  # multi-word names give I- tags of every type


def test_ner_entities_are_world_entities_or_novel_names(world, tasks):
    from minitransformer.world.tasks import NER_NOVEL_NAMES

    def names(pools):
        firsts = {n for p in pools for n in NER_NOVEL_NAMES[p]["first"]}
        lasts = {n for p in pools for n in NER_NOVEL_NAMES[p]["last"]}
        return {"PER": firsts | lasts | {f"{f} {l}" for f in firsts for l in lasts},
                "LOC": {n for p in pools for k in ("town", "region") for n in NER_NOVEL_NAMES[p][k]},
                "ORG": {n for p in pools for n in NER_NOVEL_NAMES[p]["venue"]}}

    people = {p.name for p in world.people} | {p.first for p in world.people} | {p.last for p in world.people}
    places = {t.name for t in world.towns} | set(world.regions)
    venues = {v.name for v in world.venues}
    world_names = {"PER": people, "LOC": places, "ORG": venues}
    held_out = {kind: names_ - names(["train"])[kind] - world_names[kind] for kind, names_ in names(["held_out"]).items()}
    for split, pools in (("train", ["train"]), ("validation", ["train", "held_out"]), ("test", ["train", "held_out"])):
        novel, found = names(pools), Counter()
        for ex in getattr(tasks["ner"], split):
            lower = not any(t[:1].isupper() for t in ex["tokens"])
            for kind, start, end in _spans(ex["tags"]):
                mention = " ".join(ex["tokens"][start:end])
                allowed = world_names[kind] | novel[kind]
                assert mention in ({n.lower() for n in allowed} if lower else allowed), (split, mention)
                found["held_out" if mention in held_out[kind] else "other"] += 1
            found["lower"] += lower
        assert (found["held_out"] > 0) == (split != "train"), f"held-out names must occur in {split} only if not train"
        assert found["lower"] > 0  # some sentences are all lower case


def test_ner_splits_are_disjoint(tasks):
    task = tasks["ner"]
    train = {" ".join(ex["tokens"]) for ex in task.train}
    assert not train & {" ".join(ex["tokens"]) for ex in task.test}
    assert not train & {" ".join(ex["tokens"]) for ex in task.validation}


# -- data-to-text -------------------------------------------------------------------------------

def test_data_to_text_format_and_world_consistency(world, tasks):
    task = tasks["data_to_text"]
    for ex in task.train + task.validation + task.test:
        record = ex["record"]
        assert "name" in record and 3 <= len(record) <= 8 and set(record) <= set(DATA_TO_TEXT_SLOTS)
        assert ex["meaning_representation"] == meaning_representation(record)
        assert 2 <= len(ex["references"]) <= 4 and len(set(ex["references"])) == len(ex["references"])
        venue = world.venue(record["name"])
        for slot, value in record.items():
            expected = ("yes" if venue.family_friendly else "no") if slot == "family_friendly" else getattr(venue, slot)
            assert value == expected


def test_data_to_text_test_venues_are_unseen_in_train(tasks):
    task = tasks["data_to_text"]
    train = {ex["record"]["name"] for ex in task.train}
    validation = {ex["record"]["name"] for ex in task.validation}
    test = {ex["record"]["name"] for ex in task.test}
    assert not train & test and not train & validation and not validation & test


def test_slot_error_rate_is_zero_on_references_and_positive_on_bad_outputs(tasks):
    examples = tasks["data_to_text"].train + tasks["data_to_text"].test
    records = [ex["record"] for ex in examples for _ in ex["references"]]
    references = [ref for ex in examples for ref in ex["references"]]
    assert slot_error_rate(records, references) == 0.0
    assert slot_error_rate(records[:50], [""] * 50) == 1.0
    # A description of a *different* venue gets many slots wrong.
    shifted = references[-50:]
    assert slot_error_rate(records[:50], shifted) > 0.3


def test_slot_errors_detect_wrong_and_negated_values():
    record = {"name": "Blue Heron Cafe", "eat_type": "cafe", "price": "cheap", "family_friendly": "no",
              "near": "The Golden Fork"}
    good = "Blue Heron Cafe is a cheap cafe near The Golden Fork. It is not family-friendly."
    assert slot_errors(record, good) == []
    assert slot_errors(record, good.replace("not family-friendly", "family-friendly")) == ["family_friendly"]
    assert slot_errors(record, good.replace("cheap", "expensive")) == ["price"]
    assert slot_errors(record, good.replace("cheap cafe", "cheap and expensive cafe")) == ["price"]
    assert set(slot_errors(record, "Blue Heron is a pub.")) == set(record)
    with pytest.raises(ValueError):
        slot_error_rate([record], [])


def test_bleu_of_references_against_themselves(tasks):
    pytest.importorskip("sacrebleu")
    examples = tasks["data_to_text"].test
    references = [ex["references"] for ex in examples]
    assert bleu([refs[0] for refs in references], references) == pytest.approx(100.0, abs=0.01)
    assert bleu(["the a of"] * len(references), references) < 5


# -- probing ------------------------------------------------------------------------------------

def test_probing_format(world, tasks):
    task = tasks["probing"]
    relations = {ex["relation"] for ex in task.train + task.test}
    assert relations == set(PROBE_RELATIONS) and 4 <= len(relations) <= 6
    for ex in task.train + task.validation + task.test:
        assert ex["answer"] in ex["candidates"] and len(ex["candidates"]) >= 5
        assert len(ex["answer"].split()) == 1
        assert ex["text"].endswith("[MASK] .") and ex["text"].count("[MASK]") == 1
        assert ex["text"] == ex["prefix"] + " [MASK] ."
        assert ex["subject"] in ex["text"]


def test_probing_splits_are_disjoint_by_subject(tasks):
    task = tasks["probing"]
    train = {ex["subject"] for ex in task.train}
    assert not train & {ex["subject"] for ex in task.test}
    assert not train & {ex["subject"] for ex in task.validation}
    assert not {ex["subject"] for ex in task.validation} & {ex["subject"] for ex in task.test}


def test_probed_facts_appear_in_the_corpus(world, tasks, corpus):
    texts = [d.text for d in corpus]

    def together(a: str, b: str) -> int:
        return sum(a in t and re.search(rf"\b{re.escape(b)}\b", t) is not None for t in texts)

    task = tasks["probing"]
    sample = random.Random(0).sample(task.train + task.test, 40)
    for ex in sample:
        if ex["relation"] == "owner_profession":  # two hops: venue -> owner -> profession
            owner = world.venue(ex["subject"]).owner
            assert together(ex["subject"], owner) >= 5 and together(owner, ex["answer"]) >= 5
        else:
            assert together(ex["subject"], ex["answer"]) >= 5, ex


def test_some_probe_templates_are_not_corpus_wording(corpus_text):
    assert "is originally from" not in corpus_text
    assert "The cuisine at" not in corpus_text
    assert "works as a" in corpus_text  # profession is probed with corpus wording
