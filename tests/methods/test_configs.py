"""Every method's configs build, and custom-step methods run end to end through the CLI."""

import glob
import importlib
import json
import os
import subprocess
import sys

import pytest

from tljax import config as config_lib
from tljax import loop, methods

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METHOD_CONFIGS = sorted(
    os.path.basename(p)[:-3]
    for pattern in ("*_digits_m.py", "*_moons.py")
    for p in glob.glob(os.path.join(ROOT, "configs", pattern))
)


def test_every_method_has_both_configs():
    from tests.methods.helpers import ALL_METHODS

    for method in ALL_METHODS:
        assert f"{method}_digits_m" in METHOD_CONFIGS and f"{method}_moons" in METHOD_CONFIGS


@pytest.mark.parametrize("name", METHOD_CONFIGS)
def test_config_validates_and_builds(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    config_lib.validate(config)
    assert name.startswith(config.method.name + "_")
    methods.get(config.method.name, **config.method.hparams.to_dict())
    if name.endswith("_moons"):  # digits builds load the dataset; moons are instant
        parts = loop.build(config)
        assert parts["method"].name == config.method.name


@pytest.mark.parametrize("method", ["adda"])  # cond + eval_state through the loop
def test_custom_step_method_runs_through_the_cli(tmp_path, method):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.run",
         f"--config=tests/configs/tiny.py:{method},moons", f"--workdir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.load(open(tmp_path / "results.json"))
    assert res["steps"] == 40 and res["method"] == method
    assert 0.0 <= res["target_test_acc"] <= 1.0


def test_suite_covers_every_method_and_task():
    from configs import suite
    from tests.methods.helpers import ALL_METHODS, LABEL_SET_METHODS

    assert sorted(suite.METHODS) == sorted(m for m in ALL_METHODS if m not in LABEL_SET_METHODS)
    for method in suite.METHODS:
        for task in suite.TASKS:
            c = suite.get_config(f"{method},{task}")
            config_lib.validate(c)
            assert c.method.name == method
            if task != "moons":
                assert c.train.steps == suite.STEPS
                if "grl_max_iters" in c.method.hparams:
                    assert c.method.hparams.grl_max_iters == suite.STEPS
    assert suite.get_config("dann,fashion_m").data.task == "fashion->fashion_m"
    for bad in ("dann", "dann,svhn", "nope,moons"):
        with pytest.raises(ValueError, match="<method>,<task>"):
            suite.get_config(bad)
