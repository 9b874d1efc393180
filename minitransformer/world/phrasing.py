"""Phrasing: small text helpers and the grammar that realises facts as text (shared by the corpus and the tasks)."""

from __future__ import annotations

import random
import re
from typing import Sequence, TypeVar

from .entities import PLURAL_NOUNS

T = TypeVar("T")

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
