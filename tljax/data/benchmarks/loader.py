"""Loads the standard domain-adaptation benchmarks as in-memory :class:`Domain` objects.

Reading goes through ``builder.as_data_source()`` (``array_record`` random access), never
``tfds.load``/``as_dataset``, so no TensorFlow is needed. Preparing goes through our
TF-free builders (:mod:`tljax.data.benchmarks.builders`), including for TFDS's own
``mnist``, ``fashion_mnist`` and ``svhn_cropped``.

Splits. Digits and DomainNet have official train/test splits. Office-31 and Office-Home
have none: the whole domain is both ``train`` and ``test`` (the same arrays), as in
TLlib and most published tables (the target's labels are only used for evaluation).
VisDA-2017: ``visda2017/synthetic`` is the labeled ``train`` split and ``visda2017/real``
the ``validation`` split, each used as both train and test of its domain.

Images come back as NHWC, float32 in [0, 1] (``dtype="float32"``, the default) or uint8
as stored (``dtype="uint8"``, what the benchmark tasks use: the train and eval steps
convert on the device, :mod:`tljax.data.pixels`); variable-size photos are decoded with
PIL (JPEG draft mode: decoded at reduced scale when much larger than the target) and
resized to ``image_size`` without keeping the aspect ratio (like TLlib's
``ResizeImage``). In memory a 224x224 RGB image takes 150 KB as uint8 (VisDA-2017 ~31 GB,
DomainNet ~18 GB) and 0.6 MB as float32. With ``stream=True`` nothing is decoded up front:
a split's images are a :class:`StreamedImages` that decodes on access (the labels are read
once), for domains that do not fit in memory (:mod:`tljax.data.grain_stream` feeds
training from it with worker threads).
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import os
import textwrap
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

from tljax.data.benchmarks import builders
from tljax.data.core import Domain, Split

_PHOTO_SIZE = 224  # default image_size for the variable-size photo benchmarks
_RAW = tfds.decode.DeserializeMethod.RAW_BYTES


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """Where one benchmark domain lives in TFDS and how it is split.

    Attributes:
      name: our name, e.g. ``"office31/amazon"``.
      tfds_name: the TFDS dataset name, e.g. ``"office31"``.
      config: the TFDS builder config (the domain), or ``None``.
      train_split: TFDS split used as ``Domain.train``.
      test_split: TFDS split used as ``Domain.test`` (equal to ``train_split`` when the
        dataset has no official test split).
      num_classes: number of classes.
      builder: the TF-free builder class that prepares it.
      tfds_native: whether ``tfds_name`` is TFDS's own dataset (read through
        ``tfds.builder``, so ``tfds.testing.mock_data`` applies).
    """

    name: str
    tfds_name: str
    config: str | None
    train_split: str
    test_split: str
    num_classes: int
    builder: type[tfds.core.GeneratorBasedBuilder]
    tfds_native: bool = False

    @property
    def tfds_id(self) -> str:
        """``"name/config"`` or ``"name"``, as ``tfds.builder`` takes it."""
        return f"{self.tfds_name}/{self.config}" if self.config else self.tfds_name


def _table() -> dict[str, Benchmark]:
    b = builders
    table = [
        Benchmark("mnist", "mnist", None, "train", "test", 10, b.TfFreeMnist, True),
        Benchmark("fashion_mnist", "fashion_mnist", None, "train", "test", 10,
                  b.TfFreeFashionMnist, True),
        Benchmark("svhn", "svhn_cropped", None, "train", "test", 10, b.TfFreeSvhnCropped, True),
        Benchmark("usps", "usps", None, "train", "test", 10, b.Usps),
        Benchmark("mnist_m", "mnist_m", None, "train", "test", 10, b.MnistM),
        Benchmark("visda2017/synthetic", "visda2017", None, "train", "train", 12, b.Visda2017),
        Benchmark("visda2017/real", "visda2017", None, "validation", "validation", 12,
                  b.Visda2017),
    ]  # fmt: skip
    for cls, prefix in ((b.Office31, "office31"), (b.OfficeHome, "office_home")):
        for config in cls.BUILDER_CONFIGS:
            table.append(
                Benchmark(f"{prefix}/{config.name}", cls.name, config.name, "train", "train",
                          len(cls.CLASS_NAMES), cls)
            )  # fmt: skip
    for config in b.DomainNet.BUILDER_CONFIGS:
        table.append(
            Benchmark(f"domainnet/{config.name}", b.DomainNet.name, config.name, "train", "test",
                      len(b.DomainNet.CLASS_NAMES), b.DomainNet)
        )  # fmt: skip
    return {spec.name: spec for spec in table}


BENCHMARKS: dict[str, Benchmark] = _table()


class DatasetNotFoundError(FileNotFoundError):
    """A benchmark is not prepared in the TFDS data directory."""


def known_names() -> list[str]:
    """Returns the names :func:`load_domain` accepts, e.g. ``"office31/amazon"``."""
    return sorted(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """Returns the table entry of a benchmark.

    Raises:
      ValueError: if ``name`` is unknown (the message lists the known names).
    """
    if name not in BENCHMARKS:
        close = difflib.get_close_matches(name, BENCHMARKS, n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown benchmark {name!r}.{hint} Known benchmarks: {', '.join(known_names())}."
        )
    return BENCHMARKS[name]


def prepare_domain(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
) -> Path:
    """Downloads (or reads from ``manual_dir``) and prepares a benchmark, TF-free.

    Prepares the whole TFDS dataset/config behind ``name`` (for VisDA both domains) in
    ``array_record`` format.

    Args:
      name: a name from :func:`known_names`.
      data_dir: TFDS data directory; ``None`` means TFDS's default
        (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      manual_dir: folder with manually downloaded files; ``None`` means
        ``<data_dir>/downloads/manual``.

    Returns:
      The folder the prepared dataset was written to.
    """
    spec = get_benchmark(name)
    builder = spec.builder(config=spec.config, data_dir=data_dir, file_format="array_record")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder.download_and_prepare(download_config=config)
    return Path(os.fspath(builder.data_dir))


def load_domain(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    grayscale_to_rgb: bool = False,
    max_examples: int | None = None,
    dtype: str | None = None,
    stream: bool = False,
) -> Domain:
    """Loads one benchmark domain's train and test splits into memory.

    Args:
      name: a name from :func:`known_names`, e.g. ``"mnist"``, ``"office31/amazon"``.
      data_dir: TFDS data directory; ``None`` means TFDS's default.
      image_size: output ``size`` or ``(height, width)``. ``None`` keeps the native size
        of fixed-size datasets (digits) and uses 224 for the photo benchmarks.
      grayscale_to_rgb: repeat single-channel images (MNIST, USPS, Fashion-MNIST) to 3
        channels.
      max_examples: keep at most this many examples per split: the first ones in the
        stored order, which TFDS shuffles deterministically when it prepares the data.
      dtype: ``"float32"`` (images in [0, 1]) or ``"uint8"`` (as stored, 4x smaller);
        ``None``: ``"uint8"`` with ``stream``, else ``"float32"``.
      stream: keep the images on disk: each split's ``x`` is a :class:`StreamedImages`
        (uint8, decoded on access); the labels are read into memory.

    Returns:
      ``Domain(name, train, test)`` with NHWC images (``dtype``) and int32 labels.

    Raises:
      ValueError: for an unknown name or bad arguments.
      DatasetNotFoundError: if the dataset is not prepared in ``data_dir``; the message
        says where TFDS looked and how to fetch and prepare it.
    """
    spec = get_benchmark(name)
    size = _check_size(image_size)
    dtype = dtype or ("uint8" if stream else "float32")
    if dtype not in ("float32", "uint8") or (stream and dtype != "uint8"):
        raise ValueError(
            f"dtype must be 'float32' or 'uint8' ('uint8' with stream=True), got {dtype!r} "
            f"(stream={stream})."
        )
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be a positive int or None, got {max_examples!r}.")
    if spec.tfds_native:
        builder = tfds.builder(spec.tfds_id, data_dir=data_dir)
    else:
        builder = spec.builder(config=spec.config, data_dir=data_dir)
    native_shape = tuple(builder.info.features["image"].shape)
    if size is None and None in native_shape[:2]:
        size = (_PHOTO_SIZE, _PHOTO_SIZE)
    splits = {}
    channels = 3 if grayscale_to_rgb else native_shape[-1]
    for split in dict.fromkeys((spec.train_split, spec.test_split)):
        source = _data_source(spec, builder, split)
        if stream:
            n = len(source) if max_examples is None else min(len(source), max_examples)
            images = StreamedImages(source, n, size=size, channels=channels)
            splits[split] = Split(x=images, y=_read_labels(source, n))
            continue
        splits[split] = _read_split(
            source, max_examples=max_examples, size=size, channels=channels, dtype=dtype
        )
    return Domain(name=spec.name, train=splits[spec.train_split], test=splits[spec.test_split])


def _check_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(
            f"image_size must be None, a positive int or a (height, width) pair of positive "
            f"ints, got {image_size!r}."
        )
    return size


def _data_source(spec: Benchmark, builder, split: str):
    errors = (AssertionError, FileNotFoundError, NotImplementedError, ValueError)
    if builder.is_prepared():
        # Raw records: TFDS's NumPy deserialization costs ~150 us per example, parsing
        # the two fields we need a few (see _records).
        try:
            return builder.as_data_source(split=split, deserialize_method=_RAW)
        except errors as e:
            raise RuntimeError(
                f"Benchmark {spec.name!r}: TFDS dataset {spec.tfds_id!r} exists in "
                f"{builder.data_dir} but has no readable {split!r} split in array_record "
                f"format ({e}). If it was prepared with TensorFlow (tfrecord format), prepare "
                "it again TF-free in another data_dir: "
                f"tljax.data.benchmarks.prepare_domain({spec.name!r}, data_dir=...)."
            ) from e
    try:
        # Nothing on disk: this only succeeds when TFDS's data sources are mocked
        # (tfds.testing.mock_data), which yields decoded examples.
        return builder.as_data_source(split=split)
    except errors as e:
        raise DatasetNotFoundError(missing_message(spec, builder)) from e


def missing_message(spec: Benchmark, builder) -> str:
    """The message for a benchmark that is not prepared: what, where, how to fetch it."""
    root = os.fspath(builder.data_dir_root)
    instructions = textwrap.dedent(spec.builder.MANUAL_DOWNLOAD_INSTRUCTIONS or "").strip()
    cls = spec.builder.__name__
    config = f"config={spec.config!r}, " if spec.config else ""
    return (
        f"Benchmark {spec.name!r} is not prepared: TFDS dataset {spec.tfds_id!r} "
        f"(version {builder.version}) was not found in data_dir {root!r} (looked in "
        f"{os.fspath(builder.data_dir)}).\n\n"
        f"Source files:\n{textwrap.indent(instructions, '  ')}\n\n"
        "Prepare it (TF-free; downloads what is not in MANUAL_DIR):\n"
        f"  python -m tljax.data.benchmarks prepare {spec.name} --data_dir {root} "
        "--manual_dir MANUAL_DIR\n"
        "or in Python:\n"
        f"  tljax.data.benchmarks.prepare_domain({spec.name!r}, data_dir={root!r}, "
        "manual_dir=MANUAL_DIR)\n"
        "which runs:\n"
        f"  tljax.data.benchmarks.builders.{cls}({config}data_dir={root!r}, "
        "file_format='array_record').download_and_prepare(\n"
        "      download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))"
    )


def _records(source: Sequence, n: int, chunk: int = 1024) -> Iterator[dict]:
    """Yields ``{"image", "label"}`` of the first ``n`` records of a raw data source."""
    if n == 0:
        return
    first = source[0]
    if not isinstance(first, bytes):
        # Already decoded examples (e.g. under tfds.testing.mock_data).
        yield first
        yield from (source[i] for i in range(1, n))
        return
    for start in range(0, n, chunk):
        for record in source.__getitems__(list(range(start, min(n, start + chunk)))):
            feature = tf_example_pb2.Example.FromString(record).features.feature
            yield {
                "image": feature["image"].bytes_list.value[0],
                "label": feature["label"].int64_list.value[0],
            }


def _read_split(
    source: Sequence,
    *,
    max_examples: int | None,
    size: tuple[int, int] | None,
    channels: int,
    dtype: str = "float32",
) -> Split:
    n = len(source) if max_examples is None else min(len(source), max_examples)
    if n == 0:
        raise ValueError("The split is empty; there is nothing to load.")
    images = None
    labels = np.empty(n, dtype=np.int32)
    for i, example in enumerate(_records(source, n)):
        image = _to_array(example["image"], size, channels)
        if images is None:
            images = np.empty((n, *image.shape), dtype=dtype)
        if image.shape != images.shape[1:]:
            raise ValueError(
                f"Example {i} has image shape {image.shape}, earlier ones {images.shape[1:]}; "
                "pass image_size to resize all images to one size."
            )
        images[i] = image
        labels[i] = int(example["label"])
    if dtype == "float32":
        images *= np.float32(1 / 255)
    return Split(x=images, y=labels)


def _read_labels(source: Sequence, n: int, chunk: int = 1024) -> np.ndarray:
    """The int32 labels of the first ``n`` records (one pass, images not decoded)."""
    if n == 0:
        raise ValueError("The split is empty; there is nothing to load.")
    labels = np.empty(n, dtype=np.int32)
    if not isinstance(source[0], bytes):
        for i in range(n):
            labels[i] = int(source[i]["label"])
        return labels
    for start in range(0, n, chunk):
        records = source.__getitems__(list(range(start, min(n, start + chunk))))
        for i, record in enumerate(records, start):
            example = tf_example_pb2.Example.FromString(record)
            labels[i] = example.features.feature["label"].int64_list.value[0]
    return labels


def _example_image(record):
    """The image field of one record: encoded bytes (raw source) or an array (mock)."""
    if isinstance(record, bytes):
        feature = tf_example_pb2.Example.FromString(record).features.feature
        return feature["image"].bytes_list.value[0]
    return record["image"]


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:  # PIL decodes and resizes with the GIL released: threads scale
        _POOL = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="tljax-decode")
    return _POOL


class StreamedImages:
    """The uint8 NHWC images of one split, read and decoded on access (array-like).

    ``x[i]`` decodes one image, ``x[a:b]`` or ``x[index_array]`` a stack of them (on a
    thread pool), exactly as :func:`load_domain` would have stored them; ``shape``,
    ``dtype`` and ``len`` are those of the array it stands for. Nothing is cached, so a
    split of any size takes no memory; :mod:`tljax.data.grain_stream` reads training
    batches through :meth:`example` on grain's worker threads, evaluation reads slices.

    Args:
      source: the TFDS random-access data source of the split (raw records, or decoded
        examples under ``tfds.testing.mock_data``).
      n: the first ``n`` records are the split.
      size: ``(height, width)`` to resize to, or ``None`` for the native size.
      channels: 1 or 3.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, source: Sequence, n: int, *, size: tuple[int, int] | None, channels: int):
        if n < 1:
            raise ValueError("The split is empty; there is nothing to load.")
        self.source, self.size, self.channels = source, size, channels
        first = self.example(0)
        self.shape = (int(n), *first.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def example(self, i: int) -> np.ndarray:
        """Decodes image ``i`` to a uint8 ``(h, w, channels)`` array."""
        return _to_array(_example_image(self.source[int(i)]), self.size, self.channels)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {key} out of range for {len(self)} images")
            return self.example(i)
        index = np.arange(len(self))[key]
        if index.ndim != 1:
            raise TypeError(f"StreamedImages takes an int, a slice or a 1-D index, got {key!r}.")
        out = np.empty((len(index), *self.shape[1:]), np.uint8)
        for j, image in enumerate(_pool().map(self.example, index.tolist())):
            if image.shape != out.shape[1:]:
                raise ValueError(
                    f"Example {index[j]} has image shape {image.shape}, earlier ones "
                    f"{out.shape[1:]}; pass image_size to resize all images to one size."
                )
            out[j] = image
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"StreamedImages(shape={self.shape}, dtype=uint8)"


def _to_array(value, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """Decodes/resizes one image to a uint8 ``(h, w, channels)`` array."""
    if isinstance(value, bytes):
        image = Image.open(io.BytesIO(value))
        if size is not None and image.format == "JPEG":
            image.draft("RGB", (size[1], size[0]))  # decode at >= target scale: much faster
        image = image.convert("L" if channels == 1 else "RGB")
    else:
        array = np.asarray(value, dtype=np.uint8)
        if array.shape[-1] == 1:
            array = array[..., 0]
        image = Image.fromarray(array)
        if channels == 3 and image.mode != "RGB":
            image = image.convert("RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array
