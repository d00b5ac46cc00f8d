"""Where a key lives: one rule, shared by the CLI, the attack studies and scripts.

A key is given as the folder ``backmark keygen --out KEYDIR`` wrote (it holds ``marking-key.bmk`` and
``verification-key.json``) or as a marking key file, whose verification key is looked for beside it
unless given explicitly. A missing folder or file is reported as what the user typed and what should
be there, not as a path they never wrote.
"""

from __future__ import annotations

from pathlib import Path

from backmark.errors import BackmarkError
from backmark.keys.files import MK_NAME, VK_NAME, load_marking_key, load_verification_key
from backmark.keys.model import MarkingKey, VerificationKey, check_openings

_HOLDS = f"the folder `backmark keygen --out` writes holds {MK_NAME} (secret) and {VK_NAME} (public)"


def resolve_key_paths(
    key: str | Path, vk: str | Path | None = None, *, need_vk: bool = True
) -> tuple[Path, Path]:
    """``(marking key file, verification key file)`` for ``key``, a key folder or a marking key file.

    ``vk`` overrides where the verification key is; by default it is ``KEYDIR/verification-key.json``
    or the file of that name beside the marking key. Raises BackmarkError naming ``key`` when it, or
    a file the key needs, does not exist; the verification key is only required when ``need_vk``.
    """
    key = Path(key).expanduser()
    if key.is_dir():
        mk_path = key / MK_NAME
        if not mk_path.is_file():
            present = f" (it holds {VK_NAME} only: the public half)" if (key / VK_NAME).is_file() else ""
            raise BackmarkError(f"key folder {key} has no {MK_NAME}{present}; {_HOLDS}")
    elif key.is_file():
        mk_path = key
    else:
        raise BackmarkError(f"key {key} not found: pass a key folder or a marking key file; {_HOLDS}")
    if vk is not None:
        vk_path = Path(vk).expanduser()
        if need_vk and not vk_path.is_file():
            raise BackmarkError(f"verification key {vk_path} not found (given with {{vk}})", params=["vk"])
        return mk_path, vk_path
    vk_path = mk_path.parent / VK_NAME
    if need_vk and not vk_path.is_file():
        where = f"key folder {key}" if key.is_dir() else f"the folder of marking key {key}"
        raise BackmarkError(f"{where} has no {VK_NAME}; pass the public key with {{vk}} FILE", params=["vk"])
    return mk_path, vk_path


def load_key_pair(key: str | Path, vk: str | Path | None = None) -> tuple[MarkingKey, VerificationKey]:
    """Load the key pair at ``key`` (see :func:`resolve_key_paths`) and check that every commitment opens.

    Everything is checked here, before any model is queried: both files' integrity and that the
    verification key commits to exactly this marking key (a mismatch names the first bad index).
    """
    mk_path, vk_path = resolve_key_paths(key, vk)
    public = load_verification_key(vk_path)
    secret = load_marking_key(mk_path)
    check_openings(secret, public)
    return secret, public
