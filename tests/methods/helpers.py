"""Builders shared by the method tests: tiny MLP setups, a shifted toy task, scan training."""

from __future__ import annotations

import functools
import types

import jax
import numpy as np
import optax
from flax import nnx

from tljax import methods, optim
from tljax.data.core import Domain, Split, Task
from tljax.data.stream import DomainPairStream
from tljax.models import build_classifier
from tljax.train import build_net, init_state, make_eval_step, make_train_step

# Hyperparameters that make every method's loss non-degenerate in a few steps of a tiny
# model: GRL coefficients forced > 0 (their warm start gives 0 at step 0), small heads. A
# method without an entry is tested with its defaults; one that cannot be built with them
# fails its tests with a message saying to add its entry here.
SMOKE_HPARAMS = {
    "dann": dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0),
    "bsp": dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0),
    "cdan": dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0),
    "mdd": dict(width=16, grl_lo=1.0, grl_hi=1.0),
    "adda": dict(pretrain_steps=2, hidden=(16,)),
    "self_training": dict(threshold=0.0),
    "lwf": dict(old_head_from="<pretrained run>"),  # only to build it (tests/inductive)
    "pada": dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0),
    "iwan": dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0),
    "uan": dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0),
    "etn": dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0),
}
BASELINE = "source_only"  # ERM: the reference of every domain-adaptation test


def _domain_adaptation(name: str) -> bool:
    """Whether ``name`` is tested here: methods that use unlabelled target data
    (``needs_target``) and the baseline. Inductive-transfer methods (fine-tuning,
    ``needs_target=False``) are tested in tests/inductive. A method that does not build is
    kept, so that its tests fail with :func:`build`'s message."""
    try:
        method = build(name)
    except ValueError:
        return True
    # Multi-domain methods (tests/test_multi_domain.py) need a dg/msda task.
    return name == BASELINE or (method.needs_target and not method.multi_domain)


def build(name: str, hparams=None):
    """``methods.get(name, **hparams)``, defaulting to :data:`SMOKE_HPARAMS`; a method that
    does not build says what to add."""
    hparams = SMOKE_HPARAMS.get(name, {}) if hparams is None else hparams
    try:
        return methods.get(name, **hparams)
    except ValueError as e:
        raise ValueError(
            f"{e} (tests/methods/helpers.py: method {name!r} does not build with "
            f"hyperparameters {hparams}; add the ones its tests need to SMOKE_HPARAMS.)"
        ) from e


def _ships_with_tljax(name: str) -> bool:
    """Built in (a module of ``tljax.methods``), not an installed plug-in's or registered."""
    try:
        return methods.get_factory(name).__module__ == f"tljax.methods.{name}"
    except (ValueError, ImportError):
        return False


# Every domain-adaptation method tljax ships, found through the registry (a new module in
# tljax/methods is picked up without editing a list).
ALL_METHODS = [m for m in methods.names() if _ships_with_tljax(m) and _domain_adaptation(m)]
# Methods for label-set mismatch (partial / open-set tasks, tljax.data.label_sets): in
# ALL_METHODS (shared smoke tests), not in the closed-set benchmark suite (configs/suite.py).
LABEL_SET_METHODS = ("pada", "iwan", "etn", "osbp", "uan", "ovanet")


def random_batch(n=8, shape=(8, 8, 3), num_classes=4, seed=0, shift=0.5):
    """Random images (values in [0, 1), target shifted) with source labels."""
    rng = np.random.default_rng(seed)
    return {
        "source": {
            "image": rng.random((n, *shape), dtype=np.float32),
            "label": rng.integers(0, num_classes, n).astype(np.int32),
        },
        "target": {"image": rng.random((n, *shape), dtype=np.float32) + shift},
    }


