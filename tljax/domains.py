"""The trainer's pieces for multi-domain tasks (:mod:`tljax.data.multi_domain`): the config
checks and the evaluation DomainBed's selection rules read.

Evaluated at every ``eval_every`` step (``metrics.jsonl``, kind ``eval``):

* ``val_acc/<domain>``: accuracy on each training domain's out split (20%), and their
  mean ``train_domains_val_acc`` — DomainBed's *training-domain validation* score;
* ``target_test_acc``: DG: the held-out domain's in split (80%), DomainBed's reported
  test accuracy; MSDA: the target's test split;
* ``target_out_acc`` (DG): the held-out domain's out split (20%), the *test-domain
  validation* ("oracle") score;
* ``val_domain_acc`` (DG with ``val=``): the in split of the second held-out domain, the
  *leave-one-domain-out* validation score. Such a run exists only to score that domain:
  its ``target_test_acc`` / ``target_out_acc`` are the *val* domain's in / out splits
  (``val_domain_acc`` = ``target_test_acc``) and the test domain, held out of training,
  is not evaluated either (its accuracy comes from the run that holds out the test domain
  alone; on Colored Fashion-MNIST this is 40% less evaluation);
* ``source_test_acc``: the pooled training domains' out splits (as single-source runs);
* MSDA only, the unsupervised target scores of single-source runs (``target_neg_entropy``,
  ``target_im``, ``target_snd``) on the unlabelled target train split. DG has no target
  data, so none of them.
"""

from __future__ import annotations

import numpy as np

from tljax import evaluate
from tljax.data.multi_domain import MultiDomainTask


def check_multi_domain(config, task: MultiDomainTask, method) -> None:
    """Refuses config options that have no meaning for a multi-domain task.

    Raises:
      ValueError: a DG task with a method that trains on unlabelled target data, a
        streamed pipeline, or labelled subsets (``labels_per_class``,
        ``target_labels_per_class``).
    """
    if task.setting == "dg" and method.train_step is None and method.needs_target:
        raise ValueError(
            f"Method {method.name!r} trains on unlabelled target data, but {task.name!r} is "
            "domain generalization: no target data is drawn. Use a DG method (erm, irm, "
            "vrex, group_dro, mixup, dg_coral, dg_mmd, dg_dann, cdann) or the multi-source "
            f"task 'msda/{task.domain_set}'."
        )
    if config.data.stream:
        raise ValueError(
            f"data.stream=True (the grain pipeline) does not serve multi-domain tasks such as "
            f"{task.name!r}; set data.stream=False."
        )
    for key in ("labels_per_class", "target_labels_per_class"):
        if config.data[key]:
            raise ValueError(
                f"data.{key}={config.data[key]} is not supported for the multi-domain task "
                f"{task.name!r}; set it to 0."
            )


def evaluated_on(task) -> dict[str, str]:
    """What ``source_test_acc`` and ``target_test_acc`` were computed on (results.json)."""
    if not isinstance(task, MultiDomainTask):
        return {"source": f"{task.source.name}/test", "target": f"{task.target.name}/test"}
    source = "+".join(f"{d.name}/out" for d in task.sources)
    if task.setting == "dg" and task.val_domain is not None:
        return {
            "source": source,
            "target": f"{task.val_domain.name}/in (leave-one-domain-out validation; "
            f"{task.target.name} held out, not evaluated)",
        }
    if task.setting == "dg":
        return {"source": source, "target": f"{task.target.name}/in (held out)"}
    return {"source": source, "target": f"{task.target.name}/test"}


def evaluate_domains(task: MultiDomainTask, run, *, selection: bool = True) -> dict[str, float]:
    """The evaluation of a multi-domain run (see the module docstring).

    Args:
      task: the task.
      run: ``run(x, role) -> (logits, features)``, the trained model's predictions on
        ``x`` (``role``: ``"source"`` or ``"target"``, for methods that evaluate another
        state per domain).
      selection: also the selection scores (every eval step); ``False``: accuracies only
        (the final results).
    """
    out: dict[str, float] = {}
    accs, all_logits = [], []
    for d in task.sources:
        logits, _ = run(d.test.x, "source")
        all_logits.append(logits)
        accs.append(evaluate.accuracy(logits, d.test.y))
        out[f"val_acc/{d.name}"] = accs[-1]
    out["train_domains_val_acc"] = float(np.mean(accs))
    pooled = np.concatenate(all_logits)
    out["source_test_acc"] = evaluate.accuracy(pooled, task.source.test.y)
    out["source_test_mean_class_acc"] = evaluate.mean_class_accuracy(
        pooled, task.source.test.y, task.num_classes
    )
    # DG: the held-out domain's in split is "test" and its out split "train" (swapped in
    # tljax.data.multi_domain); a LOO validation run evaluates its val domain instead.
    loo = task.setting == "dg" and task.val_domain is not None
    test, out_split = (
        (task.val_domain.train, task.val_domain.test)
        if loo
        else (task.target.test, task.target.train)
    )
    logits, _ = run(test.x, "target")
    out["target_test_acc"] = evaluate.accuracy(logits, test.y)
    out["target_test_mean_class_acc"] = evaluate.mean_class_accuracy(
        logits, test.y, task.num_classes
    )
    if task.setting == "dg":
        logits, _ = run(out_split.x, "target")
        out["target_out_acc"] = evaluate.accuracy(logits, out_split.y)
        if loo:
            out["val_domain_acc"] = out["target_test_acc"]
        return out
    if selection:
        t_logits, t_feats = run(task.target.train.x, "target")
        out["target_neg_entropy"] = evaluate.neg_entropy_score(t_logits)
        out["target_im"] = evaluate.information_maximization_score(t_logits)
        out["target_snd"] = evaluate.snd_score(t_feats, t_logits)
    return out
