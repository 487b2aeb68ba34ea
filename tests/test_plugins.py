"""Plug-ins: ``register`` and installed packages' entry points (methods, tasks, backbones),
found lazily, with one error shape for unknown names; a plug-in run through the CLI.

The "installed package" is a ``tljax_demo_plugin-0.1.dist-info`` folder (``METADATA`` and
``entry_points.txt``) next to its module in a temporary directory on ``sys.path``: that is
all ``importlib.metadata`` needs to find it, as for a ``pip install``-ed package.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from tljax import methods, models, registry
from tljax.data import tasks

PLUGIN = "tljax_demo_plugin"
METHOD, TASK, BACKBONE = "demo_penalty", "demo/moons", "demo_mlp"

PLUGIN_SOURCE = '''
"""A tiny tljax plug-in: a method, a task and a backbone."""

import jax.numpy as jnp

from tljax.data.toys import two_moons_task
from tljax.methods.base import Method, no_params
from tljax.models.mlp import mlp


def make(*, scale: float = 1.0) -> Method:
    """Penalises the squared target features (a stand-in for an adaptation loss)."""
    if scale < 0:
        raise ValueError(f"demo_penalty: scale must be >= 0, got {scale!r}.")

    def loss(module, *, src, tgt, rng, step):
        del module, src, rng, step
        value = scale * jnp.mean(jnp.square(tgt.features))
        return value, {"demo_feature_sq": value}

    return Method(name="demo_penalty", init=no_params, loss=loss)


def task(name, *, data_seed, n_train: int = 200, n_test: int = 100):
    return two_moons_task(seed=data_seed, n_train=n_train, n_test=n_test)


def backbone(input_shape, *, rngs, width: int = 8):
    return mlp(input_shape, rngs=rngs, hidden=(width,))
'''

ENTRY_POINTS = f"""
[tljax.methods]
{METHOD} = {PLUGIN}:make

[tljax.tasks]
{TASK} = {PLUGIN}:task

[tljax.backbones]
{BACKBONE} = {PLUGIN}:backbone
"""

CONFIG = f'''
from tljax.config import base_config


def get_config():
    c = base_config()
    c.data.task = "{TASK}"
    c.data.task_kwargs.n_train = 64
    c.data.batch_size = 16
    c.model.backbone = "{BACKBONE}"
    c.model.backbone_kwargs.width = 8
    c.method.name = "{METHOD}"
    c.method.hparams.scale = 0.1
    c.train.steps = 4
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 4
    c.train.progress = False
    c.train.tensorboard = False
    return c
'''


def write_plugin(folder, entry_points=ENTRY_POINTS, source=PLUGIN_SOURCE):
    """The plug-in module and its dist-info (what ``pip install`` would leave)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PLUGIN}.py").write_text(textwrap.dedent(source))
    info = folder / f"{PLUGIN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tljax-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return folder


@pytest.fixture
def clean_registries(monkeypatch):
    """Registrations (and loaded plug-ins) of a test do not outlive it."""
    monkeypatch.setattr(methods._REGISTRY, "_registered", {})
    monkeypatch.setattr(models._REGISTRY, "_registered", {})
    monkeypatch.setattr(tasks, "_REGISTERED", dict(tasks._REGISTERED))
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)


@pytest.fixture
def plugin(tmp_path, monkeypatch, clean_registries):
    monkeypatch.syspath_prepend(str(write_plugin(tmp_path)))
    return tmp_path


def test_installed_plugins_are_listed_without_being_imported(plugin):
    assert METHOD in methods.names()
    assert BACKBONE in models.backbone_names()
    assert TASK in tasks.task_names()
    assert PLUGIN not in sys.modules  # listing reads the entry points only
    # Built-ins are still found by module name / their table.
    assert {"dann", "source_only"} <= set(methods.names())
    assert {"lenet", "mlp"} <= set(models.backbone_names())


def test_installed_plugins_load_on_first_use(plugin):
    from flax import nnx

    m = methods.get(METHOD, scale=0.5)
    assert m.name == METHOD and PLUGIN in sys.modules
    with pytest.raises(ValueError, match="scale must be"):
        methods.get(METHOD, scale=-1.0)
    with pytest.raises(ValueError, match="Bad hyperparameters for method 'demo_penalty'"):
        methods.get(METHOD, nope=1)
    net = models.build_classifier(BACKBONE, (2,), 2, rngs=nnx.Rngs(0), width=4)
    assert net.backbone.feature_dim == 4
    task = tasks.get_task(TASK, data_seed=0, n_train=32)
    assert len(task.source.train) == 32 and task.num_classes == 2
    with pytest.raises(TypeError, match=r"valid options: \['n_train', 'n_test'\]"):
        tasks.get_task(TASK, noise=0.1)


