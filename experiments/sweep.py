r"""Runs configs × seeds into one directory and prints the result table.

    python -m experiments.sweep --configs=configs/source_only_digits_m.py,configs/dann_digits_m.py \
        --seeds=0,1,2 --workdir=runs/main [--set=train.steps=500]

Finished runs (with ``results.json``) are skipped, interrupted ones resume from their
checkpoint. Each run's directory is ``<workdir>/<config name>/seed_<s>``.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from tljax import report

_CONFIGS = flags.DEFINE_list("configs", None, "Config files to run.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory of the sweep.")
_SET = flags.DEFINE_multi_string("set", [], "Overrides key=value applied to every config.")
flags.mark_flags_as_required(["configs", "workdir"])


def load_config(path: str):
    """Loads ``get_config()`` from a config file (``path[:arg]``)."""
    file, _, arg = path.partition(":")
    if not os.path.exists(file):
        raise FileNotFoundError(f"Config file {file!r} does not exist.")
    spec = importlib.util.spec_from_file_location(f"_tljax_config_{abs(hash(file))}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def apply_override(config, item: str) -> None:
    """Applies ``a.b.c=value`` (value parsed as a Python literal when possible)."""
    if "=" not in item:
        raise ValueError(f"Override {item!r} must look like key=value.")
    key, raw = item.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    if leaf not in node:
        raise ValueError(f"Unknown config key {key!r} in override {item!r}.")
    node[leaf] = value


def main(argv):
    del argv
    logging.basicConfig(level=logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    from tljax.train import train_and_evaluate

    for path in _CONFIGS.value:
        name = os.path.splitext(os.path.basename(path.split(":")[0]))[0]
        for seed in _SEEDS.value:
            workdir = os.path.join(_WORKDIR.value, name, f"seed_{seed}")
            if os.path.exists(os.path.join(workdir, "results.json")):
                print(f"[sweep] {workdir}: done, skipped", file=sys.stderr)
                continue
            config = load_config(path)
            config.seed = int(seed)
            for item in _SET.value:
                apply_override(config, item)
            try:
                r = train_and_evaluate(config, workdir)
            except (ValueError, FileNotFoundError, FloatingPointError) as e:
                print(f"error in {workdir}: {e}", file=sys.stderr)
                sys.exit(1)
            print(
                f"[sweep] {workdir}: target test acc {100 * r['target_test_acc']:.1f}%",
                file=sys.stderr,
            )
    table = report.markdown_table(report.summarize(report.collect(_WORKDIR.value)))
    print(table)
    with open(os.path.join(_WORKDIR.value, "results.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    app.run(main)
