"""Reviews of venues, for the sentiment task and the corpus: aspects, opinions, contrast and verdicts."""

from __future__ import annotations

import random
from typing import Sequence

from .entities import CUISINES, DAYS, Venue
from .phrasing import _be, _cap

ASPECT_ADJS = {  # aspect -> (positive adjectives, negative adjectives)
    "food": (("delicious", "wonderful", "excellent", "tasty", "superb", "fresh", "lovely"),
             ("bland", "cold", "greasy", "stale", "tasteless", "awful", "dry")),
    "service": (("friendly", "helpful", "attentive", "polite", "efficient", "cheerful"),
                ("rude", "slow", "careless", "unfriendly", "unhelpful", "grumpy")),
    "place": (("pleasant", "calm", "relaxing", "welcoming", "charming"),
              ("noisy", "gloomy", "unpleasant", "chaotic", "dreary")),
}
ASPECT_NOUNS = {"service": ("staff", "service", "waiter", "waitress"),
                "place": ("room", "atmosphere", "place", "dining room")}
FIXED_CLAUSES = {  # aspects phrased as whole clauses: (positive, negative)
    "value": (("the prices were fair", "it was good value for money", "the bill was very reasonable",
               "we did not pay too much"),
              ("it was poor value for money", "the bill was far too high", "the prices were not fair",
               "we paid far too much")),
    "wait": (("the food arrived quickly", "we did not have to wait long", "we never had to wait"),
             ("we waited nearly an hour for our food", "the food took ages to arrive",
              "nobody came to our table for a long time")),
}
INTENSIFIERS = ("", "", "", "very ", "really ", "truly ", "absolutely ", "quite ")
EXTREME_ADJS = {"superb", "excellent", "wonderful", "awful", "delicious", "tasteless"}  # no "very superb"
# Overall verdicts: the positive and negative wording differ by as little as possible ("not").
VERDICTS = (("I would come back", "I would not come back"), ("I would recommend it", "I would not recommend it"),
            ("it was worth the money", "it was not worth the money"), ("I was not disappointed", "I was disappointed"),
            ("it was not a waste of money", "it was a waste of money"),
            ("it was a good evening", "it was not a good evening"),
            ("it was not a bad evening", "it was a bad evening"), ("we will be back", "we will not be back"),
            ("I would happily go again", "I would never go again"), ("we left happy", "we left unhappy"),
            ("it is never disappointing", "it is always disappointing"))
VERDICT_OPENERS = ("Overall, ", "All in all, ", "In the end, ", "On balance, ", "To sum up, ", "")
# Expectations that the rest of the review overturns: (before a positive, before a negative review).
EXPECTATIONS = (("I expected a dull evening", "I expected a lovely evening"),
                ("I was not expecting much", "I had high hopes"),
                ("friends had warned us about the place", "friends had praised the place"),
                ("the reviews online were terrible", "the reviews online were glowing"),
                ("I almost did not go in", "I was looking forward to it"))
REVIEW_OPENERS = ("We had dinner at {v} last {day}.", "I went to {v} in {t} with {who}.",
                  "A friend told me about {v}, so we gave it a try.", "We went to {v} after a long walk.",
                  "We celebrated my birthday at {v} in {t}.",
                  "My {rel} took me to {v} for {meal}.", "We stopped at {v} on our way through {t}.",
                  "This was my first visit to {v}.", "I have been to {v} a few times now.",
                  "We booked a table at {v} for {meal}.")
UNDECIDED_ENDINGS = ("I have mixed feelings about it.", "It was an ordinary evening, I suppose.",
                     "Hard to say what I think.", "Make of that what you will.", "", "")
REVIEW_KINDS = {"consistent": 0.22, "contrast": 0.20, "mixed": 0.52, "undecided": 0.06}


def _aspect_clause(rng: random.Random, dishes: Sequence[str], positive: bool, used: set[str]) -> str:
    """One opinion about one aspect, e.g. 'the curry was not bland at all' (positive).
    `used` collects aspects and nouns already discussed, so a review never judges one thing twice."""
    while True:
        aspect = rng.choice(("food", "food", "food", "service", "service", "place", "value", "wait"))
        if aspect in FIXED_CLAUSES:
            noun, key = "", aspect
        elif aspect == "food":  # a dish may be judged besides "the food", but not "the food" and "the meal"
            noun = rng.choice(tuple(dishes) + ("dessert", "food", "meal"))
            key = "food" if noun in ("food", "meal") else noun
        else:
            noun, key = rng.choice(ASPECT_NOUNS[aspect]), aspect
        if key not in used:
            used.add(key)
            break
    if aspect in FIXED_CLAUSES:
        return rng.choice(FIXED_CLAUSES[aspect][0 if positive else 1])
    good, bad = ASPECT_ADJS[aspect]
    be, form = _be(noun), rng.random()
    if form < 0.45:  # plain: "the soup was very bland"
        adj = rng.choice(good if positive else bad)
        intensifier = rng.choice(("", "truly ", "absolutely ") if adj in EXTREME_ADJS else INTENSIFIERS)
        return f"the {noun} {be} {intensifier}{adj}"
    if form < 0.8:  # negated opposite: "the soup was not bland at all", "the staff were far from friendly"
        patterns = (("{be} not {adj} at all", "{be}n't {adj}", "{be} never {adj}", "{be} not {adj} in the slightest")
                    if positive else
                    ("{be} not {adj}", "{be} not very {adj}", "{be}n't {adj} at all", "{be} far from {adj}",
                     "{be} never {adj}"))
        adj = rng.choice(bad if positive else good)
        return f"the {noun} " + rng.choice(patterns).format(be=be, adj=adj)
    patterns = (("I loved the {n}", "we could not fault the {n}", "nobody could complain about the {n}",
                 "everyone enjoyed the {n}") if positive else
                ("I did not like the {n}", "nobody enjoyed the {n}", "I could not stand the {n}",
                 "we were unhappy with the {n}"))
    return rng.choice(patterns).format(n=noun)


