"""Checkpoint checksums: a damaged step is skipped with a warning naming it, the run
resumes from the newest step that verifies, and fails clearly when none does."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from tljax.checkpoint import (
    MANIFEST,
    Checkpointer,
    CheckpointError,
    load_trained,
    seal,
    verify,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tree(v):
    return {"params": {"w": jnp.full((64, 16), v, jnp.float32)}, "rest": {"b": jnp.full(3, v)}}


def save_steps(workdir, steps=(1, 2)):
    with Checkpointer(str(workdir), max_to_keep=5) as ckpt:
        for s in steps:
            ckpt.save(s, tree(float(s)), {"step": s})


def largest_file(step_dir):
    files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs if f != MANIFEST]
    return max(files, key=os.path.getsize)


def flip_byte(p):
    b = bytearray(open(p, "rb").read())
    b[len(b) // 2] ^= 0x01
    open(p, "wb").write(bytes(b))


def truncate(p):
    os.truncate(p, os.path.getsize(p) // 2)


def append_garbage(p):
    with open(p, "ab") as f:
        f.write(os.urandom(4096))


def overwrite_4k(p):
    with open(p, "r+b") as f:
        f.write(os.urandom(min(4096, os.path.getsize(p))))


def delete(p):
    os.remove(p)


def add_file(p):
    open(os.path.join(os.path.dirname(p), "stray"), "wb").write(b"x")


def drop_manifest(p):
    step_dir = p
    while not os.path.exists(os.path.join(step_dir, MANIFEST)):
        step_dir = os.path.dirname(step_dir)
    os.remove(os.path.join(step_dir, MANIFEST))


DAMAGE = [flip_byte, truncate, append_garbage, overwrite_4k, delete, add_file, drop_manifest]


def test_a_fresh_checkpoint_verifies(tmp_path):
    save_steps(tmp_path)
    for s in (1, 2):
        step_dir = tmp_path / "checkpoints" / str(s)
        assert verify(str(step_dir)) is None
        files = json.loads((step_dir / MANIFEST).read_text())["files"]
        assert any(f.startswith("state/") for f in files) and "meta/metadata" in files


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_damaged_newest_step_is_skipped_and_set_aside(tmp_path, caplog, damage):
    save_steps(tmp_path)
    step_dir = str(tmp_path / "checkpoints" / "2")
    damage(largest_file(step_dir))
    assert verify(step_dir) is not None
    with Checkpointer(str(tmp_path), max_to_keep=5) as ckpt:
        state, meta = ckpt.restore(tree(0.0))
        assert ckpt.restored_step == 1 and meta == {"step": 1}
        np.testing.assert_array_equal(state["params"]["w"], np.ones((64, 16)))
        assert "checkpoint step 2" in caplog.text and str(tmp_path / "checkpoints") in caplog.text
        assert ckpt.all_steps() == [1]
        ckpt.save(2, tree(5.0), {"step": 2})  # the run writes step 2 again
    assert os.path.isdir(tmp_path / "checkpoints.rejected" / "2")  # kept, not deleted
    with Checkpointer(str(tmp_path), max_to_keep=5) as ckpt:
        assert ckpt.restore(tree(0.0))[1] == {"step": 2}


def test_no_step_verifies_is_a_clear_error_and_nothing_moves(tmp_path):
    save_steps(tmp_path)
    flip_byte(largest_file(str(tmp_path / "checkpoints" / "2")))
    truncate(largest_file(str(tmp_path / "checkpoints" / "1")))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with Checkpointer(str(tmp_path)) as ckpt:
        with pytest.raises(CheckpointError, match=r"step 2: .*SHA-256.*; step 1: .*bytes"):
            ckpt.restore(tree(0.0))
        with pytest.raises(CheckpointError, match="step 2"):
            ckpt.restore(tree(0.0), step=2)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_seal_trusts_a_checkpoint_without_manifest(tmp_path):
    save_steps(tmp_path, steps=(1,))
    drop_manifest(str(tmp_path / "checkpoints" / "1"))
    with Checkpointer(str(tmp_path)) as ckpt, pytest.raises(CheckpointError, match="no tljax"):
        ckpt.restore(tree(0.0))
    assert seal(str(tmp_path)) == [1]
    with Checkpointer(str(tmp_path)) as ckpt:
        assert ckpt.restore(tree(0.0))[1] == {"step": 1}


def test_load_trained_skips_a_damaged_step(tmp_path):
    save_steps(tmp_path)
    flip_byte(largest_file(str(tmp_path / "checkpoints" / "2")))
    params, _ = load_trained(str(tmp_path))
    np.testing.assert_array_equal(params["w"], np.ones((64, 16)))


def test_cli_resumes_from_the_newest_checkpoint_that_verifies(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "experiments.run", "--config=tests/configs/tiny.py:dann,moons",
             f"--workdir={tmp_path}", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
        )  # fmt: skip

    assert cli().returncode == 0
    flip_byte(largest_file(str(tmp_path / "checkpoints" / "40")))
    out = cli("--config.train.steps=60")
    assert out.returncode == 0, out.stderr[-3000:]
    warned = [ln for ln in out.stderr.splitlines() if "checkpoint step 40" in ln]
    assert warned and "SHA-256" in warned[0], out.stderr[-3000:]
    res = json.load(open(tmp_path / "results.json"))
    assert res["steps"] == 60 and res["trained_steps_this_run"] == 40  # from step 20
    rows = [json.loads(ln) for ln in open(tmp_path / "metrics.jsonl")]
    logged = [(r["step"], r["kind"]) for r in rows]
    assert len(logged) == len(set(logged)) and max(s for s, _ in logged) == 60
