"""The standard domain-adaptation benchmarks, through TFDS without TensorFlow.

MNIST, USPS, SVHN, MNIST-M (and Fashion-MNIST), Office-31, Office-Home, VisDA-2017 and
DomainNet. ``load_domain("office31/amazon")`` returns a :class:`tljax.data.core.Domain`;
``known_names()`` lists the names; ``prepare_domain(name, manual_dir=...)`` (or
``python -m tljax.data.benchmarks prepare NAME``) downloads and prepares one.
"""

from tljax.data.benchmarks.loader import (
    BENCHMARKS,
    Benchmark,
    DatasetNotFoundError,
    get_benchmark,
    known_names,
    load_domain,
    prepare_domain,
)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "DatasetNotFoundError",
    "get_benchmark",
    "known_names",
    "load_domain",
    "prepare_domain",
]
