r"""Test-time (source-free) adaptation of a trained run on a target stream.

    python -m experiments.adapt --workdir=RUN --method=tent --task=NAME \
        [--episodic] [--steps_per_batch=1] [--lr=1e-3] [--batch_size=64] [--out=DIR] \
        [--hparams=filter_k=20,optimizer=sgd] [--seed=0] [--split=test]

``RUN`` is a directory written by ``experiments/run.py`` (``config.json`` + checkpoints);
the model is rebuilt from its config and its last verified checkpoint loaded. The stream
is the ``--split`` of ``--task``'s target domain (default: the run's own task) in a seeded
random order, prepared as the run's inputs were; its labels only score the predictions.
Methods (:mod:`tljax.adaptation`): ``source`` (none), ``bn_adapt``, ``tent``, ``t3a``,
``shot_im``, ``shot``, ``eata``, ``eta``, ``cotta``. Writes ``metrics.jsonl`` (one
``kind="adapt"`` row per batch), ``adapt.json``
and ``results.json`` (``online_acc``: accuracy of every prediction along the stream;
``source_acc``: the unadapted model on the same examples) to ``--out`` (default
``RUN/adapt/<task>_<method>_<episodic|online>``) and prints the summary. ``metrics.jsonl``
and ``results.json`` also carry the trainer's unsupervised selection scores
(``target_neg_entropy``, ``target_im``, ``target_snd``) and keys (``target_test_acc``,
``by_selection_rule``, ...), so ``python -m experiments.report --workdir=DIR`` tabulates a
directory of adaptation runs and picks among their settings. See ``docs/tta.md``.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script)."""
    flags.DEFINE_string("workdir", None, "A trained run's directory.")
    flags.DEFINE_string("method", "tent", "Test-time adaptation method.")
    flags.DEFINE_string(
        "task", None, "Task whose target domain is the stream (default: the run's)."
    )
    flags.DEFINE_string("split", "test", "Target split streamed: test or train.")
    flags.DEFINE_bool("episodic", False, "Reset to the source weights before every batch.")
    flags.DEFINE_integer("steps_per_batch", 1, "Adaptation steps per batch (gradient methods).")
    flags.DEFINE_float("lr", None, "Learning rate (gradient methods; default: the method's).")
    flags.DEFINE_list("hparams", [], "Other method hyperparameters, name=value (Python literal).")
    flags.DEFINE_integer("batch_size", 64, "Examples per stream batch.")
    flags.DEFINE_integer("seed", 0, "Stream order and PRNG seed.")
    flags.DEFINE_bool("shuffle", True, "Stream the split in a seeded random order.")
    flags.DEFINE_bool("drop_remainder", False, "Drop the last, smaller batch.")
    flags.DEFINE_enum("predict", "first", ["first", "after"], "Predictions before/after updates.")
    flags.DEFINE_string("out", None, "Output directory.")
    flags.mark_flags_as_required(["workdir"])


def parse_hparams(items) -> dict:
    """``["filter_k=20", "optimizer=sgd"]`` → ``{"filter_k": 20, "optimizer": "sgd"}``.

    Raises:
      ValueError: an item without ``=``.
    """
    import ast

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--hparams items must be name=value, got {item!r}.")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def main(argv) -> int:
    del argv
    from tljax.adapt import adapt_run

    hparams = parse_hparams(FLAGS.hparams)
    if FLAGS.lr is not None:
        hparams["lr"] = FLAGS.lr
    summary = adapt_run(
        FLAGS.workdir,
        FLAGS.method,
        task=FLAGS.task,
        out=FLAGS.out,
        split=FLAGS.split,
        hparams=hparams,
        batch_size=FLAGS.batch_size,
        episodic=FLAGS.episodic,
        steps_per_batch=FLAGS.steps_per_batch,
        predict=FLAGS.predict,
        shuffle=FLAGS.shuffle,
        seed=FLAGS.seed,
        drop_remainder=FLAGS.drop_remainder,
    )
    summary.pop("adapt_config", None)  # the run's whole config: in results.json only
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
