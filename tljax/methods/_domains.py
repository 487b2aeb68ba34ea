"""Building blocks of the multi-domain methods (domain generalization, multi-source DA).

On a multi-domain task (:mod:`tljax.data.multi_domain`) the labelled batch
``batch["source"]`` holds ``K`` equal blocks of ``B`` examples, one per training domain,
domain-major. ``K`` is static: the trainer passes it in ``ModelInfo.num_domains``, and a
method keeps it on its module (:class:`DomainCount`, or an attribute of its own networks)
so the objective can split the batch per domain with :func:`per_domain`.

A multi-domain method is an :func:`tljax.methods._steps.own_step` objective: it runs the
model itself (:func:`forward`), so it can reweight the per-domain risks (GroupDRO),
penalise them (IRM, VREx), mix inputs across domains (Mixup), or align features across
domains (CORAL, MMD, DANN, M³SDA).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tljax.methods._steps import StepContext
from tljax.methods.base import Buffer, ModelInfo, Outputs


class DomainCount(nnx.Module):
    """The number of training domains, a static attribute of the graph, plus any
    non-trainable buffers a method needs (e.g. GroupDRO's weights)."""

    def __init__(self, num_domains: int, **buffers: jax.Array):
        self.num_domains = int(num_domains)
        for name, value in buffers.items():
            setattr(self, name, Buffer(value))


def require_domains(info: ModelInfo, method: str, minimum: int = 1) -> int:
    """``info.num_domains``, checked to be at least ``minimum``.

    One training domain is allowed by default: DomainBed's leave-one-domain-out runs of a
    three-domain set hold out two, and its methods run there (IRM's penalty on one
    domain, VREx's variance 0, no pairs for CORAL/MMD). A single-source task is refused
    earlier, by the trainer (``Method.multi_domain``).

    Raises:
      ValueError: fewer than ``minimum`` labelled training domains.
    """
    k = int(info.num_domains)
    if k < minimum:
        raise ValueError(
            f"Method {method!r} needs at least {minimum} labelled training domains, got {k}: "
            "run it on a multi-domain task ('dg/<set>' or 'msda/<set>', "
            "tljax.data.multi_domain)."
        )
    return k


def per_domain(x: jax.Array, num_domains: int) -> jax.Array:
    """``(K·B, ...) → (K, B, ...)``: the domain blocks of a multi-domain batch."""
    if x.shape[0] % num_domains:
        raise ValueError(
            f"A multi-domain batch of {x.shape[0]} rows does not split into {num_domains} "
            "equal domain blocks."
        )
    return x.reshape(num_domains, x.shape[0] // num_domains, *x.shape[1:])


def outputs(logits: jax.Array, out: dict) -> Outputs:
    """The model's ``(logits, out)`` as :class:`Outputs` (float32 logits)."""
    return Outputs(
        logits.astype(jnp.float32),
        out["features"],
        {k: v for k, v in out.items() if k != "features"},
    )


def forward(
    ctx: StepContext, batch, *, with_target: bool = False
) -> tuple[Outputs, Outputs | None]:
    """The model on the labelled domains (and the unlabelled target) in one pass.

    BatchNorm sees every domain of the batch at once, as in DomainBed (its algorithms run
    the network on the concatenated minibatches).

    Returns:
      ``(src, tgt)``: outputs on ``batch["source"]`` (all domains, domain-major) and on
      ``batch["target"]`` (``None`` unless ``with_target``).
    """
    xs = batch["source"]["image"]
    if with_target:
        if "target" not in batch:
            raise ValueError(
                "This method trains on unlabelled target data, but the batch has none: run "
                "it on a multi-source adaptation task ('msda/<set>'), not 'dg/<set>'."
            )
        x = jnp.concatenate([xs, batch["target"]["image"]])
    else:
        x = xs
    logits, out = ctx.net.model(ctx.cast(x))
    o = outputs(logits, out)
    if not with_target:
        return o, None
    n = xs.shape[0]

    def part(sl):
        return Outputs(o.logits[sl], o.features[sl], {k: v[sl] for k, v in o.extras.items()})

    return part(slice(0, n)), part(slice(n, None))


def domain_risks(logits: jax.Array, labels: jax.Array, num_domains: int) -> jax.Array:
    """``(K,)``: the mean cross-entropy of each domain block."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return per_domain(ce, num_domains).mean(axis=1)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def reset_optimizer_at(make_step: Callable, at: int) -> Callable:
    """Wraps a ``Method.train_step`` factory so the optimizer state is re-initialised
    right before the update of step ``at`` (DomainBed's IRM and VREx restart Adam when the
    penalty weight jumps at the end of the annealing).

    The whole optimizer state is replaced by ``tx.init(params)``, as constructing a new
    ``torch.optim.Adam`` does; that includes the step counters, so a learning-rate
    *schedule* also restarts there. DomainBed trains with a constant learning rate, where
    this is exact. ``at <= 0``: no reset (a run that starts with the full penalty).
    """

    def train_step(*, tx, **kwargs):
        inner = make_step(tx=tx, **kwargs)
        if at <= 0:
            return inner

        def step(state, batch, rng=None):
            if rng is None:  # the rng of the state *before* the reset: same as without it
                rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
            reset = state.step == at
            fresh = tx.init(state.params)
            opt = jax.tree.map(lambda f, o: jnp.where(reset, f, o), fresh, state.opt_state)
            return inner(state.replace(opt_state=opt), batch, rng)

        return step

    return train_step


def ramp(step: jax.Array, at: int, value: float) -> jax.Array:
    """``value`` from step ``at`` on, 1 before (DomainBed's penalty annealing)."""
    return jnp.where(jnp.asarray(step) >= at, jnp.float32(value), jnp.float32(1.0))
