"""Building blocks for methods with their own train step (MCD, ADDA, self-training, ...).

A custom step follows the default step of :mod:`tljax.train`: merge the static graph with
the (cast) parameters, run the model, differentiate, update, bump the step counter and
flag non-finite metrics. What it adds is :func:`partial_update`: one optimizer update
applied to a subset of the parameters only.

Partial updates with one optimizer state
----------------------------------------
The state holds a single optimizer state for all parameters. A stage that trains only
some leaves (MCD's step B trains the classifiers, step C the feature extractor) computes
the update for the whole tree with ``tx.update`` and then *selects*, leaf by leaf: the
stage's leaves take the new parameter and the new optimizer moments, every other leaf
keeps its parameter and its moments bitwise. So momentum and weight decay never move a
"fixed" leaf (the update ``tx`` proposes for it, e.g. ``-lr·wd·w``, is discarded), and
its moments are exactly as if the stage had not happened, as with one PyTorch optimizer
per parameter group that is simply not stepped.

Optimizer-state leaves are matched to parameters by their key path: the moment trees of
optax (``trace``, ``mu``, ``nu``, also inside ``optax.partition``) repeat the parameter
tree, so a state leaf whose path ends with a parameter's path is that parameter's moment.
The remaining leaves are per-transformation counters (the ``count`` that drives the lr
schedule and Adam's bias correction). They are kept through the stages and advanced once
per iteration with :func:`advance_counters`, so every stage of iteration ``i`` uses the
learning rate ``lr(i)`` and the schedule follows iterations, not updates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tljax.optim import path_str


def step_rng(state, rng=None) -> jax.Array:
    """The step's PRNG key: ``rng`` if given, else ``fold_in(state.rng, state.step)``."""
    if rng is not None:
        return rng
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def cast_floats(tree, dtype):
    """Casts the floating leaves of ``tree`` to ``dtype`` (``None``: unchanged)."""
    if dtype is None:
        return tree
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def stop_gradient_where(params, mask):
    """``stop_gradient`` on the leaves where ``mask`` (a tree of bools) is ``True``."""
    return jax.tree.map(lambda p, m: jax.lax.stop_gradient(p) if m else p, params, mask)


def path_mask(params, predicate: Callable[[str], bool]):
    """A tree of Python bools: ``predicate(path)`` for each parameter path
    (``"model/backbone/layers/0/kernel"``)."""
    return jax.tree_util.tree_map_with_path(lambda p, _: bool(predicate(path_str(p))), params)


def mask_or(a, b):
    """Leafwise ``a or b`` of two bool trees."""
    return jax.tree.map(lambda x, y: x or y, a, b)


def mask_not(a):
    """Leafwise ``not a`` of a bool tree."""
    return jax.tree.map(lambda x: not x, a)


def updated_rest(net: nnx.Module, rest):
    """The non-parameter state of ``net`` after its forward passes, in ``rest``'s dtypes."""
    _, _, new = nnx.split(net, nnx.Param, ...)
    return jax.tree.map(lambda n, o: n.astype(o.dtype), nnx.to_pure_dict(new), rest)


def _select(flag, new, old):
    if isinstance(flag, bool):
        return new if flag else old
    return jnp.where(flag, new, old)


def _owners(opt_state, params) -> tuple[list, Any, list]:
    """For each optimizer-state leaf, the index of the parameter it belongs to, or None."""
    index = {
        tuple(p): i for i, (p, _) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0])
    }
    shapes = [jnp.shape(x) for x in jax.tree.leaves(params)]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(opt_state)
    owners = []
    for path, leaf in leaves:
        owner = next(
            (index[tuple(path[i:])] for i in range(len(path)) if tuple(path[i:]) in index), None
        )
        if owner is not None and jnp.shape(leaf) != shapes[owner]:
            raise ValueError(
                f"Optimizer state leaf {jax.tree_util.keystr(path)} has shape "
                f"{jnp.shape(leaf)} but its parameter has shape {shapes[owner]}; cannot "
                "apply a partial update with this optimizer."
            )
        owners.append(owner)
    return owners, treedef, [leaf for _, leaf in leaves]


