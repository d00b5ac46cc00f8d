"""Trigger-set images for backdoor watermarks (Adi et al., USENIX Security 2018).

A trigger set is a secret collection of out-of-distribution images, each given a random label and
trained into the model; a model that reproduces those labels carries the watermark. This package
makes the images, all as uint8 numpy arrays of shape ``(C, H, W)`` with pixel values 0..255 and
``C`` = 1 (greyscale) or 3 (RGB):

- ``abstract``: :func:`abstract_image`, procedurally generated abstract art from a seed;
- ``noise``: :func:`noise_image`, uniformly random pixels from a seed;
- ``folder``: :func:`folder_images`, the photographs in a directory (such as the paper's own 100).

Each kind registers itself (:mod:`backmark.triggers.registry`); :func:`list_trigger_kinds` lists them and
:func:`parse_trigger_kind` reads ``abstract``, ``noise`` or ``folder:DIR``.

:func:`trigger_grid` saves a labelled contact sheet of trigger images for reports.
"""

from __future__ import annotations

from backmark.triggers.abstract import abstract_image
from backmark.triggers.folder import IMAGE_EXTENSIONS, folder_images
from backmark.triggers.grid import trigger_grid
from backmark.triggers.noise import noise_image
from backmark.triggers.registry import (
    FolderReader,
    Generator,
    TriggerKind,
    get_trigger_kind,
    list_trigger_kinds,
    parse_trigger_kind,
    register_folder_kind,
    register_generated_kind,
    trigger_kind_forms,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderReader",
    "Generator",
    "TriggerKind",
    "abstract_image",
    "folder_images",
    "get_trigger_kind",
    "list_trigger_kinds",
    "noise_image",
    "parse_trigger_kind",
    "register_folder_kind",
    "register_generated_kind",
    "trigger_grid",
    "trigger_kind_forms",
]
