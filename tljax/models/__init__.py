"""Backbone registry and the classifier builder.

A backbone is an ``nnx.Module`` whose call returns a dict with at least ``"features"``
(shape ``(n, feature_dim)``) and that has a ``feature_dim`` attribute. A factory takes
``(input_shape, *, rngs, **kwargs)``; its keyword arguments are
``config.model.backbone_kwargs``. Add one with :func:`register_backbone`, or ship it in an
installed package as an entry point of the group ``tljax.backbones``
(``my_net = "my_package.nets:my_net"``), found lazily (see :mod:`tljax.registry`).
"""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from tljax import registry as _registry
from tljax.models.heads import Bottleneck, Classifier, DomainDiscriminator

# name -> "module:function", imported lazily so heavy backbones cost nothing until used.
_BUILTIN: dict[str, str] = {
    "lenet": "tljax.models.lenet:lenet",
    "dtn": "tljax.models.dtn:dtn",
    "mlp": "tljax.models.mlp:mlp",
    "resnet18": "tljax.models.resnet:resnet18",
    "resnet34": "tljax.models.resnet:resnet34",
    "resnet50": "tljax.models.resnet:resnet50",
    "resnet101": "tljax.models.resnet:resnet101",
    "bert": "tljax.models.bert:bert",
    "gpt2": "tljax.models.gpt2:gpt2",
    "vit_b16": "tljax.models.vit:vit_b16",
    "vit_s16": "tljax.models.vit:vit_s16",
    "vit_tiny": "tljax.models.vit:vit_tiny",
    **{
        f"vgg{d}{bn}": f"tljax.models.vgg:vgg{d}{bn}"
        for d in (11, 13, 16, 19)
        for bn in ("", "_bn")
    },
    "inception_v3": "tljax.models.inception:inception_v3",
}
_REGISTRY = _registry.Registry(
    "backbone",
    _registry.GROUPS["backbone"],
    builtins=lambda: _BUILTIN,
    load_builtin=_BUILTIN.__getitem__,
)


def register_backbone(name: str, factory: str | Callable) -> None:
    """Registers a backbone factory (a callable or a ``"module:function"`` string imported
    on first use); registering a name again replaces it.

    Raises:
      ValueError: if ``name`` is a built-in backbone.
    """
    _REGISTRY.register(name, factory)


def backbone_names() -> list[str]:
    """Names accepted by :func:`build_classifier`: built-in, registered and installed
    plug-ins'."""
    return _REGISTRY.names()


def get_backbone_factory(name: str) -> Callable:
    """Returns the factory registered under ``name``.

    Raises:
      ValueError: if no backbone of that name is registered (the message lists the valid
        ones).
    """
    return _REGISTRY.get(name)


def build_classifier(
    name: str,
    input_shape,
    num_classes: int,
    *,
    rngs: nnx.Rngs,
    bottleneck_dim: int | None = None,
    **backbone_kwargs,
) -> Classifier:
    """Builds ``Classifier(backbone(name), bottleneck, head)``.

    Args:
      name: a registered backbone name.
      input_shape: shape of one example (e.g. ``(28, 28, 3)``).
      num_classes: number of classes.
      rngs: NNX random streams.
      bottleneck_dim: width of the ``Linear→BN→ReLU`` bottleneck, or ``None``.
      **backbone_kwargs: passed to the backbone factory.
    """
    backbone = get_backbone_factory(name)(tuple(input_shape), rngs=rngs, **backbone_kwargs)
    return Classifier(backbone, num_classes, bottleneck_dim=bottleneck_dim, rngs=rngs)


__all__ = [
    "Bottleneck",
    "Classifier",
    "DomainDiscriminator",
    "backbone_names",
    "build_classifier",
    "get_backbone_factory",
    "register_backbone",
]