def partial_update(tx: optax.GradientTransformation, grads, opt_state, params, mask):
    """One optimizer update applied only where ``mask`` is true (see the module docstring).

    Args:
      tx: the optimizer.
      grads: gradients for the whole tree (values outside ``mask`` are irrelevant).
      opt_state: the optimizer state.
      params: the parameters.
      mask: a tree like ``params`` of Python bools or traced bool scalars.

    Returns:
      ``(params, opt_state, stepped)``: the parameters and optimizer state with only the
      masked leaves updated (counters kept), and the full new optimizer state ``stepped``
      (pass it to :func:`advance_counters` once per iteration).
    """
    updates, stepped = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    params = jax.tree.map(_select, mask, new_params, params)
    owners, treedef, old = _owners(opt_state, params)
    flags = jax.tree.leaves(mask)
    new = treedef.flatten_up_to(stepped)
    kept = [o if k is None else _select(flags[k], n, o) for k, n, o in zip(owners, new, old)]
    return params, jax.tree.unflatten(treedef, kept), stepped


def advance_counters(opt_state, stepped, params, flag=True):
    """Takes the counters (state leaves that are no parameter's moments) from ``stepped``.

    Args:
      opt_state: the state after the iteration's partial updates.
      stepped: a full new state returned by :func:`partial_update` this iteration.
      params: the parameters (for the structure).
      flag: Python bool or traced bool; ``False`` keeps the old counters.
    """
    owners, treedef, old = _owners(opt_state, params)
    new = treedef.flatten_up_to(stepped)
    out = [_select(flag, n, o) if k is None else o for k, n, o in zip(owners, new, old)]
    return jax.tree.unflatten(treedef, out)


def finish(state, *, params, rest, opt_state, metrics: dict, lr_schedule=None):
    """The end of every step: bump ``step``, record the first non-finite step, log lr.

    A step is non-finite if any metric is NaN/Inf.
    """
    step = state.step
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
    nonfinite_step = jnp.where((state.nonfinite_step < 0) & ~finite, step, state.nonfinite_step)
    if lr_schedule is not None:
        metrics["lr"] = jnp.asarray(lr_schedule(step), jnp.float32)
    new_state = state.replace(
        step=step + 1,
        params=params,
        rest=rest,
        opt_state=opt_state,
        nonfinite_step=nonfinite_step,
    )
    return new_state, jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels
    ).mean()


# --- Fine-tuning steps (inductive transfer: L2-SP, DELTA, LwF, plain fine-tuning) ---------
#
# These methods train on the labelled source batch only and regularise towards the
# *starting point* of the run: the model as it is when training starts, i.e. after
# ``model.init_from`` (or any other import) has loaded pretrained weights. ``Method.init``
# runs before that loading, so a frozen copy made there holds the random initialisation;
# :func:`capture_start` therefore overwrites the copy with the model's parameters and
# state inside the first step (``state.step == 0``). The copy lives in ``rest`` (saved in
# checkpoints), so a resumed run keeps the captured starting point.


def overlay(tree: dict, source: dict) -> dict:
    """``tree`` with each floating-point leaf that ``source`` holds at the same key path
    replaced by ``source``'s leaf (cast to the old dtype); other leaves are kept.

    Raises:
      ValueError: if ``source`` has a key that ``tree`` lacks.
    """
    if not isinstance(source, dict):
        if jnp.issubdtype(jnp.result_type(tree), jnp.floating):
            return jnp.asarray(source).astype(jnp.result_type(tree))
        return tree
    out = dict(tree)
    for key, value in source.items():
        if key not in tree:
            raise ValueError(f"overlay: key {key!r} is not in the target tree ({sorted(tree)}).")
        out[key] = overlay(tree[key], value)
    return out


def capture_start(rest: dict, params: dict, step: jax.Array, *, at: tuple[str, ...]) -> dict:
    """At step 0, copies ``params["model"]`` and ``rest["model"]`` into the frozen copy of
    the model stored at ``rest[at[0]][at[1]]...``; at later steps returns ``rest`` as is.

    Args:
      rest: the non-parameter state (pure dict).
      params: the parameters (pure dict with a ``"model"`` entry).
      step: the state's step counter (traced).
      at: key path of the frozen copy in ``rest``, e.g. ``("method", "start")``.
    """
    node = rest
    for key in at:
        node = node[key]
    fresh = overlay(overlay(node, params["model"]), rest.get("model", {}))
    first = jnp.asarray(step) == 0
    captured = jax.tree.map(lambda new, old: jnp.where(first, new, old), fresh, node)

    def put(tree, keys):
        if not keys:
            return captured
        return {**tree, keys[0]: put(tree[keys[0]], keys[1:])}

    return put(rest, tuple(at))


