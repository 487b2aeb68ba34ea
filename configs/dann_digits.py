r"""DANN on the standard digits tasks (TLlib protocol): SVHN → MNIST, MNIST → USPS, USPS → MNIST.

    python -m experiments.run --config=configs/dann_digits.py:source=svhn,target=mnist \
        --workdir=runs/dann_svhn_mnist
    python -m experiments.run --config=configs/dann_digits.py:source=mnist,target=usps \
        --workdir=runs/dann_mnist_usps
    python -m experiments.run --config=configs/dann_digits.py:source=usps,target=mnist \
        --workdir=runs/dann_usps_mnist

Protocol (TLlib ``examples/domain_adaptation/image_classification/dann.sh``, digits; see
``configs/benchmark_common.py``): SVHN → MNIST with the DTN at 32×32×3 (MNIST repeated to
RGB), base lr 0.03; MNIST ↔ USPS with TLlib's LeNet (conv 20 → conv 50 → FC 500, dropout
0.5) at 28×28×1, base lr 0.01 (MNIST → USPS) / 0.1 (USPS → MNIST). From scratch, 256-d
bottleneck, discriminator 1024-1024 with BatchNorm, GRL warm start (α=1, N=1000), SGD
(momentum 0.9, Nesterov, weight decay 1e-3), ``lr·(1+0.001 i)^-0.75``, 128 images per
domain, 50,000 steps (20 epochs × 2,500).

Data: ``python -m tljax.data.benchmarks prepare mnist`` (and ``usps``, ``svhn``); the
run says what is missing and how to prepare it. Argument ``data_dir=DIR`` for another
TFDS data directory.

Published target accuracy (%) to compare with (TLlib docs 2021, best epoch on the target
test set): SVHN → MNIST 90.8, MNIST → USPS 91.7, USPS → MNIST 95.2. DANN paper (Ganin et
al., JMLR 2016; its own network and protocol): SVHN → MNIST 73.85. Source only: see
``configs/source_only_digits.py``. Not measured here yet (the datasets are not on this
machine).
"""

from configs import benchmark_common


def get_config(arg: str = "source=svhn,target=mnist"):
    return benchmark_common.digits("dann", arg)
