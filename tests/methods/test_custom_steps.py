"""Methods with their own step: partial updates (MCD, ADDA), the EMA teacher, pseudo labels."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.methods.helpers import (
    any_changed,
    assert_equal_trees,
    copy_tree,
    random_batch,
    setup,
    subtree,
)
from tljax import optim
from tljax.methods import _steps, adda, mcd, self_training
from tljax.methods.mean_teacher import ema_alpha

FEATURES = ("model/backbone/", "model/bottleneck/")
CLASSIFIERS = ("model/head/", "method/")


def _params_under(tree, prefixes):
    return {k: v for p in prefixes for k, v in subtree(tree, p).items()}


def _moments_under(opt_state, prefixes):
    """Optimizer-state leaves (moments) whose key path contains one of the prefixes."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        name = optim.path_str(path)
        if any(f"/{p}" in f"/{name}" for p in prefixes):
            out[name] = np.asarray(leaf)
    return out


def _counts(opt_state):
    return [
        int(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]
        if "count" in jax.tree_util.keystr(path)
    ]


# -- partial updates --------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_partial_update_moves_only_masked_leaves_and_their_moments(optimizer):
    params = {"model": {"a": jnp.ones(3), "b": jnp.full((2,), 2.0)}, "method": {"c": jnp.ones(2)}}
    tx, _, _ = optim.make_optimizer(
        params,
        [("model/a", 0.5), (".*", 1.0)],
        optimizer=optimizer,
        schedule=optax.constant_schedule(0.1),
        weight_decay=0.1,
    )
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    # Warm the moments up everywhere, then update only model/b.
    params, state, stepped = _steps.partial_update(
        tx, grads, state, params, jax.tree.map(lambda _: True, params)
    )
    state = _steps.advance_counters(state, stepped, params)
    mask = {"model": {"a": False, "b": True}, "method": {"c": False}}
    new_params, new_state, stepped = _steps.partial_update(tx, grads, state, params, mask)
    for fixed in ("model/a", "method/c"):
        assert_equal_trees(_params_under(params, [fixed]), _params_under(new_params, [fixed]))
        assert_equal_trees(_moments_under(state, [fixed]), _moments_under(new_state, [fixed]))
    assert any_changed(_params_under(params, ["model/b"]), _params_under(new_params, ["model/b"]))
    assert any_changed(_moments_under(state, ["model/b"]), _moments_under(new_state, ["model/b"]))
    # Counters move only when advanced (once per iteration).
    assert set(_counts(new_state)) == {1}
    assert set(_counts(_steps.advance_counters(new_state, stepped, new_params))) == {2}


# -- MCD --------------------------------------------------------------------------------


@functools.cache
def _mcd_after_stage_a():
    s = setup("mcd", weight_decay=1e-3)
    stages = mcd.make_stages(model=s.graphs, tx=s.tx, frozen=s.frozen, weight=1.0, num_k=2)
    batch = random_batch()
    p, r, o, _, _ = jax.jit(stages[0])(s.state.params, s.state.rest, s.state.opt_state, batch)
    return copy_tree((p, r, o)), stages, batch


@pytest.mark.parametrize(
    "stage, fixed, trained", [(1, FEATURES, CLASSIFIERS), (2, CLASSIFIERS, FEATURES)]
)
def test_mcd_stage_leaves_the_other_networks_bitwise_unchanged(stage, fixed, trained):
    # After stage A every leaf has momentum and weight decay applies: a wrong partial
    # update would move the "fixed" leaves.
    (p, r, o), stages, batch = _mcd_after_stage_a()
    p2, _, o2, _, metrics = jax.jit(stages[stage])(p, r, o, batch)
    assert_equal_trees(_params_under(p, fixed), _params_under(p2, fixed))
    assert_equal_trees(_moments_under(o, fixed), _moments_under(o2, fixed))
    assert any_changed(_params_under(p, trained), _params_under(p2, trained))
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())


def test_mcd_discrepancy_gradient_reaches_the_features():
    # Fresh optimizer state and no weight decay: any change of F in step C is its gradient.
    s = setup("mcd", weight_decay=0.0)
    stages = mcd.make_stages(model=s.graphs, tx=s.tx, frozen=s.frozen, weight=1.0, num_k=1)
    before = subtree(s.state.params, "model/backbone/")
    p, _, _, _, metrics = stages[2](s.state.params, s.state.rest, s.state.opt_state, random_batch())
    assert float(metrics["discrepancy"]) > 0
    assert any_changed(before, subtree(p, "model/backbone/"))


