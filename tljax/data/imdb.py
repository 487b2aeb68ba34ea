"""TFDS ``imdb_reviews/plain_text`` without TensorFlow: prepare it, read it.

Reading goes through ``tfds.builder(...).as_data_source`` (``array_record`` random
access). Preparing needs no TensorFlow either: :class:`TfFreeImdbReviews` keeps TFDS's
name, version, features and splits (so the result is what ``tfds.data_source(
"imdb_reviews/plain_text")`` expects) and only replaces TFDS's archive handling, taking
``aclImdb_v1.tar.gz`` (or its unpacked ``aclImdb/`` folder) from ``manual_dir`` if it is
there, else downloading it from Stanford (80 MB)::

    python -m tljax.data.imdb --data_dir ~/tensorflow_datasets [--manual_dir DIR]

With TensorFlow installed, TFDS's own command does the same:
``tfds build imdb_reviews/plain_text --file_format=array_record --data_dir DIR``.
"""

from __future__ import annotations

import argparse
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TFDS_NAME = "imdb_reviews/plain_text"
URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE = "aclImdb_v1.tar.gz"


def _builder_class():
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.imdb_reviews import imdb_reviews_dataset_builder as imdb

    from tljax.data.benchmarks.builders._common import fetch_file

    class TfFreeImdbReviews(imdb.Builder, skip_registration=True):
        """TFDS ``imdb_reviews`` (same name, version, features, splits), prepared TF-free."""

        name = "imdb_reviews"
        MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
        Optional: put {ARCHIVE} (or its unpacked aclImdb/ folder) directly in manual_dir;
        otherwise it is downloaded from {URL}.
        """

        def _split_generators(self, dl_manager):
            path = fetch_file(
                dl_manager,
                url=URL,
                manual_names=(ARCHIVE, "aclImdb"),
                instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            )
            gen = lambda d, **kw: self._generate_examples(_iter_files(path), d, **kw)
            return {
                tfds.Split.TRAIN: gen(os.path.join("aclImdb", "train")),
                tfds.Split.TEST: gen(os.path.join("aclImdb", "test")),
                "unsupervised": gen(os.path.join("aclImdb", "train"), labeled=False),
            }

    return TfFreeImdbReviews


def _iter_files(path: Path) -> Iterator[tuple[str, object]]:
    """``(path inside the archive, file object)`` of a tar archive or an unpacked folder,
    paths as in the archive (``aclImdb/train/pos/0_9.txt``)."""
    path = Path(path)
    if path.is_dir():
        root = path.parent if path.name == "aclImdb" else path
        for dirpath, _, files in sorted(os.walk(path)):
            for f in sorted(files):
                full = Path(dirpath) / f
                with open(full, "rb") as fobj:
                    yield full.relative_to(root).as_posix(), fobj
        return
    with tarfile.open(path, mode="r:*") as tar:
        for member in tar:
            if member.isfile():
                yield os.path.normpath(member.name), tar.extractfile(member)


def prepare(data_dir=None, manual_dir=None) -> Path:
    """Prepares ``imdb_reviews/plain_text`` in ``data_dir`` in ``array_record`` format.

    Returns:
      The folder written (``<data_dir>/imdb_reviews/plain_text/1.0.0``).
    """
    import tensorflow_datasets as tfds

    builder = _builder_class()(config="plain_text", data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return Path(os.fspath(builder.data_dir))


def missing_message(data_dir, looked_in) -> str:
    """What to run when ``imdb_reviews`` is not prepared."""
    root = data_dir or "~/tensorflow_datasets"
    return (
        f"TFDS dataset {TFDS_NAME!r} is not prepared in data_dir {root!r} (looked in "
        f"{looked_in}). Prepare it once (TF-free; downloads {ARCHIVE}, 80 MB, unless it "
        f"or its unpacked aclImdb/ folder is in MANUAL_DIR):\n"
        f"  python -m tljax.data.imdb --data_dir {root} [--manual_dir MANUAL_DIR]\n"
        f"or, with TensorFlow installed:\n"
        f"  tfds build {TFDS_NAME} --file_format=array_record --data_dir {root}\n"
        "then pass the same directory as the task option data_dir "
        "(--config.data.task_kwargs.data_dir=...)."
    )


def _data_source(split: str, data_dir):
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    errors = (AssertionError, FileNotFoundError, NotImplementedError, ValueError)
    if builder.is_prepared():
        try:
            return builder.as_data_source(split=split, deserialize_method=_raw())
        except errors as e:
            raise FileNotFoundError(
                f"{TFDS_NAME} exists in {builder.data_dir} but has no readable {split!r} "
                f"split in array_record format ({e}); it was probably prepared with "
                "TensorFlow as tfrecord. " + missing_message(data_dir, builder.data_dir)
            ) from e
    try:
        # Nothing on disk: this only succeeds under tfds.testing.mock_data.
        return builder.as_data_source(split=split)
    except errors as e:
        raise FileNotFoundError(missing_message(data_dir, builder.data_dir)) from e


def _raw():
    import tensorflow_datasets as tfds

    return tfds.decode.DeserializeMethod.RAW_BYTES


def _record(record) -> tuple[str, int]:
    if isinstance(record, bytes):
        from tensorflow_datasets.proto import tf_example_pb2

        feature = tf_example_pb2.Example.FromString(record).features.feature
        text, label = feature["text"].bytes_list.value[0], feature["label"].int64_list.value[0]
    else:  # decoded (tfds.testing.mock_data)
        text, label = record["text"], record["label"]
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return text.replace("<br />", " "), int(label)


def load_split(
    split: str, *, data_dir=None, limit: int | None = None, seed=0
) -> tuple[list[str], np.ndarray]:
    """Texts and labels (0 neg, 1 pos) of one split of ``imdb_reviews/plain_text``.

    Args:
      split: ``"train"`` or ``"test"``.
      data_dir: the TFDS data directory (``None``: TFDS's default).
      limit: keep a seeded random subset of this many reviews (in stored order).
      seed: seed of that subset.

    Raises:
      FileNotFoundError: if the dataset is not prepared (saying how to prepare it).
      ValueError: for another split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"imdb split must be 'train' or 'test', got {split!r}.")
    source = _data_source(split, data_dir)
    n = len(source)
    idx = np.arange(n)
    if limit is not None and limit < n:
        idx = np.sort(np.random.default_rng(seed).permutation(n)[:limit])
    texts, labels = [], np.empty(len(idx), np.int32)
    getitems = getattr(source, "__getitems__", None)
    for start in range(0, len(idx), 1024):
        chunk = [int(i) for i in idx[start : start + 1024]]
        records = getitems(chunk) if getitems else [source[i] for i in chunk]
        for j, record in enumerate(records):
            text, labels[start + j] = _record(record)
            texts.append(text)
    return texts, labels


def main(argv: list[str] | None = None) -> None:
    """``python -m tljax.data.imdb --data_dir DIR [--manual_dir DIR]``: prepare the data."""
    parser = argparse.ArgumentParser(prog="python -m tljax.data.imdb", description=__doc__)
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS's)")
    parser.add_argument("--manual_dir", default=None, help=f"folder holding {ARCHIVE}")
    args = parser.parse_args(argv)
    print(f"Prepared {TFDS_NAME} in {prepare(args.data_dir, args.manual_dir)}")


if __name__ == "__main__":
    main()


__all__ = ["load_split", "missing_message", "prepare"]
