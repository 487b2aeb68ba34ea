"""Inception-v3 against an independent float64 NumPy reference on a torchvision-layout
state dict.

75×75 is the smallest input (stem 75 → 37 → 35 → 17 → 17 → 15 → 7, Mixed_6a 7 → 3,
Mixed_7a 3 → 1), so the full network is compared there. The auxiliary head needs
Mixed_6e maps of at least 17×17 (299×299 inputs); it is compared on its own, on a 17×17
input, and the full train-mode network at 299×299 is only traced (shapes and dtypes).
"""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.models.reference_cnn import (
    TORCHVISION_PARAMS,
    inception_aux,
    inception_forward,
    n_params,
    random_state_dict,
    torchvision_inception_shapes,
)
from tljax import optim
from tljax.models import get_backbone_factory
from tljax.models.inception import (
    Inception3,
    avg_pool,
    inception_v3,
    load_torchvision_inception,
)
from tljax.models.vgg import torch_state_dict

pytestmark = pytest.mark.usefixtures("highest_precision")

CLASSES = 10

# The freezing rules docs/transfer.md gives for Inception-v3 (paths under a Classifier).
LINEAR_PROBE = ((r"^model/backbone/", None), (r".*", 1.0))
TOP_BLOCKS = ((r"^model/backbone/Mixed_7", 1.0), (r"^model/backbone/", None), (r".*", 1.0))
GRADUAL = (
    (r"^model/head/", 1.0),
    (r"^model/backbone/Mixed_7", (1.0, 1000)),
    (r"^model/backbone/Mixed_6", (1.0, 2000)),
    (r"^model/backbone/", (1.0, 3000)),
)
DISCRIMINATIVE = ((r"^model/backbone/AuxLogits/", 1.0), (r"^model/backbone/", 0.1), (r".*", 1.0))


def _nchw(x):
    return np.asarray(x, np.float64).transpose(0, 3, 1, 2)


@pytest.fixture(scope="module")
def loaded():
    """An Inception-v3 with aux head and 10-class heads, all weights from a random
    torchvision-layout state dict (shared: building and loading take seconds)."""
    shapes = torchvision_inception_shapes(num_classes=CLASSES, aux_logits=True)
    sd = random_state_dict(shapes, seed=0)
    model = inception_v3((299, 299, 3), rngs=nnx.Rngs(0), num_classes=CLASSES, aux_logits=True)
    load_torchvision_inception(model, sd, include_head=True)
    return model, sd, shapes


@pytest.fixture(scope="module")
def abstract():
    """The full-size model (1000 classes, aux head), built abstractly (shapes only)."""
    return nnx.eval_shape(
        lambda: inception_v3((299, 299, 3), rngs=nnx.Rngs(0), num_classes=1000, aux_logits=True)
    )


@pytest.fixture(scope="module")
def plain():
    """A model without aux head and heads, at the smallest input size."""
    return inception_v3((75, 75, 3), rngs=nnx.Rngs(1))


def test_parameter_count_matches_torchvision(abstract):
    model = abstract
    params = nnx.state(model, nnx.Param)
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    assert count == TORCHVISION_PARAMS["inception_v3"]
    assert n_params(torchvision_inception_shapes()) == count  # the hand-written listing
    assert model.feature_dim == 2048


def test_state_dict_round_trip_keys_and_shapes(loaded):
    model, sd, shapes = loaded
    back = torch_state_dict(model)
    assert set(back) == set(shapes)
    for k, v in back.items():
        assert v.shape == shapes[k], k
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(v, sd[k], err_msg=k)


def test_eval_forward_at_75_matches_numpy_reference(loaded):
    """With ``transform_input`` (the only difference to the default: one affine map first)."""
    model, sd, _ = loaded
    model.eval()
    model.transform_input = True
    try:
        x = np.random.default_rng(0).standard_normal((2, 75, 75, 3)).astype(np.float32)
        graph, state = nnx.split(model)
        out = jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)
    finally:
        model.transform_input = False
    ref = inception_forward(sd, _nchw(x), transform_input=True)
    assert out["Mixed_5d"].shape == (2, 7, 7, 288) and out["Mixed_6e"].shape == (2, 3, 3, 768)
    assert out["Mixed_7c"].shape == (2, 1, 1, 2048) and "aux_logits" not in out
    for name in ("Mixed_5d", "Mixed_6e", "Mixed_7c"):
        np.testing.assert_allclose(_nchw(out[name]), ref[name], rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-4, atol=1e-4)
    assert float(np.abs(ref["logits"]).max()) > 0.1


