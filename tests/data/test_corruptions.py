"""Tests of tljax.data.corruptions and corruption_tasks: each corruption's defining
property, determinism, and the digits-c / fashion-c / cifar10-c / imagenet-c task family."""

import colorsys

import numpy as np
import pytest

from tljax.data import corruption_tasks as T
from tljax.data import corruptions as C
from tljax.data.digits import load_uci_digits

SEVERITIES = (1, 2, 3, 4, 5)
# Corruptions that draw random numbers (the others ignore rng).
RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
}


@pytest.fixture(scope="module")
def digits():
    """48 UCI test digits at 16x16, grey (n, 16, 16, 1)."""
    _, test = load_uci_digits(image_size=16)
    return np.array(test.x[:48])


@pytest.fixture(scope="module")
def noise_images():
    """White-noise images: a flat spectrum, so any blur shows in the high frequencies."""
    return np.random.default_rng(0).random((32, 16, 16, 1)).astype(np.float32)


def grey_half(n=64, size=16):
    return np.full((n, size, size, 1), 0.5, np.float32)


def all_severities(x, name, seed=0):
    return [C.corrupt(x, name, s, seed).astype(np.float64) for s in SEVERITIES]


def high_freq(x):
    """Mean spectral energy at frequencies above 0.25 cycles/pixel (per image, mean removed)."""
    f = np.fft.fftfreq(x.shape[1])
    mask = np.hypot(f[:, None], f[None, :]) > 0.25
    planes = np.moveaxis(x, -1, 1)
    spectrum = np.abs(np.fft.fft2(planes - planes.mean(axis=(2, 3), keepdims=True))) ** 2
    return float((spectrum * mask).sum() / planes.size)


def corr(a, b):
    a, b = (np.ravel(v) - np.mean(v) for v in (a, b))
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def strictly_increasing(values):
    return all(b > a for a, b in zip(values, values[1:]))


# --- every corruption ------------------------------------------------------------------


def test_names_and_params():
    assert len(C.NAMES) == 15 and set(C.NAMES) == set(C.CORRUPTIONS) == set(C.PARAMS)
    assert [len(v) for v in C.CATEGORIES.values()] == [3, 4, 4, 4]
    assert all(len(C.PARAMS[n]) == 5 for n in C.NAMES)


@pytest.mark.parametrize("name", C.NAMES)
def test_shape_dtype_range_and_determinism(name, digits):
    rgb = np.concatenate([digits[:8], 1 - digits[8:16], digits[16:24] * 0.5], axis=-1)
    for x in (digits, rgb):
        before = x.copy()
        for s in SEVERITIES:
            y = C.corrupt(x, name, s, rng=[3, s])
            assert y.shape == x.shape and y.dtype == np.float32
            assert y.min() >= 0.0 and y.max() <= 1.0
            np.testing.assert_array_equal(y, C.corrupt(x, name, s, rng=[3, s]))
            gen = C.CORRUPTIONS[name](x, s, np.random.default_rng(7))
            np.testing.assert_array_equal(gen, C.corrupt(x, name, s, rng=7))
        np.testing.assert_array_equal(x, before)  # input untouched
    other = C.corrupt(digits, name, 3, rng=4)
    assert (name in RANDOM) == (not np.array_equal(other, C.corrupt(digits, name, 3, rng=5)))
    assert not np.array_equal(other, digits)


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
        C.gaussian_noise(digits, 6, 0)
    with pytest.raises(ValueError, match="severity"):
        C.contrast(digits, True, 0)
    with pytest.raises(ValueError, match="NHWC"):
        C.fog(digits[..., 0], 1, 0)
    with pytest.raises(ValueError, match="not None"):
        C.snow(digits, 1, None)
    with pytest.raises(ValueError, match="valid corruptions"):
        C.corrupt(digits, "speckle", 1, 0)


# --- noise -------------------------------------------------------------------------------


def test_gaussian_noise_std_is_its_parameter():
    x = grey_half()
    stds = [float((y - 0.5).std()) for y in all_severities(x, "gaussian_noise")]
    np.testing.assert_allclose(stds, C.PARAMS["gaussian_noise"], rtol=0.03)
    assert strictly_increasing(stds)


