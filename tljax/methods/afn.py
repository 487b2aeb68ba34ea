r"""AFN: stepwise adaptive feature norm (SAFN, Xu et al., ICCV 2019).

.. math::
   \min_{F,C}\; \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda \sum_{d \in \{s, t\}}
   \tfrac{1}{B}\textstyle\sum_i \big(\lVert f_i^d\rVert
   - (\mathrm{sg}\lVert f_i^d\rVert + \Delta r)\big)^2

Each step pushes every feature norm up by ``Δr`` (the larger-norm hypothesis: small target
norms carry little information). As the official code and TLlib: the loss is applied to
the source and the target features separately and summed, ``Δr = 1``, trade-off
``λ = 0.05`` (set it as the config's ``method.weight``). ``entropy_weight > 0`` adds the
target entropy (the paper's SAFN+ENT variant). Loss: :func:`tljax.losses.afn.safn`.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.afn import safn
from tljax.losses.entropy import entropy
from tljax.methods.base import Method, no_params


def make(*, delta_r: float = 1.0, entropy_weight: float = 0.0) -> Method:
    """Builds SAFN.

    Args:
      delta_r: the norm increment Δr per step.
      entropy_weight: weight of the target entropy term (0: plain SAFN).

    Raises:
      ValueError: for a negative ``delta_r`` or ``entropy_weight``.
    """
    if not delta_r >= 0 or not entropy_weight >= 0:
        raise ValueError(
            f"afn: delta_r and entropy_weight must be >= 0, got {delta_r!r} and {entropy_weight!r}."
        )

    def loss(module, *, src, tgt, rng, step):
        del module, rng, step
        norm_loss = safn(src.features, delta_r=delta_r) + safn(tgt.features, delta_r=delta_r)
        metrics = {
            "norm_loss": norm_loss,
            "source_norm": jnp.mean(jnp.linalg.norm(src.features.astype(jnp.float32), axis=-1)),
            "target_norm": jnp.mean(jnp.linalg.norm(tgt.features.astype(jnp.float32), axis=-1)),
        }
        value = norm_loss
        if entropy_weight:
            ent = entropy(tgt.logits)
            value = value + entropy_weight * ent
            metrics["target_entropy"] = ent
        return value, metrics

    hp = dict(delta_r=delta_r, entropy_weight=entropy_weight)
    return Method(name="afn", init=no_params, loss=loss, hparams=hp)
