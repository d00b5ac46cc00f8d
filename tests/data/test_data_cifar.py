"""CIFAR-10/100 pickle batches written like the originals, and the restricted unpickler."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from backmark.data import load_dataset
from backmark.errors import BackmarkError

CIFAR10_NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def _dump(path: Path, obj: object, protocol: int) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def _batch(n: int, seed: int, label_key: bytes, num_classes: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def write_cifar10(parent: Path, protocol: int = 4) -> dict[str, dict[bytes, object]]:
    """Write cifar-10-batches-py/ under ``parent`` with 4 images per batch; return the batches."""
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    batches = {f"data_batch_{i}": _batch(4, i, b"labels", 10) for i in range(1, 6)}
    batches["test_batch"] = _batch(3, 9, b"labels", 10)
    for name, batch in batches.items():
        _dump(root / name, batch, protocol)
    meta = {b"label_names": CIFAR10_NAMES, b"num_cases_per_batch": 4, b"num_vis": 3072}
    _dump(root / "batches.meta", meta, protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_parent_dir(tmp_path: Path, protocol: int) -> None:
    batches = write_cifar10(tmp_path, protocol)
    ds = load_dataset(f"cifar10:{tmp_path}")
    assert ds.name == "cifar10"
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (3, 3, 32, 32) and ds.test_y.dtype == torch.int64
    assert ds.classes[0] == "airplane" and ds.num_classes == 10
    first = batches["data_batch_1"]
    data = first[b"data"]
    assert isinstance(data, np.ndarray)
    # Row layout: 1024 red, 1024 green, 1024 blue values, each 32 rows of 32.
    assert np.array_equal(ds.train_x[0, 1].numpy(), data[0, 1024:2048].reshape(32, 32))
    assert ds.train_y[:4].tolist() == first[b"labels"]


def test_cifar10_extracted_dir_itself(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    ds = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}")
    assert ds.train_x.shape[0] == 20


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    names = [f"class{i}".encode() for i in range(100)]
    for split, n in (("train", 6), ("test", 2)):
        batch = _batch(n, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [0] * n
        _dump(root / split, batch, 4)
    _dump(root / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"x"] * 20}, 4)
    ds = load_dataset(f"cifar100:{tmp_path}")
    assert ds.num_classes == 100 and ds.classes[99] == "class99"
    assert ds.train_x.shape == (6, 3, 32, 32) and ds.test_x.shape == (2, 3, 32, 32)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch pwned-by-pickle",))


def test_malicious_pickle_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path)
    monkeypatch.chdir(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    _dump(batch, {b"data": _Evil(), b"labels": [0]}, 4)
    with pytest.raises(BackmarkError, match=r"data_batch_3 wants to load '(posix|os)\.system'"):
        load_dataset(f"cifar10:{tmp_path}")
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_corrupt_pickle(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(BackmarkError, match=r"cannot unpickle .*test_batch"):
        load_dataset(f"cifar10:{tmp_path}")


def test_label_count_mismatch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch = _batch(4, 2, b"labels", 10)
    batch[b"labels"] = [1, 2, 3]
    _dump(path, batch, 4)
    with pytest.raises(BackmarkError, match="data_batch_2 has 3 labels for 4 images"):
        load_dataset(f"cifar10:{tmp_path}")


def test_missing_batch_file(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(BackmarkError, match="data_batch_5 is missing"):
        load_dataset(f"cifar10:{tmp_path}")


def test_not_a_cifar_dir(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match=r"no batches\.meta .*cs\.toronto\.edu"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(BackmarkError, match="does not exist"):
        load_dataset(f"cifar100:{tmp_path / 'absent'}")


def test_cifar_needs_dir() -> None:
    with pytest.raises(BackmarkError, match=r"cifar10 needs a directory: cifar10:DIR"):
        load_dataset("cifar10")


def test_numpy1_style_pickle(tmp_path: Path) -> None:
    """Pickles from numpy 1.x (like the original files) name ``numpy.core.multiarray``."""
    write_cifar10(tmp_path, protocol=2)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_dataset(f"cifar10:{tmp_path}").test_x.shape == (3, 3, 32, 32)
