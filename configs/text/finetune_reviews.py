r"""MiniLM fine-tuned for sentiment on the constructed review task (offline, CPU-sized).

    python -m experiments.run --config=configs/text/finetune_reviews.py \
        --workdir=runs/text/reviews

    # source only vs DANN, movie reviews -> product reviews:
    python -m experiments.run --config='configs/text/finetune_reviews.py:task=reviews->products' \
        --workdir=runs/text/reviews_products_source_only
    python -m experiments.run --config=configs/text/finetune_reviews.py:method=dann \
        --workdir=runs/text/reviews_products_dann

Data: ``reviews`` (2,000 train / 1,000 test constructed movie reviews, balanced binary
sentiment; :mod:`tljax.data.sentiment`), or with a domain-adaptation method the
``reviews->products`` task (the target's 2,000 product reviews are used without labels).
Inputs: 48 tokens (the longest review has 33) from MiniLM's ``tokenizer.json``.
Backbone: all-MiniLM-L6-v2 from ``config.model.pretrained`` (how to get it:
configs/text/common.py). AdamW, lr 5e-5, 10% warm-up then cosine, 32 reviews per
domain, 300 steps; evaluated at the last step.

Measured (2,000 + 2,000 reviews, seed 0, test splits): fine-tuning on ``reviews`` gives
100% test accuracy. Source only on ``reviews->products`` (100 steps) gives 94.6% on the
target. DANN (100 steps) **collapses** with MiniLM + AdamW: the discriminator ends up
predicting the opposite domain and target accuracy drops to 51–63%, including with
``--config.method.weight=0.1``. See docs/transfer.md.

Argument keys: ``minilm`` (model directory), ``method`` (default ``source_only``; another
method switches the default task to ``reviews->products``), ``task``, ``steps``,
``max_len``, ``batch``, ``lr``. Measured accuracies and times: docs/transfer.md
("Text: MiniLM fine-tuning").
"""

from configs.text import common


def get_config(arg: str = ""):
    opts = common.parse(arg)
    method = opts.get("method", "source_only")
    task = "reviews" if method == "source_only" else "reviews->products"
    c = common.text_config(
        opts,
        task=task,
        method=method,
        steps=300,
        max_len=48,
        batch=32,
        lr=5e-5,
        eval_every=300,
    )
    c.data.task_kwargs.n_train = 2000  # reviews per domain
    c.data.task_kwargs.n_test = 1000
    return c