def test_aux_head_matches_numpy_reference(loaded):
    model, sd, _ = loaded
    model.eval()
    x = np.random.default_rng(1).standard_normal((2, 17, 17, 768)).astype(np.float32)
    y = nnx.jit(lambda m, x: m(x))(model.AuxLogits, x)
    ref = inception_aux(sd, _nchw(x))
    assert y.shape == (2, CLASSES)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="at least 17x17"):
        model.AuxLogits(jnp.zeros((1, 16, 16, 768)))


def test_avg_pool_counts_the_zero_padding():
    x = np.random.default_rng(2).standard_normal((1, 4, 5, 2))
    got = np.asarray(avg_pool(jnp.asarray(x, jnp.float32), 3, 1, 1))
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = sum(xp[:, i : i + 4, j : j + 5] for i in range(3) for j in range(3)) / 9
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _trace(model, x, param_dtype=None):
    """``(outputs' shapes, jaxpr)`` of the forward pass, traced only."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    if param_dtype is not None:  # as model.dtype casts the parameters
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, param_dtype), params)
    fwd = lambda p, r, x: nnx.merge(graph, p, r)(x)
    jaxpr, out = jax.make_jaxpr(fwd, return_shape=True)(params, rest, x)
    return out, jaxpr.jaxpr


def test_aux_logits_in_training_mode_and_bfloat16_throughout(abstract):
    """Traced, not run: at 299×299 in bf16 the train-mode outputs include ``aux_logits``
    (the 75×75 eval-mode parity test checks that eval mode has none), every output and
    every convolution/matmul operand is bf16."""
    from tests.models.test_vgg import heavy_op_dtypes

    abstract.train()
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.bfloat16)
    out, jaxpr = _trace(abstract, x, param_dtype=jnp.bfloat16)
    assert out["aux_logits"].shape == (2, 1000) and out["logits"].shape == (2, 1000)
    assert out["Mixed_6e"].shape == (2, 17, 17, 768) and out["Mixed_7c"].shape == (2, 8, 8, 2048)
    assert {v.dtype for v in out.values()} == {jnp.dtype(jnp.bfloat16)}
    ops = heavy_op_dtypes(jaxpr)
    assert len(ops) == 94 + 2 + 2  # 94 convolutions + 2 aux convolutions; fc, aux fc
    assert set(ops) == {("bfloat16", "bfloat16")}


def test_aux_logits_reach_the_method_split_per_domain(abstract):
    """Under a Classifier, the trainer's ``forward_domains`` hands ``aux_logits`` to the
    method in each domain's ``extras`` (traced at 299×299, training mode)."""
    from types import SimpleNamespace

    from tljax.models import Classifier
    from tljax.train import forward_domains

    net = Classifier(abstract, 7, rngs=nnx.Rngs(0))
    net.train()
    graph, state = nnx.split(net)

    def outputs(state, xs, xt):
        batch = {"source": {"image": xs}, "target": {"image": xt}}
        src, tgt = forward_domains(SimpleNamespace(model=nnx.merge(graph, state)), batch)
        return src.logits, src.extras["aux_logits"], tgt.extras["aux_logits"]

    image = lambda n: jax.ShapeDtypeStruct((n, 299, 299, 3), jnp.float32)
    logits, aux_src, aux_tgt = jax.eval_shape(outputs, state, image(2), image(3))
    assert logits.shape == (2, 7)
    assert aux_src.shape == (2, 1000) and aux_tgt.shape == (3, 1000)


def test_aux_head_at_75_in_training_mode_is_a_clear_error(loaded):
    model, _, _ = loaded
    model.train()
    with pytest.raises(ValueError, match="aux_logits=False or use larger images"):
        _trace(model, jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))
    model.eval()


