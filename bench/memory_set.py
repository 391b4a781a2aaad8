"""The memory bench's retrieval set: facts about people and the questions that ask for them in other
words, generated from templates over names, places, objects and numbers with a fixed seed, and
embedded by the real all-MiniLM-L6-v2 on vLLM's pooling runner (the engine the gateway's memory path
embeds with, through /v1/embeddings).

Every person has several facts (one per template they drew), so a question has to find the right
topic among that person's facts as well as the right person among all of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx
import numpy as np
import numpy.typing as npt

EMBEDDING_MODEL = "all-minilm-l6-v2"

# fmt: off
_FIRST = (
    "Amara", "Boris", "Chen", "Dalia", "Emeka", "Farah", "Gustav", "Hana", "Ivan", "Jonas", "Keiko",
    "Lars", "Mirela", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tomas", "Ugo", "Vera",
    "Wanda", "Xavier", "Yusuf", "Zofia", "Anders", "Bianca", "Carlos", "Dmitri",
)
_LAST = (
    "Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Haddad", "Ferreira", "Kowalski", "Brennan", "Sato",
)
_PLACES = (
    "Lisbon", "Nairobi", "Osaka", "Tromso", "Valparaiso", "Krakow", "Hobart", "Marrakesh", "Winnipeg",
    "Tbilisi", "Cork", "Busan", "Leipzig", "Cusco", "Dakar", "Bergen", "Perth", "Quito", "Tallinn", "Porto",
)
_OBJECTS = (
    "violin", "bicycle", "telescope", "sewing machine", "kayak", "typewriter", "accordion", "chessboard",
    "camera", "globe", "lantern", "harmonica",
)
_PETS = ("parrot", "tortoise", "greyhound", "ferret", "cat", "goldfish", "rabbit")
_FOODS = ("lentil soup", "fish tacos", "mushroom risotto", "lamb stew", "pad thai", "apple pie")
_JOBS = ("nurse", "architect", "welder", "pilot", "librarian", "baker", "geologist", "translator")
_MONTHS = ("January", "March", "May", "July", "September", "November")
# fmt: on

# (fact, question) templates; each slot is filled from the lists above or a number.
_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("{n} grew up in {place}.", "Which city was {n}'s childhood home?"),
    ("{n} owns a {pet} named Pixel.", "What kind of animal does {n} keep as a pet?"),
    ("{n} keeps an old {obj} in the attic.", "What does {n} store up under the roof?"),
    ("{n}'s favourite meal is {food}.", "Which dish does {n} like to eat most?"),
    ("{n} works as a {job} at the hospital in {place}.", "What is {n}'s profession?"),
    ("{n} ran a marathon in {num} minutes last spring.", "How long did {n} take to finish the race?"),
    ("{n} is allergic to peanuts and shellfish.", "Which foods must {n} avoid for health reasons?"),
    ("{n} is restoring a broken {obj} on weekends.", "What is {n} repairing in spare time?"),
    ("{n} moved into an apartment on floor {num} last year.", "On which storey does {n} live now?"),
    ("{n} plans a trip to {place} in {month}.", "Where is {n} travelling to on the next holiday?"),
    ("{n} has {small} siblings.", "How many brothers and sisters does {n} have?"),
    ("{n} drives a blue electric van to work.", "What vehicle does {n} commute in?"),
)


@dataclass(frozen=True)
class Pair:
    fact: str
    question: str


def retrieval_set(pairs: int, seed: int = 19) -> list[Pair]:
    """`pairs` distinct (fact, question) pairs: a person never draws the same template twice."""
    people = [f"{first} {last}" for first in _FIRST for last in _LAST]
    cells = [(person, t) for person in people for t in range(len(_TEMPLATES))]
    if pairs > len(cells):
        raise ValueError(f"at most {len(cells)} pairs can be generated")
    rng = random.Random(seed)
    chosen = rng.sample(cells, pairs)
    made: list[Pair] = []
    for person, template in chosen:
        slots = {
            "n": person,
            "place": rng.choice(_PLACES),
            "obj": rng.choice(_OBJECTS),
            "pet": rng.choice(_PETS),
            "food": rng.choice(_FOODS),
            "job": rng.choice(_JOBS),
            "num": rng.randint(2, 240),
            "small": rng.randint(1, 9),
            "month": rng.choice(_MONTHS),
        }
        fact, question = _TEMPLATES[template]
        made.append(Pair(fact.format(**slots), question.format(**slots)))
    return made


def embed(engine_url: str, texts: list[str], batch: int = 64) -> npt.NDArray[np.float32]:
    """Unit vectors of `texts` from the engine's /v1/embeddings, in order."""
    rows: list[list[float]] = []
    with httpx.Client(base_url=engine_url, timeout=300) as client:
        for start in range(0, len(texts), batch):
            part = texts[start : start + batch]
            answer = client.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": part})
            answer.raise_for_status()
            data = sorted(answer.json()["data"], key=lambda item: item["index"])
            rows.extend(item["embedding"] for item in data)
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def filler(count: int, dimensions: int, seed: int = 7) -> npt.NDArray[np.float32]:
    """Synthetic unit vectors standing in for a tenant's other memories (latency only)."""
    matrix = np.random.default_rng(seed).standard_normal((count, dimensions)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
