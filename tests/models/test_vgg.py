"""VGG against an independent float64 NumPy reference on torchvision-layout state dicts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests.models.reference_cnn import (
    TORCHVISION_PARAMS,
    n_params,
    random_state_dict,
    torchvision_vgg_shapes,
    vgg_forward,
)
from tests.models.reference_cnn import (
    adaptive_avg_pool as ref_adaptive_avg_pool,
)
from tljax import optim
from tljax.models import build_classifier, get_backbone_factory
from tljax.models.vgg import (
    VGG,
    adaptive_avg_pool,
    load_torchvision_vgg,
    torch_state_dict,
    torchvision_key,
    vgg11,
    vgg11_bn,
)

# Compared with float64 NumPy references at 1e-4: full float32 convolutions and matmuls
# (GPUs default to TF32; tests/conftest.py).
pytestmark = pytest.mark.usefixtures("highest_precision")

NAMES = sorted(k for k in TORCHVISION_PARAMS if k.startswith("vgg"))
FC = 32  # a narrow FC stack keeps the NumPy reference and the test small (4096 in torchvision)

# The freezing rules docs/transfer.md gives for VGG (paths under a Classifier).
LINEAR_PROBE = ((r"^model/backbone/", None), (r".*", 1.0))
TRAIN_CLASSIFIER = ((r"^model/backbone/features/", None), (r".*", 1.0))
GRADUAL_VGG16_BN = (
    (r"^model/backbone/classifier/", 1.0),
    (r"^model/backbone/features/(3[4-9]|4[0-3])/", (1.0, 1000)),
    (r"^model/backbone/features/(2[4-9]|3[0-3])/", (1.0, 2000)),
    (r"^model/backbone/", (1.0, 3000)),
    (r".*", 1.0),
)
DISCRIMINATIVE = (
    (r"^model/backbone/features/", 0.1),
    (r"^model/backbone/classifier/", 0.5),
    (r".*", 1.0),
)


def _nchw(x):
    return np.asarray(x, np.float64).transpose(0, 3, 1, 2)


def _run(model, x):
    graph, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)  # one compile, not per op


def heavy_op_dtypes(jaxpr) -> list[tuple[str, str]]:
    """Operand dtypes of every convolution and matmul in a jaxpr (nested ones included)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars[:2]))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += heavy_op_dtypes(sub)
    return found


def _torch_shape(path, shape):
    """The torch shape of one of our variables (kernels HWIO → OIHW, linears transposed)."""
    if str(path[-1]) == "kernel":
        return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
    return tuple(shape)


@pytest.mark.parametrize("name", NAMES)
def test_keys_shapes_and_parameter_count_match_torchvision(name):
    """At the full size (4096-wide FC stack, 1000 classes), built abstractly."""
    model = nnx.eval_shape(
        lambda: get_backbone_factory(name)((224, 224, 3), rngs=nnx.Rngs(0), num_classes=1000)
    )
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    ours = {torchvision_key(p)[0]: _torch_shape(p, v.shape) for p, v in nnx.to_flat_state(state)}
    arch, bn = name.removesuffix("_bn"), name.endswith("_bn")
    want = torchvision_vgg_shapes(arch, bn)
    want = {k: v for k, v in want.items() if not k.endswith("num_batches_tracked")}
    assert ours == want
    assert n_params(want) == TORCHVISION_PARAMS[name]  # the hand-written listing itself
    params = nnx.state(model, nnx.Param)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == TORCHVISION_PARAMS[name]
    assert model.feature_dim == 4096


@pytest.mark.parametrize("factory, bn", [(vgg11_bn, True), (vgg11, False)])
def test_state_dict_round_trip(factory, bn):
    shapes = torchvision_vgg_shapes("vgg11", bn, num_classes=10, fc_dim=FC)
    sd = random_state_dict(shapes, seed=1)
    model = factory((32, 32, 3), rngs=nnx.Rngs(0), num_classes=10, fc_dim=FC)
    load_torchvision_vgg(model, sd, include_head=True)
    back = torch_state_dict(model)
    assert set(back) == set(shapes)
    for k, v in back.items():
        assert v.shape == shapes[k], k
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(v, sd[k], err_msg=k)