def _opinions_to_text(rng: random.Random, opinions: list[tuple[str, bool]]) -> list[str]:
    """Turn (clause, polarity) pairs into sentences, joining pairs with 'and' or a contrast word."""
    sentences, i = [], 0
    while i < len(opinions):
        (c1, p1) = opinions[i]
        if i + 1 < len(opinions) and rng.random() < 0.6:
            c2, p2 = opinions[i + 1]
            link = (rng.choice((" and ", ", and ")) if p1 == p2 else
                    rng.choice((", but ", ", although ", "; however, ", ", yet ", " but ")))
            sentences.append(_cap(c1) + link + c2 + ".")
            i += 2
        else:
            sentences.append(_cap(c1) + ".")
            i += 1
    return sentences


def _verdict(rng: random.Random, positive: bool, after_contrast: bool = False, first: bool = False) -> str:
    if first:  # the verdict opens the review
        openers = ("", "", "In short, ", "To put it simply, ")
    else:
        openers = VERDICT_OPENERS + (("Still, ", "Even so, ") if after_contrast else ())
    opener = rng.choice(openers)
    text = rng.choice(VERDICTS)[0 if positive else 1]
    return (opener + text if opener else _cap(text)) + rng.choice((".", ".", "!"))


def _review(rng: random.Random, venue: Venue, positive: bool, kind: str, opener: float = 0.7) -> str:
    """A review of `venue` whose overall opinion is `positive`. `kind` (see REVIEW_KINDS):
    consistent -- all opinions agree; contrast -- an expectation is overturned;
    mixed -- aspects disagree and a final verdict decides; undecided -- mixed, no verdict
    (then `positive` is meaningless: the sentiment task labels these with a coin flip).
    `opener` is the probability of a neutral first sentence naming the venue."""
    dishes, used = CUISINES[venue.food], set()
    parts = []
    if rng.random() < opener:
        parts.append(rng.choice(REVIEW_OPENERS).format(
            v=venue.name, t=venue.town, day=rng.choice(DAYS), meal=rng.choice(("lunch", "dinner", "my birthday")),
            who=rng.choice(("some friends", "my sister", "my parents", "a colleague", "the whole family")),
            rel=rng.choice(("sister", "brother", "mother", "father", "best friend", "partner"))))
    if kind == "consistent":
        opinions = [(_aspect_clause(rng, dishes, positive, used), positive) for _ in range(rng.randint(1, 3))]
        parts += _opinions_to_text(rng, opinions)
        if rng.random() < 0.5:
            parts.append(_verdict(rng, positive))
    elif kind == "contrast":
        expectation = rng.choice(EXPECTATIONS)[0 if positive else 1]
        clause = _aspect_clause(rng, dishes, positive, used)
        parts.append(rng.choice((f"{_cap(expectation)}, but {clause}.", f"Although {expectation}, {clause}.",
                                 f"{_cap(expectation)}. However, {clause}.")))
        if rng.random() < 0.5:
            parts.append(_verdict(rng, positive))
    elif kind == "mixed":
        n = rng.randint(2, 3)
        polarities = [True, False] + [rng.random() < 0.5 for _ in range(n - 2)]
        rng.shuffle(polarities)
        opinions = [(_aspect_clause(rng, dishes, p, used), p) for p in polarities]
        body = _opinions_to_text(rng, opinions)
        if rng.random() < 0.2:
            parts += [_verdict(rng, positive, first=True)] + body
        else:
            parts += body + [_verdict(rng, positive, after_contrast=opinions[-1][1] != positive)]
    else:  # undecided
        opinions = [(_aspect_clause(rng, dishes, p, used), p) for p in rng.sample([True, False], 2)]
        parts += _opinions_to_text(rng, opinions) + [rng.choice(UNDECIDED_ENDINGS)]
    return " ".join(p for p in parts if p)
