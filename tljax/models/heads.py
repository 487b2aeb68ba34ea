"""Heads shared by all backbones: bottleneck, classifier and domain discriminator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.models.norm import BatchNorm


class Bottleneck(nnx.Module):
    """``Linear → BatchNorm → ReLU`` (TLlib's 256-wide bottleneck)."""

    def __init__(self, in_dim: int, dim: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(in_dim, dim, rngs=rngs)
        self.bn = BatchNorm(dim, momentum=0.9, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.relu(self.bn(self.linear(x)))


class DomainDiscriminator(nnx.Module):
    """MLP ``in → hidden → … → 1`` with BatchNorm and ReLU; outputs one logit per example.

    The single output is a logit fed to a sigmoid/BCE loss. (A softmax over one output
    would be constant and give the features no gradient.)

    Args:
      in_dim: input width.
      hidden: widths of the hidden layers (TLlib: ``(1024, 1024)``).
      batch_norm: use BatchNorm after each hidden Linear (TLlib default).
      out_dim: 1 (a binary logit per example, shape ``(n,)``) or ``K > 1`` (a K-way domain
        classifier over several domains: logits ``(n, K)`` for a softmax cross-entropy).
      rngs: NNX random streams.
    """

    def __init__(
        self,
        in_dim: int,
        hidden=(1024, 1024),
        *,
        batch_norm=True,
        out_dim: int = 1,
        rngs: nnx.Rngs,
    ):
        dims = [in_dim, *hidden]
        self.linears = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List(
            [BatchNorm(b, momentum=0.9, rngs=rngs) for b in hidden] if batch_norm else []
        )
        self.out = nnx.Linear(dims[-1], out_dim, rngs=rngs)
        self.out_dim = out_dim

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if len(self.norms):
                x = self.norms[i](x)
            x = nnx.relu(x)
        logits = self.out(x)
        return logits[:, 0] if self.out_dim == 1 else logits


class Classifier(nnx.Module):
    """Backbone → optional bottleneck → linear head.

    Calling it returns ``(logits, outputs)`` where ``outputs["features"]`` is the
    representation the adaptation losses act on (the bottleneck output when there is a
    bottleneck, otherwise the backbone's features) and the backbone's named
    intermediates are kept under their own names (``"backbone_features"`` for its
    feature vector).

    Args:
      backbone: a module returning a dict with at least ``"features"``, with a
        ``feature_dim`` attribute.
      num_classes: number of output classes.
      bottleneck_dim: width of the bottleneck; ``0`` or ``None`` for none.
      rngs: NNX random streams.
    """

    def __init__(
        self, backbone: nnx.Module, num_classes: int, *, bottleneck_dim=None, rngs: nnx.Rngs
    ):
        self.backbone = backbone
        dim = backbone.feature_dim
        self.bottleneck = Bottleneck(dim, bottleneck_dim, rngs=rngs) if bottleneck_dim else None
        self.feature_dim = bottleneck_dim or dim
        self.head = nnx.Linear(self.feature_dim, num_classes, rngs=rngs)
        self.num_classes = num_classes

    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        out = dict(self.backbone(x))
        feats = out.pop("features")
        out["backbone_features"] = feats
        if self.bottleneck is not None:
            feats = self.bottleneck(feats)
        out["features"] = feats
        logits = self.head(feats)
        return logits.astype(jnp.float32), out
