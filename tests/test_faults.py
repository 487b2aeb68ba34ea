"""Nothing lost, nothing hung: write failures end a run fast and clearly, the metrics log
survives crashes, and one run holds a workdir at a time.

Command-line runs go through a subprocess with a timeout, so a hang fails the test instead
of hanging CI. Faults are injected in the subprocess (``PRE`` code run before
``experiments.run``): root ignores permissions, and a full disk cannot be made on demand.
"""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import jax.numpy as jnp
import pytest

from tljax import workdir as workdir_lib
from tljax.checkpoint import Checkpointer, CheckpointWriteError
from tljax.logs import MetricLogger, read_metrics
from tljax.workdir import WorkdirBusy, WorkdirLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "--config=tests/configs/tiny.py:source_only,moons"
HANG = 90  # seconds: a tiny run takes ~5


def cli(workdir, *args, pre: str = "", timeout: float = HANG):
    """Runs ``experiments.run`` after ``pre`` (fault injection) in a fresh interpreter."""
    code = pre + textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["run.py", {TINY!r}, "--workdir={workdir}", *{list(args)!r}]
        runpy.run_module("experiments.run", run_name="__main__")
        """)
    start = time.time()
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the run hung (> {timeout} s); stderr tail: {str(e.stderr)[-2000:]}")
    out.wall = time.time() - start
    return out


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def assert_failed_clearly(out, *needles):
    """One ``error:`` line, the last; no traceback."""
    assert out.returncode not in (0, None), out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "tljax/" not in out.stderr and "experiments/" not in out.stderr, out.stderr[-3000:]
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and out.stderr.strip().endswith(lines[0]), out.stderr[-3000:]
    for n in needles:
        assert n in lines[0], lines[0]


def steps_logged(workdir):
    return [(r["step"], r["kind"]) for r in read_metrics(str(workdir))]


# Injected faults ------------------------------------------------------------------------

# Permission denied for anything created under <workdir>/checkpoints (root ignores chmod).
READ_ONLY = """
import errno, os
_d = os.path.join(os.path.abspath({workdir!r}), "checkpoints")
_mkdir, _open = os.mkdir, os.open
def _denied(p, creating):
    p = os.path.abspath(os.fsdecode(p))
    if creating and (p == _d or p.startswith(_d + os.sep)):
        raise PermissionError(errno.EACCES, "Permission denied (injected)", p)
def _mkdir_ro(p, *a, **k):
    _denied(p, p != _d)
    return _mkdir(p, *a, **k)
def _open_ro(p, flags, *a, **k):
    _denied(p, flags & (os.O_CREAT | getattr(os, "O_TMPFILE", 0)))
    return _open(p, flags, *a, **k)
os.mkdir, os.open = _mkdir_ro, _open_ro
"""

# The disk fills up while Orbax writes a checkpoint in the background (its Python writes).
DISK_FULL_CKPT = """
import errno
import etils.epath.gpath as _gp
for _name in ("write_text", "write_bytes"):
    def _full(self, *a, _orig=getattr(_gp.PosixGPath, _name), **k):
        if "checkpoints" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(self))
        return _orig(self, *a, **k)
    setattr(_gp.PosixGPath, _name, _full)
"""

# The disk is full when the metrics log is appended to.
DISK_FULL_LOG = """
import builtins, errno
_open = builtins.open
def _full(f, mode="r", *a, **k):
    if str(f).endswith("metrics.jsonl") and "a" in mode:
        raise OSError(errno.ENOSPC, "No space left on device (injected)", str(f))
    return _open(f, mode, *a, **k)
