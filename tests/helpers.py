"""Small builders shared by the tests (tiny models, random batches)."""

from __future__ import annotations

import numpy as np
import optax
from flax import nnx

from tljax import methods, optim
from tljax.models import build_classifier
from tljax.train import build_net, init_state, make_eval_step, make_train_step


def random_batch(n=8, shape=(16, 16, 3), num_classes=4, seed=0, shift=0.5):
    rng = np.random.default_rng(seed)
    return {
        "source": {
            "image": rng.random((n, *shape), dtype=np.float32),
            "label": rng.integers(0, num_classes, n).astype(np.int32),
        },
        "target": {"image": rng.random((n, *shape), dtype=np.float32) + shift},
    }


def tiny_setup(
    method="dann",
    *,
    rules=((".*", 1.0),),
    backbone="lenet",
    shape=(16, 16, 3),
    num_classes=4,
    lr=0.05,
    dtype=None,
    hparams=None,
    weight=1.0,
    seed=0,
    bottleneck_dim=None,
    **backbone_kwargs,
):
    """A small model + method + optimizer; returns (state, step_fn, eval_fn, labels)."""
    m = methods.get(method, **(hparams or {}))
    if backbone == "lenet":
        backbone_kwargs.setdefault("channels", (4, 8))
    model = build_classifier(
        backbone,
        shape,
        num_classes,
        rngs=nnx.Rngs(seed),
        bottleneck_dim=bottleneck_dim,
        **backbone_kwargs,
    )
    graphs, params, rest = build_net(model, m, seed=seed, num_classes=num_classes)
    tx, labels, _ = optim.make_optimizer(
        params, list(rules), optimizer="sgd", schedule=optax.constant_schedule(lr)
    )
    step = make_train_step(
        graphs,
        m,
        tx,
        frozen=optim.frozen_mask(labels),
        weight=weight,
        num_classes=num_classes,
        compute_dtype=dtype,
    )
    return init_state(params, rest, tx, seed=seed), step, make_eval_step(graphs, dtype), labels