def test_load_errors_name_the_keys(plain):
    model = plain
    shapes = torchvision_inception_shapes(aux_logits=False, num_classes=None)
    bad = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}  # no memory
    del bad["Mixed_6b.branch7x7_2.conv.weight"]
    bad["Mixed_6b.branch7x7_9.conv.weight"] = bad["Mixed_6b.branch7x7_3.conv.weight"]
    bad["Conv2d_1a_3x3.conv.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    with pytest.raises(ValueError) as e:
        load_torchvision_inception(model, bad)
    msg = str(e.value)
    assert "missing (1): Mixed_6b.branch7x7_2.conv.weight" in msg
    assert "unexpected (1): Mixed_6b.branch7x7_9.conv.weight" in msg
    assert "shape mismatch" in msg and "Conv2d_1a_3x3.conv.weight: (32, 3, 5, 5)" in msg
    with pytest.raises(ValueError, match="include_head=True but the model has no fc"):
        load_torchvision_inception(model, bad, include_head=True)
    with pytest.raises(ValueError, match="pass classifier.backbone"):
        load_torchvision_inception(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), bad)


def test_torchvision_file_loads_into_a_model_without_aux_head(loaded, plain):
    """torchvision's file always holds ``AuxLogits.*`` and ``fc``: both are dropped for a
    model without them, the rest loads."""
    _, sd, _ = loaded
    model = plain
    load_torchvision_inception(model, sd)
    np.testing.assert_array_equal(
        model.Mixed_7c.branch_pool.conv.kernel[...],
        sd["Mixed_7c.branch_pool.conv.weight"].transpose(2, 3, 1, 0),
    )


def test_freeze_rules_partition_the_blocks(abstract):
    """On a Classifier's parameter paths (``model/backbone/...``, ``model/head/...``)."""
    head = {"kernel": jnp.zeros((2048, 5)), "bias": jnp.zeros(5)}
    backbone = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
    params = {"model": {"backbone": backbone, "head": head}}
    _, report = optim.match_rules(params, LINEAR_PROBE)
    assert {p for p, (_, r) in report.items() if r is not None} == {
        "model/head/kernel",
        "model/head/bias",
    }
    _, report = optim.match_rules(params, TOP_BLOCKS)
    trainable = {p for p, (_, r) in report.items() if r is not None}
    blocks = {p.split("/")[2] for p in trainable if p.startswith("model/backbone/")}
    assert blocks == {"Mixed_7a", "Mixed_7b", "Mixed_7c"}
    assert {"model/head/kernel", "model/head/bias"} <= trainable
    labels, report = optim.match_rules(params, GRADUAL)
    start = {p: r for p, (_, r) in report.items()}
    assert start["model/backbone/Mixed_7c/branch1x1/conv/kernel"] == (1.0, 1000)
    assert start["model/backbone/Mixed_6a/branch3x3/bn/scale"] == (1.0, 2000)
    assert start["model/backbone/Conv2d_1a_3x3/conv/kernel"] == (1.0, 3000)
    assert start["model/backbone/AuxLogits/fc/kernel"] == (1.0, 3000)
    assert not any(jax.tree.leaves(optim.frozen_mask(labels)))
    _, report = optim.match_rules(params, DISCRIMINATIVE)
    mult = {p: r for p, (_, r) in report.items()}
    assert mult["model/backbone/AuxLogits/fc/kernel"] == 1.0
    assert mult["model/backbone/Mixed_5b/branch_pool/bn/bias"] == 0.1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="at least 75x75"):
        inception_v3((64, 64, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="at least 299x299 with aux_logits"):
        inception_v3((224, 224, 3), rngs=nnx.Rngs(0), aux_logits=True, aux_classes=3)
    with pytest.raises(ValueError, match="aux_classes"):
        Inception3(aux_logits=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="3 channels"):
        Inception3(in_channels=1, transform_input=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="height, width, channels"):
        get_backbone_factory("inception_v3")((299, 299), rngs=nnx.Rngs(0))


def test_pretrained_loader_defaults(tmp_path, loaded):
    from safetensors.numpy import save_file

    from tljax.models import pretrained

    _, sd, _ = loaded
    path = str(tmp_path / "inception.safetensors")
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}, path)
    kwargs = pretrained.backbone_kwargs("inception_v3", {}, path)
    assert kwargs == {"bn_unbiased_running_var": True, "transform_input": True}
    assert (
        pretrained.backbone_kwargs("inception_v3", {"transform_input": False}, path)[
            "transform_input"
        ]
        is False
    )
    model = inception_v3((75, 75, 3), rngs=nnx.Rngs(0), **kwargs)
    pretrained.load(model, "inception_v3", path)  # fc and AuxLogits.* dropped
    np.testing.assert_array_equal(
        model.Conv2d_4a_3x3.bn.var[...], sd["Conv2d_4a_3x3.bn.running_var"]
    )
    assert model.transform_input and model.Mixed_5b.branch1x1.bn.unbiased_running_var


