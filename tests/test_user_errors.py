"""Mistakes in the input end in one line naming the bad value and the valid options.

Most cases check :func:`tljax.config.validate` (and the other raising functions) in
process; a representative set runs the command line in a subprocess and checks the
contract there: exit status 2, one ``error: ...`` line on stderr, no traceback (unless
``--debug``), and nothing created where it should not be. Every case fails before any
JAX computation, so each subprocess takes about as long as starting Python and JAX.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from configs.args import parse_args
from tests.configs.tiny import get_config as tiny
from tljax import config as config_lib
from tljax.errors import ConfigError, UserError, UserFileError, UserFileNotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "--config=tests/configs/tiny.py:dann,moons"


# -- validate(), in process -------------------------------------------------------------


def _set(path: str, value):
    def mutate(c):
        *parents, key = path.split(".")
        node = c
        for p in parents:
            node = node[p]
        with c.unlocked():
            node[key] = value

    return mutate


VALIDATE_CASES = [
    # (id, mutation, error type, regex the message must match)
    ("key typo", _set("train.stepz", 3), ConfigError, r"'train.stepz'.*Did you mean 'train.steps'"),
    ("steps 0", _set("train.steps", 0), ConfigError, r"train.steps must be an integer >= 1, got 0"),
    ("batch 0", _set("data.batch_size", 0), ConfigError, r"data.batch_size.*>= 1, got 0"),
    ("eval batch 0", _set("train.eval_batch_size", 0), ConfigError, r"eval_batch_size.*got 0"),
    ("image size -1", _set("data.image_size", -1), ConfigError, r"image_size.*got -1"),
    ("max_to_keep 0", _set("train.max_to_keep", 0), ConfigError, r"max_to_keep.*got 0"),
    (
        "steps not multiple",
        lambda c: (_set("train.steps", 25)(c), _set("train.steps_per_call", 10)(c)),
        ConfigError,
        r"steps=25 must be a multiple of train.steps_per_call=10; e.g. 20 or 30",
    ),
    ("unknown method", _set("method.name", "danny"), ConfigError, r"'danny'.*Valid methods: \["),
    (
        "hparam typo",
        _set("method.hparams.hiden", (8,)),
        ConfigError,
        r"no hyperparameter 'hiden'.*Did you mean 'hidden'\?.*Valid: \[.*'grl_alpha'",
    ),
    (
        "hparam value",
        lambda c: (
            _set("method.name", "mcd")(c),
            _set("method.hparams", {})(c),
            _set("method.hparams.entropy", "batch")(c),
        ),
        ConfigError,
        r"entropy='batch'; valid: \['class_balance', 'per_sample'\]",
    ),  # fmt: skip
    ("backbone", _set("model.backbone", "mpl"), ConfigError, r"'mpl'.*Did you mean 'mlp'"),
    (
        "backbone kwargs",
        _set("model.backbone_kwargs.hiden", (4,)),
        ConfigError,
        r"'mlp' takes no argument 'hiden'.*Did you mean 'hidden'",
    ),
    ("dtype", _set("model.dtype", "fp16"), ConfigError, r"'fp16'; valid: \['bfloat16'"),
]


@pytest.mark.parametrize(
    "mutate, kind, message", [c[1:] for c in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES]
)
def test_validate_names_the_bad_value_and_the_valid_options(mutate, kind, message):
    c = tiny("dann,moons")
    mutate(c)
    with pytest.raises(kind, match=message) as info:
        config_lib.validate(c)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_check_files_creates_nothing(tmp_path):
    c = tiny("dann,moons")
    c.model.init_from = str(tmp_path / "no_such_run")
    with pytest.raises(UserFileNotFoundError, match=r"init_from='.*no_such_run' does not exist"):
        config_lib.check_files(c)
    config_lib.validate(c)  # judges the config alone: the run may be trained later
    (tmp_path / "empty_run").mkdir()
    c.model.init_from = str(tmp_path / "empty_run")
    with pytest.raises(UserFileNotFoundError, match=r"has no checkpoints/"):
        config_lib.check_files(c)
    c.model.init_from = ""
    c.model.pretrained = str(tmp_path / "w.safetensors")
    with pytest.raises(UserFileNotFoundError, match=r"pretrained='.*w.safetensors' does not"):
        config_lib.check_files(c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_run"]
    assert not any((tmp_path / "empty_run").iterdir())


def test_validate_accepts_the_tiny_configs():
    for method in ("dann", "mcd", "source_only"):
        config_lib.validate(tiny(f"{method},moons"))


def test_set_method_hparam_accepts_any_hyperparameter_of_the_method():
    c = tiny("dann,moons")  # sets hidden only
    c.lock()
    config_lib.set_method_hparam(c, "grl_alpha", "2", source="--config.method.hparams.grl_alpha")
    config_lib.set_method_hparam(c, "hidden", "(8, 4)")
    config_lib.set_method_hparam(c, "batch_norm", "false")
    assert c.method.hparams.to_dict() == {"hidden": (8, 4), "grl_alpha": 2.0, "batch_norm": False}
    config_lib.validate(c)
    m = tiny("mcd,moons")
    config_lib.set_method_hparam(m, "entropy", "per_sample")
    assert m.method.hparams.entropy == "per_sample"


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "on",
            "logits",
            r"no hyperparameter 'on' \(from --x\)\. Valid: \['batch_norm', 'grl_alpha'",
        ),
        ("hiden", "(8,)", r"'hiden'.*Did you mean 'hidden'"),
        ("grl_alpha", "fast", r"Bad value in --x: could not convert string to float: 'fast'"),
        ("batch_norm", "maybe", r"expected true or false, got 'maybe'"),
    ],
)
def test_set_method_hparam_errors(name, text, message):
    c = tiny("dann,moons")
    c.lock()
    with pytest.raises(ConfigError, match=message):
        config_lib.set_method_hparam(c, name, text, source="--x")


@pytest.mark.parametrize(
    "arg, message",
    [
        ("sorce=amazon", r"'sorce=amazon'.*keys \['source', 'steps'\]. Did you mean 'source'"),
        ("source", r"'source'; expected key=value"),
        ("steps=ten", r"'steps=ten': steps takes int"),
    ],
)
def test_config_arguments(arg, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(arg, {"source": str, "steps": int})


def test_garbage_weights_file_is_a_user_error(tmp_path):
    from tljax.models.weights import read_state_dict

    path = tmp_path / "w.safetensors"
    path.write_bytes(os.urandom(3000))
    with pytest.raises(UserFileError, match=r"Cannot read weights file .*w.safetensors"):
        read_state_dict(path)


# -- the command line, in a subprocess --------------------------------------------------


def cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


CLI_CASES = [
    # (id, arguments, strings the one line must contain)
    (
        "missing config file",
        ["--config=configs/dan_moon.py"],
        ["dan_moon.py", "configs/dan_moons.py"],
    ),
    (
        "bad config argument",
        ["--config=configs/dann_office31.py:sorce=amazon"],
        ["'sorce=amazon'", "'source'", "'target'"],
    ),
    ("key typo", [TINY, "--config.train.stepz=3"], ["train.stepz", "'train.steps'"]),
    ("bad value type", [TINY, "--config.train.steps=ten"], ["train.steps=ten", "int"]),
    (
        "hparam not in the config",
        [TINY, "--config.method.hparams.on=logits"],
        ["'on'", "'grl_alpha'", "'hidden'"],
    ),
    (
        "hparam typo",
        [TINY, "--config.method.hparams.hiden=32"],
        ["'hiden'", "Did you mean 'hidden'"],
    ),
    (
        "hparam value",
        ["--config=tests/configs/tiny.py:mcd,moons", "--config.method.hparams.entropy=bogus"],
        ["entropy='bogus'", "'class_balance'", "'per_sample'"],
    ),
    ("eval batch 0", [TINY, "--config.train.eval_batch_size=0"], ["eval_batch_size", "got 0"]),
    (
        "steps not multiple",
        [TINY, "--config.train.steps=25", "--config.train.steps_per_call=10"],
        ["steps=25", "steps_per_call=10", "20 or 30"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    "args, expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_input_error_is_one_line_exit_2_and_creates_nothing(tmp_path, args, expected):
    workdir = tmp_path / "run"
    out = cli(*args, f"--workdir={workdir}")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    for s in expected:
        assert s in lines[0], (s, lines[0])
    assert not workdir.exists()


def test_cli_init_from_that_does_not_exist_creates_nothing_there(tmp_path):
    missing = tmp_path / "pretrain_run"
    out = cli(TINY, f"--workdir={tmp_path / 'run'}", f"--config.model.init_from={missing}")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert str(missing) in lines[0] and "does not exist" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_unwritable_workdir(tmp_path):
    (tmp_path / "a_file").write_text("")
    out = cli(TINY, f"--workdir={tmp_path / 'a_file' / 'run'}")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert "Cannot write to --workdir" in lines[0] and "a_file" in lines[0]


def test_cli_debug_shows_the_traceback(tmp_path):
    for args in ([TINY, "--config.train.eval_batch_size=0"], [TINY, "--config.train.stepz=3"]):
        out = cli(*args, f"--workdir={tmp_path / 'run'}", "--debug")
        assert out.returncode != 0
        assert "Traceback" in out.stderr and "ConfigError" in out.stderr, out.stderr[-3000:]