def setup(
    method: str,
    *,
    hparams=None,
    weight: float = 1.0,
    shape=(8, 8, 3),
    num_classes: int = 4,
    hidden=(16,),
    bottleneck_dim=8,
    optimizer: str = "sgd",
    lr: float = 0.05,
    weight_decay: float = 1e-3,
    rules=((".*", 1.0),),
    seed: int = 0,
):
    """An MLP classifier (with a BatchNorm bottleneck) and the method, SGD with momentum
    and weight decay by default. Returns a namespace with ``method, graphs, state, tx,
    frozen, step, eval_step``."""
    m = build(method, hparams or {})
    model = build_classifier(
        "mlp",
        shape,
        num_classes,
        rngs=nnx.Rngs(seed),
        bottleneck_dim=bottleneck_dim,
        hidden=hidden,
    )
    graphs, params, rest = build_net(model, m, seed=seed, num_classes=num_classes)
    tx, labels, _ = optim.make_optimizer(
        params,
        list(rules),
        optimizer=optimizer,
        schedule=optax.constant_schedule(lr),
        weight_decay=weight_decay,
    )
    frozen = optim.frozen_mask(labels)
    step = make_train_step(graphs, m, tx, frozen=frozen, weight=weight, num_classes=num_classes)
    return types.SimpleNamespace(
        method=m,
        graphs=graphs,
        state=init_state(params, rest, tx, seed=seed),
        tx=tx,
        frozen=frozen,
        step=step,
        eval_step=make_eval_step(graphs),
        weight=weight,
    )


def copy_tree(tree):
    """Host copies of every leaf (the jitted steps donate their input state)."""
    return jax.tree.map(lambda a: np.array(a, copy=True), tree)


def subtree(tree, prefix: str) -> dict:
    """``{path: leaf}`` of the leaves under ``prefix`` (e.g. ``"model/head/"``)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        optim.path_str(p): np.asarray(v) for p, v in flat if optim.path_str(p).startswith(prefix)
    }


def assert_equal_trees(a: dict, b: dict):
    assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def any_changed(a: dict, b: dict) -> bool:
    return any(not np.array_equal(a[k], b[k]) for k in a)


# -- a small shifted toy task --------------------------------------------------------------


def _blobs(n: int, seed: int, shifted: bool) -> Split:
    """Two Gaussian classes separated along x0; the target is the source with the four
    nuisance dimensions x2..x5 scaled ×2 and offset by +1 (a covariate shift that a
    feature extractor can remove by ignoring them)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 0] += 2.0 * (2 * y - 1)
    if shifted:
        x[:, 2:] = x[:, 2:] * 2.0 + 1.0
    return Split(x, y)


@functools.lru_cache(maxsize=1)
def shifted_blobs_task() -> Task:
    source = Domain("blobs", _blobs(1000, 0, False), _blobs(500, 1, False))
    target = Domain("blobs_shifted", _blobs(1000, 2, True), _blobs(500, 3, True))
    return Task("blobs->blobs_shifted", source, target, num_classes=2)


def train_on_toy(method: str, *, hparams=None, weight=1.0, steps=300, seed=0):
    """Trains an MLP(16) with the method on :func:`shifted_blobs_task` (SGD, momentum 0.9,
    weight decay 1e-3, inverse-decay lr from 0.02, 32 per domain), all steps in one
    ``lax.scan``. Returns ``(features_source, features_target, logits_target)`` of the
    eval-mode model on the train splits (through ``Method.eval_state`` when defined)."""
    task = shifted_blobs_task()
    m = methods.get(method, **(hparams or {}))
    model = build_classifier("mlp", (6,), 2, rngs=nnx.Rngs(seed), hidden=(16,))
    graphs, params, rest = build_net(model, m, seed=seed, num_classes=2)
    schedule = optim.make_schedule("inverse_decay", base_lr=0.02, total_steps=steps)
    tx, labels, _ = optim.make_optimizer(
        params, [(".*", 1.0)], schedule=schedule, weight_decay=1e-3
    )
    step = make_train_step(
        graphs, m, tx, frozen=optim.frozen_mask(labels), weight=weight, num_classes=2
    )
    stream = DomainPairStream(task, 32, seed=seed)
    batches = jax.tree.map(lambda *x: np.stack(x), *[next(stream) for _ in range(steps)])
    run = jax.jit(lambda s, b: jax.lax.scan(lambda c, x: step(c, x), s, b))
    state, _ = run(init_state(params, rest, tx, seed=seed), batches)
    evaluate = jax.jit(make_eval_step(graphs))
    out = {}
    for role, domain in (("source", task.source), ("target", task.target)):
        p, r = state.params, state.rest
        if m.eval_state is not None:
            p, r = m.eval_state(p, r, domain=role)
        out[role] = [np.asarray(a) for a in evaluate(p, r, domain.train.x)]
    return out["source"][1], out["target"][1], out["target"][0]