def test_shot_noise_variance_is_mean_over_photons():
    x = grey_half()
    variances = [float((y - 0.5).var()) for y in all_severities(x, "shot_noise")]
    np.testing.assert_allclose(variances, [0.5 / c for c in C.PARAMS["shot_noise"]], rtol=0.1)
    assert strictly_increasing(variances)
    zeros = C.shot_noise(np.zeros_like(x), 5, 0)  # no light, no photons
    assert not zeros.any()


def test_impulse_noise_fraction_is_amount():
    x = grey_half(size=28)
    for y, amount in zip(all_severities(x, "impulse_noise"), C.PARAMS["impulse_noise"]):
        salt, pepper = float((y == 1).mean()), float((y == 0).mean())
        tol = 4 * np.sqrt(amount / y.size)
        assert abs(salt + pepper - amount) < tol and abs(salt - pepper) < tol
        assert np.all((y == 0) | (y == 1) | (y == 0.5))


# --- blur --------------------------------------------------------------------------------


def test_defocus_and_zoom_blur_remove_high_frequencies(noise_images):
    clean = high_freq(noise_images)
    for name in ("defocus_blur", "zoom_blur"):
        energy = [high_freq(y) for y in all_severities(noise_images, name)]
        assert energy[0] < clean and strictly_increasing(energy[::-1]), (name, clean, energy)
    blurred = C.defocus_blur(noise_images, 5, 0)
    np.testing.assert_allclose(blurred.mean(), noise_images.mean(), atol=2e-3)


def test_motion_blur_removes_high_frequencies(noise_images):
    clean = high_freq(noise_images)
    energy = [high_freq(y) for y in all_severities(noise_images, "motion_blur")]
    # Severities 3 and 4 differ only in radius 6 vs 8 at sigma 2: taps past 6 weigh ~e^-9.
    assert energy[0] < clean and all(b <= a * 1.02 for a, b in zip(energy, energy[1:]))
    assert energy[4] < 0.8 * energy[0]


def test_glass_blur_is_local_copying_plus_blur(digits, noise_images):
    # Severity 1 blurs with std 0.05 (a no-op): what is left is the pixel shuffle, in
    # which pixel (r, c), r, c >= 2, takes the value at (r - i, c - j), i, j in {0, 1}.
    y = C.glass_blur(noise_images, 1, 0)
    np.testing.assert_array_equal(y[:, :2], noise_images[:, :2])
    np.testing.assert_array_equal(y[:, :, :2], noise_images[:, :, :2])
    inner = y[:, 2:, 2:]
    matches = [inner == noise_images[:, 2 - i : 16 - i, 2 - j : 16 - j] for i in (0, 1)
               for j in (0, 1)]  # fmt: skip
    assert np.all(np.any(matches, axis=0))
    assert 0.6 < 1 - float(np.mean(matches[0])) < 0.9  # 3 of 4 offsets move the pixel
    clean = high_freq(noise_images)
    e = [high_freq(y) for y in all_severities(noise_images, "glass_blur")]
    # Blur std 0.05 < 0.25 < 0.4 (one pass), 0.25 < 0.4 (two passes).
    assert e[0] > e[1] > e[2] and e[3] > e[4] and max(e[1:]) < clean


# --- weather -----------------------------------------------------------------------------


def test_brightness_raises_value_keeping_hue_and_saturation(digits):
    means = [float(y.mean()) for y in all_severities(digits, "brightness")]
    assert strictly_increasing(means)
    np.testing.assert_allclose(C.brightness(digits, 2, 0), np.minimum(digits + 0.1, 1.0), atol=1e-6)
    rgb = np.random.default_rng(1).random((2, 4, 4, 3)).astype(np.float32)
    out = C.brightness(rgb, 4, 0)
    for a, b in zip(rgb.reshape(-1, 3), out.reshape(-1, 3)):
        h0, s0, v0 = colorsys.rgb_to_hsv(*a)
        h1, s1, v1 = colorsys.rgb_to_hsv(*b)
        np.testing.assert_allclose([h1, s1, v1], [h0, s0, min(v0 + 0.2, 1.0)], atol=1e-5)


