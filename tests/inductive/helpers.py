"""Tiny LeNet setups for the inductive-transfer tests: plain SGD (no momentum, no weight
decay), so one update is exactly ``-lr · gradient`` and two steps that differ only in the
method weight isolate the method loss's gradient."""

from __future__ import annotations

import types

import jax
import numpy as np
import optax
from flax import nnx

from tljax import methods, optim
from tljax.models import build_classifier
from tljax.optim import param_paths
from tljax.train import build_net, init_state, make_train_step

# One network shape for all inductive tests (and the tiny configs of the end-to-end ones):
# XLA:CPU compiles the initialisers once per parameter shape, which dominates test time.
SHAPE = (12, 12, 1)
NUM_CLASSES = 10
LR = 0.1


def batch(n=8, seed=0, shape=SHAPE, target_shape=None):
    """A labelled source batch; the target images have ``target_shape`` (default ``shape``)."""
    rng = np.random.default_rng(seed)
    return {
        "source": {
            "image": rng.random((n, *shape), dtype=np.float32),
            "label": rng.integers(0, NUM_CLASSES, n).astype(np.int32),
        },
        "target": {"image": rng.random((n, *(target_shape or shape)), dtype=np.float32)},
    }


def setup(
    method: str,
    *,
    hparams=None,
    rules=((".*", 1.0),),
    weight: float = 1.0,
    bottleneck_dim=None,
    pretrained_shift: float | None = 0.05,
    seed: int = 0,
):
    """A LeNet (3, 4 channels, SAME padding: 36-d features) + method + plain SGD.

    ``pretrained_shift``: after ``build_net`` (hence after ``Method.init``), every model
    parameter is moved by this amount times a fixed random sign pattern, standing in for
    ``init_from`` loading pretrained weights; ``None`` leaves them.

    Returns:
      A namespace with ``state``, the jitted ``step`` (weight ``weight``), ``step_with(w)``,
      ``graphs``, ``method``, ``frozen``.
    """
    m = methods.get(method, **(hparams or {}))
    model = build_classifier(
        "lenet",
        SHAPE,
        NUM_CLASSES,
        rngs=nnx.Rngs(seed),
        bottleneck_dim=bottleneck_dim,
        channels=(3, 4),
        padding="SAME",
    )
    graphs, params, rest = build_net(model, m, seed=seed, num_classes=NUM_CLASSES)
    if pretrained_shift is not None:
        rng = np.random.default_rng(123)
        params = {
            **params,
            "model": jax.tree.map(
                lambda p: p + pretrained_shift * rng.choice([-1.0, 1.0], p.shape), params["model"]
            ),
        }
    tx, labels, _ = optim.make_optimizer(
        params,
        list(rules),
        optimizer="sgd",
        schedule=optax.constant_schedule(LR),
        momentum=0.0,
        nesterov=False,
        weight_decay=0.0,
    )
    frozen = optim.frozen_mask(labels)

    jitted = {}

    def step_with(w):
        """The jitted step with method weight ``w`` (compiled once per weight)."""
        if w not in jitted:
            jitted[w] = jax.jit(
                make_train_step(graphs, m, tx, frozen=frozen, weight=w, num_classes=NUM_CLASSES)
            )
        return jitted[w]

    state = init_state(params, rest, tx, seed=seed)
    return types.SimpleNamespace(
        state=state,
        step=step_with(weight),
        step_with=step_with,
        graphs=graphs,
        method=m,
        frozen=frozen,
    )


def flat(tree) -> dict[str, np.ndarray]:
    """``{path: array}`` of a pytree."""
    return {p: np.asarray(v) for p, v in zip(param_paths(tree), jax.tree.leaves(tree))}


def model_outputs(graphs, params, rest, x, model_params=None):
    """``(logits, outputs)`` of the model in eval mode, optionally with other model weights."""
    if model_params is not None:
        params = {**params, "model": model_params}
    net = nnx.merge(graphs.eval_graph, params, rest)
    logits, out = net.model(x)
    return np.asarray(logits), {k: np.asarray(v) for k, v in out.items()}
