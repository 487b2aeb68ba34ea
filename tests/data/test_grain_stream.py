"""uint8 photo storage, the device-side conversion, and streaming through grain: memory,
equality with the float path, the per-epoch order, exact resume, and an end-to-end run on
a fixture Office-31 pair (JPEG files in TFDS layout, prepared TF-free)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tljax.data import pixels, tasks
from tljax.data.benchmarks import load_domain, prepare_domain
from tljax.data.benchmarks.builders.office import OFFICE31_CLASSES
from tljax.data.benchmarks.loader import StreamedImages
from tljax.data.core import Domain, Split, Task, standardize
from tljax.data.grain_stream import EpochOrder, GrainPairStream
from tljax.data.stream import DomainPairStream

SIZE = 28
TASK = "office31/amazon->office31/webcam"


def write_photos(root: Path, classes, per_class: int, seed: int) -> None:
    """Random-texture JPEGs of varied sizes in ``root/<class>/`` (the Office-31 layout)."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            h, w = rng.integers(30, 50, 2)
            base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
            image = Image.fromarray(base).resize((int(w), int(h)), Image.Resampling.BILINEAR)
            image.save(folder / f"img_{k}_{j}.jpg", format="JPEG", quality=90)


@pytest.fixture(scope="module")
def office_dir(tmp_path_factory):
    """office31/amazon (3 classes x 5) and office31/webcam (3 x 4) prepared TF-free."""
    root = tmp_path_factory.mktemp("office")
    for i, (domain, per_class) in enumerate((("amazon", 5), ("webcam", 4))):
        write_photos(root / "manual" / domain / "images", OFFICE31_CLASSES[:3], per_class, i)
        prepare_domain(f"office31/{domain}", data_dir=root / "data", manual_dir=root / "manual")
    return str(root / "data")


def test_photo_tasks_are_uint8_in_memory_a_quarter_of_float32(office_dir):
    task = tasks.get_task(TASK, image_size=SIZE, data_dir=office_dir)
    x = task.source.train.x
    assert x.dtype == np.uint8 and x.shape == (15, SIZE, SIZE, 3)
    assert x.nbytes == 15 * SIZE * SIZE * 3  # 1 byte per value: 224² RGB = 150 KB
    floats = load_domain("office31/amazon", data_dir=office_dir, image_size=SIZE)
    assert floats.train.x.dtype == np.float32 and floats.train.x.nbytes == 4 * x.nbytes
    # The same decode: the float path is the uint8 one times float32(1/255).
    np.testing.assert_array_equal(floats.train.x, x.astype(np.float32) * np.float32(1 / 255))


def test_device_conversion_equals_host_standardisation(office_dir):
    task = tasks.get_task(TASK, image_size=SIZE, data_dir=office_dir)

    def as_float(s: Split) -> Split:
        return Split(s.x.astype(np.float32) * np.float32(1 / 255), s.y)

    domains = [
        Domain(d.name, as_float(d.train), as_float(d.train)) for d in (task.source, task.target)
    ]
    float_task = Task(task.name, *domains, task.num_classes)
    host, mean, std = standardize(float_task)  # today's float path, on the host
    mean8, std8 = pixels.channel_stats(task.source.train.x, chunk=4)
    np.testing.assert_allclose(mean8, mean, rtol=1e-6)
    np.testing.assert_allclose(std8, std, rtol=1e-6)
    for raw, expected in ((task.source.train.x, host.source.train.x),
                          (task.target.train.x, host.target.train.x)):  # fmt: skip
        device = jax.jit(pixels.to_float)(jnp.asarray(raw), mean8, std8)
        assert device.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(device), expected, atol=2e-6, rtol=0)
    # Without standardisation: pixels in [0, 1], exactly the float loader's.
    np.testing.assert_array_equal(
        np.asarray(pixels.to_float(jnp.asarray(task.source.train.x))), float_task.source.train.x
    )
    # Other dtypes pass through untouched (float features, token ids).
    ids = jnp.arange(6, dtype=jnp.int32)
    assert pixels.to_float(ids, mean8, std8) is ids