def finetune_step(
    *,
    model,
    tx: optax.GradientTransformation,
    frozen,
    weight: float,
    lr_schedule: Callable | None = None,
    compute_dtype=None,
    name: str,
    penalty: Callable | None = None,
    capture_at: tuple[str, ...] | None = None,
    bn_stats: str = "adapt",
) -> Callable:
    """The default train step on the source batch only, plus ``weight · penalty``.

    ``loss = CE(C(F(x_s)), y_s) + weight · penalty`` with one optimizer update; frozen
    parameters are ``stop_gradient``-ed as in the default step. The target batch is not
    used (inductive transfer: the labelled data is the new task).

    Args:
      model: the static graphs (:class:`tljax.train.Model`).
      tx, frozen, weight, lr_schedule, compute_dtype: as in
        :func:`tljax.train.make_train_step`.
      name: the method's name (prefix of its metrics).
      penalty: ``penalty(*, net, ref, params, rest, src, images, rng, step) ->
        (scalar, metrics)``; ``net`` is the merged training-mode network, ``ref`` the same
        state merged in evaluation mode (for frozen reference models), ``params`` the
        float32 parameters (frozen ones under ``stop_gradient``), ``src`` the model's
        :class:`~tljax.methods.base.Outputs` on ``images``. ``None``: no penalty.
      capture_at: key path in ``rest`` of a frozen copy of the model to fill with the
        starting point at step 0 (:func:`capture_start`); ``None``: nothing captured.
      bn_stats: ``"adapt"`` (BatchNorm in training mode: batch statistics, running
        statistics updated) or ``"frozen"`` (the model's BatchNorm layers normalise with
        their running statistics and keep them; :func:`tljax.bn.use_running_statistics`).

    Raises:
      ValueError: for an unknown ``bn_stats``.
    """
    from tljax.bn import use_running_statistics
    from tljax.methods.base import Outputs

    if bn_stats not in ("adapt", "frozen"):
        raise ValueError(f"{name}: bn_stats must be 'adapt' or 'frozen', got {bn_stats!r}.")

    def loss_fn(params, rest, batch, rng, step):
        params = stop_gradient_where(params, frozen)
        cast = cast_floats(params, compute_dtype)
        net = nnx.merge(model.train_graph, cast, rest)
        if bn_stats == "frozen":
            use_running_statistics(net.model)
        x = cast_floats(batch["source"]["image"], compute_dtype)
        logits, out = net.model(x)
        src = Outputs(
            logits.astype(jnp.float32),
            out["features"],
            {k: v for k, v in out.items() if k != "features"},
        )
        labels = batch["source"]["label"]
        task = cross_entropy(src.logits, labels)
        if penalty is None:
            value, extra = jnp.zeros((), jnp.float32), {}
        else:
            ref = nnx.merge(model.eval_graph, cast, cast_floats(rest, compute_dtype))
            value, extra = penalty(
                net=net, ref=ref, params=params, rest=rest, src=src, images=x, rng=rng, step=step
            )
            value = jnp.asarray(value, jnp.float32)
        metrics = {
            "loss": task + weight * value,
            "task_loss": task,
            "method_loss": value,
            "source_acc": jnp.mean(jnp.argmax(src.logits, -1) == labels),
            **{f"{name}/{k}": v for k, v in extra.items()},
        }
        return metrics["loss"], (updated_rest(net, rest), metrics)

    def step(state, batch, rng=None):
        rng = step_rng(state, rng)
        rest = state.rest
        if capture_at is not None:
            rest = capture_start(rest, state.params, state.step, at=capture_at)
        grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(
            state.params, rest, batch, rng, state.step
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return finish(
            state,
            params=params,
            rest=rest,
            opt_state=opt_state,
            metrics=metrics,
            lr_schedule=lr_schedule,
        )

    return step
