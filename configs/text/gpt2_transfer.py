r"""GPT-2 transfer between the constructed review domains, at CPU scale.

A small GPT-2 (``GPT2_SMALL_CPU``: 2 blocks, 64 wide, 4 heads, mean-pooled features) is
pretrained on movie reviews (``reviews``, supervised sentiment) and transferred to
product reviews (``products``) by one strategy: ``scratch`` (no pretraining),
``linear_probe`` (frozen backbone: feature extraction), ``finetune`` (everything
trains) or ``gradual_unfreeze`` (the head, then block 1 and ``ln_f`` after a third of
the steps, then everything after two thirds). The head is new in every transfer run.
Token ids come from MiniLM's ``tokenizer.json`` (WordPiece; see configs/text/common.py
for the files): the architecture does not depend on the tokenizer, and GPT-2's own BPE
files are not on these machines.

    python -m experiments.run --config=configs/text/gpt2_transfer.py:role=pretrain \
        --workdir=runs/gpt2_transfer/pretrain
    python -m experiments.sweep --workdir=runs/gpt2_transfer --seeds=0,1,2 \
        --config=configs/text/gpt2_transfer.py:strategy=finetune,init=runs/gpt2_transfer/pretrain \
        ...  (one --config per strategy)

Argument keys: ``role`` (``pretrain`` or ``transfer``, the default), ``strategy``,
``init`` (the pretraining run's workdir), ``steps``, ``minilm`` (the tokenizer's
directory; else ``$TLJAX_MINILM_DIR`` or configs/text/common.py's default).
"""

from __future__ import annotations

from configs.args import parse_args
from configs.text.common import minilm_dir
from tljax.config import base_config

GPT2_SMALL_CPU = dict(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=30522)
STRATEGIES = ("scratch", "linear_probe", "finetune", "gradual_unfreeze")
PRETRAIN_STEPS = 300
STEPS = 150
_KEYS = {"role": str, "strategy": str, "init": str, "steps": int, "minilm": str}


def _rules(strategy: str, steps: int) -> tuple:
    if strategy in ("scratch", "finetune"):
        return ((r".*", 1.0),)
    if strategy == "linear_probe":
        return ((r"^model/(backbone|bottleneck)/", None), (r".*", 1.0))
    third = steps // 3
    return (
        (r"^model/head/", 1.0),
        (r"^model/backbone/(h/1/|ln_f/)", (1.0, third)),
        (r"^model/backbone/", (1.0, 2 * third)),
        (r".*", 1.0),
    )


def get_config(arg: str = ""):
    opts = parse_args(arg, _KEYS)
    role = opts.get("role", "transfer")
    strategy = opts.get("strategy", "finetune")
    if role not in ("pretrain", "transfer"):
        raise ValueError(f"gpt2_transfer: role must be 'pretrain' or 'transfer', got {role!r}.")
    if strategy not in STRATEGIES:
        raise ValueError(f"gpt2_transfer: unknown strategy {strategy!r}; valid: {STRATEGIES}.")
    pretrain = role == "pretrain"
    steps = opts.get("steps", PRETRAIN_STEPS if pretrain else STEPS)
    init = "" if pretrain or strategy == "scratch" else opts.get("init", "")
    if not pretrain and strategy != "scratch" and not init:
        raise ValueError(f"gpt2_transfer: strategy {strategy!r} needs init=<pretraining run>.")
    c = base_config()
    c.data.task = "reviews" if pretrain else "products"
    c.data.batch_size = 32
    c.data.standardize = False  # token ids
    c.data.task_kwargs.tokenizer = minilm_dir(opts)
    c.data.task_kwargs.max_len = 48
    c.model.backbone = "gpt2"
    c.model.backbone_kwargs.config = dict(GPT2_SMALL_CPU)
    c.model.backbone_kwargs.pool = "mean"
    c.model.init_from = init
    c.model.init_include = r"^model/(backbone|bottleneck)/"
    c.method.name = "source_only"
    c.optim.optimizer = "adamw"
    c.optim.lr = 1e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = max(steps // 10, 1)
    c.optim.weight_decay = 0.01
    c.optim.grad_clip = 1.0
    c.optim.freeze = ((r".*", 1.0),) if pretrain else _rules(strategy, steps)
    c.train.steps = steps
    c.train.log_every = 50 if steps % 50 == 0 else steps
    c.train.eval_every = steps
    c.train.checkpoint_every = steps
    c.train.eval_batch_size = 500
    return c