@pytest.mark.parametrize("kind", ["class_balance", "per_sample"])
def test_mcd_entropy_term_matches_numpy(kind):
    # Stage A's loss with the entropy term minus without it = w·(H(C1(x_t)) + H(C2(x_t))).
    from flax import nnx

    from tljax.train import forward_domains

    s = setup("mcd", weight_decay=0.0)
    batch = random_batch()
    args = (s.state.params, s.state.rest, s.state.opt_state, batch)

    def loss_a(w):
        stages = mcd.make_stages(
            model=s.graphs, tx=s.tx, frozen=s.frozen, weight=1.0, entropy_weight=w, entropy=kind
        )
        return float(jax.jit(stages[0])(*args)[4]["loss_a"])

    net = nnx.merge(s.graphs.train_graph, s.state.params, s.state.rest)
    _, tgt = forward_domains(net, batch)
    heads = [np.asarray(tgt.logits, np.float64), np.asarray(net.method(tgt.features), np.float64)]
    p = [np.exp(z - z.max(1, keepdims=True)) for z in heads]
    p = [q / q.sum(1, keepdims=True) for q in p]
    if kind == "class_balance":  # TLlib: -mean_c log(mean_i p_ic + 1e-6)
        h = [-np.mean(np.log(q.mean(0) + 1e-6)) for q in p]
    else:
        h = [np.mean(-np.sum(q * np.log(q), 1)) for q in p]
    np.testing.assert_allclose(loss_a(0.5) - loss_a(0.0), 0.5 * sum(h), rtol=2e-4)


def test_mcd_entropy_default_is_tllibs_class_balance_and_unknown_is_refused():
    assert mcd.make().hparams["entropy"] == "class_balance"
    with pytest.raises(ValueError, match=r"entropy='batch'.*\['class_balance', 'per_sample'\]"):
        mcd.make(entropy="batch")


# -- ADDA -------------------------------------------------------------------------------


@functools.cache
def _adda_run():
    """Two pretraining steps, then two adversarial steps; states after each."""
    s = setup("adda", hparams=dict(pretrain_steps=2, hidden=(16,)))
    step = jax.jit(s.step)
    states, metrics = [copy_tree(s.state)], []
    state = s.state
    for i in range(4):
        state, m = step(state, random_batch(seed=i))
        states.append(copy_tree(state))
        metrics.append(jax.device_get(m))
    return s, states, metrics


def test_adda_pretraining_trains_the_model_and_mirrors_it_into_the_target_encoder():
    _, states, metrics = _adda_run()
    s0, s2 = states[0], states[2]
    assert [m["adda/pretraining"] for m in metrics] == [1.0, 1.0, 0.0, 0.0]
    assert any_changed(subtree(s0.params, "model/"), subtree(s2.params, "model/"))
    for tree in ("params", "rest"):  # the bottleneck's BatchNorm statistics are in rest
        src = _params_under(getattr(s2, tree), FEATURES)
        tgt = subtree(getattr(s2, tree), "method/encoder/")
        assert_equal_trees(src, {k.replace("method/encoder/", "model/"): v for k, v in tgt.items()})
    assert_equal_trees(
        subtree(s0.params, "method/discriminator/"), subtree(s2.params, "method/discriminator/")
    )


def test_adda_adversarial_stage_leaves_source_encoder_and_classifier_unchanged():
    _, states, metrics = _adda_run()
    s2, s4 = states[2], states[4]
    for tree in ("params", "rest"):
        assert_equal_trees(
            subtree(getattr(s2, tree), "model/"), subtree(getattr(s4, tree), "model/")
        )
    assert_equal_trees(
        _moments_under(s2.opt_state, ["model/"]), _moments_under(s4.opt_state, ["model/"])
    )
    assert any_changed(
        subtree(s2.params, "method/discriminator/"), subtree(s4.params, "method/discriminator/")
    )
    # The inverted-label gradient reaches the target encoder (well beyond weight decay).
    before = subtree(s2.params, "method/encoder/backbone/")
    after = subtree(s4.params, "method/encoder/backbone/")
    moved = max(float(np.abs(after[k] - before[k]).max()) for k in before)
    decay_only = 2 * 0.05 * 1e-3 * max(float(np.abs(v).max()) for v in before.values())
    assert moved > 10 * decay_only, (moved, decay_only)
    assert all(np.isfinite(v) for m in metrics for v in m.values())


