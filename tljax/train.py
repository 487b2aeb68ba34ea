"""The training core: train state, the pure train step, the eval step.

``train_step(state, batch, rng) -> (state, metrics)`` computes

    loss = CE(C(F(x_s)), y_s) + weight · method.loss(src=F(x_s), tgt=F(x_t))

and applies one optimizer update. It does not know which method it runs: the method's
own networks are part of the parameter tree (under ``method/``), its loss is a pure
function of the model outputs. The loop that drives it is :mod:`tljax.loop`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from tljax.methods.base import Method, ModelInfo, Outputs


class Net(nnx.Module):
    """The bundle trained by one optimizer: the model and the method's own networks."""

    def __init__(self, model: nnx.Module, method: nnx.Module | None):
        self.model = model
        self.method = method


@struct.dataclass
class TrainState:
    """Everything a run needs to continue: a pytree of arrays.

    Attributes:
      step: number of updates applied so far (int32 scalar).
      params: trainable parameters (nested dict; frozen ones included).
      rest: non-parameter model state, e.g. BatchNorm statistics.
      opt_state: optimizer state.
      rng: base PRNG key data (uint32); step ``i`` uses ``fold_in(rng, i)``.
      nonfinite_step: first step whose loss was NaN/Inf, ``-1`` if none yet.
    """

    step: jax.Array
    params: Any
    rest: Any
    opt_state: Any
    rng: jax.Array
    nonfinite_step: jax.Array


class Model(struct.PyTreeNode):
    """Static, hashable handles to the bundled network (train and eval graph defs)."""

    train_graph: Any = struct.field(pytree_node=False)
    eval_graph: Any = struct.field(pytree_node=False)