builtins.open = _full
"""


def test_checkpoints_path_is_a_file_fails_fast(tmp_path):
    (tmp_path / "checkpoints").write_text("not a directory")
    out = cli(tmp_path)
    assert_failed_clearly(out, "checkpoint", str(tmp_path / "checkpoints"))
    assert out.wall < 60
    assert not (tmp_path / "results.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_checkpoints_dir_fails_fast(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints").chmod(0o555)
    try:
        out = cli(tmp_path)
    finally:
        (tmp_path / "checkpoints").chmod(0o755)
    assert_failed_clearly(out, "checkpoint")
    assert not (tmp_path / "results.json").exists()


def test_unwritable_checkpoints_dir_fails_fast(tmp_path):
    # As read-only for non-root, injected so that it also holds as root.
    (tmp_path / "checkpoints").mkdir()
    out = cli(tmp_path, pre=READ_ONLY.format(workdir=str(tmp_path)))
    assert_failed_clearly(out, "checkpoint", "Permission denied")
    assert out.wall < 60
    assert not (tmp_path / "results.json").exists()


def test_disk_full_during_a_checkpoint_fails_the_run(tmp_path):
    out = cli(tmp_path, pre=DISK_FULL_CKPT)
    # Quiet too: no "Event loop is closed" from the writes still in flight (issue 14).
    assert_failed_clearly(out, "Cannot write checkpoint", "No space left")
    assert out.wall < 60
    assert not (tmp_path / "results.json").exists()  # not a finished run for a sweep


CLOSED_LOOP_PROBE = textwrap.dedent("""
    import asyncio, gc, sys, time
    import tensorstore as ts
    from tljax.checkpoint import Checkpointer

    Checkpointer(sys.argv[1]).close()  # installs the filter, as every run does

    # A TensorStore future awaited on a loop that closes before the future completes:
    # what a write still running in its own thread does after a failed save.
    promise, future = ts.Promise.new()
    loop = asyncio.new_event_loop()

    async def wait():
        return await future

    loop.create_task(wait())
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    promise.set_result(1)
    time.sleep(0.2)

    class Other:  # any other unraisable error is still reported
        def __del__(self):
            raise ValueError("other unraisable error")

    Other()
    gc.collect()
    print("done", flush=True)
