"""Freezing rules, optimizer partitioning and schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tljax import optim


def _params():
    return {
        "model": {
            "backbone": {"conv1": {"kernel": jnp.ones((3, 3)), "bias": jnp.zeros(3)}},
            "head": {"kernel": jnp.full((3, 2), 0.5), "bias": jnp.zeros(2)},
        },
        "method": {"disc": {"layers": {0: {"kernel": jnp.ones((2, 2))}}}},
    }


def _grads(params):
    return jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)


def test_paths_drop_value_and_join_with_slash():
    paths = optim.param_paths(_params())
    assert "model/backbone/conv1/kernel" in paths
    assert "method/disc/layers/0/kernel" in paths


def test_first_match_wins_and_report_names_rule():
    rules = [("backbone", None), ("conv1", 5.0), (".*", 1.0)]
    labels, report = optim.match_rules(_params(), rules)
    assert labels["model"]["backbone"]["conv1"]["kernel"] == optim.FROZEN
    assert report["model/backbone/conv1/kernel"] == ("backbone", None)
    assert report["model/head/kernel"] == (".*", 1.0)


def test_uncovered_parameters_are_named():
    with pytest.raises(ValueError, match=r"method/disc/layers/0/kernel"):
        optim.match_rules(_params(), [("model/", 1.0)])


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "fast"])
def test_bad_rule_values_rejected(bad):
    with pytest.raises(ValueError, match="lr multiplier"):
        optim.match_rules(_params(), [(".*", bad)])


def test_bad_regex_rejected():
    with pytest.raises(ValueError, match="Invalid regex"):
        optim.match_rules(_params(), [("(", 1.0)])


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_frozen_leaves_bitwise_unchanged_and_hold_no_moments(name):
    params = _params()
    rules = [("backbone", None), (".*", 1.0)]
    tx, labels, _ = optim.make_optimizer(
        params, rules, optimizer=name, schedule=optax.constant_schedule(0.1), weight_decay=0.1
    )
    state = tx.init(params)
    p = params
    for _ in range(3):
        updates, state = tx.update(_grads(p), state, p)
        p = optax.apply_updates(p, updates)
    frozen = p["model"]["backbone"]["conv1"]
    for k in frozen:
        np.testing.assert_array_equal(
            np.asarray(frozen[k]), np.asarray(params["model"]["backbone"]["conv1"][k])
        )
    assert not np.allclose(p["model"]["head"]["kernel"], params["model"]["head"]["kernel"])
    # The trainable partition's moments exist only for trainable leaves.
    inner = state.inner_states["lr_x1"].inner_state
    moment_leaves = jax.tree_util.tree_flatten_with_path(inner)[0]
    paths = [optim.path_str(k) for k, _ in moment_leaves]
    assert paths and not any("backbone" in s for s in paths), paths
    frozen_state = state.inner_states[optim.FROZEN].inner_state
    assert jax.tree.leaves(frozen_state) == []


def test_lr_multiplier_scales_updates():
    params = _params()
    rules = [("backbone", 0.1), (".*", 1.0)]
    tx, _, _ = optim.make_optimizer(
        params,
        rules,
        optimizer="sgd",
        momentum=0.0,
        nesterov=False,
        schedule=optax.constant_schedule(0.2),
    )
    updates, _ = tx.update(_grads(params), tx.init(params), params)
    np.testing.assert_allclose(
        updates["model"]["backbone"]["conv1"]["kernel"], -0.2 * 0.1 * 0.25, rtol=1e-6
    )
    np.testing.assert_allclose(updates["model"]["head"]["kernel"], -0.2 * 0.25, rtol=1e-6)


def test_sgd_weight_decay_matches_pytorch_semantics():
    # PyTorch SGD: d = g + wd * p; buf = mu * buf + d; nesterov: d = d + mu * buf; p -= lr * d.
    p0 = {"w": jnp.array([1.0, -2.0])}
    g = {"w": jnp.array([0.5, 0.25])}
    lr, mu, wd = 0.1, 0.9, 0.01
    tx, _, _ = optim.make_optimizer(
        p0,
        [(".*", 1.0)],
        optimizer="sgd",
        momentum=mu,
        nesterov=True,
        weight_decay=wd,
        schedule=optax.constant_schedule(lr),
    )
    state, p = tx.init(p0), p0
    w, buf = np.array([1.0, -2.0]), np.zeros(2)
    for _ in range(3):
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
        d = np.array([0.5, 0.25]) + wd * w
        buf = mu * buf + d
        w = w - lr * (d + mu * buf)
    np.testing.assert_allclose(p["w"], w, rtol=1e-6)


def test_inverse_decay_schedule_formula():
    s = optim.make_schedule("inverse_decay", base_lr=0.01, total_steps=0, gamma=1e-3, power=0.75)
    for i in [0, 1, 10, 1000, 50000]:
        np.testing.assert_allclose(s(i), 0.01 * (1 + 1e-3 * i) ** -0.75, rtol=1e-6)


def test_cosine_and_constant_schedules():
    s = optim.make_schedule("cosine", base_lr=0.1, total_steps=100, warmup_steps=10)
    np.testing.assert_allclose(s(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(s(10), 0.1, rtol=1e-6)
    np.testing.assert_allclose(s(55), 0.1 * 0.5 * (1 + np.cos(np.pi * 45 / 90)), rtol=1e-5)
    np.testing.assert_allclose(s(100), 0.0, atol=1e-7)
    c = optim.make_schedule("constant", base_lr=0.3, total_steps=10)
    assert float(c(7)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="inverse_decay"):
        optim.make_schedule("linear", base_lr=0.1, total_steps=10)


def test_gradual_unfreezing_trains_a_layer_only_from_its_step():
    params = _params()
    rules = [("backbone", (1.0, 3)), (".*", 1.0)]
    tx, labels, report = optim.make_optimizer(
        params, rules, optimizer="sgd", schedule=optax.constant_schedule(0.1), weight_decay=0.1
    )
    assert labels["model"]["backbone"]["conv1"]["kernel"] == "lr_x1_from3"
    assert "from step 3" in optim.format_rule_report(report)
    state, p = tx.init(params), params
    kernels = []
    for _ in range(5):
        updates, state = tx.update(_grads(p), state, p)
        p = optax.apply_updates(p, updates)
        kernels.append(np.asarray(p["model"]["backbone"]["conv1"]["kernel"]))
    k0 = np.asarray(params["model"]["backbone"]["conv1"]["kernel"])
    for i in range(3):  # steps 0, 1, 2: bitwise frozen
        np.testing.assert_array_equal(kernels[i], k0)
    assert not np.array_equal(kernels[3], k0)
    # No momentum leaked in while gated: the first real update is a plain SGD step.
    d = 0.25 + 0.1 * k0
    np.testing.assert_allclose(kernels[3], k0 - 0.1 * (d + 0.9 * d), rtol=1e-6)


@pytest.mark.parametrize("bad", [(1.0,), (1.0, -1), (1.0, 2.5), (True, 1)])
def test_bad_unfreezing_rules_rejected(bad):
    with pytest.raises(ValueError, match="from_step"):
        optim.match_rules(_params(), [(".*", bad)])
