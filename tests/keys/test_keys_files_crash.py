"""Replacing a key pair is atomic as a pair: killed at any step, the folder holds the old or the new pair.

Issue 7: `keygen --force` killed at the wrong moment left the new marking key beside the old verification
key, and temporary files (one a complete verification key) behind. Here the writer is killed (SIGKILL) just
after every write step it takes, with the atomic folder exchange and with the two-rename fallback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backmark.atomic import CRASH_ENV, NO_EXCHANGE_ENV
from backmark.errors import BackmarkError
from backmark.keys import (
    MK_NAME,
    VK_NAME,
    MarkingKey,
    generate_key,
    load_marking_key,
    load_verification_key,
    save_key_pair,
)


def key(name: str) -> MarkingKey:
    seed = hashlib.sha256(name.encode()).digest()
    return generate_key(num_classes=10, input_shape=(1, 8, 8), size=5, kind="noise", seed=seed)


OLD, NEW = key("old"), key("new")


def pair_digest(folder: Path) -> str:
    """The digest of the pair in ``folder``, after checking that the two files belong together."""
    mk, vk = load_marking_key(folder), load_verification_key(folder)
    assert mk.verification_key().digest == vk.digest, "the marking key does not match the verification key"
    return vk.digest


def entries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


CLEAN = sorted(["key", f"key/{MK_NAME}", f"key/{VK_NAME}"])


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_keygen_force_killed_after_every_step_leaves_a_matching_pair(
    tmp_path: Path, crasher: Any, exchange: bool
) -> None:
    root = tmp_path / "work"
    folder = root / "key"

    def fresh_old_pair() -> None:
        shutil.rmtree(root, ignore_errors=True)
        save_key_pair(OLD, folder)

    fresh_old_pair()
    steps = crasher.steps(lambda: save_key_pair(NEW, folder, force=True), exchange=exchange)
    assert {"file-written#2", "folder-staged#1", "folder-swapped#1"} <= set(steps)
    assert ("folder-aside#1" in steps) is not exchange
    seen = set()
    for step in steps:
        fresh_old_pair()
        crasher.kill_after(lambda: save_key_pair(NEW, folder, force=True), step, exchange=exchange)
        digest = pair_digest(folder)  # loading sweeps what the killed writer left
        assert digest in (OLD.verification_key().digest, NEW.verification_key().digest), step
        seen.add("new" if digest == NEW.verification_key().digest else "old")
        assert entries(root) == CLEAN, step
        if step == "folder-staged#1":
            assert seen == {"old"}  # everything up to the swap keeps the old pair
    assert seen == {"old", "new"}
    fresh_old_pair()
    save_key_pair(NEW, folder, force=True)  # and the next run just works
    assert pair_digest(folder) == NEW.verification_key().digest and entries(root) == CLEAN


def test_a_new_key_killed_after_every_step_leaves_nothing_or_the_pair(tmp_path: Path, crasher: Any) -> None:
    root = tmp_path / "work"
    folder = root / "key"
    steps = crasher.steps(lambda: save_key_pair(NEW, folder))
    shutil.rmtree(root)
    for step in steps:
        root.mkdir()
        crasher.kill_after(lambda: save_key_pair(NEW, folder), step)
        if folder.exists():
            assert pair_digest(folder) == NEW.verification_key().digest, step
            assert entries(root) == CLEAN, step
        else:
            save_key_pair(NEW, folder)  # no "already exists": nothing of a key is left; the sweep ran
            assert entries(root) == CLEAN, step
        shutil.rmtree(root)


def test_a_folder_with_other_files_is_never_replaced(tmp_path: Path) -> None:
    save_key_pair(OLD, tmp_path / "k")
    (tmp_path / "k" / "notes.txt").write_text("mine")
    with pytest.raises(BackmarkError, match=r"holds files other than a key pair \(notes\.txt\)"):
        save_key_pair(NEW, tmp_path / "k", force=True)
    assert pair_digest(tmp_path / "k") == OLD.verification_key().digest
    assert (tmp_path / "k" / "notes.txt").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("a")
    with pytest.raises(BackmarkError, match="holds files other than a key pair"):
        save_key_pair(NEW, other)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackmarkError, match="file is a file, not a folder"):
        save_key_pair(NEW, tmp_path / "file" / "key")


def test_an_empty_folder_is_filled_and_a_lone_key_file_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    folder.mkdir()
    save_key_pair(OLD, folder)
    assert pair_digest(folder) == OLD.verification_key().digest
    (folder / VK_NAME).unlink()  # half a pair, e.g. deleted by hand: --force makes a whole one
    save_key_pair(NEW, folder, force=True)
    assert pair_digest(folder) == NEW.verification_key().digest and entries(tmp_path) == sorted(
        ["k", f"k/{MK_NAME}", f"k/{VK_NAME}"]
    )


def test_temporaries_of_dead_writers_are_swept_on_load(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    save_key_pair(OLD, folder)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    live = os.getppid()
    stale = [
        folder / f".{VK_NAME}.{dead}.tmp",  # what backmark 0.1 left: a complete verification key
        folder / f".{MK_NAME}.{dead}-0123abcd.new.bmtmp",
        tmp_path / f".k.{dead}-89abcdef.new.bmtmp",
    ]
    for path in stale:
        path.write_bytes(b"left by a killed writer")
    running = folder / f".{MK_NAME}.{live}-0123abcd.new.bmtmp"  # a writer that is still at work
    running.write_bytes(b"in progress")
    unrelated = folder / f".{MK_NAME}.{dead}.bak"
    unrelated.write_bytes(b"not ours")
    load_verification_key(folder)
    assert not any(p.exists() for p in stale)
    assert running.exists() and unrelated.exists()


def test_killed_cli_keygen_then_keygen_again(tmp_path: Path) -> None:
    """The real command, killed after the swap: the new pair is in place, and loading it sweeps the rest."""
    folder = tmp_path / "k"
    save_key_pair(OLD, folder)
    argv = [sys.executable, "-m", "backmark", "keygen", "--out", str(folder), "--classes", "10"]
    argv += ["--shape", "1x8x8", "--size", "5", "--force", "-q"]
    env = {**os.environ, CRASH_ENV: "folder-swapped", NO_EXCHANGE_ENV: ""}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(list(tmp_path.iterdir())) == 2  # the key folder and the old pair, swapped out
    new = pair_digest(folder)
    assert new != OLD.verification_key().digest and entries(tmp_path) == sorted(
        ["k", f"k/{MK_NAME}", f"k/{VK_NAME}"]
    )