def test_wrapped_steps_see_float_inputs():
    seen = {}

    def step(state, batch, rng=None):
        seen.update(jax.tree.map(lambda a: a.dtype, batch))
        return state, {}

    batch = {
        "source": {"image": np.zeros((2, 4, 4, 3), np.uint8), "label": np.zeros(2, np.int32)},
        "target": {"image": np.full((2, 4, 4, 3), 255, np.uint8)},
    }
    pixels.with_to_float(step, np.zeros(3), np.ones(3))(None, batch)
    assert seen["source"] == {"image": jnp.float32, "label": jnp.int32}
    assert seen["target"] == {"image": jnp.float32}
    eval_step = pixels.eval_with_to_float(lambda p, r, x: x, np.full(3, 0.5), np.full(3, 0.5))
    np.testing.assert_allclose(eval_step(None, None, batch["target"]["image"]), 1.0)


def test_streamed_images_decode_like_the_in_memory_load(office_dir):
    memory = tasks.get_task(TASK, image_size=SIZE, data_dir=office_dir)
    streamed = tasks.get_task(TASK, image_size=SIZE, data_dir=office_dir, stream=True)
    x = streamed.source.train.x
    assert isinstance(x, StreamedImages)
    assert x.shape == memory.source.train.x.shape and x.dtype == np.uint8 and len(x) == 15
    np.testing.assert_array_equal(streamed.source.train.y, memory.source.train.y)
    np.testing.assert_array_equal(x[:], memory.source.train.x)
    np.testing.assert_array_equal(x[3], memory.source.train.x[3])
    np.testing.assert_array_equal(x[np.array([7, 1])], memory.source.train.x[[7, 1]])
    np.testing.assert_array_equal(x[-1], memory.source.train.x[-1])
    with pytest.raises(IndexError):
        x[15]
    mean, std = pixels.channel_stats(x, chunk=4)
    np.testing.assert_array_equal((mean, std), pixels.channel_stats(memory.source.train.x))


def test_epoch_order_covers_each_example_once_per_epoch_seeded():
    order = EpochOrder(10, 3, seed=5, domain_id=0)  # 3 batches of 3 per epoch, 1 dropped
    epochs = [[order[j] for j in range(e * 9, (e + 1) * 9)] for e in range(3)]
    for e in epochs:
        assert len(set(e)) == 9 and set(e) <= set(range(10))
        for k in range(3):
            assert e[3 * k : 3 * k + 3] == sorted(e[3 * k : 3 * k + 3])
    assert epochs[0] != epochs[1]  # a new permutation each epoch
    same = EpochOrder(10, 3, seed=5, domain_id=0)
    assert [same[j] for j in range(27)] == sum(epochs, [])
    other = EpochOrder(10, 3, seed=6, domain_id=0)
    assert [other[j] for j in range(9)] != epochs[0]


def _index_task(n_source=11, n_target=9) -> Task:
    """Images that hold their own index (every pixel), so batches name their examples."""

    def split(n, offset):
        x = np.repeat(np.arange(offset, offset + n, dtype=np.uint8), 2 * 2 * 3).reshape(n, 2, 2, 3)
        return Split(x, np.arange(n, dtype=np.int32) % 3)

    source = Domain("s", split(n_source, 0), split(n_source, 0))
    target = Domain("t", split(n_target, 100), split(n_target, 100))
    return Task("s->t", source, target, 3)


def _assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert a[name][k].dtype == b[name][k].dtype, (name, k)
            np.testing.assert_array_equal(a[name][k], b[name][k])


