"""ViT tests: HF ``ViTModel``-keyed random weights vs an independent float64 NumPy forward,
position-embedding interpolation, strict loading, registry, freezing rules and bf16."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import random_batch, tiny_setup
from tests.models.reference_transformers import (
    bicubic_resize,
    random_weights,
    vit_forward,
    vit_shapes,
)
from tljax import optim
from tljax.models import backbone_names, build_classifier, get_backbone_factory, pretrained
from tljax.models.vit import CONFIGS, interpolate_pos_embed, load_hf_vit, vit_tiny

# Compared with float64 references at 1e-4: full float32 matmuls (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("highest_precision")

TINY = CONFIGS["vit_tiny"]  # hidden 32, 2 layers, 4 heads, mlp 64, patch 4
HEADS, PATCH = TINY.num_attention_heads, TINY.patch_size


def hf_vit(grid=4, pooler=True, seed=0):
    shapes = vit_shapes(TINY.hidden_size, TINY.num_hidden_layers, 64, PATCH, grid, pooler=pooler)
    return random_weights(shapes, seed)


def _images(n=2, size=16, seed=1):
    return np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype(np.float32)


def _forward(model, x, **kw):
    graph, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graph, s)(x, **kw))(state, x)


@pytest.fixture(scope="module")
def loaded():
    sd = hf_vit()
    model = vit_tiny((16, 16, 3), rngs=nnx.Rngs(0), add_pooler=True)
    load_hf_vit(model, sd)
    return sd, model


def test_matches_numpy_reference(loaded):
    sd, model = loaded
    x = _images()
    out = _forward(model, x)
    ref = vit_forward(sd, x, heads=HEADS, patch=PATCH)
    np.testing.assert_allclose(out["tokens"], ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["features"], ref[:, 0], rtol=1e-4, atol=1e-4)
    pooled = np.tanh(
        ref[:, 0] @ sd["pooler.dense.weight"].T.astype(np.float64) + sd["pooler.dense.bias"]
    )
    np.testing.assert_allclose(out["pooled"], pooled, rtol=1e-4, atol=1e-4)
    assert model.feature_dim == 32

    mean_model = vit_tiny((16, 16, 3), rngs=nnx.Rngs(3), pool="mean")
    load_hf_vit(mean_model, sd)  # the checkpoint's pooler is dropped
    feats = _forward(mean_model, x)["features"]
    np.testing.assert_allclose(feats, ref[:, 1:].mean(1), rtol=1e-4, atol=1e-4)


def test_prefixed_keys_drop_the_classifier():
    sd = hf_vit(pooler=False)
    prefixed = {"vit." + k: v for k, v in sd.items()}
    prefixed["classifier.weight"] = np.zeros((10, 32), np.float32)
    prefixed["classifier.bias"] = np.zeros((10,), np.float32)
    model = vit_tiny((16, 16, 3), rngs=nnx.Rngs(0))
    load_hf_vit(model, prefixed)
    w = sd["embeddings.patch_embeddings.projection.weight"]
    np.testing.assert_array_equal(
        model.embeddings.patch_embeddings.kernel[...], np.transpose(w, (2, 3, 1, 0))
    )
    np.testing.assert_array_equal(
        model.layers[1].attention.value.kernel[...],
        sd["encoder.layer.1.attention.attention.value.weight"].T,
    )


def test_transformers5_in_memory_names_load_the_same():
    """transformers >= 5 renames the blocks in memory (layers.N.attention.q_proj, mlp.fc1)."""
    sd = hf_vit(pooler=False)
    renamed = {}
    for k, v in sd.items():
        for old, new in (
            ("encoder.layer.", "layers."),
            ("attention.attention.query", "attention.q_proj"),
            ("attention.attention.key", "attention.k_proj"),
            ("attention.attention.value", "attention.v_proj"),
            ("attention.output.dense", "attention.o_proj"),
            ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2"),
        ):
            k = k.replace(old, new)
        renamed[k] = v
    assert "layers.1.mlp.fc2.weight" in renamed and len(renamed) == len(sd)
    a, b = vit_tiny((16, 16, 3), rngs=nnx.Rngs(0)), vit_tiny((16, 16, 3), rngs=nnx.Rngs(1))
    load_hf_vit(a, sd)
    load_hf_vit(b, renamed)
    jax.tree.map(
        np.testing.assert_array_equal,
        nnx.to_pure_dict(nnx.state(a)),
        nnx.to_pure_dict(nnx.state(b)),
    )


def test_strict_loading_errors_and_nothing_written():
    model = vit_tiny((16, 16, 3), rngs=nnx.Rngs(0), add_pooler=True)
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
    with pytest.raises(ValueError, match=r"missing \(2\): pooler.dense.bias; pooler.dense.weight"):
        load_hf_vit(model, hf_vit(pooler=False))
    sd = hf_vit()
    sd["encoder.layer.2.output.dense.bias"] = np.zeros(32, np.float32)
    sd["encoder.layer.0.intermediate.dense.weight"] = np.zeros((32, 64), np.float32)
    sd["embeddings.position_embeddings"] = np.zeros((1, 16, 32), np.float32)  # no class row
    with pytest.raises(ValueError) as err:
        load_hf_vit(model, sd)
    msg = str(err.value)
    assert "unexpected (1): encoder.layer.2.output.dense.bias" in msg
    assert "encoder.layer.0.intermediate.dense.weight: (32, 64)" in msg
    assert "embeddings.position_embeddings: (1, 16, 32)" in msg
    after = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
    jax.tree.map(np.testing.assert_array_equal, after, before)
    with pytest.raises(ValueError, match="classifier.backbone"):
        load_hf_vit(build_classifier("vit_tiny", (16, 16, 3), 2, rngs=nnx.Rngs(0)), sd)


def test_interpolation_identity_and_independent_bicubic():
    rng = np.random.default_rng(4)
    pos = rng.standard_normal((1, 17, 8)).astype(np.float32)
    same = interpolate_pos_embed(pos, (4, 4))
    np.testing.assert_array_equal(same, pos)
    for new in ((6, 5), (3, 3), (8, 8), (2, 7)):
        out = np.asarray(interpolate_pos_embed(pos, new))
        assert out.shape == (1, 1 + new[0] * new[1], 8)
        np.testing.assert_array_equal(out[0, 0], pos[0, 0])  # class token kept
        ref = bicubic_resize(pos[0, 1:].reshape(4, 4, 8).astype(np.float64), *new)
        np.testing.assert_allclose(out[0, 1:], ref.reshape(-1, 8), rtol=1e-5, atol=1e-5)
    # The cubic weights sum to one: a constant grid stays constant.
    const = np.concatenate([pos[:, :1], np.full((1, 16, 8), 0.7, np.float32)], axis=1)
    np.testing.assert_allclose(interpolate_pos_embed(const, (7, 3))[0, 1:], 0.7, rtol=1e-5)
    # A rectangular source grid, given explicitly.
    rect = rng.standard_normal((1, 1 + 2 * 5, 3)).astype(np.float32)
    out = np.asarray(interpolate_pos_embed(rect, (4, 4), old_grid=(2, 5)))
    ref = bicubic_resize(rect[0, 1:].reshape(2, 5, 3).astype(np.float64), 4, 4)
    np.testing.assert_allclose(out[0, 1:], ref.reshape(-1, 3), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not a square grid"):
        interpolate_pos_embed(rect, (4, 4))
    with pytest.raises(ValueError, match="does not hold"):
        interpolate_pos_embed(rect, (4, 4), old_grid=(3, 3))


def test_weights_at_another_size_are_resized_on_load_and_at_call():
    sd = hf_vit()  # trained on a 4x4 grid (16x16 images)
    x = _images(size=24)  # a 6x6 grid
    ref = vit_forward(sd, x, heads=HEADS, patch=PATCH, interpolate=True)
    big = vit_tiny((24, 24, 3), rngs=nnx.Rngs(0))
    load_hf_vit(big, sd)
    np.testing.assert_allclose(_forward(big, x)["tokens"], ref, rtol=1e-4, atol=1e-4)

    small = vit_tiny((16, 16, 3), rngs=nnx.Rngs(0))
    load_hf_vit(small, sd)
    out = _forward(small, x, interpolate_pos_encoding=True)["tokens"]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        small(x)
    with pytest.raises(ValueError, match="not a multiple of the patch size 4"):
        small(_images(size=18))


def test_registry_factories_and_errors():
    assert {"vit_b16", "vit_s16", "vit_tiny"} <= set(backbone_names())
    assert "vit_b16" in pretrained.loader_names()
    for name, width, layers in (("vit_b16", 768, 12), ("vit_s16", 384, 12)):
        model = nnx.eval_shape(
            lambda n=name: get_backbone_factory(n)((224, 224, 3), rngs=nnx.Rngs(0))
        )
        assert model.feature_dim == width and len(model.layers) == layers
        assert model.embeddings.position_embeddings.shape == (1, 197, width)
    with pytest.raises(ValueError, match=r"\(height, width, channels\)"):
        vit_tiny((16, 16), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="pool='max'.*'cls', 'mean'"):
        vit_tiny((16, 16, 3), rngs=nnx.Rngs(0), pool="max")
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        vit_tiny((18, 16, 3), rngs=nnx.Rngs(0))
    clf = build_classifier("vit_tiny", (16, 16, 3), 5, rngs=nnx.Rngs(0))
    graph, state = nnx.split(clf)
    hash(graph)  # static under jax.jit
    logits, _ = jax.eval_shape(lambda s, x: nnx.merge(graph, s)(x), state, _images())
    assert logits.shape == (2, 5)


def test_bf16_compute_keeps_float32_params():
    sd = hf_vit()
    model = vit_tiny((16, 16, 3), rngs=nnx.Rngs(0), dtype="bfloat16")
    load_hf_vit(model, sd)
    params = nnx.state(model, nnx.Param)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    x = _images()
    out = _forward(model, x)
    assert out["tokens"].dtype == jnp.bfloat16
    ref = vit_forward(sd, x, heads=HEADS, patch=PATCH)
    err = np.abs(np.asarray(out["features"], np.float64) - ref[:, 0]).max()
    assert err < 0.1 * np.abs(ref[:, 0]).max(), err


# Rules of docs/transfer.md for the ViT (paths under the trainer's "model/").
LINEAR_PROBE = [(r"^model/head/", 1.0), (r".*", None)]
DISCRIMINATIVE = [
    (r"^model/head/", 1.0),
    (r"^model/backbone/(layers/1/|layernorm/)", 0.1),
    (r"^model/backbone/layers/0/", 0.01),
    (r"^model/backbone/embeddings/", 0.001),
]


def test_freeze_rules_linear_probe_trains_only_the_head():
    state, step, _, labels = tiny_setup(
        "source_only", rules=LINEAR_PROBE, backbone="vit_tiny", num_classes=3
    )
    before = jax.tree.map(np.asarray, state.params)
    after, _ = jax.jit(step)(state, random_batch(n=4, num_classes=3))
    flat_b = jax.tree_util.tree_flatten_with_path(before)[0]
    changed = {
        optim.path_str(p): not np.array_equal(b, a)
        for (p, b), a in zip(flat_b, jax.tree.leaves(after.params))
    }
    assert changed["model/head/kernel"] and changed["model/head/bias"]
    assert not any(v for k, v in changed.items() if not k.startswith("model/head/"))

    _, report = optim.match_rules(before, DISCRIMINATIVE)  # every parameter covered
    lr = {k: r for k, (_, r) in report.items()}
    assert lr["model/backbone/layers/1/attention/query/kernel"] == 0.1
    assert lr["model/backbone/layernorm/scale"] == 0.1
    assert lr["model/backbone/layers/0/intermediate/kernel"] == 0.01
    assert lr["model/backbone/embeddings/cls_token"] == 0.001
    assert lr["model/backbone/embeddings/patch_embeddings/kernel"] == 0.001
