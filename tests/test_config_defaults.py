"""Defaults that are resolved per run (tljax.config.resolve) and what the command line does
with them: per-optimizer schedule and weight decay, every method hyperparameter filled,
switching methods, the CLI's source hold-out, the progress output of a redirected run, the
effective config.json, and the ddof note of the result tables."""

import json
import os
import subprocess
import sys

import pytest

from experiments import sweep
from tljax import config as config_lib
from tljax import loop, report
from tljax.errors import ConfigError
from tljax.workdir import check_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "tests/configs/tiny.py:dann,moons"


def _tiny(arg="dann,moons"):
    sys.path.insert(0, ROOT)
    return sweep.load_config(os.path.join(ROOT, f"tests/configs/tiny.py:{arg}"))


def _resolved(**optim):
    c = config_lib.base_config()
    for k, v in optim.items():
        c.optim[k] = v
    return config_lib.resolve(c).optim


def test_optimizer_defaults_unless_set():
    # SGD keeps the papers' inverse decay and coupled L2 (the README's numbers).
    o = _resolved()
    assert (o.optimizer, o.schedule, o.weight_decay) == ("sgd", "inverse_decay", 1e-3)
    o = _resolved(optimizer="adam")
    assert (o.schedule, o.weight_decay) == ("constant", 0.0)
    o = _resolved(optimizer="adamw")
    assert (o.schedule, o.weight_decay) == ("constant", 1e-4)
    # Values the user set are kept, also the old defaults set explicitly.
    o = _resolved(optimizer="adam", schedule="inverse_decay", weight_decay=1e-3)
    assert (o.schedule, o.weight_decay) == ("inverse_decay", 1e-3)
    o = _resolved(optimizer="adamw", weight_decay=0.05)
    assert (o.schedule, o.weight_decay) == ("constant", 0.05)
    o = _resolved(optimizer="sgd", schedule="cosine", weight_decay=0.0)
    assert (o.schedule, o.weight_decay) == ("cosine", 0.0)
    # resolve is idempotent.
    c = config_lib.resolve(config_lib.base_config())
    assert config_lib.flatten(config_lib.resolve(c)) == config_lib.flatten(c)


def test_adam_run_trains_with_a_constant_lr():
    c = _tiny()
    c.optim.optimizer = "adam"
    parts = loop.build(c)  # resolves c in place
    assert c.optim.schedule == "constant" and c.optim.weight_decay == 0.0
    assert float(parts["schedule"](1000)) == pytest.approx(c.optim.lr)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("optimizer", "adma", "Did you mean 'adam'"),
        ("schedule", "cosin", "Did you mean 'cosine'"),
        ("weight_decay", -1.0, "weight_decay must be >= 0"),
    ],
)
def test_bad_optimizer_values_are_config_errors(field, value, match):
    c = config_lib.base_config()
    c.optim[field] = value
    with pytest.raises(ConfigError, match=match):
        config_lib.validate(c)


def test_hparams_filled_with_the_factorys_defaults():
    c = config_lib.resolve(_tiny())
    hp = c.method.hparams.to_dict()
    assert hp["hidden"] == (32,)  # set by the config file
    assert hp["grl_alpha"] == 1.0 and hp["batch_norm"] is True  # the factory's defaults
    assert set(hp) == set(config_lib.method_hparam_defaults("dann"))
    config_lib.validate(c)


def test_switching_method_drops_the_old_methods_hparams(capsys):
    c = sweep.load_config(os.path.join(ROOT, "configs/coral_digits_m.py"))
    assert c.method.hparams.style == "tllib"
    dropped = config_lib.switch_method(c, "dan", source="--config.method.name=dan")
    assert dropped == ["style"] and "style" not in c.method.hparams
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'style'" in err and "warning:" in err
    config_lib.validate(c)
    # A hyperparameter both methods take is kept.
    c = _tiny("dann,moons")
    config_lib.switch_method(c, "cdan")
    assert c.method.hparams.hidden == (32,)
    with pytest.raises(ConfigError, match="Unknown method 'dnn'.*Did you mean 'dann'"):
        config_lib.switch_method(c, "dnn")


def test_sweep_overrides_any_hparam_and_method_name(tmp_path):
    spec = sweep.plan([os.path.join(ROOT, TINY)], ["0"], ["method.hparams.grl_alpha=2.0,5.0"], "r")
    c = sweep.make_config(spec[1], ["method.hparams.grl_lo=0.1"])
    assert (c.method.hparams.grl_alpha, c.method.hparams.grl_lo) == (5.0, 0.1)
    assert c.data.source_val_fraction == config_lib.CLI_SOURCE_VAL_FRACTION  # the CLI default
    config_lib.validate(c)
    # method.name goes first: the other keys are checked against the new method.
    coral = sweep.plan([os.path.join(ROOT, "configs/coral_digits_m.py")], ["0"], [], "r")[0]
    c = sweep.make_config(coral, ["method.hparams.kernel_mul=3.0", "method.name=dan"])
    assert c.method.name == "dan" and c.method.hparams.to_dict() == {"kernel_mul": 3.0}
    with pytest.raises(ConfigError, match="no hyperparameter 'grl_alph'.*'grl_alpha'.*Valid"):
        sweep.make_config(spec[0], ["method.hparams.grl_alph=1.0"])
    with pytest.raises(ConfigError, match="Bad value in method.hparams.grl_lo=x: could"):
        sweep.make_config(spec[0], ["method.hparams.grl_lo=x"])  # a float
    with pytest.raises(ConfigError, match="Did you mean 'optim.lr'.*Keys of optim"):
        sweep.make_config(spec[0], ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="Bad value in override 'optim.lr=abc'"):
        sweep.make_config(spec[0], ["optim.lr=abc"])
    # --noholdout is the override data.source_val_fraction=0.0.
    c = sweep.make_config(spec[0], ["data.source_val_fraction=0.0"])
    assert c.data.source_val_fraction == 0


