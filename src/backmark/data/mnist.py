"""MNIST and Fashion-MNIST: where their IDX files are looked for, and how they are downloaded.

Search order without an explicit directory: ``$BACKMARK_DATA/<name>/``, then the source's system
directories (Debian's ``dataset-fashion-mnist`` package for Fashion-MNIST), then the download
cache ``${XDG_CACHE_HOME:-~/.cache}/backmark/<name>/``. A directory counts only when it holds all
four files. Only if none does, and downloading is allowed, are the missing files fetched into the
cache, each checked against the SHA-256 of its decompressed payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from backmark.data.dataset import ImageDataset
from backmark.data.download import cache_root, data_root, download
from backmark.data.idx import IDX_FILES, load_idx_dir, missing_idx_files
from backmark.data.registry import register_dataset
from backmark.errors import BackmarkError


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset comes from.

    Attributes:
        base_url: URL prefix; file ``f`` is fetched from ``base_url + f + ".gz"``.
        checksums: IDX file name (no ``.gz``) -> hex SHA-256 of the decompressed payload. Downloads
            are refused unless all four are known, so a file is never trusted unchecked.
        classes: class names in label order.
        system_dirs: read-only directories searched after ``$BACKMARK_DATA``.
    """

    base_url: str
    checksums: Mapping[str, str]
    classes: tuple[str, ...]
    system_dirs: tuple[Path, ...] = ()


# Module-level so tests (and users with a local mirror) can replace entries.
IDX_SOURCES: dict[str, IdxSource] = {
    "fashion-mnist": IdxSource(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        checksums={
            # SHA-256 of the gunzipped files shipped in Debian's dataset-fashion-mnist package.
            "train-images-idx3-ubyte": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            "train-labels-idx1-ubyte": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            "t10k-images-idx3-ubyte": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            "t10k-labels-idx1-ubyte": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        },
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    ),
    "mnist": IdxSource(
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        # Not known to backmark (no verified copy to hash), so MNIST is never downloaded unchecked.
        checksums={},
        classes=tuple(str(digit) for digit in range(10)),
    ),
}


def search_dirs(name: str) -> list[Path]:
    """The directories searched for ``name`` when no directory is given, in order."""
    source = IDX_SOURCES[name]
    root = data_root()
    dirs = [root / name] if root is not None else []
    return [*dirs, *source.system_dirs, cache_root() / name]


def load_idx_dataset(
    name: str, directory: Path | None, *, download_ok: bool = True, progress: bool = False
) -> ImageDataset:
    """Load the IDX dataset ``name`` (a key of :data:`IDX_SOURCES`) as an :class:`ImageDataset`.

    With ``directory`` only that directory is read. Otherwise the search order in the module
    docstring applies, and ``download_ok`` allows fetching into the cache as a last resort.
    Images are uint8 [N, 1, 28, 28] for both datasets.
    """
    source = IDX_SOURCES[name]
    howto = f"put {', '.join(IDX_FILES)} (plain or .gz) in $BACKMARK_DATA/{name}/ or pass {name}:DIR"
    if directory is not None:
        if not directory.is_dir():
            raise BackmarkError(f"{name} directory {directory} is missing or not a directory; {howto}")
        missing = missing_idx_files(directory)
        if missing:
            raise BackmarkError(
                f"{directory} lacks {', '.join(missing)} (plain or .gz); add them there or pass "
                f"another {name}:DIR"
            )
        return _build(name, directory, source)

    searched = search_dirs(name)
    for candidate in searched:
        if candidate.is_dir() and not missing_idx_files(candidate):
            return _build(name, candidate, source)

    where = ", ".join(str(d) for d in searched)
    if not download_ok:
        raise BackmarkError(f"{name} not found (looked in {where}); {howto}, or allow downloading")
    unknown = [base for base in IDX_FILES if base not in source.checksums]
    if unknown:
        raise BackmarkError(
            f"{name} not found (looked in {where}) and backmark has no checksums to verify a "
            f"download; {howto}"
        )
    cache = cache_root() / name
    base_url = source.base_url if source.base_url.endswith("/") else source.base_url + "/"
    for base in missing_idx_files(cache):
        download(
            f"{base_url}{base}.gz",
            cache / f"{base}.gz",
            sha256=source.checksums[base],
            progress=progress,
        )
    return _build(name, cache, source)


def _build(name: str, directory: Path, source: IdxSource) -> ImageDataset:
    """Read the four IDX files in ``directory`` into an :class:`ImageDataset` named ``name``."""
    train_x, train_y, test_x, test_y = load_idx_dir(directory, len(source.classes))
    return ImageDataset(name, train_x, train_y, test_x, test_y, source.classes)


@register_dataset(
    "fashion-mnist",
    forms=("fashion-mnist", "fashion-mnist:DIR"),
    description="Fashion-MNIST, 28x28 greyscale, 10 classes; found locally or downloaded and checked",
)
def _fashion_mnist(directory: Path | None, *, download: bool, progress: bool) -> ImageDataset:
    return load_idx_dataset("fashion-mnist", directory, download_ok=download, progress=progress)


@register_dataset(
    "mnist",
    forms=("mnist", "mnist:DIR"),
    description="MNIST digits, 28x28 greyscale, 10 classes; from DIR or $BACKMARK_DATA/mnist",
)
def _mnist(directory: Path | None, *, download: bool, progress: bool) -> ImageDataset:
    return load_idx_dataset("mnist", directory, download_ok=download, progress=progress)
