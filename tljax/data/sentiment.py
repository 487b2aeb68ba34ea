"""Constructed two-domain sentiment data: movie reviews and product reviews, from templates.

An offline, seeded stand-in for the classic review-domain shift (Blitzer et al., 2007:
books → electronics): binary sentiment (0 negative, 1 positive) in two domains that
share their grammar and part of their sentiment vocabulary but differ in topic nouns,
domain-specific sentiment words, neutral filler sentences and closing remarks:

* ``reviews``: movie reviews (*"the plot was gripping. i saw it last weekend."*);
* ``products``: product reviews (*"the battery was flimsy. returned it after a week."*).

Each review is one sentiment sentence, optionally preceded by a neutral filler sentence
and followed by a closing remark of the same polarity. The sentiment sentence comes
from a few templates: plain (*"the {noun} was {adj}."*), two aspects of the same
polarity, negated (*"the {noun} was not {adj}."* with an adjective of the *opposite*
polarity; probability ``negation``) and contrastive (*"the {noun} was {adj'}, but
overall it was {adj}."*: the verdict after "but overall" decides). A sentiment word is
drawn from the shared pool with probability ``shared_fraction`` and from the domain's
own pool otherwise, so a model trained on one domain has seen only part of the other's
cues: a real (lexical) domain shift, not just a topic change.

:func:`generate` is a pure function of its arguments. Test sentences that also occur in
the training split are redrawn, so the test split measures generalisation, not recall.
"""

from __future__ import annotations

import numpy as np

SHARED = {
    1: ("great", "good", "excellent", "wonderful", "amazing", "fantastic", "superb", "lovely"),
    0: ("bad", "terrible", "awful", "poor", "horrible", "disappointing", "mediocre", "dreadful"),
}
ADVERBS = ("really", "very", "quite", "truly", "pretty", "absolutely", "rather")

DOMAINS = {
    "reviews": dict(
        nouns=("film", "movie", "plot", "acting", "script", "soundtrack", "ending",
               "cast", "story", "dialogue", "cinematography", "pacing", "lead actor",
               "director's work", "screenplay", "sequel"),
        sentiment={
            1: ("gripping", "moving", "hilarious", "captivating", "masterful", "heartfelt",
                "riveting", "beautifully shot", "clever", "memorable"),
            0: ("boring", "predictable", "dull", "cliched", "tedious", "overlong", "wooden",
                "forgettable", "pretentious", "confusing"),
        },
        fillers=("i saw it last weekend with friends.", "we watched it at the cinema.",
                 "i streamed it on a rainy evening.", "my sister picked this one.",
                 "it runs about two hours.", "i went in knowing nothing about it."),
        closers={
            1: ("i would watch it again.", "a must see.", "two thumbs up.",
                "i will recommend it to everyone.", "easily one of the best this year."),
            0: ("i walked out halfway.", "a waste of two hours.", "skip this one.",
                "i nearly fell asleep.", "not worth the ticket."),
        },
    ),
    "products": dict(
        nouns=("battery", "charger", "blender", "headphones", "screen", "keyboard",
               "vacuum", "kettle", "case", "speaker", "cable", "mattress", "coffee maker",
               "phone mount", "build quality", "customer service"),
        sentiment={
            1: ("sturdy", "reliable", "durable", "comfortable", "convenient", "well made",
                "quiet", "easy to use", "worth the money", "solid"),
            0: ("flimsy", "broken", "overpriced", "defective", "cheap", "noisy",
                "unreliable", "useless", "fragile", "faulty"),
        },
        fillers=("it arrived on tuesday in a small box.", "i ordered it online.",
                 "i bought it as a gift.", "i have used it for a month now.",
                 "it came with a manual.", "the package was delivered to my door."),
        closers={
            1: ("would buy again.", "highly recommend it.", "five stars.",
                "best purchase this year.", "my whole family loves it."),
            0: ("returned it after a week.", "a waste of money.", "one star.",
                "do not buy this.", "asked for a refund."),
        },
    ),
}  # fmt: skip


def domain_names() -> list[str]:
    """The constructed domains, sorted."""
    return sorted(DOMAINS)


def words() -> list[str]:
    """Every word (and punctuation mark) the generator can emit, sorted: enough to build
    a word-level tokenizer for tests."""
    parts = ["the", "was", "and", "not", "but", "overall", "it", "i", "found", "what", "a",
             "honestly", "felt", ",", ".", "!", "is", "at", "all"]  # fmt: skip
    pools = [SHARED[0], SHARED[1], ADVERBS]
    for d in DOMAINS.values():
        pools += [d["nouns"], d["sentiment"][0], d["sentiment"][1], d["fillers"]]
        pools += [d["closers"][0], d["closers"][1]]
    for pool in pools:
        for phrase in pool:
            parts.extend(phrase.replace(".", " . ").replace("'", " ' ").split())
    return sorted(set(parts))


