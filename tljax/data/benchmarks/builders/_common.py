"""Helpers shared by the TF-free TFDS builders: fetching, extracting, finding, encoding.

TFDS's own archive extraction (``dl_manager.extract`` / ``download_and_extract``) and its
local-file copy need TensorFlow (``tf.compat.as_text``, ``tf.io.gfile``), so our builders
only use ``dl_manager.download`` (plain HTTP through ``requests``) and extract archives
here with the standard library.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

_COMPLETE_MARKER = ".tljax_extracted"


def normalize_name(name: str) -> str:
    """Lower-cases a name and drops ``_``, ``-`` and spaces: ``Real World`` ~ ``real_world``."""
    return "".join(c for c in name.lower() if c not in "_- ")


def manual_dir_or_none(dl_manager) -> Path | None:
    """Returns ``dl_manager.manual_dir`` as a ``Path``, or ``None`` when it is unset or empty."""
    try:
        return Path(os.fspath(dl_manager.manual_dir))
    except (AssertionError, ValueError):
        return None


def md5sum(path: Path, chunk_size: int = 1 << 20) -> str:
    """Returns the hex MD5 digest of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str | None, source: str) -> None:
    """Checks a file against its published MD5 checksum.

    Args:
      path: the file.
      expected: the published checksum; ``None`` skips the check.
      source: where the file came from, for the error message.

    Raises:
      ValueError: if the checksum differs.
    """
    if expected is None:
        return
    actual = md5sum(path)
    if actual != expected:
        raise ValueError(
            f"MD5 of {path} (from {source}) is {actual}, expected {expected}. The file is "
            "corrupt or a different version; delete it and download it again."
        )


def fetch_file(
    dl_manager,
    *,
    url: str | None,
    manual_names: Sequence[str],
    md5: str | None = None,
    instructions: str = "",
) -> Path:
    """Returns a local copy of one source file: from ``manual_dir`` if there, else downloaded.

    Args:
      dl_manager: the TFDS download manager.
      url: where to download the file from; ``None`` if it must be fetched by hand.
      manual_names: file or folder names to look for directly in ``manual_dir``.
      md5: published checksum of the downloaded file (not checked for manual files,
        which may legitimately be unpacked or repacked).
      instructions: what to fetch by hand, for the error when nothing is found.

    Raises:
      FileNotFoundError: if the file is not in ``manual_dir`` and there is no URL.
    """
    manual = manual_dir_or_none(dl_manager)
    if manual is not None:
        for name in manual_names:
            if (manual / name).exists():
                return manual / name
    if url is None:
        raise FileNotFoundError(
            f"None of {list(manual_names)} is in the manual_dir ({manual}) and this file has "
            f"no public download URL.\n{instructions}"
        )
    path = Path(os.fspath(dl_manager.download(url)))
    verify_md5(path, md5, url)
    return path


def extract(archive: Path, dest_root: Path) -> Path:
    """Extracts a tar/tar.gz/zip archive (or a single .gz/.bz2 file) once, TF-free.

    Args:
      archive: the archive; its type is read from its first bytes, not its name.
      dest_root: folder under which ``<archive name>.extracted/`` is created.

    Returns:
      The folder with the extracted content, or ``archive`` itself when it is already a
      folder. A second call reuses a complete earlier extraction.

    Raises:
      ValueError: if the file is no archive we know, or a member would land outside the
        destination.
    """
    if archive.is_dir():
        return archive
    dest = dest_root / f"{archive.name}.extracted"
    if (dest / _COMPLETE_MARKER).exists():
        return dest
    tmp = dest_root / f"{archive.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(archive, "rb") as f:
        magic = f.read(4)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                _check_member(member, archive)
            zf.extractall(tmp)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf_:
            for member in tf_.getmembers():
                _check_member(member.name, archive)
            # The "data" filter (Python >= 3.10.12/3.11.4) also rejects links out of tmp.
            options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf_.extractall(tmp, **options)
    elif magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh":
        opener = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open
        name = archive.name.rsplit(".", 1)[0] if "." in archive.name else archive.name
        with opener(archive, "rb") as src, open(tmp / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.rmtree(tmp)
        raise ValueError(
            f"{archive} is not a zip, tar, gzip or bzip2 archive (first bytes {magic!r})."
        )
    (tmp / _COMPLETE_MARKER).touch()
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _check_member(name: str, archive: Path) -> None:
    if name.startswith(("/", "\\")) or ".." in Path(name).parts:
        raise ValueError(f"Archive {archive} has an unsafe member path {name!r}; not extracting.")


def find_dir(roots: Iterable[Path], names: Iterable[str], max_depth: int = 3) -> Path | None:
    """Breadth-first search for a folder whose normalized name is one of ``names``.

    Args:
      roots: folders to search in (each root itself counts as depth 0).
      names: accepted folder names, compared with :func:`normalize_name`.
      max_depth: how many levels below each root to look.

    Returns:
      The shallowest match, or ``None``.
    """
    wanted = {normalize_name(n) for n in names}
    level = [r for r in roots if r.is_dir()]
    for _ in range(max_depth + 1):
        for d in level:
            if normalize_name(d.name) in wanted:
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir())
    return None


def find_file(roots: Iterable[Path], name: str, max_depth: int = 3) -> Path | None:
    """Breadth-first search for a file called ``name`` below ``roots``; ``None`` if absent."""
    level = [r for r in roots if r.is_dir()]
    for _ in range(max_depth + 1):
        for d in level:
            if (d / name).is_file():
                return d / name
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir())
    return None


def scan_class_folders(
    root: Path, class_names: Sequence[str], extensions: Sequence[str]
) -> list[tuple[Path, int]]:
    """Lists ``root/<class>/<image>`` files with their label, in a deterministic order.

    Class folders are matched to ``class_names`` by :func:`normalize_name`, so
    ``Alarm_Clock``, ``alarm clock`` and ``alarm-clock`` all match. Classes without a
    folder are allowed (they get no examples); folders that are no class are an error.

    Raises:
      ValueError: if a folder is no known class, or no image was found.
    """
    index = {normalize_name(n): i for i, n in enumerate(class_names)}
    exts = {e.lower() for e in extensions}
    items: list[tuple[Path, int]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = index.get(normalize_name(folder.name))
        if label is None:
            raise ValueError(
                f"Folder {folder} is not one of the {len(class_names)} known classes "
                f"({', '.join(class_names[:5])}, ...). Is {root} the right folder?"
            )
        items.extend(
            (p, label)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix.lower() in exts
        )
    if not items:
        raise ValueError(f"No images ({', '.join(sorted(exts))}) in class folders under {root}.")
    return items


def rgb_image_bytes(path: Path, keep_formats: Sequence[str], fallback_format: str) -> bytes:
    """Returns the encoded image as stored: the file's own bytes when they are usable as is.

    The original bytes are kept when PIL reads the file as RGB in one of ``keep_formats``
    (only the header is parsed, nothing is decoded). Grayscale, CMYK, palette or RGBA
    files are converted to RGB and re-encoded as ``fallback_format``, so every stored
    image decodes to ``(h, w, 3)`` with PIL or TensorFlow alike.
    """
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        if img.format in keep_formats and img.mode == "RGB":
            return data
        buffer = io.BytesIO()
        options = {"quality": 95} if fallback_format == "JPEG" else {}
        img.convert("RGB").save(buffer, format=fallback_format, **options)
    return buffer.getvalue()
