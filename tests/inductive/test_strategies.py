"""Transfer strategies through freezing rules: no backward convolution for a frozen
backbone, gradual unfreezing, BatchNorm statistics frozen vs adapted, AdaBN."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.inductive.helpers import batch, flat, setup
from tljax.bn import adapt_batch_norm, use_running_statistics

CONV = "conv_general_dilated["


def _convs(s) -> int:
    """Convolutions in the traced train step (forward and backward)."""
    return str(jax.make_jaxpr(s.step)(s.state, batch())).count(CONV)


@pytest.mark.parametrize(
    "rules, expected",
    [
        # 2 forward; backward: both kernels and conv2's input (to reach conv1).
        (((".*", 1.0),), 5),
        # Feature extraction: the frozen backbone is stop_gradient-ed, no backward conv.
        (((r"^model/backbone/", None), (".*", 1.0)), 2),
        # conv1 frozen: conv2's kernel gradient only (nothing flows below conv2).
        (((r"^model/backbone/conv1/", None), (".*", 1.0)), 3),
        # Gradual unfreezing computes the gradient from step 0 (the update is gated).
        (((r"^model/backbone/", (1.0, 5)), (".*", 1.0)), 5),
    ],
)
@pytest.mark.parametrize("method", ["source_only", "finetune"])
def test_frozen_parameters_get_no_backward_convolution(method, rules, expected):
    assert _convs(setup(method, rules=rules, pretrained_shift=None)) == expected


def test_gradual_unfreezing_keeps_layers_until_their_step():
    rules = ((r"^model/head/", 1.0), (r"^model/backbone/conv2/", (1.0, 1)), (r".*", (1.0, 2)))
    s = setup("source_only", rules=rules, pretrained_shift=None)
    state, history = s.state, [flat(s.state.params)]
    for i in range(3):
        state, _ = s.step(state, batch(seed=i))
        history.append(flat(state.params))
    changed = lambda k, i: not np.array_equal(history[i][k], history[i + 1][k])
    assert [changed("model/head/kernel", i) for i in range(3)] == [True, True, True]
    assert [changed("model/backbone/conv2/kernel", i) for i in range(3)] == [False, True, True]
    assert [changed("model/backbone/conv1/kernel", i) for i in range(3)] == [False, False, True]


def _bn_stats(state):
    return {k: v for k, v in flat(state.rest).items() if k.startswith("model/bottleneck/bn/")}


def test_bn_statistics_frozen_vs_adapted():
    b = batch(seed=0)
    frozen = setup("finetune", hparams=dict(bn_stats="frozen"), bottleneck_dim=6)
    adapt = setup("finetune", hparams=dict(bn_stats="adapt"), bottleneck_dim=6)
    s_frozen, _ = frozen.step(frozen.state, b)
    s_adapt, _ = adapt.step(adapt.state, b)
    for k, v in _bn_stats(frozen.state).items():
        np.testing.assert_array_equal(_bn_stats(s_frozen)[k], v)
        assert not np.array_equal(_bn_stats(s_adapt)[k], v), k
    # BN's scale and bias still train in both modes (they follow the freezing rules).
    k = "model/bottleneck/bn/scale"
    assert not np.array_equal(flat(s_frozen.params)[k], flat(frozen.state.params)[k])


@pytest.mark.usefixtures("highest_precision")  # statistics vs a separate forward at 1e-4
def test_adabn_sets_the_running_statistics_to_the_target_statistics():
    s = setup("source_only", bottleneck_dim=6, pretrained_shift=None)
    params, rest = s.state.params, s.state.rest
    target = np.random.default_rng(3).random((21, 12, 12, 1), dtype=np.float32) * 2 + 1
    new_rest = adapt_batch_norm(s.graphs, params, rest, target, batch_size=8)  # 8 + 8 + 5
    # The first BatchNorm's input is the bottleneck's Linear of the backbone features.
    net = nnx.merge(s.graphs.eval_graph, params, rest)
    h = np.asarray(
        jax.jit(lambda x: net.model.bottleneck.linear(net.model.backbone(x)["features"]))(target)
    )
    stats = {k: v for k, v in flat(new_rest).items() if k.startswith("model/bottleneck/bn/")}
    np.testing.assert_allclose(stats["model/bottleneck/bn/mean"], h.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["model/bottleneck/bn/var"], h.var(0), rtol=1e-3, atol=1e-5)
    # Nothing else changes, and the statistics did change.
    old = flat(rest)
    assert not np.allclose(old["model/bottleneck/bn/mean"], stats["model/bottleneck/bn/mean"])
    for k, v in flat(new_rest).items():
        if not k.startswith("model/bottleneck/bn/"):
            np.testing.assert_array_equal(v, old[k])
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adapt_batch_norm(s.graphs, params, rest, target, include="^nothing")
    plain = setup("source_only", pretrained_shift=None)
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adapt_batch_norm(plain.graphs, plain.state.params, plain.state.rest, target)


def test_use_running_statistics_switches_only_batch_norm():
    s = setup("source_only", bottleneck_dim=6, pretrained_shift=None)
    net = nnx.merge(s.graphs.train_graph, s.state.params, s.state.rest)
    assert use_running_statistics(net.model) == 1
    x = jnp.asarray(batch()["source"]["image"])
    train_mode, _ = net.model(x)
    eval_net = nnx.merge(s.graphs.eval_graph, s.state.params, s.state.rest)
    np.testing.assert_allclose(train_mode, eval_net.model(x)[0], rtol=1e-6)
