"""The standard-benchmark configs (digits, Office-31, Office-Home, VisDA-2017, DomainNet):
they validate, build their method and network shapes, carry TLlib's protocol values, quote
the published numbers, and fail clearly without weights or data. No dataset is loaded."""

from __future__ import annotations

import importlib

import pytest
from flax import nnx

from configs import benchmark_common
from tljax import config as config_lib
from tljax import loop, methods, references
from tljax.data import benchmark_tasks
from tljax.data.benchmarks import DatasetNotFoundError
from tljax.models import build_classifier

DIGITS = [
    ("dann_digits", "source=svhn,target=mnist"),
    ("dann_digits", "source=mnist,target=usps"),
    ("dann_digits", "source=usps,target=mnist"),
    ("source_only_digits", "source=svhn,target=mnist"),
    ("source_only_digits", "source=mnist,target=usps"),
    ("source_only_digits", "source=usps,target=mnist"),
]
PHOTOS = [
    ("dann_office31", "source=amazon,target=webcam", "resnet50"),
    ("dann_office31", "source=webcam,target=dslr", "resnet50"),
    ("dann_office_home", "source=art,target=clipart", "resnet50"),
    ("dann_visda", "", "resnet101"),
    ("dann_domainnet", "source=real,target=sketch", "resnet101"),
]


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """Stand-in weight files named by the environment variables (never read here)."""
    for backbone, env in benchmark_common.WEIGHTS_ENV.items():
        path = tmp_path / f"{backbone}.pth"
        path.write_bytes(b"")
        monkeypatch.setenv(env, str(path))
    return tmp_path


def _get(name, arg):
    module = importlib.import_module(f"configs.{name}")
    return (module.get_config(arg) if arg else module.get_config()), module.__doc__


def _check_common(c, method):
    config_lib.validate(c)
    m = methods.get(c.method.name, **c.method.hparams.to_dict())
    assert m.name == method == c.method.name
    assert (c.optim.optimizer, c.optim.schedule) == ("sgd", "inverse_decay")
    assert (c.optim.momentum, c.optim.nesterov, c.optim.power) == (0.9, True, 0.75)
    assert c.data.standardize
    assert benchmark_tasks.parse(c.data.task) is not None  # resolves to a benchmark pair
    if method == "dann":
        assert (c.optim.weight_decay, c.optim.gamma) == (1e-3, 1e-3)
        assert c.method.hparams.hidden == (1024, 1024) and c.method.hparams.batch_norm
        assert (c.method.hparams.grl_alpha, c.method.hparams.grl_max_iters) == (1.0, 1000.0)
        assert c.method.weight == 1.0
    else:
        assert (c.optim.weight_decay, c.optim.gamma) == (5e-4, 3e-4)
        assert c.model.bottleneck_dim == 0


def _check_quotes_published_numbers(doc, task, method):
    refs = references.load().lookup(task, method)
    for ref in refs:
        assert f"{ref.value:g}" in doc, (task, method, ref)
    return refs


def _shapes(c, channels):
    size = c.data.image_size
    model = nnx.eval_shape(
        lambda: build_classifier(
            c.model.backbone,
            (size, size, channels),
            10,
            rngs=nnx.Rngs(0),
            bottleneck_dim=c.model.bottleneck_dim or None,
            **c.model.backbone_kwargs.to_dict(),
        )
    )
    return model


@pytest.mark.parametrize("name, arg", DIGITS)
def test_digits_configs(name, arg):
    c, doc = _get(name, arg)
    method = "dann" if name.startswith("dann") else "source_only"
    _check_common(c, method)
    task = arg.replace("source=", "").replace(",target=", "->")
    assert c.data.task == task
    assert c.data.batch_size == 128 and c.train.steps == 50_000
    assert c.train.eval_every == 2500 and c.optim.freeze == ((r".*", 1.0),)  # from scratch
    assert c.model.pretrained == ""
    lr = {("dann", "svhn->mnist"): 0.03, ("dann", "mnist->usps"): 0.01,
          ("dann", "usps->mnist"): 0.1, ("source_only", "svhn->mnist"): 0.1,
          ("source_only", "mnist->usps"): 0.01, ("source_only", "usps->mnist"): 0.1}  # fmt: skip
    assert c.optim.lr == lr[(method, task)]
    if task == "svhn->mnist":
        assert (c.model.backbone, c.data.image_size) == ("dtn", 32)
        model = _shapes(c, 3)
        assert model.backbone.feature_dim == 512
    else:
        assert (c.model.backbone, c.data.image_size) == ("lenet", 28)
        assert c.model.backbone_kwargs.channels == (20, 50)
        assert (c.model.backbone_kwargs.fc_dim, c.model.backbone_kwargs.dropout) == (500, 0.5)
        model = _shapes(c, 1)  # both domains grey at 28x28
        assert model.backbone.feature_dim == 500
    assert model.feature_dim == (256 if method == "dann" else model.backbone.feature_dim)
    assert _check_quotes_published_numbers(doc, task, method)