def test_fog_brightens_and_hides_the_image(digits):
    ys = all_severities(digits, "fog")
    assert strictly_increasing([float(digits.mean())] + [float(y.mean()) for y in ys])
    assert strictly_increasing([-corr(y, digits) for y in ys])


def test_snow_only_adds_light(digits):
    ys = all_severities(digits, "snow")
    means = [float(y.mean()) for y in ys]
    assert all(np.all(y >= digits - 1e-6) for y in ys)
    assert float(digits.mean()) < means[0] < means[4]
    assert all(b > a - 0.01 for a, b in zip(means, means[1:]))  # parameters not monotone


def test_frost_blends_a_fixed_texture(digits):
    ys = all_severities(digits, "frost")
    assert all(float(y.mean()) > float(digits.mean()) for y in ys)
    c = [corr(y, digits) for y in ys]
    assert all(b < a + 0.005 for a, b in zip(c, c[1:])) and c[4] < c[0] - 0.02
    # On black images the output is weight * texture, the same texture at every severity.
    black = np.zeros_like(digits[:8])
    textures = [C.frost(black, s, 0) / C.PARAMS["frost"][s - 1][1] for s in SEVERITIES]
    for t in textures[1:]:
        np.testing.assert_allclose(t, textures[0], atol=1e-5)
    assert 0.25 < float(textures[0].mean()) < 0.75 and float(textures[0].std()) > 0.02


def test_plasma_fractal():
    maps = C.plasma_fractal(3, 20, 2.0, np.random.default_rng(0))
    assert maps.shape == (3, 32, 32) and maps.min() == 0.0 and maps.max() == 1.0
    np.testing.assert_array_equal(maps, C.plasma_fractal(3, 20, 2.0, np.random.default_rng(0)))
    # Slower jitter decay keeps more fine detail.
    rough = C.plasma_fractal(8, 32, 1.5, np.random.default_rng(1))[..., None]
    smooth = C.plasma_fractal(8, 32, 3.0, np.random.default_rng(1))[..., None]
    assert high_freq(rough) > high_freq(smooth)


# --- digital -----------------------------------------------------------------------------


