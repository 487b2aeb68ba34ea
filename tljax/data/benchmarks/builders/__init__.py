"""TF-free TFDS builders for the domain-adaptation benchmarks.

Importing this package registers ``usps``, ``mnist_m``, ``office31``, ``office_home``,
``visda2017``, ``tljax_domainnet`` and DomainBed's ``pacs``, ``vlcs`` and
``terra_incognita`` with TFDS (so ``tfds.builder('office31/amazon')``
works after ``import tljax.data.benchmarks.builders``). ``TfFreeMnist``,
``TfFreeFashionMnist`` and ``TfFreeSvhnCropped`` prepare TFDS's own ``mnist``,
``fashion_mnist`` and ``svhn_cropped`` without TensorFlow; they are not registered (the
names belong to TFDS).
"""

from tljax.data.benchmarks.builders.digits import MnistM, Usps
from tljax.data.benchmarks.builders.domainbed import Pacs, TerraIncognita, Vlcs
from tljax.data.benchmarks.builders.domainnet import DomainNet
from tljax.data.benchmarks.builders.office import Office31, OfficeHome
from tljax.data.benchmarks.builders.tfds_native import (
    TfFreeFashionMnist,
    TfFreeMnist,
    TfFreeSvhnCropped,
)
from tljax.data.benchmarks.builders.visda import Visda2017

__all__ = [
    "DomainNet",
    "MnistM",
    "Office31",
    "OfficeHome",
    "Pacs",
    "TerraIncognita",
    "TfFreeFashionMnist",
    "TfFreeMnist",
    "TfFreeSvhnCropped",
    "Usps",
    "Visda2017",
    "Vlcs",
]