def test_adda_eval_state_uses_the_target_encoder_for_the_target_only():
    s, states, _ = _adda_run()
    final = states[-1]
    p, r = s.method.eval_state(final.params, final.rest, domain="target")
    assert_equal_trees(
        subtree(p, "model/backbone/"),
        {
            k.replace("method/encoder/", "model/"): v
            for k, v in subtree(final.params, "method/encoder/backbone/").items()
        },
    )
    assert_equal_trees(
        subtree(r, "model/bottleneck/"),
        {
            k.replace("method/encoder/", "model/"): v
            for k, v in subtree(final.rest, "method/encoder/bottleneck/").items()
        },
    )
    assert_equal_trees(subtree(p, "model/head/"), subtree(final.params, "model/head/"))
    ps, rs = s.method.eval_state(final.params, final.rest, domain="source")
    assert ps is final.params and rs is final.rest
    with pytest.raises(ValueError, match="domain"):
        adda.target_eval_state(final.params, final.rest, domain="both")


# -- mean teacher -----------------------------------------------------------------------


def test_mean_teacher_is_the_ema_of_the_student_and_not_trained():
    s = setup("mean_teacher", hparams=dict(decay=0.6), shape=(12,))
    assert not subtree(s.state.params, "method/")  # the teacher is not a parameter
    step = jax.jit(s.step)
    state = s.state
    teacher = {
        k.replace("method/teacher/", "model/"): v
        for k, v in subtree(state.rest, "method/teacher/").items()
    }
    assert_equal_trees(
        subtree(state.params, "model/"), {k: teacher[k] for k in subtree(state.params, "model/")}
    )
    for i in range(3):
        alpha = float(ema_alpha(i, 0.6))
        state, _ = step(state, random_batch(seed=i, shape=(12,)))
        student = subtree(state.params, "model/")
        new = {
            k.replace("method/teacher/", "model/"): v
            for k, v in subtree(state.rest, "method/teacher/").items()
        }
        for k, w in student.items():
            np.testing.assert_allclose(
                new[k], alpha * teacher[k] + (1 - alpha) * w, rtol=1e-6, atol=1e-7, err_msg=k
            )
        teacher = new
    assert [float(ema_alpha(i, 0.6)) for i in range(3)] == pytest.approx([0.0, 0.5, 0.6])


# -- self-training ----------------------------------------------------------------------


def test_self_training_mask_respects_the_threshold():
    # No BatchNorm: the weak-view logits in the step equal the model's logits on the batch.
    batch = random_batch(num_classes=4, shape=(12,))
    probe = setup("self_training", bottleneck_dim=None, shape=(12,))
    logits, _ = probe.eval_step(probe.state.params, probe.state.rest, batch["target"]["image"])
    conf = np.sort(np.asarray(jax.nn.softmax(logits, -1)).max(-1))
    threshold = float((conf[2] + conf[3]) / 2)  # between the 3rd and 4th most confident
    s = setup("self_training", bottleneck_dim=None, hparams=dict(threshold=threshold), shape=(12,))
    _, metrics = jax.jit(s.step)(s.state, batch)
    assert float(metrics["self_training/mask_rate"]) == pytest.approx(np.mean(conf >= threshold))
    assert float(metrics["self_training/mask_rate"]) == pytest.approx(5 / 8)