def test_contrast_scales_std_and_keeps_mean(digits):
    ys = all_severities(digits, "contrast")
    stds = np.array([y.std(axis=(1, 2, 3)) for y in ys])
    np.testing.assert_allclose(
        stds / digits.std(axis=(1, 2, 3)), np.broadcast_to(np.array(C.PARAMS["contrast"])[:, None],
        stds.shape), rtol=1e-4)  # fmt: skip
    np.testing.assert_allclose(ys[4].mean(axis=(1, 2)), digits.mean(axis=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("size", [16, 28])
def test_pixelate_is_constant_over_blocks(size, noise_images):
    x = np.random.default_rng(2).random((4, size, size, 3)).astype(np.float32)
    for s, c in zip(SEVERITIES, C.PARAMS["pixelate"]):
        y = C.pixelate(x, s, 0)
        m = int(size * c)
        for axis in (1, 2):
            changes = np.any(np.diff(y, axis=axis) != 0, axis=tuple({0, 1, 2, 3} - {axis}))
            runs = np.diff(np.flatnonzero(np.concatenate([[True], changes, [True]])))
            assert len(runs) == m, (size, s, runs)
            assert set(runs) <= {size // m, -(-size // m)}
        np.testing.assert_allclose(y.mean(), x.mean(), atol=0.02)


def test_jpeg_error_grows_as_quality_falls(digits):
    errors = [float(np.abs(y - digits).mean()) for y in all_severities(digits, "jpeg_compression")]
    assert 0 < errors[0] and strictly_increasing(errors)
    assert np.all(np.abs(C.jpeg_compression(digits, 1, 0) * 255 % 1) < 1e-3)  # 8-bit


def test_elastic_transform_moves_pixels_but_keeps_mass(digits):
    # The random affine part scales each image's area by a few percent either way.
    mass = digits.sum(axis=(1, 2, 3))
    for y in all_severities(digits, "elastic_transform"):
        np.testing.assert_allclose(y.sum(axis=(1, 2, 3)) / mass, 1.0, atol=0.25)
        np.testing.assert_allclose(y.sum() / mass.sum(), 1.0, atol=0.03)
        assert np.abs(y - digits).mean() > 0.02


# --- tasks -------------------------------------------------------------------------------


def test_digits_c_task():
    from tljax.data.tasks import get_task

    clean = get_task("digits", data_seed=1, image_size=16)
    task = get_task("digits-c/gaussian_noise/4", data_seed=1, image_size=16)
    assert task.num_classes == 10 and task.name == "digits-c/gaussian_noise/4"
    np.testing.assert_array_equal(task.source.train.x, clean.source.train.x)
    np.testing.assert_array_equal(task.source.test.y, clean.source.test.y)
    target = task.target
    assert target.train is target.test and target.test.x.shape == clean.source.test.x.shape
    np.testing.assert_array_equal(target.test.y, clean.source.test.y)
    np.testing.assert_array_equal(
        target.test.x, C.gaussian_noise(clean.source.test.x, 4, [1, 17, 0])
    )
    assert not target.test.x.flags.writeable
    assert get_task("digits-c/gaussian_noise/4", data_seed=1, image_size=16) is task
    other = get_task("digits-c/pixelate/2", data_seed=1, image_size=16, test_fraction=0.5)
    assert len(other.target.test) > len(target.test)


def test_task_name_errors(tmp_path):
    from tljax.data.tasks import get_task

    with pytest.raises(ValueError, match="expected 'digits-c/<corruption>/<severity>'"):
        get_task("digits-c/speckle_noise/2")
    with pytest.raises(ValueError, match="severity 1..5"):
        get_task("digits-c/fog/6")
    with pytest.raises(TypeError, match="valid options"):
        get_task("digits-c/fog/1", max_train=10)
    with pytest.raises(FileNotFoundError):
        get_task("fashion-c/fog/1", directory=tmp_path)
    assert T.parse_task_name("digits->digits_m") is None


def test_fashion_c_task():
    from tljax.data.idx import load_fashion_mnist
    from tljax.data.tasks import get_task

    try:
        load_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    task = get_task("fashion-c/contrast/5", max_train=50, max_test=20)
    assert task.source.train.x.shape == (50, 28, 28, 1)
    assert task.target.test.x.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(task.target.test.y, task.source.test.y)


def test_tfds_families_say_what_to_download(tmp_path):
    from tljax.data.benchmarks import DatasetNotFoundError
    from tljax.data.tasks import get_task

    with pytest.raises(DatasetNotFoundError, match="frosted_glass_blur_3") as info:
        get_task("cifar10-c/glass_blur/3", image_size=32, data_dir=tmp_path)
    assert "CIFAR-10-C.tar" in str(info.value) and str(tmp_path) in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="ILSVRC2012_img_val.tar"):
        get_task("imagenet-c/elastic_transform/2", image_size=32, data_dir=tmp_path)


def test_tfds_config_names_exist_in_tfds():
    from tensorflow_datasets.image_classification import cifar10_corrupted

    names = {T.tfds_config("cifar10-c", n, 1).split("/")[1][:-2] for n in C.NAMES}
    assert names == set(cifar10_corrupted.BENCHMARK_CORRUPTIONS)
    assert T.tfds_config("imagenet-c", "glass_blur", 5) == "imagenet2012_corrupted/glass_blur_5"


def test_tfds_families_read_prepared_data():
    import tensorflow_datasets as tfds

    try:
        with tfds.testing.mock_data(num_examples=5):
            task = T.corrupted_task("cifar10-c/fog/2", image_size=16, max_examples=4)
            assert task.source.train.x.shape == (4, 16, 16, 3) == task.target.test.x.shape
            assert task.target.test.x.dtype == np.float32 and task.num_classes == 10
            assert task.target.train is task.target.test
            task = T.corrupted_task("imagenet-c/snow/1", image_size=8)  # variable-size photos
            assert task.target.test.x.shape == (5, 8, 8, 3) and task.num_classes == 1000
    finally:
        T._build_task.cache_clear()  # no mock data left in the cache
