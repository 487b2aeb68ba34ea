r"""MiniLM fine-tuned on IMDB movie-review sentiment (TFDS ``imdb_reviews``), for online users.

    python -m tljax.data.imdb --data_dir ~/tensorflow_datasets   # once: TF-free, 80 MB
    python -m experiments.run --config=configs/text/finetune_imdb.py \
        --workdir=runs/text/imdb --config.data.task_kwargs.data_dir=~/tensorflow_datasets

Data: the 25,000 labelled training reviews and the 25,000 test reviews of
``imdb_reviews/plain_text`` (``<br />`` replaced by spaces), truncated to 256 MiniLM
tokens (head of the review). Backbone: all-MiniLM-L6-v2 (how to get it:
configs/text/common.py). AdamW lr 2e-5 (weight decay 0.01), 10% warm-up then cosine,
32 reviews per step, 2,000 steps (~2.6 epochs) — a GPU run; on a CPU pass e.g.
``:steps=200`` with ``--config.data.task_kwargs.max_train=2000`` and ``max_test=1000``.

Expected accuracy: not measured yet (the development machine has no network to fetch
the dataset); the pipeline is tested on a small fake ``aclImdb`` archive.

Argument keys: ``minilm``, ``steps``, ``max_len``, ``batch``, ``lr`` (and ``method``,
``task``), see configs/text/common.py.
"""

from configs.text import common


def get_config(arg: str = ""):
    c = common.text_config(
        common.parse(arg),
        task="imdb",
        method="source_only",
        steps=2000,
        max_len=256,
        batch=32,
        lr=2e-5,
        eval_every=500,
    )
    c.data.task_kwargs.data_dir = ""  # TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets)
    c.data.task_kwargs.max_train = 0  # 0: all 25,000 (or a seeded subset of this many)
    c.data.task_kwargs.max_test = 0
    c.train.eval_batch_size = 128
    return c
