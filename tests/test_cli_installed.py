"""The installed ``tljax`` command (``[project.scripts]``), run from a directory outside the
checkout: shipped configs by name (``--config=tljax:NAME``), a user's own config file,
``sweep`` and ``report`` through it, and its one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tljax import cli
from tljax.errors import UserFileNotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.train.steps=4",
    "--config.train.log_every=2",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=4",
    "--config.train.progress=False",
]


def tljax_command() -> list[str]:
    """The console script of this environment, else ``python -m tljax.cli`` (same code)."""
    script = os.path.join(os.path.dirname(sys.executable), "tljax")
    if os.path.isfile(script):
        return [script]
    found = shutil.which("tljax")
    return [found] if found else [sys.executable, "-m", "tljax.cli"]


def tljax(*args, cwd, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # The checkout must not be what makes experiments/configs importable.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != ROOT
    )
    return subprocess.run(
        [*tljax_command(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def outside(tmp_path):
    """A working directory outside the checkout."""
    assert not str(tmp_path).startswith(ROOT)
    return tmp_path


def test_shipped_configs_resolve_by_name():
    path = cli.config_path("dann_digits_m")
    assert path.endswith(os.path.join("configs", "dann_digits_m.py")) and os.path.isfile(path)
    assert cli.config_path("transfer/finetune") == cli.config_path("transfer.finetune")
    assert cli.resolve_config("tljax:dann_digits_m") == path
    assert cli.resolve_config("tljax:transfer/finetune:x=1").endswith("finetune.py:x=1")
    assert cli.resolve_config("my/own.py:a,b") == "my/own.py:a,b"
    names = cli.shipped_configs()
    assert {"dann_digits_m", "source_only_moons", "transfer/finetune"} <= set(names)
    assert "moons_common" not in names  # shared settings, not a config to run


def test_config_flags_are_rewritten_for_every_command():
    path = cli.config_path("dann_moons")
    argv = ["--config=tljax:dann_moons", "--config", "tljax:dann_moons", "--config.seed=1"]
    assert cli.resolve_config_args(argv) == [f"--config={path}", "--config", path, argv[-1]]
    out = cli.resolve_config_args(["--configs=tljax:dann_moons,x.py", "--workdir=w"])
    assert out == [f"--configs={path},x.py", "--workdir=w"]


def test_unknown_shipped_config_names_the_closest():
    with pytest.raises(UserFileNotFoundError, match="Did you mean 'tljax:dann_digits_m'"):
        cli.config_path("dann_digit_m")
    with pytest.raises(UserFileNotFoundError, match="Unknown shipped config"):
        cli.config_path("../pyproject")


def test_usage_and_errors_are_one_line(outside):
    out = tljax("--help", cwd=outside)
    assert out.returncode == 0 and all(c in out.stdout for c in ("run", "sweep", "report"))
    out = tljax("rn", cwd=outside)
    assert out.returncode == 2 and "Did you mean 'run'?" in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    out = tljax("run", "--config=tljax:dann_digit_m", f"--workdir={outside / 'w'}", cwd=outside)
    assert out.returncode == 2 and "Did you mean 'tljax:dann_digits_m'?" in out.stderr
    assert not (outside / "w").exists()
    out = tljax("configs", cwd=outside)
    assert out.returncode == 0 and "tljax:dann_digits_m" in out.stdout.split()


@pytest.mark.slow
def test_run_a_shipped_config_from_anywhere(outside):
    out = tljax(
        "run", "--config=tljax:dann_moons", f"--workdir={outside / 'run'}", *TINY, cwd=outside
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.load(open(outside / "run" / "results.json"))
    assert res["method"] == "dann" and res["steps"] == 4


@pytest.mark.slow
def test_run_a_users_own_config_file(outside):
    # A config anywhere on disk; it may build on the shipped ones (configs.*).
    (outside / "mine.py").write_text(
        "from configs import moons_common\n\n\n"
        "def get_config(arg='source_only'):\n"
        "    c = moons_common.get_config(arg)\n"
        "    c.data.batch_size = 16\n"
        "    return c\n"
    )
    out = tljax("run", "--config=mine.py:coral", "--workdir=run", *TINY, cwd=outside)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.load(open(outside / "run" / "results.json"))
    assert res["method"] == "coral" and res["steps"] == 4


@pytest.mark.slow
def test_sweep_and_report_through_the_command(outside):
    sets = [f"--set={a[len('--config.') :]}" for a in TINY]
    out = tljax(
        "sweep",
        "--configs=tljax:source_only_moons",
        "--seeds=0",
        "--workdir=sweep",
        *sets,
        cwd=outside,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (outside / "sweep" / "source_only_moons" / "seed_0" / "results.json").is_file()
    out = tljax("report", "--workdir=sweep", "--plots=false", "--features=false", cwd=outside)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (outside / "sweep" / "report").is_dir()


@pytest.mark.slow
def test_a_built_wheel_ships_the_command_and_the_configs(tmp_path):
    """A non-editable install (the wheel of a copy of the tracked files, installed into a
    folder) runs a shipped config with nothing of the checkout on the path."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    src = tmp_path / "src"
    for f in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, f)):
            os.makedirs(src / os.path.dirname(f), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), src / f)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist")]
        + [str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here (offline?): {built.stderr[-500:]}")
    (wheel,) = (tmp_path / "dist").glob("tljax-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
        + [str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(site))
    script = [sys.executable, str(site / "bin" / "tljax")]
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import configs as c, experiments as e, tljax as t\n"
            "print(t.__file__, e.__file__, c.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(f.startswith(str(site)) for f in where.stdout.split()), where.stdout
    out = subprocess.run(
        [*script, "run", "--config=tljax:source_only_moons", "--workdir=run", *TINY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.load(open(tmp_path / "run" / "results.json"))["steps"] == 4
