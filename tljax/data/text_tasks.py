"""Text classification tasks for BERT backbones: token ids from a ``tokenizer.json``.

Registered in :mod:`tljax.data.tasks` (``get_task(name, tokenizer=..., ...)``):

* ``reviews``, ``products``: single-domain sentiment (the target *is* the source), from
  the constructed movie-review / product-review generator of
  :mod:`tljax.data.sentiment` (offline, seeded by ``data_seed``).
* ``reviews->products``, ``products->reviews``: the two constructed domains as a
  domain-adaptation task. Both domains have the same labels in the same order (like the
  image tasks, whose target is the shifted source), with different texts.
* ``imdb``: TFDS ``imdb_reviews/plain_text`` (25,000 train / 25,000 test movie reviews),
  single domain; read TF-free from its ``array_record`` files (:mod:`tljax.data.imdb`).

Inputs are ``(n, 2, max_len)`` int32 arrays: token ids and attention mask, as
:func:`tljax.models.bert.pack_inputs` packs them (``[CLS] … [SEP]``, right-padded,
truncated to ``max_len``). They are token ids: never standardise or cast them to float
(``config.data.standardize`` must stay ``False``; the trainer only casts floating
arrays to the compute dtype). Labels: 0 negative, 1 positive.

Options (``config.data.task_kwargs``):

* ``tokenizer`` (required): path of a Hugging Face ``tokenizer.json`` or of a directory
  holding one, e.g. all-MiniLM-L6-v2's ``model/`` directory. The ids must be those of
  the vocabulary the backbone was trained with.
* ``max_len``: tokens per example, special tokens included (default 64; ``imdb`` 256).
* constructed tasks: ``n_train`` (default 2000), ``n_test`` (1000) reviews per domain,
  ``shared_fraction`` (0.5), ``negation`` (0.2), see :func:`tljax.data.sentiment.generate`.
* ``imdb``: ``data_dir`` (TFDS data directory; default ``$TFDS_DATA_DIR`` or
  ``~/tensorflow_datasets``), ``max_train``, ``max_test`` (a seeded random subset of
  each split; 0 or ``None``: all).

Tasks are cached in-process (keyed by the options and the tokenizer file's size and
modification time) and their arrays are read-only.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from tljax.data import sentiment
from tljax.data.core import Domain, Split, Task

DEFAULT_MAX_LEN = 64
DEFAULT_IMDB_MAX_LEN = 256
_CONSTRUCTED = {
    "reviews": ("reviews", None),
    "products": ("products", None),
    "reviews->products": ("reviews", "products"),
    "products->reviews": ("products", "reviews"),
}


def _tokenizer_key(tokenizer, task: str) -> tuple:
    """``(path, size, mtime)`` of the tokenizer file; raises a clear error if unset/absent."""
    if tokenizer is None or tokenizer == "":
        raise ValueError(
            f"Task {task!r} needs the `tokenizer` option: the path of a Hugging Face "
            "tokenizer.json (or of a directory holding one) matching the backbone's "
            "vocabulary, e.g. --config.data.task_kwargs.tokenizer=/path/to/"
            "all-MiniLM-L6-v2/model (see configs/text/)."
        )
    path = os.path.abspath(os.path.expanduser(os.fspath(tokenizer)))
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Task {task!r}: tokenizer {os.fspath(tokenizer)!r} not found (looked for "
            f"{path}); expected a HF tokenizer.json or a directory holding one."
        )
    st = os.stat(path)
    return path, st.st_size, st.st_mtime_ns


def _check_int(value, what: str, *, minimum: int = 1, none_ok: bool = False):
    if value is None and none_ok:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def encode(texts, tokenizer_path: str, max_len: int) -> np.ndarray:
    """Tokenizes ``texts`` into the packed ``(n, 2, max_len)`` int32 BERT input."""
    from tljax.data.text import TextTokenizer
    from tljax.models.bert import pack_inputs

    ids, mask = TextTokenizer.from_file(tokenizer_path).encode_batch(list(texts), max_len)
    return pack_inputs(ids, mask)


def _freeze(task: Task) -> Task:
    task.validate()
    for domain in (task.source, task.target):
        for split in (domain.train, domain.test):
            split.x.flags.writeable = False
            split.y.flags.writeable = False
    return task


def constructed_task(
    name: str,
    *,
    data_seed: int = 0,
    tokenizer: str | os.PathLike | None = None,
    max_len: int = DEFAULT_MAX_LEN,
    n_train: int = 2000,
    n_test: int = 1000,
    shared_fraction: float = 0.5,
    negation: float = 0.2,
) -> Task:
    """A constructed sentiment task (see the module docstring).

    Raises:
      ValueError: for a missing tokenizer option or a bad option value.
      FileNotFoundError: if the tokenizer file does not exist.
    """
    if name not in _CONSTRUCTED:
        raise ValueError(f"Unknown constructed text task {name!r}; valid: {sorted(_CONSTRUCTED)}.")
    key = _tokenizer_key(tokenizer, name)
    max_len = _check_int(max_len, "max_len", minimum=3)
    n_train, n_test = _check_int(n_train, "n_train"), _check_int(n_test, "n_test")
    for what, p in (("shared_fraction", shared_fraction), ("negation", negation)):
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{what} must be a number in [0, 1], got {p!r}.")
    return _constructed(
        name, int(data_seed), key, max_len, n_train, n_test, float(shared_fraction), float(negation)
    )


@functools.lru_cache(maxsize=8)
def _constructed(name, data_seed, key, max_len, n_train, n_test, shared_fraction, negation):
    source_name, target_name = _CONSTRUCTED[name]
    # Balanced labels in a seeded order, the same for both domains.
    rng = np.random.default_rng([data_seed, 19])
    y_train = rng.permutation(np.arange(n_train) % 2).astype(np.int32)
    y_test = rng.permutation(np.arange(n_test) % 2).astype(np.int32)

    def domain(dname: str) -> Domain:
        train, test = sentiment.train_test(
            dname, y_train, y_test, seed=data_seed, shared_fraction=shared_fraction,
            negation=negation,
        )  # fmt: skip
        return Domain(
            dname,
            Split(encode(train, key[0], max_len), y_train.copy()),
            Split(encode(test, key[0], max_len), y_test.copy()),
        )

    source = domain(source_name)
    target = source if target_name is None else domain(target_name)
    return _freeze(Task(name, source, target, num_classes=2))


def imdb_task(
    name: str = "imdb",
    *,
    data_seed: int = 0,
    tokenizer: str | os.PathLike | None = None,
    max_len: int = DEFAULT_IMDB_MAX_LEN,
    data_dir: str | os.PathLike | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Task:
    """TFDS ``imdb_reviews`` as a single-domain task (see the module docstring).

    Raises:
      ValueError: for a missing tokenizer option or a bad option value.
      FileNotFoundError: if the tokenizer is missing, or ``imdb_reviews`` is not prepared
        in ``data_dir`` (the message says how to prepare it).
    """
    key = _tokenizer_key(tokenizer, name)
    max_len = _check_int(max_len, "max_len", minimum=3)
    # 0 or None: the whole split.
    max_train = _check_int(max_train or None, "max_train", none_ok=True)
    max_test = _check_int(max_test or None, "max_test", none_ok=True)
    if data_dir in (None, ""):
        data_dir = None
    else:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    return _imdb(name, int(data_seed), key, max_len, data_dir, max_train, max_test)


@functools.lru_cache(maxsize=2)
def _imdb(name, data_seed, key, max_len, data_dir, max_train, max_test):
    from tljax.data import imdb

    splits = {}
    for split, limit, sub in (("train", max_train, 3), ("test", max_test, 4)):
        texts, labels = imdb.load_split(
            split, data_dir=data_dir, limit=limit, seed=[data_seed, sub]
        )
        splits[split] = Split(encode(texts, key[0], max_len), labels)
    source = Domain("imdb", splits["train"], splits["test"])
    return _freeze(Task(name, source, source, num_classes=2))


__all__ = ["constructed_task", "encode", "imdb_task"]
