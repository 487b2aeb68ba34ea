"""Shared settings of the Fashion-MNIST → Fashion-M experiments (not a runnable config).

Real Fashion-MNIST (Debian's ``dataset-fashion-mnist``: 60,000 train / 10,000 test
images) as the source; the target applies the MNIST-M recipe (``|photo crop − image|``,
seeded) to the same images, train and test separately. Same network and optimisation as
``digits_m_common`` (the DANN paper's digit network at 28×28×3, standardised inputs).
"""

from configs import digits_m_common


def get_config(method: str):
    c = digits_m_common.get_config(method)
    c.data.task = "fashion->fashion_m"
    c.train.eval_batch_size = 1000
    return c
