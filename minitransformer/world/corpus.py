"""The pretraining corpus: documents about the world (bios, town and venue entries, news, reviews, listings)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from .entities import DAYS, MONTHS, World, _venue_attrs
from .phrasing import (FAMILY_VPS, HOBBY_DETAILS, LANDSCAPE_DETAILS, LANDSCAPE_VPS, PERSON_VPS, PRICE_VPS, PRODUCT_VPS,
                       PROFESSION_DETAILS, _a, _cap, _Cycle, _join, _venue_vp, describe_venue, tokenize)
from .reviews import REVIEW_KINDS, _review

Fact = tuple[str, str]  # (subject, relation), e.g. ("Mira Okafor", "profession")


@dataclass(frozen=True)
class Document:
    """One corpus document plus the facts it states (used to check fact coverage)."""

    text: str
    kind: str                 # "person", "town", "venue", "news", "review" or "listing"
    facts: tuple[Fact, ...]


class _CorpusWriter:
    """Writes documents of each kind; entities are visited round-robin so every fact recurs."""

    def __init__(self, world: World, rng: random.Random):
        self.w, self.rng = world, rng
        self.people, self.venues, self.towns = (_Cycle(world.people, rng), _Cycle(world.venues, rng),
                                                _Cycle(world.towns, rng))
        self.owned = {v.owner: v for v in world.venues}
        self.venues_in = {t.name: [v for v in world.venues if v.town == t.name] for t in world.towns}
        self.people_from = {t.name: [p for p in world.people if p.hometown == t.name] for t in world.towns}

    # -- encyclopedic ---------------------------------------------------------------------------
    def person(self) -> Document:
        rng, p = self.rng, self.people.next()
        pos, pro = ("her", "she") if p.female else ("his", "he")
        values = {"profession": p.profession, "hometown": p.hometown, "hobby": p.hobby, "favourite": p.favourite}
        if p.name in self.owned:
            values["owns"] = self.owned[p.name].name
        todo = rng.sample(list(values), rng.randint(2, len(values)))
        facts = [(values["owns"], "owner") if r == "owns" else (p.name, r) for r in todo]

        def vps(rels: list[str]) -> str:
            return _join([rng.choice(PERSON_VPS[r]).format(v=values[r], pos=pos) for r in rels])

        if "profession" in todo and "hometown" in todo and rng.random() < 0.35:  # apposition
            todo = [r for r in todo if r not in ("profession", "hometown")]
            head = f"{p.name}, a {p.profession} from {p.hometown},"
            sentences = [f"{head} {vps(todo[:1])}" if todo else f"{p.name} is a {p.profession} from {p.hometown}"]
            todo = todo[1:]
        elif "hometown" in todo and len(todo) > 1 and rng.random() < 0.25:
            todo.remove("hometown")
            sentences = [f"Born in {p.hometown}, {p.name} {vps(todo[:1])}"]
            todo = todo[1:]
        else:
            n = rng.randint(1, 2)
            sentences, todo = [f"{p.name} {vps(todo[:n])}"], todo[n:]
        while todo:
            subject = rng.choice((_cap(pro), _cap(pro), p.first, p.name))
            if todo[0] == "hobby" and rng.random() < 0.3:
                sentences.append(f"In {pos} free time, {subject if subject != _cap(pro) else pro} "
                                 f"{rng.choice(('enjoys', 'loves'))} {p.hobby}")
                todo = todo[1:]
                continue
            n = rng.randint(1, 2)
            sentences.append(f"{subject} {vps(todo[:n])}")
            todo = todo[n:]
        if "profession" in values and rng.random() < 0.3:
            sentences.append(f"{_cap(pro)} {rng.choice(PROFESSION_DETAILS[p.profession])}")
        if "hobby" in values and rng.random() < 0.3:
            sentences.append(f"{rng.choice((_cap(pro), p.first))} {rng.choice(HOBBY_DETAILS[p.hobby])}")
        return Document(" ".join(s + "." for s in sentences), "person", tuple(facts))

    def town(self) -> Document:
        rng, t = self.rng, self.towns.next()
        rels = rng.sample(["region", "landscape", "product"], rng.randint(2, 3))
        facts = [(t.name, r) for r in rels]
        phrases = {"region": rng.choice(("is a town in {r}", "is one of the towns of {r}", "lies in {r}")),
                   "landscape": rng.choice(LANDSCAPE_VPS[t.landscape]), "product": rng.choice(PRODUCT_VPS)}
        sentences = []
        for i, r in enumerate(rels):
            subject = t.name if i == 0 else rng.choice(("It", "The town", t.name))
            sentences.append(f"{subject} {phrases[r].format(r=t.region, v=t.product)}.")
        if "landscape" in rels and rng.random() < 0.4:
            sentences.append(rng.choice(LANDSCAPE_DETAILS[t.landscape]))
        if "product" in rels and rng.random() < 0.3:
            sentences.append(rng.choice(("Every autumn the town holds a {p} festival.",
                                         "Shops on the main street sell {p} to visitors.")).format(p=t.product))
        venues, people = self.venues_in[t.name], self.people_from[t.name]
        if venues and rng.random() < 0.6:
            names = [v.name for v in rng.sample(venues, min(3, len(venues)))]
            facts += [(n, "town") for n in names]
            sentences.append(rng.choice(("Places to eat in {t} include {x}.", "In {t} you can eat at {x}.",
                                         "Visitors to {t} often eat at {x}.")).format(t=t.name, x=_join(names)))
        if people and rng.random() < 0.5:
            names = [p.name for p in rng.sample(people, min(3, len(people)))]
            facts += [(n, "hometown") for n in names]
            sentences.append(rng.choice(("Well-known people from {t} include {x}.", "{X} grew up in {t}.")).format(
                t=t.name, x=_join(names), X=_join(names)))
        return Document(" ".join(sentences), "town", tuple(facts))

    def venue(self) -> Document:
        rng, v = self.rng, self.venues.next()
        attrs = {**_venue_attrs(v), "town": v.town, "owner": v.owner}
        keep = ["name", "eat_type"] + rng.sample([k for k in attrs if k not in ("name", "eat_type")], rng.randint(3, 8))
        text = describe_venue(rng, {k: attrs[k] for k in attrs if k in keep})
        facts = [(v.name, k) for k in keep if k != "name"]
        if "owner" in keep and rng.random() < 0.4:
            owner = self.w.person(v.owner)
            text += f" {rng.choice(('Its owner', 'The owner'))}, {owner.name}, is a {owner.profession} from {owner.hometown}."
            facts += [(owner.name, "profession"), (owner.name, "hometown")]
        return Document(text, "venue", tuple(facts))

    # -- news -----------------------------------------------------------------------------------
    def news(self) -> Document:
        rng = self.rng
        items = [self._news_item() for _ in range(rng.choice((1, 1, 2)))]
        text = " ".join(t for t, _ in items)
        if rng.random() < 0.3:
            text = rng.choice(("Local news: ", "In the news this week: ", "News in brief. ")) + text
        return Document(text, "news", tuple(f for _, fs in items for f in fs))

    def _news_item(self) -> tuple[str, list[Fact]]:
        rng, w = self.rng, self.w
        kind = rng.randrange(12)
        if kind >= 8:
            return self._more_news(kind)
        if kind < 3:  # about a person
            p = self.people.next()
            pro, pos = ("she", "her") if p.female else ("he", "his")
            region = w.town(p.hometown).region
            if kind == 0:
                return (f"{p.name}, a {p.profession} from {p.hometown}, has won the {p.hobby} contest at this "
                        f"year's fair in {region}. {_cap(pro)} says {pos} secret is hard work.",
                        [(p.name, "profession"), (p.name, "hometown"), (p.name, "hobby")])
            if kind == 1:
                return (f'{p.name} from {p.hometown} was seen at {p.favourite} again on {rng.choice(DAYS)}. '
                        f'"It is simply my favourite place," {pro} said.',
                        [(p.name, "hometown"), (p.name, "favourite")])
            return (f"{p.name} has been named the best {p.profession} in {p.hometown}. "
                    f"Friends say {pro} {rng.choice(PERSON_VPS['hobby']).format(v=p.hobby, pos=pos)}.",
                    [(p.name, "profession"), (p.name, "hometown"), (p.name, "hobby")])
        if kind < 7:  # about a venue
            v = self.venues.next()
            if kind == 3:
                return (f"{v.name} in {v.town} is celebrating ten years this week. Its owner, {v.owner}, thanked "
                        f"the people of {v.town} for their support.", [(v.name, "town"), (v.name, "owner")])
            if kind == 4:
                return (f"{v.name}, the {v.food} {v.eat_type} near {v.near}, will close for repairs in "
                        f"{rng.choice(MONTHS)}.", [(v.name, "food"), (v.name, "eat_type"), (v.name, "near")])
            if kind == 5:
                return (f"A new menu at {v.name} in {v.town}: the {v.eat_type}, which {rng.choice(PRICE_VPS[v.price])},"
                        f" now offers even more {v.food} dishes.",
                        [(v.name, "town"), (v.name, "eat_type"), (v.name, "price"), (v.name, "food")])
            good = "Good" if v.family_friendly else "Bad"
            return (f"{good} news for families in {v.town}: {v.name} "
                    f"{rng.choice(FAMILY_VPS[v.family_friendly])}. In a survey, customers gave it {_a(v.rating)} "
                    f"rating.", [(v.name, "town"), (v.name, "family_friendly"), (v.name, "rating")])
        t = self.towns.next()
        return (f"The {t.product} market in {t.name} opened on {rng.choice(DAYS)}. Traders came from all over "
                f"{t.region}, and most of the {t.product} was sold by noon.", [(t.name, "product"), (t.name, "region")])

    def _more_news(self, kind: int) -> tuple[str, list[Fact]]:
        rng = self.rng
        if kind == 8:
            p = self.people.next()
            return (f"{p.name}, the {p.profession} from {p.hometown}, will give a talk at {p.favourite} on "
                    f"{rng.choice(DAYS)}. Tickets are free.",
                    [(p.name, "profession"), (p.name, "hometown"), (p.name, "favourite")])
        if kind == 9:
            v = self.venues.next()
            return (f"The {v.eat_type} {v.name} has a new cook. Regulars say the {v.food} food is better than ever, "
                    f"and the place {rng.choice(PRICE_VPS[v.price])}.",
                    [(v.name, "eat_type"), (v.name, "food"), (v.name, "price")])
        t = self.towns.next()
        if kind == 10:
            return (f"Heavy rain hit {t.region} on {rng.choice(DAYS)}, and several roads around {t.name} were "
                    f"closed. {rng.choice(LANDSCAPE_DETAILS[t.landscape])}", [(t.name, "region")])
        other = rng.choice(self.w.towns)
        return (f"Roadworks between {t.name} and {other.name} will last until {rng.choice(MONTHS)}. Drivers "
                f"should expect delays.", [])

    # -- reviews --------------------------------------------------------------------------------
    def review(self) -> Document:
        rng, v = self.rng, self.venues.next()
        # Reviews follow the venue's customer rating: mostly positive for highly rated venues.
        positive = rng.random() < {"low": 0.2, "average": 0.5, "high": 0.8}[v.rating]
        kind = rng.choices(list(REVIEW_KINDS), weights=list(REVIEW_KINDS.values()))[0]
        text, facts = _review(rng, v, positive, kind), []
        if v.town in text:
            facts.append((v.name, "town"))
        if rng.random() < 0.6:  # a factual aside about the place
            slots = rng.sample(["food", "price", "family_friendly", "area", "eat_type"], rng.randint(1, 2))
            attrs = _venue_attrs(v)
            text += f" {rng.choice(('It', 'The place'))} {_join([_venue_vp(rng, k, attrs[k]) if k != 'eat_type' else 'is ' + _a(v.eat_type) for k in slots])}."
            facts += [(v.name, k) for k in slots]
        if v.name not in text or rng.random() < 0.3:  # a title naming the venue
            text = f"{rng.choice(('Review of', 'My review of', 'Visit to'))} {v.name}, {v.town}. " + text
            facts.append((v.name, "town"))
        return Document(text, "review", tuple(facts))

    # -- listings -------------------------------------------------------------------------------
    def listing(self) -> Document:
        makers = (self._venue_table, self._venue_entry, self._register, self._person_card, self._gazetteer)
        return self.rng.choices(makers, weights=(3, 3, 2, 3, 1))[0]()

    def _venue_table(self) -> Document:
        rng = self.rng
        cols = ["name"] + sorted(rng.sample(["eat_type", "food", "town", "area", "price", "rating",
                                             "family_friendly", "near"], rng.randint(3, 6)),
                                 key=["eat_type", "food", "town", "area", "price", "rating", "family_friendly",
                                      "near"].index)
        cell = {"family_friendly": lambda v: "family-friendly" if v.family_friendly else "adults only",
                "rating": lambda v: f"{v.rating} rating", "near": lambda v: f"near {v.near}"}
        lines = [" | ".join(c.replace("_", " ") for c in cols)] if rng.random() < 0.5 else []
        facts = []
        for _ in range(rng.randint(3, 5)):
            v = self.venues.next()
            lines.append(" | ".join(cell[c](v) if c in cell else getattr(v, c) for c in cols))
            facts += [(v.name, c) for c in cols if c != "name"]
        return Document("\n".join(lines), "listing", tuple(facts))

    def _venue_entry(self) -> Document:
        rng, v = self.rng, self.venues.next()
        fields = [f"{_cap(v.food)} {v.eat_type}, {v.area}", f"Prices: {v.price}", f"Rating: {v.rating}",
                  "Family-friendly" if v.family_friendly else "Adults only", f"Near {v.near}", f"Owner: {v.owner}"]
        rels = [("food", "eat_type", "area"), ("price",), ("rating",), ("family_friendly",), ("near",), ("owner",)]
        keep = sorted(rng.sample(range(6), rng.randint(3, 6)))
        text = f"{v.name} ({v.town}). " + " ".join(fields[i] + "." for i in keep)
        facts = [(v.name, "town")] + [(v.name, r) for i in keep for r in rels[i]]
        return Document(text, "listing", tuple(facts))

    def _register(self) -> Document:
        rng, t = self.rng, self.towns.next()
        people = self.people_from[t.name]
        if not people:
            return self._gazetteer()
        chosen = rng.sample(people, min(len(people), rng.randint(2, 5)))
        title = rng.choice(("Residents of {t}", "Register of {t}", "{t}, list of residents"))
        text = title.format(t=t.name) + ": " + "; ".join(f"{p.name} ({p.profession})" for p in chosen) + "."
        return Document(text, "listing", tuple((p.name, r) for p in chosen for r in ("profession", "hometown")))

    def _person_card(self) -> Document:
        rng, p = self.rng, self.people.next()
        fields = {"profession": f"Job: {p.profession}", "hometown": f"Home town: {p.hometown}",
                  "hobby": f"Hobby: {p.hobby}", "favourite": f"Favourite place: {p.favourite}"}
        keep = rng.sample(list(fields), rng.randint(2, 4))
        text = f"Name: {p.name}. " + " ".join(fields[k] + "." for k in keep)
        return Document(text, "listing", tuple((p.name, k) for k in keep))

    def _gazetteer(self) -> Document:
        towns = [self.towns.next() for _ in range(self.rng.randint(3, 5))]
        text = "\n".join(f"{t.name} ({t.region}): {t.landscape} town, known for {t.product}" for t in towns)
        return Document(text, "listing", tuple((t.name, r) for t in towns for r in ("region", "landscape", "product")))


DOCUMENT_KINDS = {"person": 0.24, "town": 0.06, "venue": 0.18, "news": 0.13, "review": 0.20, "listing": 0.19}
DEFAULT_N_DOCUMENTS = 30_000


def annotated_corpus(world: World, seed: int = 0, n_documents: int | None = None) -> list[Document]:
    """The pretraining corpus with, for each document, its kind and the facts it states.

    Documents form one deterministic stream: asking for fewer documents returns a prefix of
    the default corpus (same seed)."""
    rng = random.Random(f"corpus-{seed}")
    writer = _CorpusWriter(world, rng)
    makers: list[Callable[[], Document]] = [getattr(writer, k) for k in DOCUMENT_KINDS]
    weights = list(DOCUMENT_KINDS.values())
    n = DEFAULT_N_DOCUMENTS if n_documents is None else n_documents
    return [rng.choices(makers, weights=weights)[0]() for _ in range(n)]


def pretraining_corpus(world: World, seed: int = 0, n_documents: int | None = None) -> list[str]:
    """About 5 MB of short documents (1-6 sentences) about `world`, mixing encyclopedic
    descriptions of people, towns and venues, local news, venue reviews and listings
    (tables, registers, directory entries). Each fact of each entity is stated in many
    documents and paraphrases (see `annotated_corpus` for the facts per document)."""
    return [d.text for d in annotated_corpus(world, seed, n_documents)]


def corpus_stats(docs: Sequence[str]) -> dict[str, float]:
    """Size of a corpus: documents, characters, words, distinct words (case-sensitive), mean words per document."""
    words = [w for d in docs for w in tokenize(d) if w[0].isalnum()]
    return {"documents": len(docs), "chars": sum(len(d) for d in docs), "words": len(words),
            "unique_words": len(set(words)), "unique_words_lowercase": len({w.lower() for w in words}),
            "words_per_document": round(len(words) / max(len(docs), 1), 1)}
