"""IDX parsing and the MNIST / Fashion-MNIST loaders (local files only; no network)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from backmark.data import ImageDataset, load_dataset
from backmark.data.download import payload_sha256
from backmark.data.idx import IDX_FILES
from backmark.data.mnist import IDX_SOURCES
from backmark.errors import BackmarkError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(),
    reason="Debian package dataset-fashion-mnist not installed (/usr/share/datasets/fashion-mnist)",
)
FASHION_CLASSES = (
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
)

MakeDir = Callable[..., dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def real_fashion(tmp_path_factory: pytest.TempPathFactory) -> ImageDataset:
    """Fashion-MNIST found through the search order (empty $BACKMARK_DATA, empty cache)."""
    root = tmp_path_factory.mktemp("real")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BACKMARK_DATA", str(root / "data"))
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        return load_dataset("fashion-mnist", download=False)


@needs_debian
def test_real_fashion_mnist_shapes_and_classes(real_fashion: ImageDataset) -> None:
    ds = real_fashion
    assert ds.name == "fashion-mnist"
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (10000, 1, 28, 28) and ds.test_x.dtype == torch.uint8
    assert ds.train_y.shape == (60000,) and ds.train_y.dtype == torch.int64
    assert ds.test_y.shape == (10000,)
    assert ds.classes == FASHION_CLASSES
    assert ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    assert torch.bincount(ds.train_y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y, minlength=10).tolist() == [1000] * 10
    assert int(ds.train_x.max()) == 255


@needs_debian
def test_hardcoded_checksums_match_debian_files() -> None:
    checksums = IDX_SOURCES["fashion-mnist"].checksums
    for base in IDX_FILES[1::2]:  # the label files: small, quick to hash
        assert payload_sha256(DEBIAN_DIR / f"{base}.gz") == checksums[base]


@pytest.mark.parametrize("gz", [False, True])
def test_explicit_dir_plain_and_gz(tmp_path: Path, idx_dir_maker: MakeDir, gz: bool) -> None:
    arrays = idx_dir_maker(tmp_path / "fm", gz=gz)
    ds = load_dataset(f"fashion-mnist:{tmp_path / 'fm'}", download=False)
    assert ds.train_x.shape == (20, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays[IDX_FILES[0]])
    assert ds.train_y.tolist() == arrays[IDX_FILES[1]].tolist()
    assert ds.classes == FASHION_CLASSES


def test_mnist_from_backmark_data(isolated_env: dict[str, Path], idx_dir_maker: MakeDir) -> None:
    idx_dir_maker(isolated_env["data"] / "mnist", gz=True)
    ds = load_dataset("mnist")
    assert ds.name == "mnist" and ds.classes == tuple("0123456789")
    assert ds.train_x.shape == (20, 1, 28, 28)


def test_backmark_data_comes_before_cache(isolated_env: dict[str, Path], idx_dir_maker: MakeDir) -> None:
    first = idx_dir_maker(isolated_env["data"] / "mnist", seed=1)
    idx_dir_maker(isolated_env["cache"] / "backmark" / "mnist", seed=2)
    ds = load_dataset("mnist", download=False)
    assert np.array_equal(ds.train_x[:, 0].numpy(), first[IDX_FILES[0]])


def test_mnist_not_found_without_checksums(isolated_env: dict[str, Path]) -> None:
    with pytest.raises(BackmarkError, match=r"no checksums.*\$BACKMARK_DATA/mnist.*mnist:DIR"):
        load_dataset("mnist", download=True)


def test_not_found_without_download(isolated_env: dict[str, Path]) -> None:
    with pytest.raises(BackmarkError, match="mnist not found") as info:
        load_dataset("mnist", download=False)
    assert str(isolated_env["data"] / "mnist") in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_explicit_dir(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match=r"is missing or not a directory.*fashion-mnist:DIR"):
        load_dataset(f"fashion-mnist:{tmp_path / 'nope'}")


def test_explicit_dir_missing_a_file(tmp_path: Path, idx_dir_maker: MakeDir) -> None:
    idx_dir_maker(tmp_path)
    (tmp_path / IDX_FILES[3]).unlink()
    with pytest.raises(BackmarkError, match=f"lacks {IDX_FILES[3]}"):
        load_dataset(f"mnist:{tmp_path}")


def test_truncated_idx(tmp_path: Path, idx_dir_maker: MakeDir) -> None:
    idx_dir_maker(tmp_path)
    path = tmp_path / IDX_FILES[0]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BackmarkError, match=r"train-images-idx3-ubyte has \d+ payload bytes"):
        load_dataset(f"mnist:{tmp_path}")


def test_truncated_gzip(tmp_path: Path, idx_dir_maker: MakeDir) -> None:
    idx_dir_maker(tmp_path, gz=True)
    path = tmp_path / f"{IDX_FILES[2]}.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(BackmarkError, match=r"cannot read .*t10k-images-idx3-ubyte.gz"):
        load_dataset(f"mnist:{tmp_path}")


def test_bad_magic(tmp_path: Path, idx_dir_maker: MakeDir) -> None:
    idx_dir_maker(tmp_path)
    # A labels file where the images file should be: magic 0x801 instead of 0x803.
    (tmp_path / IDX_FILES[0]).write_bytes((tmp_path / IDX_FILES[1]).read_bytes())
    with pytest.raises(BackmarkError, match=r"train-images-idx3-ubyte has IDX magic 0x00000801"):
        load_dataset(f"mnist:{tmp_path}")


def test_wrong_label_count(tmp_path: Path, idx_dir_maker: MakeDir, idx_writer: Callable[..., Path]) -> None:
    idx_dir_maker(tmp_path)
    idx_writer(tmp_path / IDX_FILES[1], np.zeros(19, dtype=np.uint8))
    with pytest.raises(BackmarkError, match=r"has 19 labels but .* has 20 images"):
        load_dataset(f"mnist:{tmp_path}")


def test_label_out_of_range(tmp_path: Path, idx_dir_maker: MakeDir, idx_writer: Callable[..., Path]) -> None:
    idx_dir_maker(tmp_path)
    idx_writer(tmp_path / IDX_FILES[3], np.full(10, 10, dtype=np.uint8))
    with pytest.raises(BackmarkError, match="t10k-labels-idx1-ubyte has label 10"):
        load_dataset(f"mnist:{tmp_path}")


def test_not_gzip_but_named_gz(tmp_path: Path, idx_dir_maker: MakeDir) -> None:
    idx_dir_maker(tmp_path, gz=True)
    gz = tmp_path / f"{IDX_FILES[1]}.gz"
    gz.write_bytes(gzip.decompress(gz.read_bytes()))
    with pytest.raises(BackmarkError, match=r"cannot read .*train-labels-idx1-ubyte.gz"):
        load_dataset(f"mnist:{tmp_path}")
