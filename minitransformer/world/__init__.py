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

The package, one module per job (read them in this order):

    entities.py   the vocabulary, Town / Person / Venue / World, generate_world()
    phrasing.py   text helpers and the grammar that states facts as text
    reviews.py    venue reviews: aspects, opinions, contrast, verdicts
    corpus.py     the pretraining corpus: Document, annotated_corpus(), pretraining_corpus()
    tasks.py      the four tasks: TaskData, load_task() and the task constants
    metrics.py    the data-to-text metrics: slot_error_rate(), bleu()

Everything is re-exported here, so `from minitransformer.world import load_task` works.
"""

from .corpus import (DEFAULT_N_DOCUMENTS, DOCUMENT_KINDS, Document, Fact, annotated_corpus, corpus_stats,
                     pretraining_corpus)
from .entities import (AREAS, CUISINES, DAYS, EAT_TYPES, FEMALE_NAMES, HOBBIES, LANDSCAPES, LAST_NAMES, MALE_NAMES,
                       MONTHS, PLURAL_NOUNS, PRICES, PRODUCTS, PROFESSIONS, RATINGS, REGION_POOL, TOWN_PREFIXES,
                       TOWN_SUFFIXES, VENUE_ADJECTIVES, VENUE_ANIMALS, VENUE_OBJECTS, VENUE_SUFFIXES, Person, Town,
                       Venue, World, generate_world)
from .metrics import SLOT_PATTERNS, bleu, slot_error_rate, slot_errors
from .phrasing import (AREA_PPS, AREA_TOWN_PPS, FAMILY_VPS, FOOD_VPS, HOBBY_DETAILS, LANDSCAPE_DETAILS, LANDSCAPE_VPS,
                       NEAR_VPS, OWNER_VPS, PERSON_VPS, PRICE_ADJS, PRICE_VPS, PRODUCT_VPS, PROFESSION_DETAILS,
                       RATING_VPS, TOWN_VPS, describe_venue, tokenize)
from .reviews import (ASPECT_ADJS, ASPECT_NOUNS, EXPECTATIONS, EXTREME_ADJS, FIXED_CLAUSES, INTENSIFIERS,
                      REVIEW_KINDS, REVIEW_OPENERS, UNDECIDED_ENDINGS, VERDICT_OPENERS, VERDICTS)
from .tasks import (DATA_TO_TEXT_SIZES, DATA_TO_TEXT_SLOTS, DATA_TO_TEXT_VENUES, ENTITY_TYPES, NER_LABELS, NER_SIZES,
                    NER_TEMPLATES, PROBE_RELATIONS, PROBING_SIZES, PROBING_SUBJECT_SHARES, SENTIMENT_CEILING,
                    SENTIMENT_LABELS, SENTIMENT_NOISE, SENTIMENT_SIZES, TASK_NAMES, TaskData, load_task,
                    meaning_representation, probe_answer)

__all__ = [
    "Town", "Person", "Venue", "World", "Document", "TaskData",
    "generate_world", "pretraining_corpus", "annotated_corpus", "corpus_stats", "load_task",
    "slot_error_rate", "slot_errors", "bleu", "meaning_representation", "describe_venue", "probe_answer",
    "tokenize", "TASK_NAMES", "SENTIMENT_LABELS", "NER_LABELS", "DATA_TO_TEXT_SLOTS", "PROBE_RELATIONS",
    "SENTIMENT_NOISE", "SENTIMENT_CEILING",
]
