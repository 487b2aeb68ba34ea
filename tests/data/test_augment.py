"""On-device augmentation: shapes, ranges, determinism, and each transform against an
independent computation (NumPy, PIL)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageOps

from tljax.data import augment
from tljax.train import with_augmentation

RNG = np.random.default_rng(0)
X = RNG.random((16, 12, 12, 3), dtype=np.float32)

# One compilation for all RandAugment tests (compile time dominates on CPU).
_rand_augment_in = jax.jit(
    lambda x, k, lo, hi: augment.rand_augment(x, k, cutout=0.5, value_range=(lo, hi))
)
_rand_augment = lambda x, k: _rand_augment_in(x, k, np.zeros(3, np.float32), np.ones(3, np.float32))


def test_flip_is_an_exact_mirror_per_image():
    np.testing.assert_array_equal(augment.random_flip(X, jax.random.key(0), p=1.0), X[:, :, ::-1])
    np.testing.assert_array_equal(augment.random_flip(X, jax.random.key(0), p=0.0), X)
    y = np.asarray(augment.random_flip(X, jax.random.key(3)))
    flipped = [np.array_equal(a, b[:, ::-1]) for a, b in zip(y, X)]
    kept = [np.array_equal(a, b) for a, b in zip(y, X)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image one or the other
    assert 0 < sum(flipped) < len(X)  # drawn per image


def test_crop_boxes_follow_torchvision_ranges():
    h, w, scale, ratio = 28, 20, (0.2, 0.6), (0.5, 1.5)
    boxes = jax.jit(lambda k: augment.crop_boxes(k, 2000, h, w, scale=scale, ratio=ratio))
    b = np.asarray(boxes(jax.random.key(0)))
    top, left, bh, bw = b.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= h).all() and (left + bw <= w).all() and (bh >= 1).all()
    # Sides are rounded to whole pixels: allow half a pixel on each.
    area = bh * bw / (h * w)
    assert area.min() >= scale[0] * 0.85 and area.max() <= scale[1] * 1.15
    assert area.min() < 0.25 and area.max() > 0.5  # the range is used
    r = bw / bh
    assert r.min() >= ratio[0] * 0.85 and r.max() <= ratio[1] * 1.15
    assert len({tuple(x) for x in b}) > 500  # per image


def test_crop_falls_back_to_the_centre_crop_like_torchvision():
    # No draw of aspect 2 and full area fits a square: centre crop of ratio 2.
    boxes = lambda k: augment.crop_boxes(k, 3, 28, 28, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    b = jax.jit(boxes)(jax.random.key(0))
    np.testing.assert_array_equal(b, [[7, 0, 14, 28]] * 3)


def test_resized_crop_maps_the_box_onto_the_image():
    # A constant-gradient image (value = column, resp. row) shows where each output
    # pixel samples: interior pixels must sample the box linearly at pixel centres.
    h = w = 16
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ramp = np.stack([cols, rows, np.zeros_like(rows)], -1).astype(np.float32)
    boxes = np.array([[2, 5, 8, 6], [0, 0, 16, 16], [4, 1, 12, 9]], np.int32)
    out = np.asarray(jax.jit(augment.resized_crop)(np.stack([ramp] * 3), boxes))
    for o, (top, left, bh, bw) in zip(out, boxes):
        want_c = left + (np.arange(w) + 0.5) * bw / w - 0.5
        want_r = top + (np.arange(h) + 0.5) * bh / h - 0.5
        inner = slice(2, -2)
        np.testing.assert_allclose(o[5, inner, 0], want_c[inner], atol=1e-4)
        np.testing.assert_allclose(o[inner, 5, 1], want_r[inner], atol=1e-4)


def test_random_resized_crop_shapes_dtype_range_and_determinism():
    f = jax.jit(lambda x, k: augment.random_resized_crop(x, k, scale=(0.3, 1.0)))
    a, b = f(X, jax.random.key(1)), f(X, jax.random.key(1))
    assert a.shape == X.shape and a.dtype == X.dtype
    np.testing.assert_array_equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0  # a convex resampling
    assert not np.allclose(a, f(X, jax.random.key(2)))
    with pytest.raises(ValueError, match="scale"):
        augment.random_resized_crop(X, jax.random.key(0), scale=(0.5, 2.0))


def test_normalize_matches_numpy_and_inverts():
    mean, std = np.array([0.1, 0.5, 0.9], np.float32), np.array([0.2, 0.3, 0.4], np.float32)
    y = augment.normalize(X, mean, std)
    np.testing.assert_allclose(y, (X - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(augment.denormalize(y, mean, std), X, atol=1e-6)


def test_rand_augment_range_determinism_and_per_image_draws():
    same = np.stack([X[0]] * 16)
    a = np.asarray(_rand_augment(same, jax.random.key(0)))
    assert a.shape == same.shape and a.dtype == same.dtype
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, _rand_augment(same, jax.random.key(0)))
    assert not np.array_equal(a, _rand_augment(same, jax.random.key(1)))
    assert len({a[i].tobytes() for i in range(16)}) == 16  # one image, 16 different views


def test_rand_augment_value_range_maps_to_and_from_pixels():
    lo, hi = np.array([-2.0, 0.0, 1.0], np.float32), np.array([2.0, 1.0, 3.0], np.float32)
    y = _rand_augment_in(X * (hi - lo) + lo, jax.random.key(0), lo, hi)
    np.testing.assert_allclose(y, _rand_augment(X, jax.random.key(0)) * (hi - lo) + lo, atol=1e-5)


def test_every_op_keeps_pixels_in_range():
    x = jnp.asarray(X[0])
    ids = jnp.repeat(jnp.arange(len(augment.OPS)), 2)
    signs = jnp.tile(jnp.array([-1.0, 1.0]), len(augment.OPS))
    apply = lambda i, s: augment._apply_op(x, i, jnp.float32(1.0), s, augment.OPS, 0.5)
    outs = np.asarray(jax.jit(jax.vmap(apply))(ids, signs))  # one compilation for all
    for i, s, o in zip(np.asarray(ids), np.asarray(signs), outs):
        name = augment.OPS[i]
        assert o.shape == x.shape, name
        assert o.min() >= 0.0 and o.max() <= 1.0, (name, s)
        if name != "identity":
            assert not np.allclose(o, x), (name, s)  # at full magnitude every op acts


def _pil(img):
    return Image.fromarray(np.round(img * 255).astype(np.uint8))


def _back(pil):
    return np.asarray(pil, np.float32) / 255


def test_pixel_ops_match_pil():
    img = np.round(RNG.random((10, 9, 3)) * 200 + 20) / 255  # 8-bit levels, not full range
    img = img.astype(np.float32)
    np.testing.assert_allclose(
        jax.jit(augment.equalize)(img), _back(ImageOps.equalize(_pil(img))), atol=1e-6
    )
    np.testing.assert_allclose(
        jax.jit(augment.posterize)(img, 3), _back(ImageOps.posterize(_pil(img), 3)), atol=1e-6
    )
    np.testing.assert_allclose(
        jax.jit(augment.solarize)(img, 128 / 255),
        _back(ImageOps.solarize(_pil(img), 128)),
        atol=1e-6,
    )
    # PIL truncates the stretched levels to integers.
    np.testing.assert_allclose(
        jax.jit(augment.auto_contrast)(img),
        _back(ImageOps.autocontrast(_pil(img))),
        atol=1 / 255 + 1e-6,
    )


def test_affine_translation_shifts_pixels_and_fills():
    img = jnp.asarray(X[0])
    matrix = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    moved = jax.jit(augment.affine, static_argnums=2)(img, matrix, 0.25)
    np.testing.assert_allclose(moved[:, :-3], X[0][:, 3:], atol=1e-6)  # samples col + 3
    np.testing.assert_allclose(moved[:, -3:], 0.25)


def test_make_composes_stages_and_checks_options():
    f = augment.make("flip", p=1.0)
    np.testing.assert_array_equal(f(X, jax.random.key(0)), X[:, :, ::-1])
    assert augment.make("none")(X, jax.random.key(0)) is X
    # With mean/std the stages see pixels and the output is normalised again.
    mean, std = np.float32(0.4), np.float32(0.2)
    g = augment.make("flip", p=1.0, mean=mean, std=std)
    np.testing.assert_allclose(
        g((X - mean) / std, jax.random.key(0)), (X[:, :, ::-1] - mean) / std, atol=1e-5
    )
    with pytest.raises(ValueError, match=r"Unknown augmentation stage.*'crop'"):
        augment.make("crop+blur")
    with pytest.raises(ValueError, match=r"\['magnitude'\].*crop"):
        augment.make("crop_flip", magnitude=3)
    with pytest.raises(ValueError, match="NHWC"):
        augment.for_inputs("flip", {}, np.zeros((4, 2), np.float32))
    assert augment.for_inputs("none", {}, np.zeros((4, 2), np.float32)) is None


class _State:
    def __init__(self, step):
        self.step = jnp.int32(step)
        self.rng = jax.random.key_data(jax.random.key(0))


def test_with_augmentation_draws_per_entry_and_step_deterministically():
    step = with_augmentation(lambda state, batch, rng=None: batch, augment.make("flip"))
    batch = {"source": {"image": X, "label": np.arange(16)}, "target": {"image": X}}
    a0, b0, a1 = step(_State(0), batch), step(_State(0), batch), step(_State(1), batch)
    np.testing.assert_array_equal(a0["source"]["image"], b0["source"]["image"])  # resumable
    np.testing.assert_array_equal(a0["source"]["label"], np.arange(16))
    assert not np.array_equal(a0["source"]["image"], a0["target"]["image"])
    assert not np.array_equal(a0["source"]["image"], a1["source"]["image"])


def test_self_training_strong_view_can_be_randaugment():
    from tljax.methods import self_training

    m = self_training.make(strong="randaugment", randaugment_ops=1, randaugment_magnitude=30)
    assert m.hparams["strong"] == "randaugment"
    with pytest.raises(ValueError, match="strong"):
        self_training.make(strong="autoaugment")
    with pytest.raises(ValueError, match="magnitude"):
        self_training.make(strong="randaugment", randaugment_magnitude=31)
    # Standardised inputs: each channel's batch range stands for [0, 1].
    x = (X[:4] - 0.5) / np.array([0.2, 0.3, 0.4], np.float32)
    view = jax.jit(
        lambda x, k: self_training.rand_augment(x, k, num_ops=1, magnitude=30, cutout=0.5)
    )
    y = np.asarray(view(x, jax.random.key(0)))
    lo, hi = x.min(axis=(0, 1, 2)), x.max(axis=(0, 1, 2))
    assert y.shape == x.shape and (y >= lo - 1e-5).all() and (y <= hi + 1e-5).all()
    assert not np.allclose(y, x)
