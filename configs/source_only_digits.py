r"""Source only (ERM) on the standard digits tasks (TLlib protocol).

    python -m experiments.run --config=configs/source_only_digits.py:source=svhn,target=mnist \
        --workdir=runs/so_svhn_mnist
    python -m experiments.run --config=configs/source_only_digits.py:source=mnist,target=usps \
        --workdir=runs/so_mnist_usps
    python -m experiments.run --config=configs/source_only_digits.py:source=usps,target=mnist \
        --workdir=runs/so_usps_mnist

Protocol (TLlib ``examples/domain_adaptation/image_classification/erm.sh``, digits; see
``configs/benchmark_common.py``): the networks and inputs of ``configs/dann_digits.py``
(DTN 32×32×3 for SVHN → MNIST, TLlib's LeNet 28×28×1 for MNIST ↔ USPS), no bottleneck,
SGD (momentum 0.9, Nesterov, weight decay 5e-4), ``lr·(1+0.0003 i)^-0.75`` with base lr
0.1 (SVHN → MNIST, USPS → MNIST) / 0.01 (MNIST → USPS), 128 images, 50,000 steps.

Published target accuracy (%) to compare with (TLlib docs 2021, best epoch on the target
test set): SVHN → MNIST 74.1, MNIST → USPS 82.1, USPS → MNIST 74.6. DANN paper (its own
network): SVHN → MNIST 54.90. Not measured here yet (the datasets are not on this
machine).
"""

from configs import benchmark_common


def get_config(arg: str = "source=svhn,target=mnist"):
    return benchmark_common.digits("source_only", arg)