@pytest.mark.parametrize("name, arg, backbone", PHOTOS)
def test_photo_configs(name, arg, backbone, weights):
    c, doc = _get(name, arg)
    _check_common(c, "dann")
    assert c.model.backbone == backbone
    assert c.model.pretrained == str(weights / f"{backbone}.pth")
    assert c.optim.freeze == ((r"^model/backbone/", 0.1), (r".*", 1.0))
    assert (c.data.batch_size, c.data.image_size, c.optim.lr) == (32, 224, 0.01)
    benchmark = c.data.task.split("/")[0]
    steps = {"office31": 20_000, "office_home": 30_000, "visda2017": 30_000, "domainnet": 75_000}
    assert c.train.steps == steps[benchmark]
    assert c.model.bottleneck_dim == (1024 if benchmark == "domainnet" else 256)
    assert c.data.augment == ("flip" if benchmark == "visda2017" else "crop+flip")
    if arg:
        src, tgt = (kv.split("=")[1] for kv in arg.split(","))
        assert c.data.task == f"{benchmark}/{src}->{benchmark}/{tgt}"
    _check_quotes_published_numbers(doc, c.data.task, "dann")
    if name in ("dann_office_home", "dann_visda"):  # one network per backbone (slow on CPU)
        model = _shapes(c, 3)
        assert model.feature_dim == c.model.bottleneck_dim
        assert model.backbone.feature_dim == 2048


def test_office31_default_and_published_numbers(weights):
    c, doc = _get("dann_office31", "")
    assert c.data.task == "office31/amazon->office31/webcam"
    for value in ("91.4", "97.9", "83.6", "73.3", "70.4", "86.1"):
        assert value in doc


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    for env in benchmark_common.WEIGHTS_ENV.values():
        monkeypatch.delenv(env, raising=False)
    with pytest.raises(ValueError, match=r"resnet50-0676ba61\.pth.*TLJAX_RESNET50_WEIGHTS"):
        _get("dann_office31", "source=amazon,target=webcam")
    with pytest.raises(ValueError, match="TLJAX_RESNET101_WEIGHTS"):
        _get("dann_visda", "")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _get("dann_office31", f"weights={tmp_path / 'nope.pth'}")
    c, _ = _get("dann_office31", "weights=none")  # explicitly from scratch
    assert c.model.pretrained == "" and c.optim.freeze[0] == (r"^model/backbone/", 1.0)


@pytest.mark.parametrize(
    "name, arg, match",
    [("dann_office31", "source=amazon,target=amazon", "both 'amazon'"),
     ("dann_office31", "source=art", "not a office31 domain"),
     ("dann_office31", "target=webcam,lr=3", "Bad config argument 'lr=3'"),
     ("dann_digits", "source=mnist,target=svhn", "No digits protocol"),
     ("dann_digits", "weights=x", "Bad config argument")],
)  # fmt: skip
def test_bad_arguments(name, arg, match, weights):
    with pytest.raises(ValueError, match=match):
        _get(name, arg)


def test_steps_data_dir_and_max_examples_arguments(weights, tmp_path):
    c, _ = _get("dann_office_home", f"steps=250,data_dir={tmp_path},max_examples=7")
    config_lib.validate(c)
    assert c.train.steps == c.train.eval_every == 250 and c.train.checkpoint_every == 250
    assert c.train.log_every == 50
    assert c.data.task_kwargs.to_dict() == {"data_dir": str(tmp_path), "max_examples": 7}


def test_missing_data_stops_the_build_with_the_loaders_error(tmp_path):
    c, _ = _get("dann_digits", f"source=usps,target=mnist,data_dir={tmp_path}")
    with pytest.raises(DatasetNotFoundError, match="'usps' is not prepared"):
        loop.build(c)
