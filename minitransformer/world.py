"""A small, deterministic, generated world: its pretraining corpus and four downstream tasks.

We cannot download datasets, so we *generate* them. `generate_world(seed)` builds a little
country of towns, people and eating places. Every entity has a handful of facts
(a person's profession and hometown, a venue's cuisine and price range, ...).

* `pretraining_corpus(world)` writes ~5 MB of text about that world: encyclopedic
  descriptions, local news, venue reviews and listings. Every fact is stated in many
  documents, in many paraphrases, so that a ~1M-parameter model can pick it up.
* `load_task(name)` builds one of four evaluation tasks from the *same* world, with a
  separate random stream (task examples are never copied from the corpus):

  - "sentiment" (2000/500/500): {"text", "label"}, labels ["negative", "positive"]
  - "ner" (1500/300/300): {"tokens", "tags"}, BIO tags over PER / LOC / ORG
  - "data_to_text" (1500/200/200): {"record", "meaning_representation", "references"}
  - "probing" (300/150/300): {"subject", "relation", "text", "prefix", "answer", "candidates"}

Everything uses private `random.Random` instances seeded with strings such as
``"world-0"`` or ``"0-sentiment"``, never the global random state, so the same seed always
gives the same world, corpus and tasks. See `docs/world_and_tasks.md` for examples.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence, TypeVar

__all__ = [
    "Town", "Person", "Venue", "World", "Document", "TaskData",
    "generate_world", "pretraining_corpus", "annotated_corpus", "corpus_stats", "load_task",
    "slot_error_rate", "slot_errors", "bleu", "meaning_representation", "describe_venue", "probe_answer",
    "tokenize", "TASK_NAMES", "SENTIMENT_LABELS", "NER_LABELS", "DATA_TO_TEXT_SLOTS", "PROBE_RELATIONS",
    "SENTIMENT_NOISE", "SENTIMENT_CEILING",
]

T = TypeVar("T")

TASK_NAMES = ("sentiment", "ner", "data_to_text", "probing")
SENTIMENT_LABELS = ["negative", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
DATA_TO_TEXT_SLOTS = ("name", "eat_type", "food", "area", "price", "rating", "family_friendly", "near")

# ---------------------------------------------------------------------------------------------
# Vocabulary of the world. Attribute values are small sets of common single words.
# ---------------------------------------------------------------------------------------------

REGION_POOL = ("Norland", "Eastmere", "Southvale", "Westmark", "Upper Dale", "Red Marches", "Greywold", "Silver Fens")
TOWN_PREFIXES = ("Ash", "Bram", "Brook", "Cal", "Dun", "Elm", "Fair", "Glen", "Gran", "Hart", "Hol", "Kings", "Lang",
                 "Mar", "Mill", "Oak", "Pem", "Ros", "Sel", "Stan", "Tam", "Thorn", "Wil", "Wyn", "Cor", "Bel", "Ren",
                 "Hay", "Lin", "Mor")
TOWN_SUFFIXES = ("ford", "bury", "ton", "wick", "field", "mouth", "by", "stead", "ham", "well", "worth", "dale",
                 "mere", "port", "bridge", "haven")
FEMALE_NAMES = ("Mira", "Anna", "Clara", "Ella", "Freya", "Hana", "Iris", "Julia", "Lena", "Maya", "Nina", "Olga",
                "Rosa", "Sara", "Tara", "Vera", "Zoe", "Alice", "Greta", "Ida", "Lucy", "Nora", "Ruth", "Esme",
                "Leah", "Amara", "Priya", "Mei", "Yara", "Helga")
MALE_NAMES = ("Tomas", "Adam", "Ben", "Carl", "David", "Emil", "Felix", "Hugo", "Ivan", "Jonas", "Karl", "Leo",
              "Marco", "Noah", "Oscar", "Paul", "Ravi", "Sam", "Theo", "Victor", "Omar", "Kenji", "Luca", "Finn",
              "Arjun", "Diego", "Milan", "Rafael", "Tobias", "Yusuf")
LAST_NAMES = ("Okafor", "Brennan", "Reyes", "Novak", "Larsen", "Moreau", "Patel", "Tanaka", "Kowalski", "Fischer",
              "Rossi", "Silva", "Haddad", "Lindqvist", "Byrne", "Costa", "Dubois", "Ferreira", "Grant", "Hoffman",
              "Jensen", "Keller", "Lopez", "Mendes", "Nakamura", "Olsen", "Pereira", "Quinn", "Russo", "Schmidt",
              "Torres", "Vidal", "Walsh", "Young", "Zhang", "Abara", "Blake", "Carver", "Doyle", "Ellis", "Finch",
              "Gallo", "Kaur", "Marsh", "Nolan", "Park", "Ortiz", "Reed", "Ward", "Webb")

# Professions start with a consonant so that "works as a [MASK]" never leaks the answer via a/an.
PROFESSIONS = ("baker", "teacher", "doctor", "farmer", "painter", "nurse", "carpenter", "butcher", "lawyer",
               "musician", "chef", "writer", "tailor", "gardener", "librarian", "potter")
HOBBIES = ("chess", "cycling", "fishing", "singing", "swimming", "hiking", "reading", "dancing", "knitting",
           "running", "sailing", "photography")
PRODUCTS = ("cheese", "wine", "honey", "apples", "wool", "pottery", "salt", "glass", "bread", "beer", "lace",
            "cider", "paper", "clocks")
LANDSCAPES = ("river", "coast", "lake", "hills", "forest", "plain")
# Cuisine -> two typical dishes (used by reviews).
CUISINES = {"Italian": ("pasta", "pizza"), "Chinese": ("noodles", "dumplings"), "French": ("soup", "tart"),
            "Indian": ("curry", "rice"), "Japanese": ("sushi", "ramen"), "Mexican": ("tacos", "beans"),
            "Greek": ("salad", "lamb"), "Thai": ("curry", "noodles"), "English": ("pie", "roast"),
            "Spanish": ("paella", "tapas")}
EAT_TYPES = ("restaurant", "cafe", "pub", "bistro", "diner")
AREAS = ("riverside", "city centre", "harbour", "old town", "market square", "outskirts")
PRICES = ("cheap", "moderate", "expensive")
RATINGS = ("low", "average", "high")
VENUE_ADJECTIVES = ("Golden", "Silver", "Red", "Blue", "Green", "Little", "Royal", "Crooked", "Lazy", "Merry",
                    "Hidden", "Rusty", "Jolly", "Copper", "Velvet", "Painted")
VENUE_OBJECTS = ("Fork", "Spoon", "Kettle", "Lantern", "Anchor", "Crown", "Barrel", "Oak", "Lion", "Bell", "Pear",
                 "Plum", "Acorn", "Ladle", "Teapot", "Harp", "Compass", "Thimble")
VENUE_ANIMALS = ("Heron", "Fox", "Owl", "Hare", "Swan", "Robin", "Badger", "Otter", "Lark", "Wren", "Stag", "Pike")
VENUE_SUFFIXES = {"restaurant": ("Kitchen", "Grill", "House", "Table"), "cafe": ("Cafe",),
                  "pub": ("Inn", "Tavern", "Arms"), "bistro": ("Bistro",), "diner": ("Diner",)}
PLURAL_NOUNS = {"noodles", "dumplings", "tacos", "beans", "tapas", "staff", "prices", "apples", "clocks"}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "March", "April", "May", "June", "July", "August", "September", "October", "December")


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Town:
    name: str        # one word, e.g. "Ashford"
    region: str      # e.g. "Norland" or "Upper Dale"
    landscape: str   # one of LANDSCAPES
    product: str     # what the town is famous for, one of PRODUCTS


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    female: bool
    profession: str  # one of PROFESSIONS
    hometown: str    # a town name
    hobby: str       # one of HOBBIES
    favourite: str   # name of their favourite venue

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Venue:
    name: str             # multi-word, e.g. "Blue Heron Cafe"
    eat_type: str         # one of EAT_TYPES
    food: str             # a cuisine, key of CUISINES
    town: str             # a town name
    area: str             # one of AREAS (riverside only in river towns, harbour only on the coast)
    price: str            # one of PRICES
    rating: str           # customer rating, one of RATINGS
    family_friendly: bool
    near: str             # name of another venue, usually in the same town
    owner: str            # full name of a person


@dataclass
class World:
    """All entities of one generated world. Look entities up by name with `town()`, `person()`, `venue()`."""

    seed: int
    regions: list[str]
    towns: list[Town]
    people: list[Person]
    venues: list[Venue]
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _lookup(self, kind: str, name: str):
        if not self._index:
            self._index.update({("town", t.name): t for t in self.towns})
            self._index.update({("person", p.name): p for p in self.people})
            self._index.update({("venue", v.name): v for v in self.venues})
        return self._index[(kind, name)]

    def town(self, name: str) -> Town:
        return self._lookup("town", name)

    def person(self, name: str) -> Person:
        return self._lookup("person", name)

    def venue(self, name: str) -> Venue:
        return self._lookup("venue", name)

    def facts(self) -> list[tuple[str, str, str]]:
        """Every fact as a (subject, relation, value) triple; family_friendly is "yes"/"no"."""
        out = []
        for t in self.towns:
            out += [(t.name, "region", t.region), (t.name, "landscape", t.landscape), (t.name, "product", t.product)]
        for p in self.people:
            out += [(p.name, r, getattr(p, r)) for r in ("profession", "hometown", "hobby", "favourite")]
        for v in self.venues:
            out += [(v.name, r, getattr(v, r)) for r in ("eat_type", "food", "town", "area", "price", "rating")]
            out += [(v.name, "family_friendly", "yes" if v.family_friendly else "no"),
                    (v.name, "near", v.near), (v.name, "owner", v.owner)]
        return out


def generate_world(seed: int = 0, n_towns: int = 40, n_people: int = 200, n_venues: int = 120) -> World:
    """Build the world for `seed`: towns, then people, then venues (owned by people), then favourites."""
    rng = random.Random(f"world-{seed}")
    regions = rng.sample(REGION_POOL, 6)
    town_names = [p + s for p in TOWN_PREFIXES for s in TOWN_SUFFIXES if p[-1] != s[0]]
    towns = [Town(name, regions[i % len(regions)], rng.choice(LANDSCAPES), rng.choice(PRODUCTS))
             for i, name in enumerate(rng.sample(town_names, n_towns))]
    rng.shuffle(towns)

    firsts = [(n, True) for n in FEMALE_NAMES] + [(n, False) for n in MALE_NAMES]
    combos = rng.sample([(f, last) for f in firsts for last in LAST_NAMES], n_people)
    people = [Person(f, last, female, rng.choice(PROFESSIONS), rng.choice(towns).name, rng.choice(HOBBIES), "")
              for (f, female), last in combos]

    venues = _generate_venues(rng, towns, people, n_venues)
    by_town: dict[str, list[Venue]] = {}
    for v in venues:
        by_town.setdefault(v.town, []).append(v)
    # Favourite venue: usually one in the person's hometown.
    people = [Person(p.first, p.last, p.female, p.profession, p.hometown, p.hobby,
                     rng.choice(by_town[p.hometown] if p.hometown in by_town and rng.random() < 0.7 else venues).name)
              for p in people]
    return World(seed, regions, towns, people, venues)


def _venue_name(rng: random.Random, eat_type: str) -> str:
    pattern = rng.random()
    if pattern < 0.4:
        return f"The {rng.choice(VENUE_ADJECTIVES)} {rng.choice(VENUE_OBJECTS)}"
    if pattern < 0.75:
        return f"{rng.choice(VENUE_ADJECTIVES)} {rng.choice(VENUE_ANIMALS)} {rng.choice(VENUE_SUFFIXES[eat_type])}"
    return f"The {rng.choice(VENUE_OBJECTS)} and {rng.choice(VENUE_ANIMALS)}"


def _generate_venues(rng: random.Random, towns: list[Town], people: list[Person], n: int) -> list[Venue]:
    # Every town gets at least one venue; the rest are spread at random.
    venue_towns = [t for t in towns] + [rng.choice(towns) for _ in range(n - len(towns))]
    rng.shuffle(venue_towns)
    residents = {t.name: [p for p in people if p.hometown == t.name] for t in towns}
    owners: set[str] = set()
    drafts, names = [], set()
    for town in venue_towns:
        eat_type = rng.choices(EAT_TYPES, weights=(35, 25, 20, 10, 10))[0]
        name = _venue_name(rng, eat_type)
        while name in names:
            name = _venue_name(rng, eat_type)
        names.add(name)
        areas = [a for a in AREAS if (a != "riverside" or town.landscape == "river")
                 and (a != "harbour" or town.landscape == "coast")]
        # Owners are distinct people, preferably living in the venue's town.
        local = [p.name for p in residents[town.name] if p.name not in owners]
        owner = rng.choice(local or [p.name for p in people if p.name not in owners])
        owners.add(owner)
        drafts.append(dict(name=name, eat_type=eat_type, food=rng.choice(sorted(CUISINES)), town=town.name,
                           area=rng.choice(areas), price=rng.choice(PRICES), rating=rng.choice(RATINGS),
                           family_friendly=rng.random() < 0.55, owner=owner))
    region_of = {t.name: t.region for t in towns}
    for d in drafts:
        same_town = [o["name"] for o in drafts if o["town"] == d["town"] and o is not d]
        same_region = [o["name"] for o in drafts if region_of[o["town"]] == region_of[d["town"]] and o is not d]
        d["near"] = rng.choice(same_town or same_region)
    return [Venue(**d) for d in drafts]


# ---------------------------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------------------------

def _a(word: str) -> str:
    """Word with its indefinite article: 'an Italian', 'a cafe'."""
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _be(noun: str) -> str:
    return "were" if noun in PLURAL_NOUNS else "was"


_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


def tokenize(text: str) -> list[str]:
    """Split text into words and punctuation marks ("family-friendly" and "year's" stay whole)."""
    return _TOKEN_RE.findall(text)


class _Cycle:
    """Endless round-robin over items, reshuffled each pass: every entity gets an equal share."""

    def __init__(self, items: Sequence[T], rng: random.Random):
        self.items, self.rng, self.queue = list(items), rng, []

    def next(self):
        if not self.queue:
            self.queue = self.rng.sample(self.items, len(self.items))
        return self.queue.pop()


# ---------------------------------------------------------------------------------------------
# Realising facts as text (shared by the corpus and the tasks)
# ---------------------------------------------------------------------------------------------

PERSON_VPS = {
    "profession": ("works as a {v}", "is a {v}", "is a {v} by trade", "earns a living as a {v}",
                   "has worked as a {v} for many years"),
    "hometown": ("comes from {v}", "is from {v}", "grew up in {v}", "was born in {v}", "lives in {v}",
                 "calls {v} home"),
    "hobby": ("enjoys {v}", "loves {v}", "is fond of {v}", "spends {pos} free time on {v}", "is very keen on {v}"),
    "favourite": ("often eats at {v}", "is a regular at {v}", "likes to eat at {v}",
                  "says that {pos} favourite place to eat is {v}"),
    "owns": ("runs {v}", "owns {v}", "is the owner of {v}", "opened {v} some years ago"),
}
# Paraphrases that state a profession or hobby without naming it (extra sentences in bios).
PROFESSION_DETAILS = {
    "baker": ("gets up before dawn to bake bread", "bakes the best rolls in town"),
    "teacher": ("teaches at the local school", "spends the evenings marking homework"),
    "doctor": ("looks after patients at the local clinic", "is often called out at night to see patients"),
    "farmer": ("keeps sheep and grows barley", "is up at dawn to feed the animals"),
    "painter": ("paints landscapes and portraits", "has shown pictures at several galleries"),
    "nurse": ("works long shifts at the hospital", "looks after the sick"),
    "carpenter": ("builds tables and chairs by hand", "repairs old wooden doors and stairs"),
    "butcher": ("runs a busy shop on the high street", "sells sausages at the market"),
    "lawyer": ("spends long days in court", "helps people with contracts and wills"),
    "musician": ("plays the violin in a small band", "gives concerts in the summer"),
    "chef": ("cooks for hundreds of guests each week", "is always trying new recipes"),
    "writer": ("has written three novels", "writes stories for children"),
    "tailor": ("makes suits and mends coats", "sews dresses for weddings"),
    "gardener": ("looks after the park and its flower beds", "grows roses and vegetables"),
    "librarian": ("looks after thousands of books", "runs a reading group for children"),
    "potter": ("makes bowls and jugs from local clay", "sells pots and cups at the market"),
}
HOBBY_DETAILS = {
    "chess": ("plays chess at the club every week", "rarely loses a game of chess"),
    "cycling": ("cycles many miles every weekend", "owns three bicycles"),
    "fishing": ("spends quiet mornings fishing", "is often found fishing by the water"),
    "singing": ("sings in a choir", "sings whenever possible"),
    "swimming": ("swims every morning", "goes swimming in all weathers"),
    "hiking": ("goes hiking at weekends", "walks for hours on long hikes"),
    "reading": ("reads a book every week", "is always reading something"),
    "dancing": ("goes dancing every Friday", "takes dancing lessons"),
    "knitting": ("knits scarves for friends", "is always knitting something"),
    "running": ("goes running every morning", "has run several long races"),
    "sailing": ("goes sailing whenever the wind is good", "owns a small sailing boat"),
    "photography": ("takes photographs wherever possible", "carries a camera everywhere"),
}
# Colour sentences about a town's landscape (they never contradict its facts).
LANDSCAPE_DETAILS = {
    "river": ("Old mills line the banks of the river.", "Boats carry goods up and down the river."),
    "coast": ("Fishing boats fill the harbour.", "In summer, the beaches are busy."),
    "lake": ("In winter the lake sometimes freezes.", "People swim in the lake in summer."),
    "hills": ("The streets are steep and narrow.", "Sheep graze on the slopes around the town."),
    "forest": ("Wood from the forest is used for building.", "Many paths lead into the trees."),
    "plain": ("Fields of wheat stretch to the horizon.", "The wind blows hard across the fields."),
}
LANDSCAPE_VPS = {
    "river": ("lies on a river", "stands on the banks of a river", "is built along a river"),
    "coast": ("lies on the coast", "sits by the sea", "looks out over the sea"),
    "lake": ("lies on the shore of a lake", "sits beside a lake"),
    "hills": ("lies in the hills", "is surrounded by hills"),
    "forest": ("lies at the edge of a forest", "is surrounded by forest"),
    "plain": ("lies on a wide plain", "is surrounded by flat farmland"),
}
PRODUCT_VPS = ("is famous for its {v}", "is known for its {v}", "is known across {r} for its {v}",
               "is proud of its {v}")
AREA_PPS = {"riverside": ("by the river", "in the riverside area"),
            "city centre": ("in the city centre", "in the centre of town"),
            "harbour": ("by the harbour", "down at the harbour"), "old town": ("in the old town",),
            "market square": ("on the market square",), "outskirts": ("on the outskirts", "on the edge of town")}
# The same places with a town attached, for the corpus: "in the old town of Ashford".
AREA_TOWN_PPS = {"riverside": "by the river in {t}", "city centre": "in the centre of {t}",
                 "harbour": "by the harbour in {t}", "old town": "in the old town of {t}",
                 "market square": "on the market square in {t}", "outskirts": "on the outskirts of {t}"}
PRICE_VPS = {"cheap": ("is cheap", "is inexpensive", "has cheap prices", "offers food at budget prices"),
             "moderate": ("is moderately priced", "has moderate prices", "is mid-priced"),
             "expensive": ("is expensive", "is rather pricey", "is quite expensive", "has expensive prices")}
PRICE_ADJS = {"cheap": ("cheap", "inexpensive"), "moderate": ("moderately priced", "mid-priced"),
              "expensive": ("expensive", "pricey")}
RATING_VPS = ("has {a_v} customer rating", "is rated {v} by customers", "has {a_v} rating",
              "gets {a_v} rating from customers")
FAMILY_VPS = {True: ("is family-friendly", "is kid friendly", "welcomes families", "is child-friendly"),
              False: ("is not family-friendly", "is not kid friendly", "does not welcome children",
                      "is adults only")}
FOOD_VPS = ("serves {v} food", "offers {v} dishes", "specialises in {v} cooking", "has {v} food on the menu")
NEAR_VPS = ("is near {v}", "is close to {v}", "is located near {v}", "is not far from {v}", "sits next to {v}")
TOWN_VPS = ("is in {v}", "is located in {v}", "can be found in {v}")
OWNER_VPS = ("is run by {v}", "is owned by {v}", "belongs to {v}")


def _venue_vp(rng: random.Random, slot: str, value: str, town: str | None = None) -> str:
    """A verb phrase stating one venue attribute, e.g. 'is rated high by customers'.
    With `town`, the area phrase also names the town: 'is in the old town of Ashford'."""
    if slot == "food":
        return rng.choice(FOOD_VPS).format(v=value)
    if slot == "area":
        if town:
            return "is " + AREA_TOWN_PPS[value].format(t=town)
        return rng.choice(("is ", "is located ")) + rng.choice(AREA_PPS[value])
    if slot == "price":
        return rng.choice(PRICE_VPS[value])
    if slot == "rating":
        return rng.choice(RATING_VPS).format(v=value, a_v=_a(value))
    if slot == "family_friendly":
        return rng.choice(FAMILY_VPS[value == "yes"])
    table = {"near": NEAR_VPS, "town": TOWN_VPS, "owner": OWNER_VPS}[slot]
    return rng.choice(table).format(v=value)


def describe_venue(rng: random.Random, attrs: dict[str, str]) -> str:
    """Fluent description realising *every* attribute in `attrs` (keys: DATA_TO_TEXT_SLOTS, plus
    optionally "town" and "owner"). Values are strings; family_friendly is "yes"/"no"."""
    name = attrs["name"]
    todo = [k for k in attrs if k not in ("name", "eat_type")]  # eat_type always goes in the opening
    rng.shuffle(todo)
    noun = attrs.get("eat_type", rng.choice(("place", "venue")))
    # Opening noun phrase, e.g. "a cheap Italian cafe": absorbs some slots as adjectives.
    adjs = []
    if "price" in todo and rng.random() < 0.4:
        adjs.append(rng.choice(PRICE_ADJS[attrs["price"]]))
        todo.remove("price")
    if attrs.get("family_friendly") == "yes" and rng.random() < 0.3:
        adjs.append(rng.choice(("family-friendly", "kid friendly")))
        todo.remove("family_friendly")
    if "food" in todo and rng.random() < 0.7:
        adjs.append(attrs["food"])
        todo.remove("food")
    np_ = _a(" ".join(adjs + [noun]))
    # In the corpus, area and town are usually said together: "in the old town of Ashford".
    area_town = attrs["town"] if "town" in todo and "area" in todo and rng.random() < 0.7 else None
    if area_town:
        todo.remove("town")
    style = rng.random()
    if "area" in todo and style < 0.25:
        todo.remove("area")
        pp = (AREA_TOWN_PPS[attrs["area"]].format(t=area_town) if area_town
              else rng.choice(AREA_PPS[attrs["area"]]))
        opening = rng.choice((f"{_cap(pp)}, there is {np_} called {name}", f"{name} is {np_} {pp}"))
    elif "near" in todo and style < 0.4:
        todo.remove("near")
        opening = f"{name}, {rng.choice(('near', 'close to', 'next to'))} {attrs['near']}, is {np_}"
    elif not adjs and "eat_type" not in attrs and todo:  # avoid the empty "X is a place"
        opening = f"{name} {_venue_vp(rng, todo[0], attrs[todo[0]], area_town)}"
        todo = todo[1:]
    elif style < 0.55:
        opening = f"There is {np_} called {name}"
    else:
        opening = f"{name} is {np_}"
    if "rating" in todo and rng.random() < 0.3:  # "... with a high customer rating"
        todo.remove("rating")
        opening += f" with {_a(attrs['rating'])} customer rating"
    sentences = [opening]
    while todo:  # the remaining slots as verb phrases, 1-3 per sentence
        n = rng.randint(1, 3)
        chunk, todo = todo[:n], todo[n:]
        subject = rng.choice(("It", "It", name, f"The {noun}"))
        sentences.append(f"{subject} {_join([_venue_vp(rng, k, attrs[k], area_town) for k in chunk])}")
    return " ".join(s + "." for s in sentences)


# ---------------------------------------------------------------------------------------------
# Reviews (sentiment task and corpus)
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# The pretraining corpus
# ---------------------------------------------------------------------------------------------

Fact = tuple[str, str]  # (subject, relation), e.g. ("Mira Okafor", "profession")


@dataclass(frozen=True)
class Document:
    """One corpus document plus the facts it states (used to check fact coverage)."""

    text: str
    kind: str                 # "person", "town", "venue", "news", "review" or "listing"
    facts: tuple[Fact, ...]


def _venue_attrs(v: Venue) -> dict[str, str]:
    """All attributes of a venue as strings, in DATA_TO_TEXT_SLOTS order (family_friendly -> yes/no)."""
    return {"name": v.name, "eat_type": v.eat_type, "food": v.food, "area": v.area, "price": v.price,
            "rating": v.rating, "family_friendly": "yes" if v.family_friendly else "no", "near": v.near}


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


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

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
)
ENTITY_TYPES = {"per": "PER", "per2": "PER", "owner": "PER", "first": "PER", "last": "PER", "home": "LOC",
                "vtown": "LOC", "town2": "LOC", "region": "LOC", "venue": "ORG", "near": "ORG"}
NER_SIZES = (1500, 300, 300)


def _ner_example(rng: random.Random, world: World) -> dict:
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
    tokens, tags = [], []
    for i, piece in enumerate(re.split(r"\{(\w+)\}", rng.choice(NER_TEMPLATES))):
        words = tokenize(values[piece] if i % 2 else piece)  # odd pieces are placeholder names
        kind = ENTITY_TYPES.get(piece) if i % 2 else None
        tokens += words
        tags += [("B-" if j == 0 else "I-") + kind if kind else "O" for j in range(len(words))]
    return {"tokens": tokens, "tags": tags}


def _ner(world: World, seed: int) -> TaskData:
    rng = random.Random(f"{seed}-ner")
    seen: set[str] = set()
    splits = [_unique(lambda: _ner_example(rng, world), n, lambda ex: " ".join(ex["tokens"]), seen)
              for n in NER_SIZES]
    description = ("Named-entity recognition with BIO tags: {'tokens': list[str], 'tags': list[str]}, "
                   "one tag per token; PER people, LOC towns and regions, ORG venues. Punctuation marks are "
                   "separate tokens, so ' '.join(tokens) is the sentence.")
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