def _check(domain: str, shared_fraction: float, negation: float) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"Unknown sentiment domain {domain!r}; valid: {domain_names()}.")
    for name, value in (("shared_fraction", shared_fraction), ("negation", negation)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}.")


class _Writer:
    """Draws the pieces of one domain's reviews from one generator."""

    def __init__(self, domain: str, rng: np.random.Generator, shared_fraction: float):
        self.d = DOMAINS[domain]
        self.rng = rng
        self.shared = shared_fraction

    def pick(self, pool):
        return pool[self.rng.integers(len(pool))]

    def adj(self, label: int) -> str:
        pool = SHARED[label] if self.rng.random() < self.shared else self.d["sentiment"][label]
        adj = self.pick(pool)
        return f"{self.pick(ADVERBS)} {adj}" if self.rng.random() < 0.3 else adj

    def noun(self) -> str:
        return self.pick(self.d["nouns"])

    def sentence(self, label: int, negation: float) -> str:
        r = self.rng.random()
        if r < negation:  # "not" + an adjective of the opposite polarity
            tail = " at all" if self.rng.random() < 0.3 else ""
            return f"the {self.noun()} was not {self.adj(1 - label)}{tail}."
        r = self.rng.random()
        if r < 0.15:  # the verdict after "but overall" decides
            first = f"the {self.noun()} was {self.adj(1 - label)}"
            return f"{first}, but overall it was {self.adj(label)}."
        if r < 0.35:
            first = f"the {self.noun()} was {self.adj(label)}"
            return f"{first} and the {self.noun()} was {self.adj(label)}."
        template = self.pick(
            ("the {n} was {a}.", "i found the {n} {a}.", "honestly, the {n} is {a}.",
             "what a {a} {n}!", "the {n} felt {a}.")
        )  # fmt: skip
        return template.format(n=self.noun(), a=self.adj(label))

    def review(self, label: int, negation: float) -> str:
        parts = []
        if self.rng.random() < 0.4:
            parts.append(self.pick(self.d["fillers"]))
        parts.append(self.sentence(label, negation))
        if self.rng.random() < 0.4:
            parts.append(self.pick(self.d["closers"][label]))
        return " ".join(parts)


def generate(
    domain: str,
    labels: np.ndarray,
    *,
    seed,
    shared_fraction: float = 0.5,
    negation: float = 0.2,
    exclude: frozenset[str] | set[str] = frozenset(),
    max_tries: int = 50,
) -> list[str]:
    """One review of ``domain`` per label.

    Args:
      domain: ``"reviews"`` or ``"products"``.
      labels: 0 (negative) / 1 (positive) per review.
      seed: seed of ``np.random.default_rng`` (an int or a list of ints).
      shared_fraction: probability that a sentiment word comes from the shared pool.
      negation: probability of a negated sentiment sentence.
      exclude: texts not to emit (e.g. the training split); such draws are redone.
      max_tries: redraws per review before giving up on ``exclude``.

    Returns:
      The texts, lower case, in the order of ``labels``.

    Raises:
      ValueError: for an unknown domain or a probability outside ``[0, 1]``.
    """
    _check(domain, shared_fraction, negation)
    writer = _Writer(domain, np.random.default_rng(seed), shared_fraction)
    out = []
    for y in np.asarray(labels):
        for _ in range(max_tries):
            text = writer.review(int(y), negation)
            if text not in exclude:
                break
        out.append(text)
    return out


def train_test(
    domain: str,
    y_train: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    shared_fraction: float = 0.5,
    negation: float = 0.2,
) -> tuple[list[str], list[str]]:
    """Training and test reviews of one domain; no test text occurs in the training split.

    The domain's texts depend on ``(seed, domain)`` only, so a domain is the same in every
    task it appears in.
    """
    domain_id = domain_names().index(domain) if domain in DOMAINS else -1
    kw = dict(shared_fraction=shared_fraction, negation=negation)
    train = generate(domain, y_train, seed=[seed, 20 + domain_id, 0], **kw)
    test = generate(domain, y_test, seed=[seed, 20 + domain_id, 1], exclude=set(train), **kw)
    return train, test


__all__ = ["DOMAINS", "SHARED", "domain_names", "generate", "train_test", "words"]
