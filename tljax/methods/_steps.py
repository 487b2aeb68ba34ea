"""Building blocks for methods with their own train step (MCD, ADDA, self-training, ...).

A custom step follows the default step of :mod:`tljax.train`: merge the static graph with
the (cast) parameters, run the model, differentiate, update, bump the step counter and
flag non-finite metrics.

One update per iteration: :func:`own_step`
------------------------------------------
Methods whose step is *one* optimizer update of one objective (self-training, SimCLR,
mean teacher, and the fine-tuning regularisers L2-SP, DELTA, LwF through
:func:`finetune_step`) write only that objective; :func:`own_step` turns it into
``Method.train_step`` and owns the plumbing: ``stop_gradient`` of frozen parameters,
casts to the compute dtype, merging the graph (BatchNorm in training mode, or with frozen
statistics), the updated BatchNorm state, the optimizer update, the step's rng, the
standard metrics (``loss``, ``task_loss``, ``method_loss``, ``source_acc``, the method's
own under ``<name>/``, ``lr``) and the non-finite flag. Extra state outside the gradient
(a starting point captured at step 0, an EMA teacher) comes in through two hooks,
``prepare`` (before the gradient) and ``after_update`` (after the optimizer update)::

    def objective(ctx, batch):                     # ctx: StepContext (net, rng, step, ...)
        logits, _ = ctx.net.model(ctx.cast(batch["source"]["image"]))
        logits = logits.astype(jnp.float32)
        labels = batch["source"]["label"]
        task = cross_entropy(logits, labels)
        reg = jnp.mean(jax.nn.softmax(logits) ** 2)
        return Losses(task, reg, accuracy(logits, labels), {"reg": reg})

    Method(name="mine", init=no_params, train_step=own_step(objective, name="mine"))

The trainer minimises ``task + weight · method``.

Several updates per iteration (MCD, ADDA)
-----------------------------------------
These compose the pieces below themselves. What they add is :func:`partial_update`: one
optimizer update applied to a subset of the parameters only.

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

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

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


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of ``argmax(logits) == labels``."""
    return jnp.mean(jnp.argmax(logits, -1) == labels)


# --- One update per iteration: the shared step builder ------------------------------------


class Losses(NamedTuple):
    """What an :func:`own_step` objective returns.

    Attributes:
      task: the task loss (cross-entropy on the labelled batch; zero if there is none).
      method: the method's loss; the step minimises ``task + weight · method``.
      source_acc: the accuracy logged as ``source_acc``.
      metrics: the method's own metrics, logged as ``<name>/<key>``.
    """

    task: jax.Array
    method: jax.Array
    source_acc: jax.Array
    metrics: dict = {}


class StepContext:
    """What an :func:`own_step` objective sees of one step.

    Attributes:
      net: the network (``net.model``, ``net.method``) merged in training mode with the
        parameters in the compute dtype; BatchNorm state updated by its forward passes is
        kept by the step.
      params: the float32 parameters, frozen ones under ``stop_gradient``.
      rest: the non-parameter state this step started from (after ``prepare``).
      rng: the step's PRNG key.
      step: the step counter (traced int32).
      weight: the trade-off λ (``config.method.weight``).
      compute_dtype: the compute dtype, ``None`` for the parameters' dtype.
    """

    def __init__(self, *, net, params, cast_params, rest, rng, step, weight, compute_dtype, graphs):
        self.net = net
        self.params = params
        self.rest = rest
        self.rng = rng
        self.step = step
        self.weight = weight
        self.compute_dtype = compute_dtype
        self._cast_params = cast_params
        self._graphs = graphs

    def cast(self, x):
        """``x`` with its floating leaves in the compute dtype (integer inputs stay exact)."""
        return cast_floats(x, self.compute_dtype)

    @functools.cached_property
    def ref(self) -> nnx.Module:
        """The same parameters and state merged in evaluation mode (BatchNorm with its
        running statistics), e.g. for a frozen reference model; built on first use."""
        return nnx.merge(self._graphs.eval_graph, self._cast_params, self.cast(self.rest))


BN_STATS = ("adapt", "frozen")


def check_bn_stats(bn_stats: str, method: str) -> None:
    """Raises ValueError unless ``bn_stats`` is one of :data:`BN_STATS`."""
    if bn_stats not in BN_STATS:
        raise ValueError(f"{method}: bn_stats must be 'adapt' or 'frozen', got {bn_stats!r}.")


class JointOutputs(NamedTuple):
    """:func:`joint_forward`'s result: float32 ``logits`` and ``features`` of the source
    rows ``[:ns]`` followed by the target rows, the source ``labels`` and ``ns``."""

    logits: jax.Array
    features: jax.Array
    labels: jax.Array
    ns: int


def joint_forward(ctx: StepContext, batch) -> JointOutputs:
    """One forward pass of the model over the source and the target images together (one
    set of BatchNorm batch statistics, as DANN-style methods use), in training mode."""
    xs, xt = batch["source"]["image"], batch["target"]["image"]
    logits, out = ctx.net.model(ctx.cast(jnp.concatenate([xs, xt], axis=0)))
    return JointOutputs(
        logits.astype(jnp.float32),
        out["features"].astype(jnp.float32),
        batch["source"]["label"],
        xs.shape[0],
    )


