"""The shared step builder (``_steps.own_step``) and ``records_hparams``: a method written as
an objective reproduces the default step bitwise, and the builder's plumbing (hooks,
BatchNorm modes, non-finite flag, lr, rng, frozen leaves) does what it says."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests.methods.helpers import copy_tree, random_batch, setup, subtree
from tljax import config as config_lib
from tljax.losses.entropy import entropy
from tljax.methods import _steps, l2sp
from tljax.methods.base import Buffer, Method, no_params, records_hparams
from tljax.train import forward_domains, init_state, make_train_step


def _entropy_objective(ctx, batch):
    """Target entropy minimisation written as an own-step objective."""
    src, tgt = forward_domains(ctx.net, batch, ctx.compute_dtype)
    labels = batch["source"]["label"]
    value = entropy(tgt.logits)
    task = _steps.cross_entropy(src.logits, labels)
    return _steps.Losses(
        task, value, _steps.accuracy(src.logits, labels), {"target_entropy": value}
    )


def _run(step, state, batches, **kw):
    step = jax.jit(step)
    out = []
    for b in batches:
        state, metrics = step(state, b, **kw)
        out.append(copy_tree(metrics))
    return state, out


def test_an_objective_reproduces_the_default_step_bitwise():
    s = setup("entropy", weight=0.7)
    own = Method(
        name="entropy",
        init=no_params,
        train_step=_steps.own_step(_entropy_objective, name="entropy"),
    )
    own_step = make_train_step(s.graphs, own, s.tx, frozen=s.frozen, weight=0.7, num_classes=4)
    batches = [random_batch(seed=i) for i in range(3)]
    ref_state, ref_metrics = _run(s.step, copy_tree(s.state), batches)
    state, metrics = _run(own_step, copy_tree(s.state), batches)
    for a, b in zip(jax.tree.leaves(copy_tree(ref_state)), jax.tree.leaves(copy_tree(state))):
        np.testing.assert_array_equal(a, b)
    for m1, m2 in zip(ref_metrics, metrics):
        assert m1.keys() == m2.keys()
        for k in m1:
            np.testing.assert_array_equal(m1[k], m2[k], err_msg=k)
    assert set(metrics[0]) == {
        "loss",
        "task_loss",
        "method_loss",
        "source_acc",
        "entropy/target_entropy",
    }


class _Holder(nnx.Module):
    def __init__(self):
        self.seen = Buffer(jnp.zeros((), jnp.float32))
        self.post = Buffer(jnp.zeros((), jnp.float32))


def _hooked_method(bn_stats="adapt", nan_from=None):
    def objective(ctx, batch):
        x = ctx.cast(batch["source"]["image"])
        logits, _ = ctx.net.model(x)
        labels = batch["source"]["label"]
        task = _steps.cross_entropy(logits.astype(jnp.float32), labels)
        method = jnp.zeros((), jnp.float32)
        if nan_from is not None:
            method = jnp.where(ctx.step >= nan_from, jnp.nan, method)
        metrics = {
            "seen": ctx.net.method.seen.get_value(),  # the state after ``prepare``
            "draw": jax.random.uniform(ctx.rng),
        }
        return _steps.Losses(task, method, _steps.accuracy(logits, labels), metrics)

    def prepare(rest, params, step):
        return {**rest, "method": {**rest["method"], "seen": step.astype(jnp.float32) + 10.0}}

    def after_update(rest, params, step):
        post = jnp.sum(params["model"]["head"]["kernel"])
        return {**rest, "method": {**rest["method"], "post": post}}, {"post": post}

    step = _steps.own_step(
        objective, name="hooked", bn_stats=bn_stats, prepare=prepare, after_update=after_update
    )
    return Method(name="hooked", init=lambda rngs, info: _Holder(), train_step=step)


def _hooked_setup(method, rules=((".*", 1.0),)):
    from tljax import optim
    from tljax.models import build_classifier
    from tljax.train import build_net

    model = build_classifier("mlp", (8, 8, 3), 4, rngs=nnx.Rngs(0), bottleneck_dim=8, hidden=(16,))
    graphs, params, rest = build_net(model, method, seed=0, num_classes=4)
    schedule = optax.linear_schedule(0.1, 0.0, 10)
    tx, labels, _ = optim.make_optimizer(
        params, list(rules), optimizer="sgd", schedule=schedule, weight_decay=0.0
    )
    step = make_train_step(
        graphs,
        method,
        tx,
        frozen=optim.frozen_mask(labels),
        weight=1.0,
        num_classes=4,
        lr_schedule=schedule,
    )
    return init_state(params, rest, tx, seed=5), step, schedule


def test_hooks_rng_lr_and_frozen_leaves():
    rules = ((r"bottleneck/linear/kernel$", None), (".*", 1.0))
    state0, step, schedule = _hooked_setup(_hooked_method(), rules)
    before = copy_tree(state0.params)
    b = random_batch()
    state, metrics = _run(step, copy_tree(state0), [b, b])
    for i, m in enumerate(metrics):
        assert float(m["hooked/seen"]) == 10.0 + i  # prepare ran before the objective
        assert float(m["lr"]) == pytest.approx(float(schedule(i)))
        key = jax.random.fold_in(jax.random.wrap_key_data(state0.rng), i)
        assert float(m["hooked/draw"]) == float(jax.random.uniform(key))
    post = np.sum(np.asarray(state.params["model"]["head"]["kernel"]))
    np.testing.assert_allclose(float(metrics[-1]["hooked/post"]), post, rtol=1e-6)
    assert float(state.rest["method"]["post"]) == float(metrics[-1]["hooked/post"])
    assert int(state.step) == 2 and int(state.nonfinite_step) == -1
    after = copy_tree(state.params)
    frozen = subtree(after, "model/bottleneck/linear/kernel")
    assert frozen and all(np.array_equal(v, subtree(before, k)[k]) for k, v in frozen.items())
    assert not np.array_equal(after["model"]["head"]["kernel"], before["model"]["head"]["kernel"])
    # An explicit rng is used as given.
    _, m = jax.jit(step)(copy_tree(state0), b, jax.random.key(3))
    assert float(m["hooked/draw"]) == float(jax.random.uniform(jax.random.key(3)))


def test_bn_stats_frozen_keeps_the_running_statistics_and_nonfinite_is_flagged():
    b = random_batch()
    stats = "model/bottleneck/bn/"
    for bn_stats, moved in (("adapt", True), ("frozen", False)):
        state0, step, _ = _hooked_setup(_hooked_method(bn_stats, nan_from=1))
        start = subtree(copy_tree(state0.rest), stats)
        state, _ = _run(step, copy_tree(state0), [b, b, b])
        end = subtree(copy_tree(state.rest), stats)
        assert start and any(not np.array_equal(start[k], end[k]) for k in start) == moved
        assert int(state.nonfinite_step) == 1  # the first step with a NaN metric


def test_unknown_bn_stats_is_refused():
    with pytest.raises(ValueError, match="bn_stats must be 'adapt' or 'frozen'"):
        _steps.own_step(_entropy_objective, name="x", bn_stats="train")


def test_records_hparams_keeps_the_signature_and_fills_defaults():
    def make(*, scale: float = 1.0, names: tuple = ("a",)) -> Method:
        return Method(name="m", init=no_params, loss=None, hparams={"names": tuple(names)})

    wrapped = records_hparams(make)
    assert inspect.signature(wrapped) == inspect.signature(make)
    assert wrapped().hparams == {"scale": 1.0, "names": ("a",)}
    assert wrapped(names=["b"], scale=2.0).hparams == {"scale": 2.0, "names": ("b",)}
    with pytest.raises(TypeError, match="unexpected keyword argument 'scal'"):
        wrapped(scal=2.0)
    # The built-in methods: the config system reads the same declaration.
    assert l2sp.make().hparams == config_lib.method_hparam_defaults("l2sp")
    assert l2sp.make(alpha=0.5).hparams["alpha"] == 0.5
