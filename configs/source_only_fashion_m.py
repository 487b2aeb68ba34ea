"""source_only on Fashion-MNIST → Fashion-M (MNIST-M recipe), offline.

    python -m experiments.run --config=configs/source_only_fashion_m.py --workdir=runs/x

Needs ``apt-get install dataset-fashion-mnist``. The README's 3-seed table comes from
``python -m experiments.sweep --configs=configs/source_only_fashion_m.py,``
``configs/dann_fashion_m.py --seeds=0,1,2 --workdir=runs/fashion``.
"""

from configs import fashion_m_common


def get_config():
    return fashion_m_common.get_config("source_only")
