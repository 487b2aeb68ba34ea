"""The plug point of test-time adaptation: a method is a few pure functions.

A test-time (source-free) adaptation method is a :class:`TTAMethod` built by a factory
``make(ctx, **hparams)`` from the trained model (:class:`Context`):

* ``init() -> AdaptState``: the state before any target batch (the source weights, an
  optimizer state, method buffers such as T3A's supports);
* ``update(state, x, rng) -> (state, logits, metrics)``: one adaptation step on the
  unlabelled batch ``x``; ``logits`` are the method's predictions for ``x`` made in that
  step (Tent, SHOT-IM: the forward pass whose objective is minimised, i.e. *before* the
  update; T3A: after the batch joined the supports, as in the paper; BN: with the batch's
  statistics);
* ``predict(state, x) -> logits``: predictions of the current state, no adaptation.

All three are pure and jit-able; :mod:`tljax.adapt` drives them (episodic or continual,
one jitted step with the state donated).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from tljax import optim
from tljax.bn import batch_norm_layers


@struct.dataclass
class AdaptState:
    """Everything adaptation changes: a pytree of arrays.

    Attributes:
      params: model parameters (pure dict, as ``TrainState.params``).
      rest: non-parameter state (BatchNorm running statistics).
      opt_state: optimizer state (``()`` for methods without gradients).
      extra: method buffers (T3A's supports), ``{}`` if none.
      step: number of adaptation steps applied (int32).
    """

    params: Any
    rest: Any
    opt_state: Any
    extra: Any
    step: jax.Array


class Context(NamedTuple):
    """The trained model a method adapts.

    Attributes:
      graphs: static graphs (:func:`tljax.train.build_net`): ``eval_graph`` is used, so
        dropout is off; BatchNorm layers are switched to batch statistics where a method
        asks for it.
      params: the source parameters.
      rest: the source non-parameter state.
      num_classes: number of classes of the head.
      to_float: input conversion applied first (uint8 pixels → standardised floats).
    """

    graphs: Any
    params: Any
    rest: Any
    num_classes: int
    to_float: Callable = lambda x: x


class TTAMethod(NamedTuple):
    """A test-time adaptation method (see the module docstring)."""

    name: str
    init: Callable[[], AdaptState]
    update: Callable[..., tuple[AdaptState, jax.Array, dict]]
    predict: Callable[[AdaptState, jax.Array], jax.Array]
    hparams: dict
    iterative: bool = True  # False: several steps on one batch make no sense (T3A, BN)


def initial_state(ctx: Context, opt_state=(), extra=None) -> AdaptState:
    """The source weights as an :class:`AdaptState`."""
    return AdaptState(
        params=ctx.params,
        rest=ctx.rest,
        opt_state=opt_state,
        extra={} if extra is None else extra,
        step=jnp.zeros((), jnp.int32),
    )


def forward(ctx: Context, params, rest, x, *, batch_stats: bool):
    """The model on ``x`` in eval mode (no dropout), returning ``(logits, outputs)``.

    Args:
      batch_stats: normalise every BatchNorm layer with the statistics of ``x`` (the
        test-time form of AdaBN, :func:`tljax.bn.adapt_batch_norm` on one batch) instead
        of its running statistics. The running statistics in ``rest`` are not changed.
    """
    net = nnx.merge(ctx.graphs.eval_graph, params, rest)
    if batch_stats:
        for _, layer in batch_norm_layers(net.model):
            layer.use_running_average = False
    logits, out = net.model(ctx.to_float(x))
    return logits.astype(jnp.float32), out


def batch_norm_param_paths(ctx: Context) -> list[str]:
    """Paths (``model/.../bn``) of the model's BatchNorm layers, in graph order."""
    net = nnx.merge(ctx.graphs.eval_graph, ctx.params, ctx.rest)
    return ["/".join(("model", *map(str, p))) for p, _ in batch_norm_layers(net.model)]


def batch_norm_affine_rules(ctx: Context) -> list[tuple[str, Any]]:
    """Freezing rules training only the BatchNorm scale and bias (Tent), all else frozen.

    Raises:
      ValueError: the model has no BatchNorm layer.
    """
    layers = batch_norm_param_paths(ctx)
    if not layers:
        raise ValueError(
            "This model has no BatchNorm layer, so there are no affine parameters to adapt; "
            "use a backbone with BatchNorm (dtn, resnet*) or a bottleneck "
            f"(model.bottleneck_dim > 0). Parameters: {optim.param_paths(ctx.params)[:5]}..."
        )
    return [(f"^{re.escape(p)}/(scale|bias)$", 1.0) for p in layers] + [(".*", None)]


def gradient_method(
    ctx: Context,
    name: str,
    objective: Callable[[jax.Array, dict], tuple[jax.Array, dict]],
    rules,
    *,
    optimizer: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_stats: bool,
    hparams: dict,
) -> TTAMethod:
    """A method that minimises ``objective(logits, outputs)`` on each test batch with the
    parameters selected by ``rules`` (:mod:`tljax.optim` freezing rules; ``None`` =
    frozen: zero update, no optimizer moments, no gradient computed).

    Frozen parameters are returned bitwise unchanged (the old leaf is kept, not
    ``p + 0``).
    """
    tx, labels, report = optim.make_optimizer(
        ctx.params,
        rules,
        optimizer=optimizer,
        schedule=optax.constant_schedule(lr),
        momentum=momentum,
        nesterov=False,
        weight_decay=weight_decay,
    )
    frozen = optim.frozen_mask(labels)
    if all(jax.tree.leaves(frozen)):
        raise ValueError(f"{name}: the rules {list(rules)} freeze every parameter.")

    def init() -> AdaptState:
        return initial_state(ctx, opt_state=tx.init(ctx.params))

    def update(state: AdaptState, x, rng=None):
        def loss_fn(params):
            params = jax.tree.map(lambda f, p: jax.lax.stop_gradient(p) if f else p, frozen, params)
            logits, out = forward(ctx, params, state.rest, x, batch_stats=batch_stats)
            loss, metrics = objective(logits, out)
            return loss, (logits, metrics)

        (loss, (logits, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = optax.apply_updates(state.params, updates)
        params = jax.tree.map(lambda f, old, p: old if f else p, frozen, state.params, new)
        state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
        return state, jax.lax.stop_gradient(logits), {"loss": loss, **metrics}

    def predict(state: AdaptState, x):
        return forward(ctx, state.params, state.rest, x, batch_stats=batch_stats)[0]

    hp = dict(hparams, trained=sorted(p for p, (_, r) in report.items() if r is not None))
    return TTAMethod(name, init, update, predict, hp)


__all__ = [
    "AdaptState",
    "Context",
    "TTAMethod",
    "batch_norm_affine_rules",
    "batch_norm_param_paths",
    "forward",
    "gradient_method",
    "initial_state",
]
