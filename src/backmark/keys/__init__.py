"""Marking and verification keys: KeyGen, commitments and the key files."""

from backmark.keys.files import (
    MK_NAME,
    VK_NAME,
    load_marking_key,
    load_verification_key,
    parse_verification_key,
    save_key_pair,
    save_marking_key,
    save_verification_key,
)
from backmark.keys.keygen import DEFAULT_SIZE, generate_key
from backmark.keys.model import MarkingKey, Spend, VerificationKey, check_openings
from backmark.keys.paths import load_key_pair, resolve_key_paths
from backmark.keys.regenerate import check_regenerates

__all__ = [
    "DEFAULT_SIZE",
    "MK_NAME",
    "VK_NAME",
    "MarkingKey",
    "Spend",
    "VerificationKey",
    "check_openings",
    "check_regenerates",
    "generate_key",
    "load_key_pair",
    "load_marking_key",
    "load_verification_key",
    "parse_verification_key",
    "resolve_key_paths",
    "save_key_pair",
    "save_marking_key",
    "save_verification_key",
]