@pytest.mark.parametrize("arch, bn, size", [("vgg11", True, 32), ("vgg11", False, 64)])
def test_eval_forward_matches_numpy_reference(arch, bn, size):
    """32×32: a 1×1 map spread over the 7×7 pool; 64×64: 2×2 → 7×7 overlapping windows."""
    sd = random_state_dict(torchvision_vgg_shapes(arch, bn, num_classes=10, fc_dim=FC), seed=2)
    model = get_backbone_factory(arch + "_bn" * bn)(
        (size, size, 3), rngs=nnx.Rngs(0), num_classes=10, fc_dim=FC
    )
    load_torchvision_vgg(model, sd, include_head=True)
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    out = _run(model, x)
    ref = vgg_forward(sd, _nchw(x), arch, bn)
    for name in ("pool1", "pool2", "pool3", "pool4", "pool5"):
        np.testing.assert_allclose(_nchw(out[name]), ref[name], rtol=1e-4, atol=1e-4, err_msg=name)
    assert out["pool5"].shape == (2, size // 32, size // 32, 512)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-4, atol=1e-4)
    assert float(np.abs(ref["logits"]).max()) > 0.1  # not a trivially small comparison


def test_without_fc_stack_features_are_the_global_pool():
    """``fc_stack=False``: 512-d global average of pool5; a full torchvision file loads (its
    classifier is dropped)."""
    shapes = torchvision_vgg_shapes("vgg11", True, num_classes=10, fc_dim=FC)
    sd = random_state_dict(shapes, seed=3)
    model = vgg11_bn((64, 64, 3), rngs=nnx.Rngs(0), fc_stack=False)
    assert model.feature_dim == 512 and model.classifier is None
    load_torchvision_vgg(model, sd)
    assert set(torch_state_dict(model)) == {k for k in shapes if not k.startswith("classifier")}
    model.eval()
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
    out = _run(model, x)
    conv_only = {k: v for k, v in sd.items() if not k.startswith("classifier")}
    ref = vgg_forward(conv_only, _nchw(x), "vgg11", True)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["features"], _nchw(out["pool5"]).mean((2, 3)), rtol=1e-6)
    assert "logits" not in out


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (5, 9), (7, 7), (13, 8), (14, 14)])
def test_adaptive_avg_pool_uses_pytorch_windows(h, w):
    x = np.random.default_rng(h * w).standard_normal((2, h, w, 3))
    got = adaptive_avg_pool(jnp.asarray(x, jnp.float32), 7)
    ref = ref_adaptive_avg_pool(x.transpose(0, 3, 1, 2), 7)
    np.testing.assert_allclose(_nchw(got), ref, rtol=1e-5, atol=1e-6)


def test_load_errors_name_the_keys_and_write_nothing():
    model = vgg11_bn((32, 32, 3), rngs=nnx.Rngs(0), fc_dim=FC)
    before = torch_state_dict(model)
    plain = random_state_dict(torchvision_vgg_shapes("vgg11", False, fc_dim=FC), seed=4)
    with pytest.raises(ValueError) as e:  # a plain VGG file into the _bn variant
        load_torchvision_vgg(model, plain)
    msg = str(e.value)
    assert "missing" in msg and "features.1.running_mean" in msg
    assert "unexpected" in msg and "features.3.weight" in msg  # the plain 2nd conv's index
    wide = random_state_dict(torchvision_vgg_shapes("vgg11", True, fc_dim=2 * FC), seed=5)
    with pytest.raises(ValueError, match=r"shape mismatch.*classifier\.0\.weight"):
        load_torchvision_vgg(model, wide)
    after = torch_state_dict(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="include_head=True but the model has no"):
        load_torchvision_vgg(model, wide, include_head=True)
    with pytest.raises(ValueError, match="pass classifier.backbone"):
        net = build_classifier("vgg11", (32, 32, 3), 3, rngs=nnx.Rngs(0), fc_stack=False)
        load_torchvision_vgg(net, plain)


def test_bfloat16_activations():
    """Parameters and images cast to bf16 (as ``model.dtype``): every activation is bf16 and
    close to the float32 result; BatchNorm statistics stay float32."""
    model = vgg11_bn((32, 32, 3), rngs=nnx.Rngs(0), num_classes=10, fc_dim=FC)
    model.eval()
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    x = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)

    def fwd(p, x):
        return nnx.merge(graph, p, rest)(x)

    ref = jax.jit(fwd)(params, x)
    bf = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    out = jax.jit(fwd)(bf, jnp.asarray(x, jnp.bfloat16))
    assert {v.dtype for v in out.values()} == {jnp.dtype(jnp.bfloat16)}
    assert {v.dtype for v in jax.tree.leaves(rest)} == {jnp.dtype(jnp.float32)}
    scale = float(jnp.abs(ref["logits"]).max())
    np.testing.assert_allclose(
        np.asarray(out["logits"], np.float32), ref["logits"], atol=0.05 * scale
    )
    ops = heavy_op_dtypes(jax.make_jaxpr(fwd)(bf, jnp.asarray(x, jnp.bfloat16)).jaxpr)
    assert len(ops) == 8 + 3 + 2  # convolutions, FC layers, the adaptive pool's contractions
    assert set(ops) == {("bfloat16", "bfloat16")}