def test_augment_is_deterministic_shape_preserving_and_random():
    x = jnp.asarray(random_batch(n=4, shape=(10, 10, 3))["source"]["image"])
    aug = jax.jit(self_training.augment)
    a, b = aug(x, jax.random.key(0)), aug(x, jax.random.key(0))
    c = aug(x, jax.random.key(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, x)
    v = jnp.ones((5, 3))
    np.testing.assert_array_equal(self_training.augment(v, jax.random.key(0)), v)  # std 0
    none = self_training.augment(x, jax.random.key(0), shift=0, jitter=0, noise_std=0, cutout=0)
    np.testing.assert_allclose(none, x)


def _adda_first_adversarial_step(source_anchor):
    """Two pretraining steps, then the first adversarial step, on an MLP without BatchNorm
    (so train and eval forwards agree); SGD (linear in the gradient on a first step)."""
    hp = dict(pretrain_steps=2, hidden=(16,), source_anchor=source_anchor)
    s = setup("adda", hparams=hp, bottleneck_dim=None, weight_decay=0.0)
    step = jax.jit(s.step)
    state = s.state
    for i in range(2):
        state, _ = step(state, random_batch(seed=i))
    before = copy_tree(state)
    batch = random_batch(seed=2)
    after, metrics = step(state, batch)
    return s, before, copy_tree(after), jax.device_get(metrics), batch


def test_adda_source_anchor_is_the_source_cross_entropy_of_the_target_encoder():
    """``source_anchor=λ`` adds ``λ·CE(C(M_t(x_s)), y_s)`` to the target encoder's loss: at
    the switch ``M_t = M_s``, so the term is the source model's cross-entropy (NumPy, from
    the model's own logits); ``M_t`` moves by ``−lr·λ·∇`` of it more than without it
    (``jax.grad`` through the classifier's forward), linearly in ``λ``; ``M_s`` and ``C``
    stay fixed."""
    s, before, plain, m0, batch = _adda_first_adversarial_step(0.0)
    _, _, one, m1, _ = _adda_first_adversarial_step(1.0)
    _, _, two, m2, _ = _adda_first_adversarial_step(2.0)
    assert m0["adda/source_anchor_loss"] == 0.0 and m0["adda/pretraining"] == 0.0
    xs, ys = batch["source"]["image"], batch["source"]["label"]
    logits, _ = s.eval_step(before.params, before.rest, xs)
    z = np.asarray(logits, np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    ce = -logp[np.arange(len(ys)), ys].mean()
    np.testing.assert_allclose(m1["adda/source_anchor_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(m2["adda/source_anchor_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(m1["loss"] - m0["loss"], ce, rtol=1e-4)

    def source_ce(encoder_params):
        params = {**before.params, "model": {**before.params["model"], **encoder_params}}
        logits, _ = s.eval_step(params, before.rest, xs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()

    grad = subtree(
        {"model": jax.grad(source_ce)({"backbone": before.params["model"]["backbone"]})}, "model/"
    )

    def moved(tree):  # M_t's step minus the step without the anchor, flattened
        key = lambda k: k.replace("model/", "method/encoder/")
        new, ref = subtree(tree.params, "method/encoder/"), subtree(plain.params, "method/encoder/")
        return np.concatenate([np.ravel(new[key(k)] - ref[key(k)]) for k in grad])

    g = np.concatenate([np.ravel(v) for v in grad.values()])
    step1, step2 = moved(one), moved(two)
    assert np.abs(g).max() > 1e-3  # the anchor's gradient reaches the target encoder
    np.testing.assert_allclose(step2, 2 * step1, rtol=1e-3, atol=1e-7)
    # SGD's first step with Nesterov momentum 0.9 at lr 0.05: −0.05·(1 + 0.9)·g
    np.testing.assert_allclose(step1, -0.05 * 1.9 * g, rtol=1e-3, atol=1e-7)
    for tree in (one, two):  # the source encoder and the classifier stay fixed
        assert_equal_trees(subtree(before.params, "model/"), subtree(tree.params, "model/"))


def test_adda_source_anchor_must_be_a_non_negative_weight():
    for bad in (-1.0, float("nan"), "strong"):
        with pytest.raises(ValueError, match="source_anchor must be a weight >= 0"):
            adda.make(source_anchor=bad)
    assert adda.make().hparams["source_anchor"] == 0.0  # the paper's ADDA by default


def test_adda_mirror_copies_the_source_encoder_only_when_asked():
    tree = {
        "model": {"backbone": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(1)}},
        "method": {"encoder": {"backbone": {"w": jnp.zeros(2)}}, "discriminator": {}},
    }
    copied = adda._mirror(tree, jnp.asarray(True))
    kept = adda._mirror(tree, jnp.asarray(False))
    np.testing.assert_array_equal(copied["method"]["encoder"]["backbone"]["w"], np.ones(2))
    np.testing.assert_array_equal(kept["method"]["encoder"]["backbone"]["w"], np.zeros(2))
    assert adda._mirror({"model": {}}, True) == {"model": {}}  # no encoder state: unchanged