def _randomise_bn_statistics(model, seed):
    """Non-trivial running statistics, so that the eval forward exercises them."""
    rng = np.random.default_rng(seed)
    for _, node in nnx.iter_graph(model):
        if hasattr(node, "mean") and hasattr(node, "var") and hasattr(node, "scale"):
            n = node.mean.shape
            node.mean.set_value(jnp.asarray(rng.normal(0, 0.1, n), jnp.float32))
            node.var.set_value(jnp.asarray(rng.uniform(0.5, 1.5, n), jnp.float32))


def test_width_multiplier_scales_every_convolution_and_matches_the_reference():
    """``width=0.125``: each convolution has round(published·0.125) output channels (the
    listing of torchvision's layers), the features are 256-d, and the eval forward equals
    the NumPy reference run on the model's own (narrow) torchvision-layout weights."""
    model = inception_v3((75, 75, 1), rngs=nnx.Rngs(3), width=0.125, num_classes=CLASSES)
    _randomise_bn_statistics(model, 4)
    model.eval()
    sd = torch_state_dict(model)
    full = torchvision_inception_shapes(num_classes=CLASSES, aux_logits=False)
    convs = [k for k in full if k.endswith("conv.weight")]
    assert len(convs) == 94 and set(convs) <= set(sd)
    for k in convs:
        assert sd[k].shape[0] == max(1, round(full[k][0] * 0.125)), k
    assert model.feature_dim == 256 and sd["fc.weight"].shape == (CLASSES, 256)
    x = np.random.default_rng(5).standard_normal((2, 75, 75, 1)).astype(np.float32)
    graph, state = nnx.split(model)
    out = jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)
    ref = inception_forward(sd, _nchw(x))
    assert out["Mixed_7c"].shape == (2, 1, 1, 256)
    for name in ("Mixed_5d", "Mixed_6e", "Mixed_7c"):
        np.testing.assert_allclose(_nchw(out[name]), ref[name], rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-4, atol=1e-4)
    assert float(np.abs(ref["logits"]).max()) > 1e-3
    # the auxiliary head scales too (128 → 16, 768 → 96)
    aux = nnx.eval_shape(
        lambda: inception_v3(
            (299, 299, 3), rngs=nnx.Rngs(0), width=0.125, aux_logits=True, aux_classes=3
        )
    )
    assert aux.AuxLogits.conv0.conv.kernel.shape == (1, 1, 96, 16)
    assert aux.AuxLogits.fc.kernel.shape == (96, 3)


def test_narrow_models_refuse_torchvision_weights_and_bad_widths(loaded):
    _, sd, _ = loaded
    narrow = inception_v3((75, 75, 3), rngs=nnx.Rngs(0), width=0.5)
    with pytest.raises(ValueError, match="width=1.0 only.*width=0.5"):
        load_torchvision_inception(narrow, sd)
    for bad in (0, -1, float("nan"), "wide"):
        with pytest.raises(ValueError, match="positive channel multiplier"):
            inception_v3((75, 75, 3), rngs=nnx.Rngs(0), width=bad)
