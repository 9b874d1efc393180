"""The world's entities: towns, people and eating places, and `generate_world(seed)` that draws them.

The vocabulary (names, professions, cuisines, ...) is small sets of common single words, so
that a ~1M-parameter model can learn every value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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


def _venue_attrs(v: Venue) -> dict[str, str]:
    """All attributes of a venue as strings, in the data-to-text slot order (family_friendly -> yes/no)."""
    return {"name": v.name, "eat_type": v.eat_type, "food": v.food, "area": v.area, "price": v.price,
            "rating": v.rating, "family_friendly": "yes" if v.family_friendly else "no", "near": v.near}


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
