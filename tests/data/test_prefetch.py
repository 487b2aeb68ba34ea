"""Prefetch to the device: same batches in the same order, the checkpointed state is that
of the consumed batches, and a run resumed with prefetch reproduces the uninterrupted one."""

import gc
import json
import os
import shutil
import threading
import time

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from tests.configs import tiny
from tljax.data.core import Domain, Split, Task
from tljax.data.prefetch import Prefetcher
from tljax.data.stream import DomainPairStream
from tljax.loop import data_mesh, train_and_evaluate

RNG = np.random.default_rng(0)


def _task(n=50):
    def split():
        return Split(RNG.random((n, 4, 4, 1), dtype=np.float32), RNG.integers(0, 3, n))

    return Task("toy", Domain("a", split(), split()), Domain("b", split(), split()), 3)


TASK = _task()
SHARDING = NamedSharding(data_mesh(), PartitionSpec("data"))


def _feed(stream, depth):
    return Prefetcher(lambda: jax.device_put(next(stream), SHARDING), stream.get_state, depth)


def _host(batch):
    return jax.tree.map(np.asarray, batch)


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_prefetch_yields_the_stream_batches_in_order_and_consumed_state(depth):
    want = DomainPairStream(TASK, 8, seed=1)
    feed = _feed(DomainPairStream(TASK, 8, seed=1), depth)
    assert feed.get_state() == {"position": 0}
    for i in range(13):  # across epochs (6 batches each)
        got, ref = _host(next(feed)), next(want)
        jax.tree.map(np.testing.assert_array_equal, got, ref)
        assert feed.get_state() == {"position": i + 1}  # not the prefetched position
    if depth:
        time.sleep(0.2)  # the thread is ahead, the reported state is not
        assert feed.get_state() == {"position": 13}
    feed.close()


def test_resume_from_the_consumed_state_with_prefetch_is_exact():
    ref = _feed(DomainPairStream(TASK, 8, seed=2), 2)
    want = [_host(next(ref)) for _ in range(10)]
    ref.close()
    first = _feed(DomainPairStream(TASK, 8, seed=2), 2)
    got = [_host(next(first)) for _ in range(4)]
    saved = first.get_state()  # what the checkpoint stores
    first.close()
    stream = DomainPairStream(TASK, 8, seed=2)
    stream.set_state(saved)
    second = _feed(stream, 2)
    got += [_host(next(second)) for _ in range(6)]
    second.close()
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_errors_reach_the_consumer_and_threads_stop():
    def produce():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        next(Prefetcher(produce, lambda: None, 2))
    stream = DomainPairStream(TASK, 8, seed=0)
    feed = _feed(stream, 2)
    next(feed)
    feed.close()
    assert not any(t.name == "tljax-prefetch" and t.is_alive() for t in threading.enumerate())
    abandoned = _feed(DomainPairStream(TASK, 8, seed=0), 2)
    next(abandoned)
    del abandoned  # e.g. the loop raised: the thread must not live on
    gc.collect()
    deadline = time.time() + 5
    while any(t.name == "tljax-prefetch" and t.is_alive() for t in threading.enumerate()):
        assert time.time() < deadline, "prefetch thread outlived its prefetcher"
        time.sleep(0.05)
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(lambda: None, lambda: None, -1)


def _train_rows(workdir):
    rows = [json.loads(x) for x in open(workdir / "metrics.jsonl")]
    for r in rows:
        r.pop("steps_per_s", None)
    return rows


@pytest.mark.slow  # two short end-to-end runs (~20 s on 2 cores)
def test_run_resumed_with_prefetch_and_augmentation_matches_uninterrupted(tmp_path):
    def config(prefetch):
        c = tiny.get_config("dann,digits->digits_m")
        c.data.augment = "crop_flip"
        c.data.augment_kwargs.scale = (0.5, 1.0)
        c.data.prefetch = prefetch
        c.train.eval_every = 40
        return c

    ref = train_and_evaluate(config(2), tmp_path / "ref")
    # The run as if killed after its step-20 checkpoint, written while the prefetch
    # thread was ahead of the consumed batches.
    shutil.copytree(tmp_path / "ref", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "40")
    os.remove(tmp_path / "resumed" / "results.json")
    # Resume with another prefetch depth: it changes when batches are made, not which.
    res = train_and_evaluate(config(0), tmp_path / "resumed")
    assert res["trained_steps_this_run"] == 20
    assert res["target_test_acc"] == ref["target_test_acc"]
    assert _train_rows(tmp_path / "ref") == _train_rows(tmp_path / "resumed")