def _cli(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


def test_cli_errors_are_one_line_exit_2(tmp_path):
    out = _cli(
        "experiments.sweep",
        f"--config={TINY}",
        f"--workdir={tmp_path}",
        "--set=method.hparams.grl_alph=2",
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().count("\n") == 0 and "'grl_alpha'" in out.stderr
    out = _cli(
        "experiments.run",
        "--config=configs/coral_digits_m.py",
        f"--workdir={tmp_path / 'run'}",
        "--config.method.name=dan",
        "--config.method.hparams.style=paper",  # checked against the new method
    )
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("warning:") and "'style'" in lines[0]
    assert lines[1].startswith("error:") and "no hyperparameter 'style'" in lines[1]
    assert len(lines) == 2 and not os.path.exists(tmp_path / "run")


def test_redirected_cli_run_logs_lines_and_writes_the_effective_config(tmp_path):
    log = tmp_path / "run.log"
    workdir = tmp_path / "run"
    with open(log, "w") as f:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "experiments.run",
                f"--config={TINY}",
                f"--workdir={workdir}",
                "--config.train.progress=True",
                "--config.optim.optimizer=adam",
            ],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=300,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
        )
    text = log.read_text()
    assert out.returncode == 0, text[-3000:]
    # No progress bar redraws: one line per log_every (10) of the 40 steps.
    assert "\r" not in text and len(text) < 10_000, len(text)
    assert [ln.split()[1] for ln in text.splitlines() if ln.startswith("step ")] == [
        "10/40",
        "20/40",
        "30/40",
        "40/40",
    ]
    assert text.count("Effective config") == 1 and "optim.schedule" in text
    cfg = json.load(open(workdir / "config.json"))
    assert (cfg["optim.schedule"], cfg["optim.weight_decay"]) == ("constant", 0.0)
    assert cfg["data.source_val_fraction"] == 0.1  # the CLI's hold-out default
    assert cfg["method.hparams"]["grl_alpha"] == 1.0  # filled from dann's defaults
    evals = [json.loads(ln) for ln in open(workdir / "metrics.jsonl") if '"eval"' in ln]
    assert evals and all("source_val_acc" in e for e in evals)
    # --noholdout; the resumed (finished) run's config.json then differs: refused.
    out = _cli("experiments.run", f"--config={TINY}", f"--workdir={workdir}", "--noholdout")
    assert out.returncode == 2 and "data.source_val_fraction" in out.stderr


def test_resume_accepts_a_config_json_recorded_before_defaults_were_filled(tmp_path):
    c = _tiny()
    old = json.loads(json.dumps(config_lib.flatten(c), default=str))
    old.update({"optim.schedule": "inverse_decay", "optim.weight_decay": 1e-3})
    old["data.source_val_fraction"] = 0.0
    with open(tmp_path / "config.json", "w") as f:
        json.dump(old, f)
    check_config(str(tmp_path), config_lib.resolve(c), write=False)
    c.method.hparams.grl_alpha = 2.0  # a real change is still refused
    with pytest.raises(ValueError, match="method.hparams"):
        check_config(str(tmp_path), c, write=False)


def test_tables_say_the_std_is_ddof_1():
    rows = [
        {"task": "t", "method": "dann", "seed": s, "steps": 1, "wall_time_s": 1.0}
        | {"source_test_acc": a, "target_test_acc": a}
        for s, a in ((0, 0.5), (1, 0.7))
    ]
    assert "ddof=1" in report.markdown_table(report.summarize(rows))
    md = report.to_markdown(report.headline_table(rows))
    assert "ddof=1" in md and "| dann | 60.0 ± 14.1 |" in md
    assert "ddof=1" in report.to_latex(report.headline_table(rows))


def test_report_variant_names_the_hparam_that_differs(tmp_path):
    rows = []
    for alpha in (1.0, 2.0):
        d = tmp_path / f"a{alpha}"
        d.mkdir()
        c = config_lib.resolve(_tiny())
        c.method.hparams.grl_alpha = alpha
        flat = config_lib.flatten(c)
        if alpha == 1.0:  # recorded before defaults were filled: the same default
            flat["method.hparams"] = {"hidden": [32]}
        (d / "config.json").write_text(json.dumps(flat, default=str))
        rows.append({"task": "moons", "method": "dann", "seed": 0, "workdir": str(d)})
    variants = [r["variant"] for r in report.attach_configs(rows)]
    assert variants == ["method.hparams.grl_alpha=1", "method.hparams.grl_alpha=2"]


def test_progress_bar_only_on_a_terminal():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert loop._interactive(Tty()) and not loop._interactive(io.StringIO())
