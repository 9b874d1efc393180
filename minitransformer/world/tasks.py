"""The four downstream tasks built from the world: sentiment, NER, data-to-text and probing; `load_task(name)`."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from .entities import (CUISINES, DAYS, MONTHS, PRODUCTS, PROFESSIONS, Venue, World, _venue_attrs,
                       generate_world)
from .phrasing import _be, _cap, describe_venue, tokenize
from .reviews import ASPECT_ADJS, REVIEW_KINDS, _review

T = TypeVar("T")

TASK_NAMES = ("sentiment", "ner", "data_to_text", "probing")
SENTIMENT_LABELS = ["negative", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
DATA_TO_TEXT_SLOTS = ("name", "eat_type", "food", "area", "price", "rating", "family_friendly", "near")

@dataclass
class TaskData:
    """One task: three splits of example dicts, the label names (None for generation/cloze tasks)
    and a description of the format."""

    name: str
    train: list[dict]
    validation: list[dict]
    test: list[dict]
    labels: list[str] | None
    description: str


def _split(items: list[T], sizes: Sequence[int]) -> list[list[T]]:
    out, start = [], 0
    for n in sizes:
        out.append(items[start:start + n])
        start += n
    return out


def _unique(make: Callable[[], T], n: int, key: Callable[[T], str], seen: set[str]) -> list[T]:
    """Draw `n` examples whose `key` is new (also across earlier calls sharing `seen`)."""
    out = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        item = make()
        if key(item) not in seen:
            seen.add(key(item))
            out.append(item)
    if len(out) < n:
        raise RuntimeError(f"could only generate {len(out)} distinct examples out of {n}")
    return out


# -- sentiment ----------------------------------------------------------------------------------

SENTIMENT_NOISE = REVIEW_KINDS["undecided"]   # share of reviews whose label is a coin flip
SENTIMENT_CEILING = 1 - SENTIMENT_NOISE / 2   # best expected accuracy (~97%)
SENTIMENT_SIZES = (2000, 500, 500)


def _sentiment(world: World, seed: int) -> TaskData:
    rng = random.Random(f"{seed}-sentiment")
    kinds, weights = list(REVIEW_KINDS), list(REVIEW_KINDS.values())

    def make() -> dict:
        kind = rng.choices(kinds, weights=weights)[0]
        positive = rng.random() < 0.5
        # Always open with a sentence naming the venue: this keeps task reviews distinct from corpus ones.
        text = _review(rng, rng.choice(world.venues), positive, kind, opener=1.0)
        if kind == "undecided":  # annotators disagree: the label is a coin flip
            positive = rng.random() < 0.5
        return {"text": text, "label": int(positive)}

    seen: set[str] = set()
    splits = [_unique(make, n, lambda ex: ex["text"], seen) for n in SENTIMENT_SIZES]
    description = (
        "Binary sentiment of venue reviews: {'text': str, 'label': 0 (negative) or 1 (positive)}. "
        "Reviews use negation ('the soup was not bland at all'), overturned expectations ('I expected a dull "
        "evening, but ...') and mixed opinions where only the final verdict decides, so keyword counting fails. "
        f"About {SENTIMENT_NOISE:.0%} of reviews are undecided (mixed, no verdict) and labelled by a coin flip: "
        f"the best achievable accuracy is about {SENTIMENT_CEILING:.0%}.")
    return TaskData("sentiment", *splits, labels=list(SENTIMENT_LABELS), description=description)


# -- named entities -----------------------------------------------------------------------------

# Placeholders: PER = {per}, {per2}, {owner}, {first}, {last}; LOC = {home}, {vtown}, {town2}, {region};
# ORG = {venue}, {near}. Others are plain words.
NER_TEMPLATES = (
    "{per}, a {prof} from {home}, won the {hobby} contest in {region} last {day}.",
    "{owner} has opened {venue}, a new {food} {etype} in {vtown}.",
    "Police in {vtown} are looking for witnesses after a break-in at {venue} on {day} night.",
    "The mayor of {home}, {per}, visited {venue} on {day}.",
    "Visitors to {region} often stop in {home} to buy {product}.",
    "{per} and {per2} will play music at {venue} in {month}.",
    "A storm closed the road between {home} and {town2} on {day}.",
    "{venue}, near {near}, will be closed for repairs until {month}.",
    "Speaking in {vtown}, {owner} said that {venue} would stay open all summer.",
    "Heavy rain flooded the {area} of {vtown}, and {venue} had to close early.",
    "We took the kids to {venue} in {vtown} and {first} loved it.",
    "I would not go back to {venue}, even though it is close to {near}.",
    "Thanks to {owner} and the team at {venue} for a lovely evening!",
    "{venue} is the best {etype} in {region}, according to {per}.",
    "My friend {first} recommended {venue}, but the {dish} {be} cold.",
    "If you are ever in {vtown}, skip {venue} and go to {near} instead.",
    "{venue} | {etype} | {food} | {vtown} | {price}",
    "Name: {per}; job: {prof}; home: {home}",
    "{last}, {first} - {prof} - {home}",
    "{home} ({region}): known for {product}",
    "Owner of {venue}: {owner}",
    "{per} grew up in {home} and now works as a {prof} in {town2}.",
    "Born in {home}, {first} moved to {region} to become a {prof}.",
    "{per} met {per2} at {venue} in {month}.",
    "Every {day}, {first} walks from {home} to {town2}.",
    "{per} said the {food} food at {venue} is the best in {vtown}.",
    "On {day}, {last} will open a second {etype} in {town2}.",
    "Dear {first}, thank you for the {product} from {home}!",
    "The {etype} was busy, and the {dish} {be} {adj}.",
    "Prices went up again in {month}, and nobody was happy.",
    # Capitalised common words that are not entities (a hobby, a profession, a month or a day opening the
    # sentence), next to names that may be the same words (a Baker who is a baker, a May in May).
    "{Hobby} is what {first} likes best about {home}.",
    "In {month}, {per} took the {product} from {home} to {venue}.",
    "{Prof} of the year: {per} of {home}, for the work at {venue}.",
    "{Day} is market day in {vtown}, and {owner} opens {venue} early.",
)
ENTITY_TYPES = {"per": "PER", "per2": "PER", "owner": "PER", "first": "PER", "last": "PER", "home": "LOC",
                "vtown": "LOC", "town2": "LOC", "region": "LOC", "venue": "ORG", "near": "ORG"}
NER_SIZES = (1500, 300, 300)

# Names that are not in the world (so the backbone never read them in pretraining), many of them common
# words: surnames that are professions or dishes, first names that are months, towns that are hobbies or
# products, venues named after cuisines and weekdays. The TRAIN pool may occur in any split; the HELD-OUT
# pool only in validation and test, so a tagger must generalise from context, not recall a list of names.
NER_NOVEL_NAMES = {
    "train": {
        "first": ("Rose", "Hope", "Will", "Mark", "Grace", "Bill", "Robin", "Ivy", "Jasper", "Wanda"),
        "last": ("Baker", "Mason", "Fisher", "Cook", "Hunter", "Shepherd", "Bishop", "Little", "Gold", "Wolfe"),
        "town": ("Reading", "Bath", "Sandwich", "Stonecliff", "Honeyford", "Marlow", "Frost", "Oxbourne"),
        "region": ("Lake Country", "West Hills", "High Moors"),
        "venue": ("The Honey Pot", "Old Mill Inn", "The Green Door", "Cafe Bloom", "The Black Sheep",
                  "The Salt and Pepper Kitchen", "Chess and Ale Tavern", "The Crown and Anchor Inn"),
    },
    "held_out": {
        "first": ("May", "June", "Faith", "Jack", "Ray", "Dawn", "Frank", "Joy", "Sunny", "Iris Anne"),
        "last": ("Potter", "Gardener", "Tailor", "Miller", "Carpenter", "Butcher", "Best", "Love", "Green", "Lamb"),
        "town": ("Hope", "Wells", "Cider", "Rye", "Kettlewell", "Ashgrove", "Pinebrook", "Fishing"),
        "region": ("North Downs", "Fenland", "Lower Vale"),
        "venue": ("The Sunday Table", "Italian Garden Cafe", "The French House", "The Curry Pot",
                  "The Fox and Hounds Inn", "The King of Spain Tavern", "Monday Noodle Bar", "The Old Bakery"),
    },
}
NER_NOVEL_SHARE = {"train": 0.3, "held_out": 0.2}  # chance that one mention uses a novel name
NER_LOWER_SHARE = 0.05  # sentences written all in lower case (chat style): no capital letters to go by
_NER_SLOT_POOL = {"home": "town", "vtown": "town", "town2": "town", "region": "region", "venue": "venue",
                  "near": "venue", "first": "first", "last": "last"}


def _novel_mention(rng: random.Random, slot: str, pool: dict[str, tuple[str, ...]]) -> str:
    if slot in ("per", "per2", "owner"):
        return f"{rng.choice(pool['first'])} {rng.choice(pool['last'])}"
    return rng.choice(pool[_NER_SLOT_POOL[slot]])


def _ner_example(rng: random.Random, world: World, novel: tuple[str, ...] = ("train",)) -> dict:
    """One tagged sentence. Each entity mention is a world entity or, with NER_NOVEL_SHARE of the last pool
    in `novel`, a name from one of the `novel` pools; NER_LOWER_SHARE of the sentences are lower-cased."""
    p = rng.choice(world.people)
    v = world.venue(p.favourite)
    home = world.town(p.hometown)
    other = rng.choice([q for q in world.people if q is not p])
    values = {"per": p.name, "first": p.first, "last": p.last, "per2": other.name,
              "owner": v.owner, "home": home.name, "vtown": v.town, "region": home.region, "venue": v.name,
              "near": v.near, "town2": rng.choice([t for t in world.towns if t is not home]).name, "prof": p.profession, "hobby": p.hobby,
              "food": v.food, "etype": v.eat_type, "product": home.product, "price": v.price, "area": v.area,
              "day": rng.choice(DAYS), "month": rng.choice(MONTHS), "dish": rng.choice(CUISINES[v.food] + ("food",)),
              "adj": rng.choice(ASPECT_ADJS["food"][rng.random() < 0.5])}
    values["be"] = _be(values["dish"])
    values.update(Hobby=_cap(values["hobby"]), Prof=_cap(values["prof"]), Day=values["day"])
    share = NER_NOVEL_SHARE[novel[-1]]
    for slot in ENTITY_TYPES:
        if rng.random() < share:
            values[slot] = _novel_mention(rng, slot, NER_NOVEL_NAMES[rng.choice(novel)])
    tokens, tags = [], []
    for i, piece in enumerate(re.split(r"\{(\w+)\}", rng.choice(NER_TEMPLATES))):
        words = tokenize(values[piece] if i % 2 else piece)  # odd pieces are placeholder names
        kind = ENTITY_TYPES.get(piece) if i % 2 else None
        tokens += words
        tags += [("B-" if j == 0 else "I-") + kind if kind else "O" for j in range(len(words))]
    if rng.random() < NER_LOWER_SHARE:
        tokens = [t.lower() for t in tokens]
    return {"tokens": tokens, "tags": tags}


def _ner(world: World, seed: int) -> TaskData:
    rng = random.Random(f"{seed}-ner")
    seen: set[str] = set()
    pools = (("train",), ("train", "held_out"), ("train", "held_out"))
    splits = [_unique(lambda: _ner_example(rng, world, novel), n, lambda ex: " ".join(ex["tokens"]), seen)
              for n, novel in zip(NER_SIZES, pools)]
    description = ("Named-entity recognition with BIO tags: {'tokens': list[str], 'tags': list[str]}, "
                   "one tag per token; PER people, LOC towns and regions, ORG venues. Punctuation marks are "
                   "separate tokens, so ' '.join(tokens) is the sentence. Some names are not world entities, many "
                   "are common words (a Baker, a town called Reading, The Sunday Table); validation and test use "
                   "names never seen in train; a tenth of the sentences are all lower case.")
    return TaskData("ner", *splits, labels=list(NER_LABELS), description=description)


# -- data-to-text (E2E-style) -------------------------------------------------------------------

DATA_TO_TEXT_SIZES = (1500, 200, 200)
DATA_TO_TEXT_VENUES = (84, 18, 18)  # venues reserved for train / validation / test


def meaning_representation(record: dict[str, str]) -> str:
    """E2E-style flat string: 'name[Blue Heron Cafe], eat_type[cafe], food[Italian], ...'."""
    return ", ".join(f"{k}[{record[k]}]" for k in DATA_TO_TEXT_SLOTS if k in record)


def _data_to_text(world: World, seed: int) -> TaskData:
    rng = random.Random(f"{seed}-data_to_text")
    venues = rng.sample(world.venues, len(world.venues))
    venue_splits = _split(venues, DATA_TO_TEXT_VENUES)

    def make(pool: list[Venue]) -> dict:
        attrs = _venue_attrs(rng.choice(pool))
        optional = [k for k in DATA_TO_TEXT_SLOTS if k != "name"]
        keep = set(rng.sample(optional, rng.randint(2, len(optional))))  # like E2E: 3-8 attributes
        record = {k: v for k, v in attrs.items() if k == "name" or k in keep}
        references: list[str] = []
        target = rng.randint(2, 4)
        for _ in range(20 * target):
            if len(references) == target:
                break
            text = describe_venue(rng, dict(record))
            if text not in references:
                references.append(text)
        return {"record": record, "meaning_representation": meaning_representation(record),
                "references": references}

    seen: set[str] = set()
    splits = [_unique(lambda: make(pool), n, lambda ex: ex["meaning_representation"], seen)
              for pool, n in zip(venue_splits, DATA_TO_TEXT_SIZES)]
    description = (
        "E2E-style data-to-text: {'record': dict of slot -> value, 'meaning_representation': str, "
        "'references': 2-4 descriptions}. Slots: " + ", ".join(DATA_TO_TEXT_SLOTS) + " (name always present, "
        "2-7 others). Validation and test venues never occur in train. Score with bleu() and slot_error_rate().")
    return TaskData("data_to_text", *splits, labels=None, description=description)


# -- probing (LAMA-style cloze) -----------------------------------------------------------------

# relation -> (subject kind, template). Templates end with "[MASK] ." and some are
# deliberately *not* corpus wording ("is originally from", "The cuisine at", "The owner of ... works as").
PROBE_RELATIONS: dict[str, tuple[str, str]] = {
    "profession": ("person", "{s} works as a [MASK] ."),
    "hometown": ("person", "{s} is originally from [MASK] ."),
    "cuisine": ("venue", "The cuisine at {s} is [MASK] ."),
    "venue_town": ("venue", "{s} is located in [MASK] ."),
    "owner_profession": ("venue", "The owner of {s} works as a [MASK] ."),
    "town_product": ("town", "{s} is famous for its [MASK] ."),
}
PROBING_SIZES = (300, 150, 300)
PROBING_SUBJECT_SHARES = (0.4, 0.2, 0.4)  # of each subject kind: train / validation / test


def probe_answer(world: World, relation: str, subject: str) -> str:
    """The true answer of a probe, read from the world."""
    if relation == "profession":
        return world.person(subject).profession
    if relation == "hometown":
        return world.person(subject).hometown
    if relation == "cuisine":
        return world.venue(subject).food
    if relation == "venue_town":
        return world.venue(subject).town
    if relation == "owner_profession":
        return world.person(world.venue(subject).owner).profession
    if relation == "town_product":
        return world.town(subject).product
    raise ValueError(f"unknown relation {relation!r}; valid: {', '.join(PROBE_RELATIONS)}")


def _probing(world: World, seed: int) -> TaskData:
    rng = random.Random(f"{seed}-probing")
    town_names = sorted(t.name for t in world.towns)
    candidates = {"profession": sorted(PROFESSIONS), "hometown": town_names, "cuisine": sorted(CUISINES),
                  "venue_town": town_names, "owner_profession": sorted(PROFESSIONS), "town_product": sorted(PRODUCTS)}
    subjects = {"person": [p.name for p in world.people], "venue": [v.name for v in world.venues],
                "town": [t.name for t in world.towns]}
    splits: list[list[dict]] = [[], [], []]
    for kind, names in subjects.items():  # split *subjects*, so test entities are never seen in train
        names = rng.sample(names, len(names))
        cuts = [round(share * len(names)) for share in PROBING_SUBJECT_SHARES[:2]]
        parts = _split(names, [cuts[0], cuts[1], len(names) - sum(cuts)])
        for split, part in zip(splits, parts):
            for subject in part:
                for relation, (subject_kind, template) in PROBE_RELATIONS.items():
                    if subject_kind != kind:
                        continue
                    text = template.format(s=subject)
                    split.append({"subject": subject, "relation": relation, "text": text,
                                  "prefix": text.split(" [MASK]")[0], "answer": probe_answer(world, relation, subject),
                                  "candidates": list(candidates[relation])})
    splits = [rng.sample(split, min(n, len(split))) for split, n in zip(splits, PROBING_SIZES)]
    description = (
        "LAMA-style factual cloze: {'subject', 'relation', 'text' (with [MASK]), 'prefix' (text before the mask), "
        "'answer', 'candidates'}. Rank the candidates; the answer is one word. Relations: "
        + ", ".join(PROBE_RELATIONS) + ". Splits are by subject: no test subject occurs in train. Every fact is "
        "stated many times in the pretraining corpus (owner_profession only via two facts: owner and profession).")
    return TaskData("probing", *splits, labels=None, description=description)


# -- entry point --------------------------------------------------------------------------------

_TASKS: dict[str, Callable[[World, int], TaskData]] = {
    "sentiment": _sentiment, "ner": _ner, "data_to_text": _data_to_text, "probing": _probing}


def load_task(name: str, seed: int = 0, world: World | None = None) -> TaskData:
    """Build task `name` (one of TASK_NAMES) from `world` (default: `generate_world(seed)`).

    The seed picks both the world and the task's own random stream, so `load_task(name, s)`
    matches `pretraining_corpus(generate_world(s), seed=s)`."""
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid task names are: {', '.join(TASK_NAMES)}")
    return _TASKS[name](world if world is not None else generate_world(seed), seed)