def test_grain_stream_gives_the_in_memory_streams_batches():
    task = _index_task()
    labeled = Split(np.zeros((4, 2, 2, 3), np.uint8) + 200, np.arange(4, dtype=np.int32))
    kw = dict(seed=3, target_labeled=labeled, target_labeled_batch_size=2)
    grain_stream = GrainPairStream(task, 4, num_threads=2, **kw)
    memory = DomainPairStream(task, 4, **kw)
    for _ in range(7):  # 2 batches per epoch of the source: crosses three epochs
        _assert_batches_equal(next(grain_stream), next(memory))
    assert grain_stream.get_state() == memory.get_state() == {"position": 7}
    # Each epoch of the source covers 8 distinct examples of 11.
    fresh = GrainPairStream(task, 4, seed=3, num_threads=2)
    seen = [next(fresh)["source"]["image"][:, 0, 0, 0] for _ in range(2)]
    assert len(set(np.concatenate(seen).tolist())) == 8


def test_grain_stream_resumes_exactly_mid_epoch():
    task = _index_task()
    run = GrainPairStream(task, 4, seed=1, num_threads=2)
    batches = [next(run) for _ in range(6)]
    resumed = GrainPairStream(task, 4, seed=1, num_threads=2)
    next(resumed)  # read ahead, then jump back: the position decides, not the history
    resumed.set_state({"position": 3})
    for expected in batches[3:]:
        _assert_batches_equal(next(resumed), expected)
    assert resumed.get_state() == {"position": 6}
    started = GrainPairStream(task, 4, seed=1, num_threads=1, position=5)
    _assert_batches_equal(next(started), batches[5])


def test_stream_option_is_checked(office_dir):
    with pytest.raises(ValueError, match="stream must be True or False"):
        tasks.get_task(TASK, image_size=SIZE, data_dir=office_dir, stream="yes")
    with pytest.raises(ValueError, match="dtype"):
        load_domain("office31/amazon", data_dir=office_dir, stream=True, dtype="float32")


@pytest.mark.slow
def test_streaming_run_equals_in_memory_run_and_resumes(office_dir, tmp_path):
    from tljax.config import base_config
    from tljax.loop import train_and_evaluate

    def config(stream, steps):
        c = base_config()
        c.data.task = TASK
        c.data.image_size = SIZE
        c.data.task_kwargs.data_dir = office_dir
        c.data.batch_size = 4
        c.data.standardize = True
        c.data.augment = "flip"
        c.data.stream = stream
        c.method.name = "dann"
        c.optim.schedule = "constant"  # so a run cut at step 2 then resumed is one run
        c.train.steps = steps
        c.train.log_every = 1
        c.train.eval_every = 100
        c.train.checkpoint_every = 2
        c.train.eval_batch_size = 8
        c.train.progress = False
        c.train.tensorboard = False
        return c

    memory = train_and_evaluate(config(False, 5), tmp_path / "memory")
    streamed = train_and_evaluate(config(True, 5), tmp_path / "stream")
    # Killed after step 2's checkpoint and resumed (streaming): the same run.
    train_and_evaluate(config(True, 2), tmp_path / "resumed")
    resumed = train_and_evaluate(config(True, 5), tmp_path / "resumed")
    for key in ("source_test_acc", "target_test_acc"):
        assert streamed[key] == memory[key] == resumed[key]

    def losses(workdir):
        from tljax.logs import read_metrics

        return [r["loss"] for r in read_metrics(str(workdir), "train")]

    assert losses(tmp_path / "stream") == losses(tmp_path / "memory")
    assert losses(tmp_path / "resumed") == losses(tmp_path / "memory")


@pytest.mark.slow
def test_grain_worker_processes_give_the_same_batches_and_resume():
    task = _index_task()
    memory = DomainPairStream(task, 4, seed=2)
    expected = [next(memory) for _ in range(5)]
    procs = GrainPairStream(task, 4, seed=2, num_threads=1, num_workers=2)
    for batch in expected[:3]:
        _assert_batches_equal(next(procs), batch)
    procs.set_state({"position": 1})  # back, into a fresh pool of workers
    for batch in expected[1:]:
        _assert_batches_equal(next(procs), batch)
