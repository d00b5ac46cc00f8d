"""Trigger-set images for backdoor watermarks (Adi et al., USENIX Security 2018).

A trigger set is a secret collection of out-of-distribution images, each given a random label and
trained into the model; a model that reproduces those labels carries the watermark. This package
makes the images, all as uint8 numpy arrays of shape ``(C, H, W)`` with pixel values 0..255 and
``C`` = 1 (greyscale) or 3 (RGB):

- ``abstract``: :func:`abstract_image`, procedurally generated abstract art from a seed;
- ``noise``: :func:`noise_image`, uniformly random pixels from a seed;
- ``folder``: :func:`folder_images`, the photographs in a directory (such as the paper's own 100),
  with :func:`read_label_file` for a ``labels.csv`` next to them.

:func:`trigger_grid` saves a labelled contact sheet of trigger images for reports.
"""

from __future__ import annotations

from backmark.triggers.abstract import abstract_image
from backmark.triggers.folder import IMAGE_EXTENSIONS, folder_images, read_label_file
from backmark.triggers.grid import trigger_grid
from backmark.triggers.noise import noise_image

TRIGGER_KINDS: tuple[str, ...] = ("abstract", "noise", "folder")
"""The names of the trigger kinds, as used in configuration and on the command line."""

__all__ = [
    "IMAGE_EXTENSIONS",
    "TRIGGER_KINDS",
    "abstract_image",
    "folder_images",
    "noise_image",
    "read_label_file",
    "trigger_grid",
]