def test_dropout_in_training_only():
    """torchvision's ``dropout=0.5``: evaluation mode equals the same weights without
    dropout; training mode zeroes about half of the remaining features."""
    model = vgg11((32, 32, 3), rngs=nnx.Rngs(0, dropout=1), fc_dim=64, dropout=0.5)
    plain = vgg11((32, 32, 3), rngs=nnx.Rngs(5), fc_dim=64)
    nnx.update(plain, nnx.state(model, nnx.Param))
    x = jnp.asarray(np.random.default_rng(3).random((4, 32, 32, 3)), jnp.float32)
    feats = nnx.jit(lambda m, x: m(x)["features"])
    model.eval()
    a = np.asarray(feats(model, x))
    np.testing.assert_array_equal(a, np.asarray(feats(plain, x)))
    model.train()
    c = np.asarray(feats(model, x))
    assert (c == 0).mean() > (a == 0).mean() + 0.2
    assert (c == 0).mean() < 0.95


def test_gradual_unfreezing_stage_regexes_of_vgg16_bn():
    """The stage regexes docs/transfer.md lists for vgg16_bn select exactly the convolutions
    and BatchNorms of the last two stages (features 24-31 and 34-41)."""
    model = nnx.eval_shape(lambda: get_backbone_factory("vgg16_bn")((32, 32, 3), rngs=nnx.Rngs(0)))
    params = {"model": {"backbone": nnx.to_pure_dict(nnx.state(model, nnx.Param))}}
    _, report = optim.match_rules(params, GRADUAL_VGG16_BN)
    rules = {p: r for p, (_, r) in report.items()}
    layer = {p: int(p.split("/")[3]) for p in rules if "/features/" in p}
    assert {i for i, r in ((layer[p], rules[p]) for p in layer) if r == (1.0, 1000)} == {
        34,
        35,
        37,
        38,
        40,
        41,
    }
    assert {i for i, r in ((layer[p], rules[p]) for p in layer) if r == (1.0, 2000)} == {
        24,
        25,
        27,
        28,
        30,
        31,
    }
    assert rules["model/backbone/classifier/3/kernel"] == 1.0
    assert rules["model/backbone/features/21/scale"] == (1.0, 3000)


def _classifier_params():
    model = nnx.eval_shape(
        lambda: build_classifier("vgg11_bn", (32, 32, 3), 5, rngs=nnx.Rngs(0), fc_dim=FC)
    )
    return {"model": nnx.to_pure_dict(nnx.state(model, nnx.Param))}


def test_freeze_rules_train_only_the_classifier():
    """Freezing ``features``: one optimizer step changes the FC stack and the head, and
    leaves every convolution and BatchNorm parameter bitwise unchanged."""
    shapes = _classifier_params()
    params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
    tx, labels, report = optim.make_optimizer(
        params, TRAIN_CLASSIFIER, schedule=optax.constant_schedule(0.1)
    )
    frozen = {p for p, (_, rule) in report.items() if rule is None}
    conv_bn = {p for p in report if p.startswith("model/backbone/features/")}
    assert frozen == conv_bn and len(conv_bn) == 8 * 4  # 8 convs (kernel, bias) + 8 BNs
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    for path, (_, rule) in report.items():
        old_leaf = _leaf(params, path)
        changed = not np.array_equal(_leaf(new, path), old_leaf)
        assert changed == (rule is not None), path


def _leaf(tree, path):
    for part in path.split("/"):
        tree = tree[int(part)] if part.isdigit() and int(part) in tree else tree[part]
    return np.asarray(tree)


