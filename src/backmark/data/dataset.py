"""The in-memory dataset container that every loader in :mod:`backmark.data` returns.

Images stay uint8 (0..255) so a full dataset is small in memory (Fashion-MNIST: 70000 x 784 bytes
= 55 MB) and so that normalisation is a model-side choice, not a loading-side one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backmark.errors import BackmarkError

# Offset added to the seed for the test split, so train and test draws are independent streams.
_TEST_STREAM = 0x9E3779B9


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image-classification dataset with a fixed train/test split.

    Attributes:
        name: short identifier, e.g. ``"fashion-mnist"`` or ``"cifar10"``.
        train_x: uint8 tensor [N, C, H, W], pixel values 0..255.
        train_y: int64 tensor [N], class indices in ``0 .. num_classes - 1``.
        test_x: uint8 tensor [M, C, H, W], same C, H, W as ``train_x``.
        test_y: int64 tensor [M].
        classes: class names; ``classes[i]`` names label ``i``.

    Construction checks dtypes, ranks, matching counts and label range, so a dataset that exists is
    internally consistent. ``eq=False`` because comparing tensors with ``==`` is elementwise.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.classes:
            raise BackmarkError(f"dataset {self.name!r} has no classes; check its source files")
        for split, x, y in (
            ("train", self.train_x, self.train_y),
            ("test", self.test_x, self.test_y),
        ):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise BackmarkError(
                    f"dataset {self.name!r}: {split} images must be uint8 [N, C, H, W], "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise BackmarkError(
                    f"dataset {self.name!r}: {split} labels must be int64 [{x.shape[0]}], "
                    f"got {y.dtype} {tuple(y.shape)}"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise BackmarkError(
                    f"dataset {self.name!r}: {split} labels outside 0..{len(self.classes) - 1}"
                )
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise BackmarkError(
                f"dataset {self.name!r}: train images are {tuple(self.train_x.shape[1:])} but test "
                f"images are {tuple(self.test_x.shape[1:])}; both splits need one size"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of :attr:`classes`)."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image as (C, H, W), e.g. (1, 28, 28) for Fashion-MNIST."""
        _, c, h, w = self.train_x.shape
        return (int(c), int(h), int(w))

    def subset(self, *, train: int | None = None, test: int | None = None, seed: int = 0) -> ImageDataset:
        """Return a dataset with ``train`` / ``test`` examples drawn at random without replacement.

        ``None`` keeps a split whole. Each split's draw depends only on ``seed`` and that split's
        size (the two splits use separate generator streams), so runs and tests that use the same
        arguments see the same examples. Selected examples keep their original relative order.
        Classes and name are unchanged.
        """
        train_x, train_y = _pick(self.train_x, self.train_y, train, seed, "train", self.name)
        test_x, test_y = _pick(self.test_x, self.test_y, test, seed + _TEST_STREAM, "test", self.name)
        return ImageDataset(self.name, train_x, train_y, test_x, test_y, self.classes)


def _pick(
    x: torch.Tensor,
    y: torch.Tensor,
    count: int | None,
    seed: int,
    split: str,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``count`` rows of (x [N, ...], y [N]) seeded by ``seed``; all when ``count`` is None."""
    total = int(x.shape[0])
    if count is None:
        return x, y
    if count < 0 or count > total:
        raise BackmarkError(
            f"cannot take {count} {split} examples from {name!r}, which has {total}; ask for 0..{total}"
        )
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(total, generator=gen)[:count].sort().values
    return x[idx].contiguous(), y[idx].contiguous()
