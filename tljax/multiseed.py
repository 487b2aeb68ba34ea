"""Train N seeds of one config (or N values of shape-preserving hyperparameters) in ONE
jit-compiled program, ``jax.vmap`` over a stacked :class:`~tljax.train.TrainState`.

Each member is what :func:`tljax.loop.train_and_evaluate` would run with its config: its
own initial parameters and PRNG key (from its seed), its own data order (one
:class:`~tljax.data.stream.DomainPairStream` per member, batches stacked on a leading
axis), the same evaluations (member after member, with the trainer's own evaluation
code), logs, checkpoints and ``results.json``. Results agree with separate runs up to
float reduction order (a vmapped convolution is a grouped one).

Speed depends on the backend: one program saves N-1 compilations and N-fold dispatch,
and batches dense layers well, but XLA's CPU backend runs the grouped convolutions of a
vmapped conv net several times slower than N plain ones; see ``docs/seeds.md``.

Members may differ only in ``seed`` and in :data:`TRACEABLE` hyperparameters, which enter
the step as traced scalars instead of Python constants; anything else (widths, batch size,
method, schedule kind) changes shapes or the program, so it needs separate runs.

    results = train_seeds(config, seeds=[0, 1, 2, 3], workdir="runs/dann_x4")

A run directory per member (``<workdir>/seed_<s>``, or ``<workdir>/<variant>/seed_<s>``)
holds the same files as a single run, so :mod:`experiments.report` reads them as usual
and ``experiments.run`` could resume one alone. A vmapped run resumes from the latest
checkpoint step that all members share.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from tljax import config as config_lib
from tljax import loop, optim, report
from tljax.checkpoint import Checkpointer
from tljax.logs import MetricLogger, read_metrics
from tljax.train import TrainState, make_train_step
from tljax.workdir import check_config

log = logging.getLogger("tljax")

# Config keys that may differ between members: scalars used only arithmetically.
TRACEABLE = ("method.weight", "optim.lr", "optim.gamma")


def stack(trees):
    """Stacks pytrees of identical structure on a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, i: int):
    """Member ``i`` of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def member_differences(configs) -> list[str]:
    """The flattened config keys (besides ``seed``) whose values differ between members.

    Raises:
      ValueError: if there are no configs or members differ in a key that is not in
        :data:`TRACEABLE` (such members cannot share one compiled program).
    """
    if not configs:
        raise ValueError("No members to train: pass at least one config or seed.")
    flats = [config_lib.flatten(c) for c in configs]
    keys = sorted(set().union(*flats) - {"seed"})
    diff = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    bad = [k for k in diff if k not in TRACEABLE]
    if bad:
        raise ValueError(
            f"Members differ in {bad} ({[[f.get(k) for f in flats] for k in bad]}); vmapped "
            f"members may differ only in 'seed' and {list(TRACEABLE)}. Train the others as "
            "separate runs (experiments.sweep)."
        )
    return diff


def _member_step(config, parts, hp: dict):
    """``train_step`` of one member whose :data:`TRACEABLE` values ``hp`` are traced."""
    o = config.optim
    schedule = optim.make_schedule(
        o.schedule,
        base_lr=hp.get("optim.lr", o.lr),
        total_steps=config.train.steps,
        gamma=hp.get("optim.gamma", o.gamma),
        power=o.power,
        warmup_steps=o.warmup_steps,
    )
    tx, labels, _ = optim.make_optimizer(
        parts["state"].params,
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
    return make_train_step(
        parts["graphs"],
        parts["method"],
        tx,
        frozen=optim.frozen_mask(labels),
        weight=hp.get("method.weight", config.method.weight),
        num_classes=parts["task"].num_classes,
        lr_schedule=schedule,
        compute_dtype=jnp.bfloat16 if config.model.dtype == "bfloat16" else None,
    )


def build_members(configs, *, chunk: int | None = None):
    """Builds the members and one step over all of them.

    Args:
      configs: one config per member (see :func:`member_differences`).
      chunk: ``None`` vmaps all members at once. An integer ``k`` runs ``lax.map`` over
        the members, ``k`` vmapped at a time (``1``: a loop inside the one compiled
        program; bounds memory when N members do not fit at once). Measured on CPU
        (docs/seeds.md): vmapped convolutions with per-member kernels become grouped
        convolutions, ~5x slower than N plain ones on XLA's CPU backend, and convolutions
        inside ``lax.map``'s loop are slower still; dense layers batch well.

    Returns:
      ``(parts, state, step)``: the :func:`tljax.loop.build` parts of the first member
      (task, eval step, ...), the stacked initial states and the un-jitted
      ``step(state, batch) -> (state, metrics)`` over stacked states and batches
      (leading axis: member; metrics have shape ``(members,)``).

    Raises:
      ValueError: for members that cannot share one program or a bad ``chunk``.
    """
    diff = member_differences(configs)
    if chunk is not None and not 1 <= chunk <= len(configs):
        raise ValueError(f"chunk={chunk} must be None or in [1, {len(configs)}] (members).")
    all_parts = [loop.build(c) for c in configs]
    parts = all_parts[0]
    state = stack([p["state"] for p in all_parts])
    hp = {k: jnp.asarray([config_lib.flatten(c)[k] for c in configs], jnp.float32) for k in diff}
    if diff:
        one = lambda s, b, h: _member_step(configs[0], parts, h)(s, b)
    else:
        one = lambda s, b, h: parts["train_step"](s, b)
    if chunk is None:
        vstep = jax.vmap(one)
        return parts, state, lambda s, b: vstep(s, b, hp)
    mapped = lambda s, b: jax.lax.map(lambda x: one(*x), (s, b, hp), batch_size=chunk)
    return parts, state, mapped


def member_dirs(configs, workdir: str) -> list[str]:
    """``<workdir>/seed_<s>``, or ``<workdir>/<k=v__...>/seed_<s>`` when members differ in
    hyperparameters."""
    diff = member_differences(configs)
    dirs = []
    for c in configs:
        flat = config_lib.flatten(c)
        sub = "__".join(f"{k}={flat[k]:g}" for k in diff)
        dirs.append(os.path.join(workdir, sub, f"seed_{c.seed}"))
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"Two members would share a run directory: {dirs}.")
    return dirs


def train_seeds(
    config, seeds, workdir: str | None = None, *, chunk: int | None = None
) -> list[dict]:
    """Trains ``config`` with each seed of ``seeds`` in one vmapped program.

    ``chunk``: see :func:`build_members`.

    Returns:
      Per seed, the results :func:`tljax.loop.train_and_evaluate` would return.
    """
    configs = []
    for s in seeds:
        c = copy.deepcopy(config)
        c.seed = int(s)
        configs.append(c)
    return train_members(configs, workdir, chunk=chunk)


def train_members(configs, workdir: str | None = None, *, chunk: int | None = None) -> list[dict]:
    """Trains configs that differ only in ``seed`` and :data:`TRACEABLE` keys, vmapped.

    Args:
      configs: one config per member.
      workdir: if given, each member gets a run directory (:func:`member_dirs`) with
        ``config.json``, ``metrics.jsonl``, checkpoints and ``results.json``; members
        whose ``results.json`` exists are done, and if all are done nothing is trained.
      chunk: members vmapped at a time (:func:`build_members`); ``None``: all.

    Returns:
      Per member, the results dict of :func:`tljax.loop.train_and_evaluate` plus
      ``"vmap_members"``; ``wall_time_s`` is the group's time divided by the members.

    Raises:
      ValueError: members that cannot share one program, or a bad config.
      FloatingPointError: a member's loss became NaN/Inf (the message names it and the
        step; the last checkpoints are kept).
    """
    dirs = member_dirs(configs, os.path.abspath(workdir)) if workdir else None
    if dirs and all(os.path.exists(os.path.join(d, "results.json")) for d in dirs):
        out = []
        for d in dirs:
            with open(os.path.join(d, "results.json")) as f:
                out.append(json.load(f))
        return out
    t = configs[0].train
    parts, state, step = build_members(configs, chunk=chunk)
    labeled = parts["target_labeled"]  # checked against the method by loop.build
    streams = [
        loop.make_stream(
            c,
            parts,
            seed=c.seed,
            target_labeled_batch_size=loop.target_labeled_batch_size(c, labeled),
        )
        for c in configs
    ]
    loggers, ckpts, start = None, None, 0
    if dirs:
        for d, c in zip(dirs, configs):
            os.makedirs(d, exist_ok=True)
            check_config(d, c)
            with open(os.path.join(d, "freeze_rules.txt"), "w") as f:
                f.write(optim.format_rule_report(parts["report"]) + "\n")
        loggers = [MetricLogger(d, tensorboard=t.tensorboard) for d in dirs]
        ckpts = [Checkpointer(d, max_to_keep=t.max_to_keep) for d in dirs]
        state, start = _resume(state, streams, loggers, ckpts)
    try:
        return _run(configs, parts, state, step, streams, loggers, ckpts, dirs, start)
    finally:
        for obj in (loggers or []) + (ckpts or []):
            obj.close()


def _resume(state, streams, loggers, ckpts):
    """Restores every member at the latest checkpoint step they all have (or keeps step 0)."""
    shared = set.intersection(*(set(c.all_steps()) for c in ckpts))
    if not shared:
        for lg in loggers:
            lg.truncate_after(0)
        return state, 0
    at = max(shared)
    members = []
    for i, (ckpt, stream, lg) in enumerate(zip(ckpts, streams, loggers)):
        tree, meta = ckpt.restore(loop._state_to_tree(unstack(state, i)), step=at)
        members.append(TrainState(**tree))
        stream.set_state(meta["stream"])
        lg.truncate_after(at)
    log.info("Resumed %d members from step %d", len(members), at)
    return stack(members), at


def _evaluate(parts, state, eval_fn, batch_size, n, *, selection=True) -> list[dict]:
    """Per member, exactly the evaluation of a single run (:func:`tljax.loop._evaluate`),
    member after member. Not vmapped: the evaluation then cannot drift from the trainer's,
    and on CPU a vmapped convolution is slower than N plain ones (docs/seeds.md)."""
    return [
        loop._evaluate(parts, unstack(state, i), eval_fn, None, batch_size, selection=selection)
        for i in range(n)
    ]


def _run(configs, parts, state, step_fn, streams, loggers, ckpts, dirs, start):
    t, n = configs[0].train, len(configs)
    k = t.steps_per_call
    if k > 1:
        single = step_fn
        step_fn = lambda s, b: jax.lax.scan(lambda c, x: single(c, x), s, b)
    train = jax.jit(step_fn, donate_argnums=0)
    eval_fn = jax.jit(parts["eval_step"])  # compiled once, shared by the members
    eval_rows = [[] for _ in range(n)]
    pending, tic, t_window, compile_s = [], time.perf_counter(), time.perf_counter(), None
    step = start
    while step < t.steps:
        batches = [loop._stack([next(s) for s in streams]) for _ in range(k)]
        state, metrics = train(state, batches[0] if k == 1 else loop._stack(batches))
        step += k
        pending.append(metrics)
        if compile_s is None:
            jax.block_until_ready(state.step)
            compile_s = time.perf_counter() - tic
            t_window = time.perf_counter()
        if step % t.log_every == 0 or step >= t.steps:
            host, pending = jax.device_get(pending), []
            bad = np.asarray(jax.device_get(state.nonfinite_step))
            if (bad >= 0).any():
                who = {configs[i].seed: int(bad[i]) for i in np.flatnonzero(bad >= 0)}
                raise FloatingPointError(
                    f"The loss became NaN/Inf (seed: step {who}); stopping all members. "
                    "The last checkpoints are kept."
                )
            now = time.perf_counter()
            rate = len(host) * k / max(now - t_window, 1e-9)
            t_window = now
            for i in range(n):
                avg = {m: float(np.mean([np.mean(h[m][..., i]) for h in host])) for m in host[0]}
                avg["steps_per_s"] = rate
                if loggers:
                    loggers[i].write(step, "train", avg)
        if step % t.eval_every == 0 or step >= t.steps:
            evals = _evaluate(parts, state, eval_fn, t.eval_batch_size, n)
            for i, e in enumerate(evals):
                eval_rows[i].append({"step": step, "kind": "eval", **e})
                if loggers:
                    loggers[i].write(step, "eval", e)
        if ckpts and (step % t.checkpoint_every == 0 or step >= t.steps):
            for i, ckpt in enumerate(ckpts):
                meta = {"stream": streams[i].get_state()}
                ckpt.save(step, loop._state_to_tree(unstack(state, i)), meta)
    final = _evaluate(parts, state, eval_fn, t.eval_batch_size, n, selection=False)
    elapsed = time.perf_counter() - tic
    task = parts["task"]
    results = []
    for i, c in enumerate(configs):
        rows = read_metrics(dirs[i], "eval") if dirs else eval_rows[i]
        r = {
            "task": task.name,
            "method": c.method.name,
            "seed": int(c.seed),
            "steps": int(np.asarray(state.step)[i]),
            **final[i],
            "evaluated_on": {
                "source": f"{task.source.name}/test",
                "target": f"{task.target.name}/test",
            },
            "selection": "last step",
            "by_selection_rule": report.select_by_rules(rows),
            "trained_steps_this_run": int(np.asarray(state.step)[i]) - start,
            "wall_time_s": elapsed / n,
            "compile_s": compile_s,
            "vmap_members": n,
        }
        results.append(r)
        if dirs:
            with open(os.path.join(dirs[i], "results.json"), "w") as f:
                json.dump(r, f, indent=1)
    return results