def test_linear_probe_and_discriminative_rules_cover_every_parameter():
    params = _classifier_params()
    _, report = optim.match_rules(params, LINEAR_PROBE)
    trainable = {p for p, (_, r) in report.items() if r is not None}
    assert trainable == {"model/head/kernel", "model/head/bias"}
    _, report = optim.match_rules(params, DISCRIMINATIVE)
    mult = {p: r for p, (_, r) in report.items()}
    assert mult["model/backbone/features/0/kernel"] == 0.1
    assert mult["model/backbone/features/1/scale"] == 0.1  # BatchNorm after conv 0
    assert mult["model/backbone/classifier/3/kernel"] == 0.5
    assert mult["model/head/kernel"] == 1.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="valid archs"):
        VGG("vgg12", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="fc_stack=True"):
        vgg11((32, 32, 3), rngs=nnx.Rngs(0), num_classes=10, fc_stack=False)
    with pytest.raises(ValueError, match="at least 32x32"):
        vgg11((28, 28, 1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="height, width, channels"):
        vgg11((32, 32), rngs=nnx.Rngs(0))
    model = vgg11((32, 32, 3), rngs=nnx.Rngs(0), fc_stack=False)
    with pytest.raises(ValueError, match="at least 32x32"):
        model(jnp.zeros((1, 16, 16, 3)))


def test_pretrained_loader_is_registered(tmp_path):
    from safetensors.numpy import save_file

    from tljax.models import pretrained

    path = str(tmp_path / "vgg11_bn.safetensors")
    sd = random_state_dict(torchvision_vgg_shapes("vgg11", True, fc_dim=FC), seed=6)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}, path)
    kwargs = pretrained.backbone_kwargs("vgg11_bn", {"fc_dim": FC}, path)
    assert kwargs == {"bn_unbiased_running_var": True, "fc_dim": FC}
    model = vgg11_bn((32, 32, 3), rngs=nnx.Rngs(0), **kwargs)
    pretrained.load(model, "vgg11_bn", path)
    back = torch_state_dict(model)
    np.testing.assert_array_equal(back["features.4.weight"], sd["features.4.weight"])
    assert model.features[1].unbiased_running_var
    assert {f"vgg{d}{b}" for d in (11, 16, 19) for b in ("", "_bn")} <= set(
        pretrained.loader_names()
    )


@pytest.mark.slow
def test_trainer_step_in_bfloat16_with_frozen_features():
    """Two DANN steps through the trainer (bf16 compute): the frozen convolutions stay
    bitwise equal, the FC stack and the head train, parameters stay float32."""
    from tests.helpers import random_batch, tiny_setup

    state, step, _, _ = tiny_setup(
        "dann",
        backbone="vgg11_bn",
        shape=(32, 32, 3),
        rules=TRAIN_CLASSIFIER,
        dtype=jnp.bfloat16,
        fc_dim=16,
    )
    step = jax.jit(step)
    new = state
    for seed in range(2):
        new, metrics = step(new, random_batch(n=4, shape=(32, 32, 3), seed=seed))
    assert np.isfinite(float(metrics["loss"]))
    old, cur = state.params["model"]["backbone"], new.params["model"]["backbone"]
    for a, b in zip(jax.tree.leaves(old["features"]), jax.tree.leaves(cur["features"])):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(old["classifier"][3]["kernel"], cur["classifier"][3]["kernel"])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new.params))


def test_width_multiplier_scales_the_convolutions_and_matches_the_reference():
    """``width=0.125`` of VGG-11-BN: channels 8-16-32-32-64-64-64-64, 64-d global-pool
    features, and the eval forward equals the NumPy reference on the model's own weights."""
    model = vgg11_bn((32, 32, 1), rngs=nnx.Rngs(0), fc_stack=False, width=0.125)
    rng = np.random.default_rng(7)
    for i, kind in enumerate(model.kinds):
        if kind == "bn":
            bn = model.features[i]
            bn.mean.set_value(jnp.asarray(rng.normal(0, 0.1, bn.mean.shape), jnp.float32))
            bn.var.set_value(jnp.asarray(rng.uniform(0.5, 1.5, bn.var.shape), jnp.float32))
    model.eval()
    sd = torch_state_dict(model)
    outs = [v.shape[0] for k, v in sd.items() if k.endswith("weight") and v.ndim == 4]
    assert outs == [8, 16, 32, 32, 64, 64, 64, 64]
    assert model.feature_dim == 64
    x = np.random.default_rng(8).standard_normal((2, 32, 32, 1)).astype(np.float32)
    out = _run(model, x)
    ref = vgg_forward(sd, _nchw(x), "vgg11", True)
    for name in ("pool1", "pool3", "pool5"):
        np.testing.assert_allclose(_nchw(out[name]), ref[name], rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=1e-4, atol=1e-4)
    full = torchvision_vgg_shapes("vgg11", True, num_classes=10, fc_dim=FC)
    with pytest.raises(ValueError, match="width=1.0 only.*width=0.125"):
        load_torchvision_vgg(model, random_state_dict(full, seed=0))
    for bad in (0, -0.5, float("inf"), None):
        with pytest.raises(ValueError, match="positive channel multiplier"):
            vgg11_bn((32, 32, 3), rngs=nnx.Rngs(0), width=bad)