""")


def test_a_write_finishing_after_its_loop_closed_is_not_reported_but_others_are(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", CLOSED_LOOP_PROBE, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert out.returncode == 0, out.stderr
    assert "done" in out.stdout
    assert "Event loop is closed" not in out.stderr
    assert "other unraisable error" in out.stderr  # the filter is narrow


def test_disk_full_on_the_metrics_log_fails_the_run(tmp_path):
    out = cli(tmp_path, pre=DISK_FULL_LOG)
    assert_failed_clearly(out, "metrics log", "No space left")
    assert out.wall < 60
    assert not (tmp_path / "results.json").exists()


def test_a_failed_checkpoint_write_stops_orbax_threads(tmp_path, monkeypatch):
    import etils.epath.gpath as gp

    orig = gp.PosixGPath.write_text

    def full(self, *a, **k):
        if "checkpoints" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(self))
        return orig(self, *a, **k)

    before = set(threading.enumerate())
    ckpt = Checkpointer(str(tmp_path))
    monkeypatch.setattr(gp.PosixGPath, "write_text", full)
    ckpt.save(1, {"a": jnp.ones(4)}, {})
    with pytest.raises(CheckpointWriteError, match=r"step 1 .*No space left"):
        ckpt.save(2, {"a": jnp.ones(4)}, {})
    ckpt.close()
    deadline = time.time() + 10
    while any(t.is_alive() and not t.daemon for t in set(threading.enumerate()) - before):
        assert time.time() < deadline, [t.name for t in set(threading.enumerate()) - before]
        time.sleep(0.05)


def test_checkpoint_error_in_close_is_raised_once_and_threads_stop(tmp_path, monkeypatch):
    import etils.epath.gpath as gp

    orig = gp.PosixGPath.write_text
    monkeypatch.setattr(
        gp.PosixGPath,
        "write_text",
        lambda self, *a, **k: (
            (_ for _ in ()).throw(OSError(errno.ENOSPC, "full", str(self)))
            if "checkpoints" in str(self)
            else orig(self, *a, **k)
        ),
    )
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(1, {"a": jnp.ones(4)}, {})
    with pytest.raises(CheckpointWriteError, match="step 1"):
        ckpt.close()
    ckpt.close()  # closed: a no-op


# Logs that survive ----------------------------------------------------------------------


def _records(n):
    return [{"step": i, "kind": "train", "loss": 1.0 / i} for i in range(1, n + 1)]


def _write_jsonl(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_torn_last_line_is_dropped_with_a_warning_naming_the_file(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    _write_jsonl(path, _records(5), tail='{"step": 6, "kind": "tra')
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2, 3, 4, 5]
    assert str(path) in caplog.text and "incomplete last line" in caplog.text
    MetricLogger(str(tmp_path), tensorboard=False).truncate_after(3)
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in _records(3))
    # A corrupt line in the middle is an error naming file and line, not silently dropped.
    _write_jsonl(path, _records(2), tail="garbage\n" + json.dumps(_records(3)[-1]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 3"):
        read_metrics(str(tmp_path))


def test_truncate_rewrites_atomically(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    _write_jsonl(path, _records(33))
    before = path.read_text()
    logger = MetricLogger(str(tmp_path), tensorboard=False)

    def crash(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    monkeypatch.setattr(os, "replace", crash)  # the crash comes before the new file is in place
    with pytest.raises(OSError, match="metrics log"):
        logger.truncate_after(11)
    monkeypatch.undo()
    assert path.read_text() == before  # nothing lost
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temp file left
    logger.truncate_after(11)
    assert [r["step"] for r in read_metrics(str(tmp_path))] == list(range(1, 12))


def test_a_failed_config_record_keeps_the_old_one(tmp_path, monkeypatch):
    """config.json is replaced atomically: a write that fails (disk full) before the new
    file is in place leaves the old record whole, and the run can still be resumed."""
    from tljax import config as config_lib

    c = config_lib.resolve(config_lib.base_config())
    workdir_lib.check_config(str(tmp_path), c)
    before = (tmp_path / "config.json").read_text()
    c.train.steps = c.train.steps + 100  # a resumable field: recorded again

    def crash(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        workdir_lib.check_config(str(tmp_path), c)
    monkeypatch.undo()
    assert (tmp_path / "config.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left
    workdir_lib.check_config(str(tmp_path), c)  # resumes, now records the new value
    assert json.loads((tmp_path / "config.json").read_text())["train.steps"] == c.train.steps


# In the child: the first write to a metrics.jsonl* file (the log or its temporary
# replacement) writes half its data, then the process is SIGKILLed.
KILL_MID_REWRITE = """
import builtins, io, os, signal
_open = io.open
def _name(f):
    return os.readlink(f"/proc/self/fd/{f}") if isinstance(f, int) else os.fspath(f)
