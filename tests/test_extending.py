"""docs/extending.md's examples run as written: each ``# example:`` block as a script, and
the ``# file:`` blocks as a plug-in package installed with pip and run through the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "extending.md")
_BLOCK = re.compile(r"```(python|toml)\n(.*?)```", re.DOTALL)


def _blocks(tag: str) -> dict[str, str]:
    """``{name: code}`` of the doc's blocks whose first line is ``# <tag>: <name>``."""
    out = {}
    for _, code in _BLOCK.findall(open(DOC).read()):
        first = code.splitlines()[0]
        m = re.fullmatch(rf"# {tag}: (\S+)", first.strip())
        if m:
            out[m.group(1)] = code
    return out


def _tljax_run() -> list[str]:
    """The installed ``tljax run`` (pip puts it beside this Python), else its module form."""
    tljax = os.path.join(os.path.dirname(sys.executable), "tljax")
    if os.access(tljax, os.X_OK):
        return [tljax, "run"]
    return [sys.executable, "-m", "experiments.run"]


def _env(*paths) -> dict:
    extra = [ROOT, *paths, os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(p for p in extra if p))


def test_the_doc_has_its_examples():
    assert set(_blocks("example")) == {
        "mean_mmd.py", "sharpen.py", "my_task.py", "my_backbone.py"
    }  # fmt: skip
    assert set(_blocks("file")) == {
        "tljax_example_plugin/pyproject.toml",
        "tljax_example_plugin/tljax_example_plugin/__init__.py",
        "plugin_config.py",
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_blocks("example")))
def test_example_runs_as_written(name, tmp_path):
    (tmp_path / name).write_text(_blocks("example")[name])
    proc = subprocess.run(
        [sys.executable, name],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = re.search(r"target test accuracy ([0-9.]+)", proc.stdout)
    assert acc and 0.0 <= float(acc.group(1)) <= 1.0, proc.stdout


@pytest.mark.slow
def test_plugin_package_installs_and_runs_through_the_cli(tmp_path):
    for path, code in _blocks("file").items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    site, dist = tmp_path / "site", tmp_path / "dist"
    # pip builds the package's wheel (fetching its build backend), then installs it.
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(dist),
            str(tmp_path / "tljax_example_plugin"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    if pip.returncode:
        pytest.skip(f"cannot build the plug-in's wheel here (offline?): {pip.stderr[-300:]}")
    (wheel,) = dist.glob("tljax_example_plugin-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(site.glob("tljax_example_plugin-*.dist-info"))
    run = subprocess.run(
        [*_tljax_run(), "--config=plugin_config.py", "--workdir=runs/plugin"],
        cwd=tmp_path,
        env=_env(str(site)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "runs" / "plugin" / "results.json").read_text())
    config = json.loads((tmp_path / "runs" / "plugin" / "config.json").read_text())
    assert config["method.name"] == "mean_mmd" and config["model.backbone"] == "tiny_mlp"
    assert 0.0 <= results["target_test_acc"] <= 1.0
