"""Real image-classification datasets, read into memory as uint8 tensors.

``load_dataset("fashion-mnist")`` finds (or downloads and verifies) Fashion-MNIST and returns an
:class:`ImageDataset` with images uint8 [N, C, H, W] and labels int64 [N]. Other specs read
MNIST IDX files, CIFAR-10/100 pickle batches (unpickled with a restricted unpickler) or a folder of
image files; :func:`dataset_specs` lists the accepted forms. Problems raise
:class:`backmark.errors.BackmarkError` with a one-line message.
"""

from __future__ import annotations

from backmark.data.dataset import ImageDataset
from backmark.data.specs import dataset_specs, load_dataset

__all__ = ["ImageDataset", "dataset_specs", "load_dataset"]