def test_no_plugins_no_names(clean_registries):
    # Without the dist-info on sys.path, nothing of the plug-in is known.
    assert METHOD not in methods.names() and BACKBONE not in models.backbone_names()
    assert TASK not in tasks.task_names()


@pytest.mark.parametrize(
    "what, lookup, bad, closest",
    [
        ("method", methods.get, "demo_penalti", METHOD),
        ("backbone", models.get_backbone_factory, "demo_mlpp", BACKBONE),
        ("task", tasks.get_task, "demo/moonz", TASK),
    ],
)
def test_unknown_names_have_one_error_shape(plugin, what, lookup, bad, closest):
    with pytest.raises(ValueError) as err:
        lookup(bad)
    message = str(err.value)
    assert message.startswith(
        f"Unknown {what} {bad!r}. Did you mean {closest!r}? Valid {what}s: ["
    ), message
    assert repr(closest) in message.split("Valid")[1]  # plug-ins are among the valid names


def test_unknown_name_error_helper():
    e = registry.unknown_name_error("metric", "accuracyy", ["accuracy", "loss"], where=" (x.y)")
    assert str(e) == (
        "Unknown metric 'accuracyy' (x.y). Did you mean 'accuracy'? "
        "Valid metrics: ['accuracy', 'loss']."
    )
    assert str(registry.unknown_name_error("method", "zzz", ["dann"])) == (
        "Unknown method 'zzz'. Valid methods: ['dann']."
    )


def test_register_is_the_way_in_from_code(clean_registries):
    from tljax.methods import source_only

    methods.register("my_erm", source_only.make)
    assert "my_erm" in methods.names() and methods.get("my_erm").name == "source_only"
    methods.register("my_erm_lazy", "tljax.methods.source_only:make")  # imported on use
    assert methods.get_factory("my_erm_lazy") is source_only.make
    methods.register("my_erm_module", source_only)  # a module defining make
    assert methods.get_factory("my_erm_module") is source_only.make
    models.register_backbone("my_mlp", "tljax.models.mlp:mlp")
    assert "my_mlp" in models.backbone_names()
    from tljax import data

    data.register_task("my/moons", "tljax.data.toys:two_moons_task", ())
    assert "my/moons" in data.task_names()
    for register, name, what in [
        (methods.register, "dann", "method"),
        (models.register_backbone, "lenet", "backbone"),
    ]:
        with pytest.raises(ValueError, match=f"The {what} '{name}' is built in"):
            register(name, lambda: None)


def test_a_registered_name_wins_over_an_entry_point(plugin):
    from tljax.methods import source_only

    methods.register(METHOD, source_only.make)
    assert methods.get(METHOD).name == "source_only"
    assert PLUGIN not in sys.modules


def test_a_broken_plugin_names_itself(tmp_path, monkeypatch, clean_registries):
    folder = write_plugin(tmp_path, source="raise RuntimeError('plug-in bug')\n")
    monkeypatch.syspath_prepend(str(folder))
    assert METHOD in methods.names()  # listing does not import it
    with pytest.raises(ImportError, match=r"Cannot load the method 'demo_penalty'.*plug-in bug"):
        methods.get(METHOD)


def test_config_validation_sees_plugin_hparams(plugin):
    from tljax import config as config_lib

    assert config_lib.method_hparam_defaults(METHOD) == {"scale": 1.0}


@pytest.mark.slow
def test_plugin_runs_through_the_cli(tmp_path):
    """A method, a task and a backbone of an installed plug-in, named in a config file
    outside the checkout, trained by ``python -m experiments.run``."""
    folder = write_plugin(tmp_path / "site")
    config = tmp_path / "my_config.py"
    config.write_text(CONFIG)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(folder), env.get("PYTHONPATH")] if p)
    out = subprocess.run(
        [sys.executable, "-m", "experiments.run", f"--config={config}"]
        + [f"--workdir={tmp_path / 'run'}", "--config.method.hparams.scale=0.2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.load(open(tmp_path / "run" / "results.json"))
    assert res["method"] == METHOD and res["steps"] == 4
    assert 0.0 <= res["target_test_acc"] <= 1.0
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert any("demo_feature_sq" in str(r) for r in rows if r["kind"] == "train")
    # A misspelt plug-in name is a one-line input error naming the closest match.
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.run", f"--config={config}"]
        + [f"--workdir={tmp_path / 'bad'}", "--config.model.backbone=demo_mlq"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert re.search(r"Did you mean 'demo_mlp'", bad.stderr), bad.stderr[-3000:]
