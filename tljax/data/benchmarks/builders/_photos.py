"""Base class for the photo benchmarks (Office-31, Office-Home, VisDA-2017, DomainNet).

Images keep their encoded bytes (``tfds.features.Image(shape=(None, None, 3))``): the
files are large and of varying size, so they are decoded and resized only when read
(``tljax.data.benchmarks.loader`` does that with PIL). Files that are not plain RGB in
an accepted format are converted to RGB once, at build time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import tensorflow_datasets as tfds

from tljax.data.benchmarks.builders._common import (
    extract,
    fetch_file,
    manual_dir_or_none,
    normalize_name,
    rgb_image_bytes,
)


@dataclasses.dataclass
class DomainConfig(tfds.core.BuilderConfig):
    """One domain of a multi-domain benchmark.

    Attributes:
      folder_names: accepted names of the domain's folder (compared case-, space- and
        underscore-insensitively).
      archive_names: names of the domain's archive, looked for in ``manual_dir``.
      url: public download URL of the archive, or ``None``.
      md5: its published MD5, or ``None`` if unknown.
    """

    folder_names: tuple[str, ...] = ()
    archive_names: tuple[str, ...] = ()
    url: str | None = None
    md5: str | None = None


class PhotoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared ``_info`` and example generation for benchmarks of photos in class folders."""

    CLASS_NAMES: tuple[str, ...] = ()
    DESCRIPTION: str = ""
    HOMEPAGE: str = ""
    CITATION: str = ""
    IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
    # Stored images are the original files when PIL reads them as RGB in KEEP_FORMATS;
    # the others are converted to RGB and re-encoded as FALLBACK_FORMAT.
    ENCODING_FORMAT: str | None = "jpeg"
    KEEP_FORMATS: tuple[str, ...] = ("JPEG",)
    FALLBACK_FORMAT: str = "JPEG"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(
                        shape=(None, None, 3), encoding_format=self.ENCODING_FORMAT
                    ),
                    "label": tfds.features.ClassLabel(names=self.CLASS_NAMES),
                    "filename": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
        )

    def _has_classes(self, folder: Path) -> bool:
        """Whether ``folder`` holds at least one class folder of this benchmark."""
        names = {normalize_name(n) for n in self.CLASS_NAMES}
        return any(c.is_dir() and normalize_name(c.name) in names for c in folder.iterdir())

    def _locate(
        self,
        dl_manager,
        *,
        folder_names: Sequence[str],
        archive_names: Sequence[str],
        url: str | None,
        md5: str | None,
        accept: Callable[[Path], Path | None],
    ) -> Path:
        """Finds a domain's folder in ``manual_dir``, else fetches and extracts its archive.

        Args:
          dl_manager: the TFDS download manager.
          folder_names: accepted names of the domain folder.
          archive_names: archive names to look for in ``manual_dir``.
          url: download URL of the archive (``None``: manual only).
          md5: its MD5 or ``None``.
          accept: maps a candidate folder to the folder holding the class folders, or to
            ``None`` if the candidate is not it.

        Raises:
          FileNotFoundError: with the download instructions, if nothing usable is found.
        """
        manual = manual_dir_or_none(dl_manager)
        roots = [manual] if manual is not None else []
        found = self._search(roots, folder_names, accept)
        if found is not None:
            return found
        archive = fetch_file(
            dl_manager,
            url=url,
            manual_names=archive_names,
            md5=md5,
            instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS or "",
        )
        extracted = extract(archive, Path(dl_manager.download_dir) / "extracted")
        found = self._search([extracted], folder_names, accept)
        if found is None:
            raise FileNotFoundError(
                f"No folder named {' or '.join(folder_names)} with class folders "
                f"({', '.join(self.CLASS_NAMES[:3])}, ...) in {extracted} (from {archive}).\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return found

    @staticmethod
    def _search(
        roots: Iterable[Path], names: Sequence[str], accept: Callable[[Path], Path | None]
    ) -> Path | None:
        # Breadth-first over candidates so that a shallow domain folder wins over a class
        # folder of the same name deeper down (VisDA has a domain and a class "train").
        level = [r for r in roots if r.is_dir()]
        wanted = {normalize_name(n) for n in names}
        for _ in range(4):
            for d in level:
                if normalize_name(d.name) in wanted and (hit := accept(d)) is not None:
                    return hit
            level = sorted(c for d in level for c in d.iterdir() if c.is_dir())
        return None

    def _generate_examples(self, items: Iterable[tuple[Path, int]], relative_to: Path):
        """Yields ``(key, example)`` pairs for ``(path, label)`` items."""
        for path, label in items:
            rel = path.relative_to(relative_to).as_posix()
            image = rgb_image_bytes(path, self.KEEP_FORMATS, self.FALLBACK_FORMAT)
            yield rel, {"image": image, "label": label, "filename": rel}
