"""``train_and_evaluate``: the loop around the pure train step.

Data, evaluation, checkpoints and logs hang off this loop, never inside the step. The
host syncs with the device only every ``log_every`` steps (to log averaged metrics and
check for NaN), so dispatch stays ahead of compute.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tljax import config as config_lib
from tljax import distributed, evaluate, evaluate_label_sets, methods, optim, report, xla_env
from tljax.checkpoint import Checkpointer
from tljax.data import augment, pixels, tasks
from tljax.data.arrays import is_unlabeled
from tljax.data.core import few_labels, hold_out, split_target_labels, standardize
from tljax.data.grain_stream import GrainPairStream
from tljax.data.multi_domain import MultiDomainStream, MultiDomainTask, standardize_multi
from tljax.data.prefetch import Prefetcher
from tljax.data.stream import DomainPairStream
from tljax.domains import check_multi_domain, evaluate_domains, evaluated_on
from tljax.logs import MetricLogger, read_metrics
from tljax.models import build_classifier, pretrained
from tljax.train import (
    TrainState,
    build_net,
    check_target_labeled_support,
    init_state,
    make_eval_step,
    make_train_step,
    with_augmentation,
)
from tljax.workdir import WorkdirLock, check_config, init_from

log = logging.getLogger("tljax")


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all (or the given) devices with the axis name ``data``."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), ("data",))


def target_labeled_batch_size(config, labeled) -> int | None:
    """``data.target_labeled_batch_size``, or by default ``min(batch_size, #labelled)``
    (as MME's loader of the labelled target set); ``None`` without a labelled subset."""
    if labeled is None:
        return None
    return config.data.target_labeled_batch_size or min(config.data.batch_size, len(labeled))


def make_stream(config, parts, *, seed: int, target_labeled_batch_size=None):
    """The training batch stream of a built run (:func:`build`), at position 0."""
    task = parts["task"]
    if isinstance(task, MultiDomainTask):
        return MultiDomainStream(task, config.data.batch_size, seed=seed)
    return (GrainPairStream if config.data.stream else DomainPairStream)(
        task,
        config.data.batch_size,
        seed=seed,
        target_labeled=parts["target_labeled"],
        target_labeled_batch_size=target_labeled_batch_size,
    )


def _state_to_tree(state: TrainState) -> dict:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _stack(batches):
    return jax.tree.map(lambda *xs: np.stack(xs), *batches)


def build(config):
    """Builds everything a run needs from its config (no training).

    Returns:
      A dict with ``task, method, graphs, state, tx, labels, report, schedule,
      train_step, eval_step`` (step functions not yet jitted).
    """
    config_lib.validate(config)
    config_lib.resolve(config)  # in place: callers (multiseed) read the resolved fields
    if config.train.deterministic:  # before any JAX computation: XLA reads it at start-up
        xla_env.apply_deterministic()
    method = methods.get(config.method.name, **config.method.hparams.to_dict())
    if config.data.target_labels_per_class:  # before loading data: fail fast
        check_target_labeled_support(method)
    task = tasks.get_task(
        config.data.task,
        data_seed=config.data.data_seed,
        image_size=config.data.image_size,
        **config.data.task_kwargs.to_dict(),
        **({"stream": True} if config.data.stream else {}),
    )
    task.validate()
    multi = isinstance(task, MultiDomainTask)
    if multi:
        check_multi_domain(config, task, method)
    elif method.multi_domain:
        raise ValueError(
            f"Method {method.name!r} needs several labelled training domains; {task.name!r} "
            "has one. Run it on a multi-domain task ('dg/<set>' or 'msda/<set>', "
            "tljax.data.multi_domain)."
        )
    uint8 = pixels.is_uint8(task.source.train.x)  # converted and standardised on the device
    pixel_stats = {}  # the standardisation, so augmentation works on pixels
    if config.data.standardize and uint8:
        pixel_stats = dict(zip(("mean", "std"), pixels.channel_stats(task.source.train.x)))
    elif config.data.standardize:
        dtype = task.source.train.x.dtype
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(
                f"config.data.standardize=True but task {task.name!r} has {dtype} inputs "
                "(e.g. token ids); standardisation applies to float features only. Set "
                "data.standardize=False."
            )
        task, mean, std = standardize_multi(task) if multi else standardize(task)
        pixel_stats = dict(mean=mean, std=std)
    source_val = None
    # Multi-domain tasks validate on each training domain's out split (DomainBed).
    if config.data.source_val_fraction > 0 and not multi:
        rest, source_val = hold_out(
            task.source.train, config.data.source_val_fraction, seed=config.data.data_seed
        )
        task = dataclasses.replace(task, source=dataclasses.replace(task.source, train=rest))
    if config.data.labels_per_class:
        few = few_labels(
            task.source.train, config.data.labels_per_class, seed=config.data.data_seed
        )
        task = dataclasses.replace(task, source=dataclasses.replace(task.source, train=few))
    target_labeled = None
    if config.data.target_labels_per_class:
        if is_unlabeled(task.target.train):  # from_arrays: placeholder labels only
            raise ValueError(
                f"config.data.target_labels_per_class={config.data.target_labels_per_class} "
                f"needs target labels, but task {task.name!r} has an unlabelled target "
                "(tljax.data.from_arrays). Set it to 0."
            )
        task, target_labeled = split_target_labels(
            task, config.data.target_labels_per_class, seed=config.data.data_seed
        )
    backbone_kwargs = config.model.backbone_kwargs.to_dict()
    if config.model.pretrained:
        backbone_kwargs = pretrained.backbone_kwargs(
            config.model.backbone, backbone_kwargs, config.model.pretrained
        )
    model = build_classifier(
        config.model.backbone,
        task.source.train.x.shape[1:],
        task.num_classes,
        rngs=nnx.Rngs(config.seed),
        bottleneck_dim=config.model.bottleneck_dim or None,
        **backbone_kwargs,
    )
    if config.model.pretrained:
        # Before build_net, so the copies methods make in Method.init see these weights.
        pretrained.load(model.backbone, config.model.backbone, config.model.pretrained)
    graphs, params, rest = build_net(
        model,
        method,
        seed=config.seed,
        num_classes=task.num_classes,
        num_domains=task.num_domains if multi else 1,
    )
    if config.model.init_from:
        params, rest = init_from(params, rest, config.model.init_from, config.model.init_include)
    o = config.optim
    schedule = optim.make_schedule(
        o.schedule,
        base_lr=o.lr,
        total_steps=config.train.steps,
        gamma=o.gamma,
        power=o.power,
        warmup_steps=o.warmup_steps,
    )
    tx, labels, rule_report = optim.make_optimizer(
        params,
        [tuple(r) for r in o.freeze],
        optimizer=o.optimizer,
        schedule=schedule,
        momentum=o.momentum,
        nesterov=o.nesterov,
        weight_decay=o.weight_decay,
        b1=o.b1,
        b2=o.b2,
        grad_clip=o.grad_clip or None,
    )
    dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else None
    step = make_train_step(
        graphs,
        method,
        tx,
        frozen=optim.frozen_mask(labels),
        weight=config.method.weight,
        num_classes=task.num_classes,
        lr_schedule=schedule,
        compute_dtype=dtype,
        target_labeled=target_labeled is not None,
    )
    transform = augment.for_inputs(
        config.data.augment,
        config.data.augment_kwargs.to_dict(),
        task.source.train.x[:1].astype(np.float32) if uint8 else task.source.train.x,
        **pixel_stats,
    )
    if transform is not None:
        step = with_augmentation(step, transform)
    eval_step = make_eval_step(graphs, dtype)
    if uint8:
        step = pixels.with_to_float(step, **pixel_stats)
        eval_step = pixels.eval_with_to_float(eval_step, **pixel_stats)
    return dict(
        task=task,
        source_val=source_val,
        target_labeled=target_labeled,
        method=method,
        graphs=graphs,
        tx=tx,
        labels=labels,
        report=rule_report,
        schedule=schedule,
        train_step=step,
        eval_step=eval_step,
        state=init_state(params, rest, tx, seed=config.seed),
        # A method's own decision rule for label-set tasks (UAN's unknown); None: arg-max.
        predict_step=evaluate_label_sets.make_predict_step(graphs, method, dtype),
    )


def _evaluate(parts, state, eval_fn, sharding, batch_size, *, selection=True):
    """Test accuracies of both domains and, for model selection, the unsupervised target
    scores (on the unlabeled target *train* split) and source-validation scores."""
    task, method = parts["task"], parts["method"]
    out = {}

    def run(x, role):
        params, rest = state.params, state.rest
        if method.eval_state is not None:  # e.g. ADDA evaluates the target encoder
            params, rest = method.eval_state(params, rest, domain=role)
        return evaluate.predict(eval_fn, params, rest, x, batch_size=batch_size, sharding=sharding)

    if isinstance(task, MultiDomainTask):
        return evaluate_domains(task, run, selection=selection)

    logits = feats = None
    for role, domain in (("source", task.source), ("target", task.target)):
        # Single-domain tasks share the test split: the same computation, done once.
        if not (role == "target" and domain.test is task.source.test and not method.eval_state):
            logits, feats = run(domain.test.x, role)
        out[f"{role}_test_acc"] = evaluate.accuracy(logits, domain.test.y)
        out[f"{role}_test_mean_class_acc"] = evaluate.mean_class_accuracy(
            logits, domain.test.y, task.num_classes
        )
    # Partial/open-set/universal tasks: the setting's metrics (HOS, H-score, ...).
    out.update(
        evaluate_label_sets.loop_metrics(
            task, method, parts.get("predict_step"), state, logits, feats
        )
    )
    if not selection:
        return out
    t_logits, t_feats = run(task.target.train.x, "target")
    out["target_neg_entropy"] = evaluate.neg_entropy_score(t_logits)
    out["target_im"] = evaluate.information_maximization_score(t_logits)
    out["target_snd"] = evaluate.snd_score(t_feats, t_logits)
    val = parts.get("source_val")
    if val is not None and len(val):
        v_logits, v_feats = run(val.x, "source")
        out["source_val_acc"] = evaluate.accuracy(v_logits, val.y)
        out["target_neg_dev"] = evaluate.dev_score(v_feats, v_logits, val.y, t_feats)
    return out


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (resuming from ``workdir`` if it holds a checkpoint) and evaluates.

    Writes ``config.json``, ``freeze_rules.txt``, ``metrics.jsonl``, TensorBoard events,
    ``checkpoints/`` and, at the end, ``results.json`` to ``workdir``.

    Returns:
      The final results: accuracies on the source and target *test* splits.

    Raises:
      ValueError: bad config, data or shapes.
      FloatingPointError: the loss became NaN/Inf (the message names the step; the last
        checkpoint, written before it, is kept).
      tljax.workdir.WorkdirBusy: another live run holds ``workdir``.
      tljax.checkpoint.CheckpointError: no checkpoint can be trusted, or one cannot be
        written (``CheckpointWriteError``).
      tljax.logs.LogWriteError: ``metrics.jsonl`` cannot be written.
    """
    if config.train.deterministic:  # first: XLA reads it when the backend starts
        xla_env.apply_deterministic()
    config_lib.validate(config)
    # In place, before anything records the config: config.json and the printed config
    # hold the effective values (optimizer defaults, every method hyperparameter).
    config_lib.resolve(config)
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    # One run per workdir: a second one is refused (WorkdirBusy) before it writes anything.
    with WorkdirLock(workdir, enabled=distributed.is_main_process()):
        return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir: str) -> dict:
    parts = build(config)
    t = config.train
    mesh = data_mesh()
    n_dev = mesh.devices.size
    if config.data.batch_size % n_dev or t.eval_batch_size % n_dev:
        raise ValueError(
            f"data.batch_size={config.data.batch_size} and train.eval_batch_size="
            f"{t.eval_batch_size} must be multiples of the {n_dev} devices."
        )
    labeled_bs = target_labeled_batch_size(config, parts["target_labeled"])
    if labeled_bs and labeled_bs % n_dev:
        raise ValueError(
            f"The labelled target batch size {labeled_bs} (data.target_labeled_batch_size, "
            f"0 = min(batch_size, {len(parts['target_labeled'])} labelled examples)) must be "
            f"a multiple of the {n_dev} devices."
        )
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    stacked_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
    # Several processes: all check the config, only process 0 writes files (logs included).
    main = distributed.is_main_process()
    check_config(workdir, config, write=main)
    if main:
        log.info(
            "Effective config (%s):\n%s",
            os.path.join(workdir, "config.json"),
            config_lib.format_config(config),
        )
        with open(os.path.join(workdir, "freeze_rules.txt"), "w") as f:
            f.write(optim.format_rule_report(parts["report"]) + "\n")

    state = jax.device_put(parts["state"], replicated)
    stream = make_stream(config, parts, seed=config.seed, target_labeled_batch_size=labeled_bs)
    logger = MetricLogger(workdir, tensorboard=t.tensorboard, enabled=main)
    ckpt = Checkpointer(workdir, max_to_keep=t.max_to_keep)
    try:
        if ckpt.latest_step() is not None:
            tree, meta = ckpt.restore(_state_to_tree(state))
            state = TrainState(**tree)
            stream.set_state(meta["stream"])
            log.info("Resumed from step %d in %s", int(state.step), ckpt.directory)
        # Also with no checkpoint: lines a killed run logged past it would repeat.
        logger.truncate_after(int(state.step))
        return _run(
            config,
            parts,
            state,
            stream,
            logger,
            ckpt,
            (replicated, batch_sharding, stacked_sharding),
            workdir,
        )
    finally:
        try:
            ckpt.close()
        finally:
            logger.close()


def _interactive(stream) -> bool:
    """A terminal, or a Jupyter/IPython kernel's output (tqdm.auto draws a widget there)."""
    return stream.isatty() or type(stream).__module__.startswith("ipykernel")


def _run(config, parts, state, stream, logger, ckpt, shardings, workdir):
    task, t = parts["task"], config.train
    replicated, batch_sharding, stacked_sharding = shardings
    main = distributed.is_main_process()
    k = t.steps_per_call
    step_fn = parts["train_step"]
    if k > 1:
        single = step_fn
        step_fn = lambda s, b: jax.lax.scan(lambda c, x: single(c, x), s, b)
    train = jax.jit(step_fn, donate_argnums=0)
    # Replicated outputs: every process gets all logits and evaluates the full test sets.
    eval_fn = jax.jit(parts["eval_step"], out_shardings=replicated)
    start = int(state.step)
    pending, last_ckpt = [], ckpt.latest_step()
    bar, lines = None, False
    # A bar only on a terminal: redirected to a file, its redraws fill the log; there a
    # line per log_every steps says the same.
    if t.progress and main and _interactive(sys.stderr):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=t.steps,
            initial=start,
            desc=f"{config.method.name} {task.name}",
            unit="step",
            dynamic_ncols=True,
        )
    elif t.progress and main:
        lines = True
    tic, t_window, compile_s = time.perf_counter(), time.perf_counter(), None
    step = start

    def produce():  # runs on the prefetch thread
        if k > 1:
            batch = _stack([next(stream) for _ in range(k)])
            return distributed.put_global(batch, stacked_sharding)
        return distributed.put_global(next(stream), batch_sharding)

    # Checkpoints store the state after the *consumed* batches (not the prefetched ones).
    # The prefetch thread is stopped on every way out (an error included): a thread still
    # feeding the device while the interpreter shuts down can abort the process.
    with Prefetcher(produce, stream.get_state, depth=config.data.prefetch) as feed:
        while step < t.steps:
            batch = next(feed)
            state, metrics = train(state, batch)
            step += k
            pending.append(metrics)
            if compile_s is None:
                jax.block_until_ready(state.step)
                compile_s = time.perf_counter() - tic
                t_window = time.perf_counter()
            if bar is not None:
                bar.update(k)
            if step % t.log_every == 0 or step >= t.steps:
                host = jax.device_get(pending)
                pending = []
                bad = int(jax.device_get(state.nonfinite_step))
                if bad >= 0:
                    kept = (
                        f"The last good checkpoint (step {last_ckpt}) is kept in {ckpt.directory}."
                        if last_ckpt is not None
                        else "No checkpoint was saved before it (nothing to resume from)."
                    )
                    raise FloatingPointError(
                        f"The loss became NaN/Inf at step {bad}; stopping. {kept}"
                    )
                avg = {m: float(np.mean([np.mean(h[m]) for h in host])) for m in host[0]}
                now = time.perf_counter()
                avg["steps_per_s"] = len(host) * k / max(now - t_window, 1e-9)
                t_window = now
                logger.write(step, "train", avg)
                if bar is not None:
                    bar.set_postfix(loss=f"{avg['loss']:.3f}", src_acc=f"{avg['source_acc']:.2f}")
                if lines:
                    log.info(
                        "step %d/%d  loss %.3f  src_acc %.2f  %.1f step/s",
                        step,
                        t.steps,
                        avg["loss"],
                        avg.get("source_acc", float("nan")),
                        avg["steps_per_s"],
                    )
            if step % t.eval_every == 0 or step >= t.steps:
                logger.write(
                    step,
                    "eval",
                    _evaluate(parts, state, eval_fn, batch_sharding, t.eval_batch_size),
                )
            if step % t.checkpoint_every == 0 or step >= t.steps:
                ckpt.save(step, _state_to_tree(state), {"stream": feed.get_state()})
                last_ckpt = step
    if bar is not None:
        bar.close()
    ckpt.wait()  # a failed last checkpoint fails the run before it writes results.json
    final = _evaluate(parts, state, eval_fn, batch_sharding, t.eval_batch_size, selection=False)
    elapsed = time.perf_counter() - tic
    results = {
        "task": task.name,
        "method": config.method.name,
        "seed": int(config.seed),
        "steps": int(state.step),
        **final,
        "evaluated_on": evaluated_on(task),
        "selection": "last step",
        # Other processes have no metrics.jsonl of their own to select from.
        "by_selection_rule": report.select_by_rules(read_metrics(workdir, "eval")) if main else {},
        "trained_steps_this_run": int(state.step) - start,
        "wall_time_s": elapsed,
        "compile_s": compile_s,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
    }
    if main:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    return results
