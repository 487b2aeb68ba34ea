"""The method interface shared by all transfer methods.

A method is a ``Method`` tuple of pure functions, built by a factory that captures its
hyperparameters (optax style):

* ``init(rngs, info) -> nnx.Module | None`` builds the method's own networks (a domain
  discriminator for DANN, nothing for MMD or CORAL). Their parameters are trained by the
  same optimizer as the model and live under ``method/`` in the parameter tree.
* ``loss(module, *, src, tgt, rng, step) -> (scalar, metrics)`` is the adaptation loss.
  ``src`` and ``tgt`` are :class:`Outputs` of the model on the source and the target
  batch. It is called inside the jit-compiled train step, in training mode, with the
  method's module already merged, so BatchNorm statistics of the method's networks are
  updated as usual. Arguments are keyword-only so source and target can't be swapped.
  It never sees target labels.
* ``train_step`` (optional) replaces the trainer's default step for methods whose loss
  is not a function of the model outputs alone (self-training's strong view, the mean
  teacher's EMA, L2-SP's starting point) or that need several updates per iteration
  (MCD, ADDA). ``None`` for methods with a ``loss``. It is called as
  ``train_step(model=, tx=, frozen=, weight=, num_classes=, lr_schedule=, compute_dtype=)``
  (the arguments of :func:`tljax.train.make_train_step`) and returns the pure
  ``step(state, batch, rng=None) -> (state, metrics)``. A method with one objective and
  one update gets it from :func:`tljax.methods._steps.own_step` and writes only the
  objective; the pieces for multi-update steps live in :mod:`tljax.methods._steps` too.
* ``eval_state`` (optional) ``eval_state(params, rest, *, domain) -> (params, rest)``
  maps the trained state to the state to evaluate on ``domain`` (``"source"`` or
  ``"target"``) with the usual eval step, e.g. ADDA swaps in its target encoder for the
  target domain. ``None``: the trained state is evaluated on both domains.
* ``predict`` (optional) ``predict(module, logits, features) -> labels``: the method's
  decision rule for the label-set metrics of partial/open-set/universal tasks
  (:mod:`tljax.evaluate_label_sets`), called jitted on the target test outputs with the
  method's module in evaluation mode, e.g. UAN's "unknown" below a transferability
  threshold. ``None``: the arg-max of the logits.

The trainer minimises ``task_loss(source) + weight * loss(...)``.

Hyperparameters are the keyword arguments of the factory, declared once in its signature
(the config system reads it); :func:`records_hparams` copies them into ``Method.hparams``.

Non-trainable method state (fixed random matrices, an EMA teacher) is held in
:class:`Buffer` variables: they are not ``nnx.Param``, so they land in ``rest`` (saved in
checkpoints, never seen by the optimizer) instead of ``params``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


class Buffer(nnx.Variable):
    """Non-trainable method state (not an ``nnx.Param``): lives in ``rest``, so the
    optimizer never sees it and it has no gradient, moments or weight decay."""


class ModelInfo(NamedTuple):
    """What a method may need to know about the model to build its own networks.

    Attributes:
      feature_dim: width of ``Outputs.features``.
      num_classes: number of classes.
      model: the model being trained (a :class:`tljax.models.heads.Classifier`), for
        methods that copy it (ADDA's target encoder, the mean teacher). Read or
        ``nnx.clone`` it; never store it (that would share its variables).
      num_domains: labelled training domains per batch: 1, or ``K`` for a multi-domain
        task (:mod:`tljax.data.multi_domain`), whose source batch holds ``K`` equal
        blocks, domain-major (:func:`tljax.methods._domains.per_domain`).
    """

    feature_dim: int
    num_classes: int
    model: Any = None
    num_domains: int = 1


class Outputs(NamedTuple):
    """The model's outputs on one domain's batch."""

    logits: jax.Array
    features: jax.Array
    extras: dict[str, jax.Array]


def no_params(rngs: nnx.Rngs, info: ModelInfo) -> None:
    """``init`` of a method without parameters of its own."""
    del rngs, info
    return None


class Method(NamedTuple):
    """A transfer method: its own networks, and its loss for the default step or its own
    step (``train_step``; ``loss`` is then ``None``)."""

    name: str
    init: Callable[[nnx.Rngs, ModelInfo], nnx.Module | None]
    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]] | None = None
    train_step: Callable[..., Any] | None = None
    hparams: dict[str, Any] = {}
    eval_state: Callable[..., tuple[Any, Any]] | None = None
    # False: the loss never looks at the target, so the default step runs the model on the
    # source batch only (half the compute; BatchNorm then sees source data only, as in
    # the reference ERM code). ``tgt`` is then ``None`` in ``loss``.
    needs_target: bool = True
    # True: the method trains on several labelled domains per batch and runs on
    # multi-domain tasks only (``dg/<set>``, ``msda/<set>``; tljax.data.multi_domain).
    multi_domain: bool = False
    # The decision rule behind the label-set metrics (see the module doc); None: arg-max.
    predict: Callable[..., jax.Array] | None = None


def records_hparams(make: Callable[..., Method]) -> Callable[..., Method]:
    """Decorator of a method factory: its keyword arguments are its hyperparameters,
    declared once in its signature.

    The returned :class:`Method`'s ``hparams`` are the arguments of the call with the
    defaults filled in, updated with any ``hparams`` the factory sets itself (values it
    normalises, e.g. a list made a tuple). The wrapper keeps ``make``'s signature
    (``inspect.signature``), which the config system reads for the valid names and
    defaults (:func:`tljax.config.method_hparam_defaults`)::

        @records_hparams
        def make(*, scale: float = 1.0) -> Method:
            ...
            return Method(name="mine", init=no_params, loss=loss)  # hparams: {"scale": ...}
    """
    signature = inspect.signature(make)

    @functools.wraps(make)
    def wrapper(*args, **kwargs) -> Method:
        method = make(*args, **kwargs)  # a bad argument raises the usual TypeError here
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return method._replace(hparams={**bound.arguments, **method.hparams})

    return wrapper


def deep_copy(module: nnx.Module) -> nnx.Module:
    """A copy of ``module`` that shares no arrays with it (``nnx.clone`` shares them, and
    a state holding one buffer twice cannot be donated to a jitted step)."""
    graphdef, state = nnx.split(nnx.clone(module))
    return nnx.merge(graphdef, jax.tree.map(lambda x: jnp.array(x, copy=True), state))


def frozen_copy(module: nnx.Module) -> nnx.Module:
    """A deep copy of ``module`` whose ``nnx.Param`` variables become :class:`Buffer`.

    The copy can be called like the original (e.g. an EMA teacher) but its weights are
    non-trainable state. Other variables (BatchNorm statistics) keep their type.
    """
    copy = deep_copy(module)
    for _, node in list(nnx.iter_graph(copy)):
        if isinstance(node, nnx.Module):
            for name, attr in list(vars(node).items()):
                if isinstance(attr, nnx.Param):
                    setattr(node, name, Buffer(attr.get_value()))
    return copy


def require_classifier(info: ModelInfo, method: str) -> nnx.Module:
    """``info.model``, checked to have the ``backbone``/``bottleneck``/``head`` layout.

    Raises:
      ValueError: if the model was not passed or has another layout.
    """
    model = info.model
    missing = [a for a in ("backbone", "bottleneck", "head") if not hasattr(model, a)]
    if model is None or missing:
        raise ValueError(
            f"Method {method!r} copies the model, so it needs ModelInfo.model to be a "
            f"Classifier with backbone, bottleneck and head; got {type(model).__name__} "
            f"(missing {missing})."
        )
    return model