class _Dying:
    def __init__(self, f): self._f = f
    def __getattr__(self, k): return getattr(self._f, k)
    def __enter__(self): return self
    def __exit__(self, *e): return self._f.__exit__(*e)
    def _die(self, data):
        self._f.write(data[: len(data) // 2]); self._f.flush(); os.fsync(self._f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    def write(self, data): self._die(data)
    def writelines(self, lines): self._die(type(lines[0])().join(lines) if lines else "")
def _killing_open(f, mode="r", *a, **k):
    fh = _open(f, mode, *a, **k)
    if ("w" in mode or "a" in mode) and "metrics.jsonl" in os.path.basename(_name(f)):
        return _Dying(fh)
    return fh
builtins.open = io.open = _killing_open
"""


def test_kill_during_the_rewrite_loses_and_repeats_nothing(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write_jsonl(path, _records(33))
    before = path.read_text()
    code = KILL_MID_REWRITE + textwrap.dedent(f"""
        from tljax.logs import MetricLogger
        MetricLogger({str(tmp_path)!r}, tensorboard=False).truncate_after(11)
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]  # killed mid-rewrite
    assert path.read_text() == before  # the old file, whole
    MetricLogger(str(tmp_path), tensorboard=False).truncate_after(11)  # the resume, again
    assert [r["step"] for r in read_metrics(str(tmp_path))] == list(range(1, 12))


# Kills the run right after it logs the train line of step 20, before its first checkpoint
# (at 30).
KILL_AT_STEP_20 = """
import os, signal
from tljax import logs
_write = logs.MetricLogger.write
def _write_then_die(self, step, kind, metrics):
    _write(self, step, kind, metrics)
    if step == 20:
        os.kill(os.getpid(), signal.SIGKILL)
logs.MetricLogger.write = _write_then_die
"""


def test_kill_before_the_first_checkpoint_repeats_no_log_lines(tmp_path):
    args = ["--config.train.checkpoint_every=30", "--config.train.eval_every=20"]
    out = cli(tmp_path, *args, pre=KILL_AT_STEP_20)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert not any(p.isdigit() for p in os.listdir(tmp_path / "checkpoints"))
    assert steps_logged(tmp_path) == [(10, "train"), (20, "train")]
    out = cli(tmp_path, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    logged = steps_logged(tmp_path)
    assert len(logged) == len(set(logged)), logged  # no step logged twice
    assert logged == [(10, "train"), (20, "train"), (20, "eval"), (30, "train"), (40, "train"),
                      (40, "eval")]  # fmt: skip


# One run per workdir ----------------------------------------------------------------------


def test_second_run_on_a_workdir_is_refused_naming_the_holder(tmp_path):
    with WorkdirLock(str(tmp_path)):
        out = cli(tmp_path)
    assert_failed_clearly(out, "in use by another run", f"pid {os.getpid()}", socket.gethostname())
    assert out.returncode == 2
    assert sorted(os.listdir(tmp_path)) == ["run.lock"]  # wrote nothing
    # Released: the same command now runs.
    out = cli(tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]


def test_lock_in_process_names_holder_and_is_released(tmp_path):
    lock = WorkdirLock(str(tmp_path)).acquire()
    info = json.loads((tmp_path / "run.lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert workdir_lib.holder(str(tmp_path))["pid"] == os.getpid()
    with pytest.raises(WorkdirBusy, match=rf"pid {os.getpid()} on host"):
        WorkdirLock(str(tmp_path)).acquire()
    lock.release()
    assert workdir_lib.holder(str(tmp_path)) is None
    with WorkdirLock(str(tmp_path)):
        pass


def test_lock_of_a_killed_run_is_free(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from tljax.workdir import WorkdirLock
        WorkdirLock({str(tmp_path)!r}).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    dead = json.loads((tmp_path / "run.lock").read_text())["pid"]
    assert dead != os.getpid()
    assert workdir_lib.holder(str(tmp_path)) is None
    with WorkdirLock(str(tmp_path)):  # taken over: the kernel released the dead one's flock
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()


def test_lock_without_flock_takes_over_a_dead_pid_but_not_a_live_one(tmp_path, monkeypatch):
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is dead now
    lock_file = tmp_path / "run.lock"
    lock_file.write_text(json.dumps({"pid": child.pid, "host": socket.gethostname()}))
    with WorkdirLock(str(tmp_path)):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(WorkdirBusy, match=f"pid {sleeper.pid}"):
            WorkdirLock(str(tmp_path)).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sweep_skips_a_cell_running_elsewhere(tmp_path):
    busy = tmp_path / "tiny_source_only_moons" / "seed_0"
    busy.mkdir(parents=True)
    with WorkdirLock(str(busy)):
        try:
            out = subprocess.run(
                [sys.executable, "-m", "experiments.sweep", f"--config={TINY[9:]}",
                 "--seeds=0,1", f"--workdir={tmp_path}", "--set=train.steps=10",
                 "--set=train.eval_every=10", "--set=train.checkpoint_every=10"],
                cwd=ROOT, capture_output=True, text=True, timeout=HANG,
                env=dict(os.environ, JAX_PLATFORMS="cpu"),
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail("the sweep hung")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    skipped = [ln for ln in out.stderr.splitlines() if "running elsewhere" in ln]
    assert len(skipped) == 1 and str(busy) in skipped[0] and f"pid {os.getpid()}" in skipped[0]
    assert not (busy / "results.json").exists() and not (busy / "metrics.jsonl").exists()
    assert (tmp_path / "tiny_source_only_moons" / "seed_1" / "results.json").exists()
