"""Task families of corrupted images (:mod:`tljax.data.corruptions`).

Tasks: ``fashion-c/<corruption>/<severity>`` and ``digits-c/<corruption>/<severity>``
(registered in :mod:`tljax.data.tasks`): the source is the clean task ``fashion`` /
``digits`` (same split, size and options), the target the corrupted *test* split (its
``train`` and ``test`` are the same array, the test-time-adaptation protocol of
CIFAR-10-C), corrupted with seed ``[data_seed, 17, corruption index]`` (the same random
draws at every severity). ``cifar10-c/...`` and ``imagenet-c/...`` read TFDS's
``cifar10_corrupted`` / ``imagenet2012_corrupted`` (:func:`load_tfds_corrupted`) and
raise :class:`~tljax.data.benchmarks.DatasetNotFoundError` naming what to download when
they are not prepared.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from tljax.data.core import Domain, Split, Task
from tljax.data.corruptions import CORRUPTIONS, NAMES, corrupt

# family -> (clean task, its options)
_OFFLINE = {
    "digits-c": ("digits", ("test_fraction",)),
    "fashion-c": ("fashion", ("directory", "max_train", "max_test")),
}
# family -> (TFDS corrupted dataset, TFDS clean dataset, clean train split, test split)
TFDS_FAMILIES = {
    "cifar10-c": ("cifar10_corrupted", "cifar10", "train", "test"),
    "imagenet-c": ("imagenet2012_corrupted", "imagenet2012", "train", "validation"),
}
_TFDS_OPTIONS = ("data_dir", "max_examples")
# Our names -> cifar10_corrupted's (imagenet2012_corrupted uses ours).
_CIFAR_NAMES = {"glass_blur": "frosted_glass_blur", "elastic_transform": "elastic"}


def parse_task_name(name: str) -> tuple[str, str, int] | None:
    """``"fashion-c/fog/3"`` -> ``("fashion-c", "fog", 3)``; None for other names.

    Raises:
      ValueError: for a known family with an unknown corruption or severity.
    """
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 3 or parts[0] not in (*_OFFLINE, *TFDS_FAMILIES):
        return None
    family, corruption, severity = parts
    if corruption not in CORRUPTIONS or severity not in ("1", "2", "3", "4", "5"):
        raise ValueError(
            f"Task {name!r}: expected '{family}/<corruption>/<severity>' with a corruption "
            f"of {list(NAMES)} and a severity 1..5."
        )
    return family, corruption, int(severity)


def resolve(name: str):
    """The resolver registered in :mod:`tljax.data.tasks` for the ``*-c`` families."""
    from tljax.data.tasks import RegisteredTask

    parsed = parse_task_name(name)
    if parsed is None:
        return None
    options = _OFFLINE[parsed[0]][1] if parsed[0] in _OFFLINE else _TFDS_OPTIONS
    return RegisteredTask(corrupted_task, options, takes_image_size=True)


def corrupted_task(name: str, *, data_seed: int = 0, image_size: int = 28, **options) -> Task:
    """Builds (or returns the cached) task ``"<family>/<corruption>/<severity>"``.

    ``digits-c``/``fashion-c``: source = the clean task ``digits``/``fashion`` (options as
    there), target = its test split corrupted with seed ``[data_seed, 17, k]`` (``k`` the
    corruption's index in :data:`NAMES`), as both target train and test.
    ``cifar10-c``/``imagenet-c``: source = TFDS ``cifar10``/``imagenet2012`` (train,
    test/validation), target = the TFDS corrupted test split; options ``data_dir``,
    ``max_examples``.

    Raises:
      ValueError: for a name outside these families or a bad option value.
      DatasetNotFoundError: for a TFDS family that is not prepared (what to download).
      FileNotFoundError: for ``fashion-c`` without Fashion-MNIST installed.
    """
    if parse_task_name(name) is None:
        raise ValueError(f"{name!r} is not a corruption task '<family>/<corruption>/<sev>'.")
    if isinstance(options.get("directory"), os.PathLike):
        options["directory"] = os.fspath(options["directory"])
    if isinstance(options.get("data_dir"), os.PathLike):
        options["data_dir"] = os.fspath(options["data_dir"])
    return _build_task(name, int(data_seed), int(image_size), tuple(sorted(options.items())))


@functools.lru_cache(maxsize=4)
def _build_task(name: str, data_seed: int, image_size: int, options: tuple) -> Task:
    family, corruption, severity = parse_task_name(name)
    opts = dict(options)
    if family in _OFFLINE:
        from tljax.data.tasks import get_task

        source = get_task(_OFFLINE[family][0], data_seed=data_seed, image_size=image_size, **opts)
        source = source.source
        seed = [data_seed, 17, NAMES.index(corruption)]
        test = Split(corrupt(source.test.x, corruption, severity, seed), source.test.y.copy())
    else:
        corrupted, clean, train_split, test_split = TFDS_FAMILIES[family]
        kwargs = dict(image_size=image_size, **opts)
        test = load_tfds_corrupted(family, corruption, severity, **kwargs)  # first: its error
        source = Domain(
            clean,
            _read_tfds(clean, None, train_split, **kwargs),
            _read_tfds(clean, None, test_split, **kwargs),
        )
    num_classes = 1000 if family == "imagenet-c" else 10
    task = Task(name, source, Domain(name, test, test), num_classes=num_classes)
    task.validate()
    for split in (source.train, source.test, test):
        split.x.flags.writeable = False
        split.y.flags.writeable = False
    return task


def tfds_config(family: str, corruption: str, severity: int) -> str:
    """The TFDS name, e.g. ``"cifar10_corrupted/frosted_glass_blur_3"``."""
    dataset = TFDS_FAMILIES[family][0]
    if dataset == "cifar10_corrupted":
        corruption = _CIFAR_NAMES.get(corruption, corruption)
    return f"{dataset}/{corruption}_{int(severity)}"


def _missing(tfds_id: str, data_dir: str) -> str:
    dataset = tfds_id.split("/")[0]
    build = (
        f"  tfds build {tfds_id} --data_dir {data_dir} --file_format array_record"
        " (needs TensorFlow; tljax then reads it TF-free)"
    )
    if dataset == "cifar10_corrupted":
        what = (
            "CIFAR-10-C (Hendrycks & Dietterich 2019): TFDS downloads CIFAR-10-C.tar "
            "(https://zenodo.org/record/2535967/files/CIFAR-10-C.tar, 2.9 GB) itself."
        )
    elif dataset == "imagenet2012_corrupted":
        what = (
            "ImageNet-C as TFDS builds it: put ILSVRC2012_img_val.tar (and "
            "ILSVRC2012_img_train.tar, which TFDS's imagenet2012 builder expects) from "
            "https://image-net.org in MANUAL_DIR; TFDS applies the corruptions itself "
            "(needs OpenCV and scikit-image too). Add --manual_dir MANUAL_DIR below."
        )
    else:
        what = f"TFDS dataset {dataset!r} (TFDS downloads it)."
    return (
        f"TFDS dataset {tfds_id!r} is not prepared in data_dir {data_dir!r}.\n{what}\n"
        f"Prepare it with:\n{build}"
    )


def _read_tfds(
    dataset: str,
    config: str | None,
    split: str,
    *,
    image_size: int,
    data_dir: str | None = None,
    max_examples: int | None = None,
) -> Split:
    """Reads a TFDS split (``array_record``, TF-free) as float32 NHWC at ``image_size``."""
    import tensorflow_datasets as tfds
    from PIL import Image

    from tljax.data.benchmarks import DatasetNotFoundError

    if max_examples is not None and (isinstance(max_examples, bool) or max_examples < 1):
        raise ValueError(f"max_examples must be a positive integer or None, got {max_examples!r}.")
    tfds_id = f"{dataset}/{config}" if config else dataset
    try:
        builder = tfds.builder(tfds_id, data_dir=data_dir or None)
        source = builder.as_data_source(split=split)
    except (AssertionError, FileNotFoundError, NotImplementedError, ValueError) as e:
        root = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise DatasetNotFoundError(_missing(tfds_id, root)) from e
    n = len(source) if max_examples is None else min(len(source), int(max_examples))
    images, labels = [], []
    for i in range(n):
        record = source[i]
        image = np.asarray(record["image"], dtype=np.uint8)
        if image.shape[:2] != (image_size, image_size):
            image = np.asarray(
                Image.fromarray(image).resize((image_size, image_size), Image.BILINEAR)
            )
        images.append(image)
        labels.append(int(record["label"]))
    x = np.stack(images).astype(np.float32) / 255.0
    return Split(x.reshape(n, image_size, image_size, -1), np.asarray(labels, np.int32))


def load_tfds_corrupted(
    family: str,
    corruption: str,
    severity: int,
    *,
    image_size: int,
    data_dir: str | None = None,
    max_examples: int | None = None,
) -> Split:
    """Reads the test split of TFDS's ``cifar10_corrupted``/``imagenet2012_corrupted``
    config for ``corruption`` at ``severity`` (``family``: ``"cifar10-c"`` or
    ``"imagenet-c"``).

    Raises:
      DatasetNotFoundError: if it is not prepared; the message says what to download and
        the command that prepares it.
    """
    dataset, config = tfds_config(family, corruption, severity).split("/")
    split = TFDS_FAMILIES[family][3]
    return _read_tfds(
        dataset, config, split, image_size=image_size, data_dir=data_dir, max_examples=max_examples
    )