def own_step(
    objective: Callable[[StepContext, Any], Losses],
    *,
    name: str,
    bn_stats: str = "adapt",
    prepare: Callable | None = None,
    after_update: Callable | None = None,
) -> Callable:
    """``Method.train_step`` for a method with one objective and one optimizer update.

    Args:
      objective: ``objective(ctx, batch) -> Losses`` (a :class:`StepContext` and the
        batch as given to the step); the step minimises ``task + ctx.weight · method``.
      name: the method's name (prefix of its metrics).
      bn_stats: ``"adapt"`` (BatchNorm in training mode: batch statistics, running
        statistics updated) or ``"frozen"`` (the model's BatchNorm layers normalise with
        their running statistics and keep them; :func:`tljax.bn.use_running_statistics`).
      prepare: ``prepare(rest, params, step) -> rest``, applied to the state before the
        gradient (e.g. :func:`capture_start`); ``None``: nothing.
      after_update: ``after_update(rest, params, step) -> (rest, metrics)``, applied after
        the optimizer update to the new parameters and the updated state (e.g. an EMA
        teacher); its metrics are logged as ``<name>/<key>``. ``None``: nothing.

    Returns:
      ``train_step(*, model, tx, frozen, weight, num_classes, lr_schedule=None,
      compute_dtype=None) -> step`` with the pure ``step(state, batch, rng=None) ->
      (state, metrics)`` (``rng`` defaults to ``fold_in(state.rng, state.step)``).

    Raises:
      ValueError: for an unknown ``bn_stats``.
    """
    check_bn_stats(bn_stats, name)

    def train_step(*, model, tx, frozen, weight, num_classes, lr_schedule=None, compute_dtype=None):
        del num_classes

        def loss_fn(params, rest, batch, rng, step):
            params = stop_gradient_where(params, frozen)
            cast = cast_floats(params, compute_dtype)
            net = nnx.merge(model.train_graph, cast, rest)
            if bn_stats == "frozen":
                from tljax.bn import use_running_statistics

                use_running_statistics(net.model)
            ctx = StepContext(
                net=net,
                params=params,
                cast_params=cast,
                rest=rest,
                rng=rng,
                step=step,
                weight=weight,
                compute_dtype=compute_dtype,
                graphs=model,
            )
            out = objective(ctx, batch)
            metrics = {
                "loss": out.task + weight * out.method,
                "task_loss": out.task,
                "method_loss": out.method,
                "source_acc": out.source_acc,
                **{f"{name}/{k}": v for k, v in out.metrics.items()},
            }
            return metrics["loss"], (updated_rest(net, rest), metrics)

        def step(state, batch, rng=None):
            rng = step_rng(state, rng)
            rest = state.rest
            if prepare is not None:
                rest = prepare(rest, state.params, state.step)
            grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(
                state.params, rest, batch, rng, state.step
            )
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            if after_update is not None:
                rest, extra = after_update(rest, params, state.step)
                metrics.update({f"{name}/{k}": v for k, v in extra.items()})
            return finish(
                state,
                params=params,
                rest=rest,
                opt_state=opt_state,
                metrics=metrics,
                lr_schedule=lr_schedule,
            )

        return step

    return train_step


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
    name: str,
    penalty: Callable | None = None,
    capture_at: tuple[str, ...] | None = None,
    bn_stats: str = "adapt",
) -> Callable:
    """``Method.train_step`` of the default step on the source batch only, plus
    ``weight · penalty`` (an :func:`own_step`).

    ``loss = CE(C(F(x_s)), y_s) + weight · penalty`` with one optimizer update; frozen
    parameters are ``stop_gradient``-ed as in the default step. The target batch is not
    used (inductive transfer: the labelled data is the new task).

    Args:
      name: the method's name (prefix of its metrics).
      penalty: ``penalty(ctx, src, images) -> (scalar, metrics)``; ``ctx`` is the
        :class:`StepContext` (``ctx.net`` the training-mode network, ``ctx.ref`` the same
        state in evaluation mode for frozen reference models, ``ctx.params`` the float32
        parameters), ``src`` the model's :class:`~tljax.methods.base.Outputs` on
        ``images`` (the source images in the compute dtype). ``None``: no penalty.
      capture_at: key path in ``rest`` of a frozen copy of the model to fill with the
        starting point at step 0 (:func:`capture_start`); ``None``: nothing captured.
      bn_stats: ``"adapt"`` or ``"frozen"`` (see :func:`own_step`).

    Raises:
      ValueError: for an unknown ``bn_stats``.
    """
    from tljax.methods.base import Outputs

    def objective(ctx: StepContext, batch) -> Losses:
        x = ctx.cast(batch["source"]["image"])
        logits, out = ctx.net.model(x)
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
            value, extra = penalty(ctx, src, x)
            value = jnp.asarray(value, jnp.float32)
        return Losses(task, value, accuracy(src.logits, labels), extra)

    prepare = None
    if capture_at is not None:
        prepare = lambda rest, params, step: capture_start(rest, params, step, at=capture_at)
    return own_step(objective, name=name, bn_stats=bn_stats, prepare=prepare)