def build_net(
    model: nnx.Module, method: Method, *, seed: int, num_classes: int, num_domains: int = 1
):
    """Bundles the model with the method's own networks and splits it functionally.

    ``num_domains``: labelled training domains per batch (multi-domain tasks), passed to
    the method in ``ModelInfo``.

    Returns:
      ``(graphs, params, rest)``: static graph definitions for training and evaluation
      mode and the pure-dict parameters and non-parameter state.
    """
    info = ModelInfo(
        feature_dim=model.feature_dim,
        num_classes=num_classes,
        model=model,
        num_domains=num_domains,
    )
    own = method.init(nnx.Rngs(jax.random.fold_in(jax.random.key(seed), 1)), info)
    net = Net(model, own)
    net.train()
    train_graph, params, rest = nnx.split(net, nnx.Param, ...)
    net.eval()
    eval_graph, _, _ = nnx.split(net, nnx.Param, ...)
    return Model(train_graph, eval_graph), nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def init_state(params, rest, tx: optax.GradientTransformation, *, seed: int) -> TrainState:
    """The state at step 0."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        rng=jax.random.key_data(jax.random.key(seed)),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )


def _split(x, n):
    return x[:n], x[n:]


def _cast_floats(tree, dtype):
    if dtype is None:
        return tree
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def forward_domains(
    net: Net, batch, compute_dtype=None, *, with_target: bool = True
) -> tuple[Outputs, Outputs | None]:
    """Runs the model once on source and target images concatenated (BatchNorm sees
    both domains, as in the reference code) and splits the outputs per domain.

    With ``with_target=False`` only the source batch is run and the target outputs are
    ``None``.
    """
    xs = batch["source"]["image"]
    if not with_target:
        logits, out = net.model(_cast_floats(xs, compute_dtype))
        extras = {k: v for k, v in out.items() if k != "features"}
        return Outputs(logits.astype(jnp.float32), out["features"], extras), None
    xt = batch["target"]["image"]
    if xs.shape[1:] != xt.shape[1:]:
        raise ValueError(
            f"Source and target images have different shapes {xs.shape[1:]} and "
            f"{xt.shape[1:]}; both domains must share one input shape."
        )
    x = jnp.concatenate([xs, xt], axis=0)
    if compute_dtype is not None:
        x = _cast_floats(x, compute_dtype)  # integer inputs (token ids) stay exact
    logits, out = net.model(x)
    n = xs.shape[0]
    ls, lt = _split(logits.astype(jnp.float32), n)
    fs, ft = _split(out["features"], n)
    extras = {k: v for k, v in out.items() if k != "features"}
    es = {k: v[:n] for k, v in extras.items()}
    et = {k: v[n:] for k, v in extras.items()}
    return Outputs(ls, fs, es), Outputs(lt, ft, et)


def make_train_step(
    model: Model,
    method: Method,
    tx: optax.GradientTransformation,
    *,
    frozen: Any,
    weight: float,
    num_classes: int,
    lr_schedule: Callable | None = None,
    compute_dtype: Any = None,
    target_labeled: bool = False,
) -> Callable:
    """Builds the pure ``train_step(state, batch, rng=None) -> (state, metrics)``.

    A batch that holds ``"target_labeled": {image, label}`` (a labelled target subset,
    semi-supervised adaptation) adds its cross-entropy to the task loss (the "S+T"
    objective); those images run in the same forward pass as the source batch, and the
    method sees neither them nor their labels (``src`` and ``tgt`` stay as they were).

    Args:
      model: the static graphs from :func:`build_net`.
      method: the transfer method.
      tx: the optimizer (frozen leaves mapped to ``set_to_zero``).
      frozen: pytree of bools like ``params``; frozen parameters are also
        ``stop_gradient``-ed so their gradients are never computed.
      weight: trade-off λ of the method loss.
      num_classes: for the labels' range.
      lr_schedule: base learning rate schedule, only for logging.
      compute_dtype: e.g. ``jnp.bfloat16`` for mixed precision (parameters and optimizer
        stay float32); ``None`` computes in the parameters' dtype.
      target_labeled: whether batches will hold a labelled target subset.

    Returns:
      The step function; wrap it with ``jax.jit(step, donate_argnums=0)``. When ``rng``
      is ``None`` it uses ``fold_in(state.rng, state.step)``.

    Raises:
      ValueError: if ``target_labeled`` and the method has its own step (which would
        ignore the labelled target batch).
    """
    if target_labeled:
        check_target_labeled_support(method)
    if method.train_step is None and method.loss is None:
        raise ValueError(f"Method {method.name!r} defines neither a loss nor its own train_step.")
    if method.train_step is not None:
        return method.train_step(
            model=model,
            tx=tx,
            frozen=frozen,
            weight=weight,
            num_classes=num_classes,
            lr_schedule=lr_schedule,
            compute_dtype=compute_dtype,
        )

    def loss_fn(params, rest, batch, rng, step):
        params = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
        net = nnx.merge(model.train_graph, _cast_floats(params, compute_dtype), rest)
        labeled = batch.get("target_labeled")
        inputs = batch
        if labeled is not None:  # appended to the source images: one pass, split below
            xs = jnp.concatenate([batch["source"]["image"], labeled["image"]], axis=0)
            inputs = {**batch, "source": {**batch["source"], "image": xs}}
        src, tgt = forward_domains(net, inputs, compute_dtype, with_target=method.needs_target)
        labels = batch["source"]["label"]
        extra = {}
        if labeled is not None:
            src, tl = _split_outputs(src, labels.shape[0])
            tl_loss = optax.softmax_cross_entropy_with_integer_labels(tl.logits, labeled["label"])
            extra["target_labeled_loss"] = tl_loss.mean()
            extra["target_labeled_acc"] = jnp.mean(jnp.argmax(tl.logits, -1) == labeled["label"])
        task = optax.softmax_cross_entropy_with_integer_labels(src.logits, labels).mean()
        task = task + extra.get("target_labeled_loss", 0.0)
        m_loss, m_metrics = method.loss(net.method, src=src, tgt=tgt, rng=rng, step=step)
        total = task + weight * m_loss.astype(jnp.float32)
        _, _, new_rest = nnx.split(net, nnx.Param, ...)
        new_rest = jax.tree.map(lambda n, o: n.astype(o.dtype), nnx.to_pure_dict(new_rest), rest)
        metrics = {
            "loss": total,
            "task_loss": task,
            "method_loss": m_loss,
            "source_acc": jnp.mean(jnp.argmax(src.logits, -1) == labels),
            **extra,
            **{f"{method.name}/{k}": v for k, v in m_metrics.items()},
        }
        return total, (new_rest, metrics)

    def train_step(state: TrainState, batch, rng=None):
        step = state.step
        if rng is None:
            rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), step)
        grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.rest, batch, rng, step
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(metrics["loss"])
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

    return train_step


def _split_outputs(out: Outputs, n: int) -> tuple[Outputs, Outputs]:
    """The first ``n`` rows of ``out`` and the rest."""
    head = Outputs(out.logits[:n], out.features[:n], {k: v[:n] for k, v in out.extras.items()})
    tail = Outputs(out.logits[n:], out.features[n:], {k: v[n:] for k, v in out.extras.items()})
    return head, tail


def check_target_labeled_support(method: Method) -> None:
    """Refuses a labelled target subset for a method whose own train step ignores it.

    Raises:
      ValueError: if ``method`` has its own train step.
    """
    if method.train_step is not None:
        raise ValueError(
            f"Method {method.name!r} has its own train step, which does not use a labelled "
            "target subset; set config.data.target_labels_per_class=0, or use a method "
            "that runs the default step (source_only, dann, cdan, dan, jan, coral, mcc, "
            "mdd, afn, bsp, entropy, ...), where the labelled target batch adds its "
            "cross-entropy to the task loss."
        )


_AUGMENT_SALT = 0x61756720  # folded into the base key so augmentation draws are its own


def with_augmentation(train_step: Callable, transform: Callable) -> Callable:
    """Wraps a train step so its image batches are augmented on the device first.

    Every entry of the batch that holds ``"image"`` (source, target, ...) is replaced by
    ``transform(images, key)`` with ``key = fold_in(fold_in(fold_in(rng, SALT), step),
    crc32(name))``: a pure function of the run's seed, the step and the entry, so a
    resumed run draws the same views, and the method's own rng stream is untouched. The
    wrapped step neither knows nor cares which method it runs.

    Args:
      train_step: ``train_step(state, batch, rng=None)``.
      transform: ``fn(images, key) -> images`` (e.g. :func:`tljax.data.augment.make`).

    Returns:
      A step function with the same signature.
    """

    def step(state: TrainState, batch, rng=None):
        base = jax.random.wrap_key_data(state.rng) if rng is None else rng
        key = jax.random.fold_in(jax.random.fold_in(base, _AUGMENT_SALT), state.step)
        out = dict(batch)
        for name, entry in batch.items():
            if isinstance(entry, dict) and "image" in entry:
                salt = zlib.crc32(name.encode()) & 0x7FFFFFFF  # fixed per entry name
                image = transform(entry["image"], jax.random.fold_in(key, salt))
                out[name] = {**entry, "image": image}
        return train_step(state, out, rng)

    return step


def make_eval_step(model: Model, compute_dtype: Any = None) -> Callable:
    """Builds ``eval_step(params, rest, images) -> (logits, features)`` in eval mode
    (BatchNorm uses its running statistics)."""

    def eval_step(params, rest, images):
        net = nnx.merge(model.eval_graph, _cast_floats(params, compute_dtype), rest)
        x = _cast_floats(images, compute_dtype)
        logits, out = net.model(x)
        return logits.astype(jnp.float32), out["features"].astype(jnp.float32)

    return eval_step


def train_and_evaluate(config, workdir: str) -> dict:
    """Runs (or resumes) the experiment described by ``config`` in ``workdir``.

    See :func:`tljax.loop.train_and_evaluate`.
    """
    from tljax.loop import train_and_evaluate as run

    return run(config, workdir)
