"""Targets: anything that answers a batch of images in [0, 1] with class labels (black-box access).

Verification only ever sees labels, as it would behind an API. A local ``nn.Module`` becomes a target
with :class:`ModuleTarget`; exported files and remote servers are further targets.
"""

from __future__ import annotations

# onnxruntime and httpx themselves load only when such a target is made.
from backmark.constants import TARGET_FORMS
from backmark.targets.adapter import Adapter, load_adapter
from backmark.targets.client import ClientConfig
from backmark.targets.exported import OnnxTarget, TorchScriptTarget
from backmark.targets.http import JsonTarget, V2Target
from backmark.targets.hygiene import DecoyQueries, DecoyTarget, load_decoys
from backmark.targets.module import ModuleTarget, as_target
from backmark.targets.opening import OpenedTarget, open_for_verify
from backmark.targets.protocol import CheckedTarget, ScoredTarget, Target, check_target
from backmark.targets.spec import TargetSpec, open_target, parse_target

__all__ = [
    "TARGET_FORMS",
    "Adapter",
    "CheckedTarget",
    "ClientConfig",
    "DecoyQueries",
    "DecoyTarget",
    "JsonTarget",
    "ModuleTarget",
    "OnnxTarget",
    "OpenedTarget",
    "ScoredTarget",
    "Target",
    "TargetSpec",
    "TorchScriptTarget",
    "V2Target",
    "as_target",
    "check_target",
    "load_adapter",
    "load_decoys",
    "open_for_verify",
    "open_target",
    "parse_target",
]
