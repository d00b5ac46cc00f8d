"""The one atomic writer: files and folders appear whole or not at all, and errors name the user's path."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from backmark.atomic import (
    atomic_file,
    atomic_folder,
    atomic_path,
    exchange,
    sweep,
    temp_name,
    write_bytes,
    write_text,
)
from backmark.errors import BackmarkError

OWNED = {"a.txt", "b.txt", "sub"}.__contains__


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def listing(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# --- files ----------------------------------------------------------------------------------------------


def test_write_sets_the_mode_exactly_and_never_overwrites_by_default(tmp_path: Path) -> None:
    path = tmp_path / "new" / "f.bin"
    old_umask = os.umask(0o022)
    try:
        write_bytes(path, b"one", mode=0o640)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"one" and stat.S_IMODE(path.stat().st_mode) == 0o640
    with pytest.raises(BackmarkError, match=r"f\.bin already exists; pass force=True to overwrite it"):
        write_bytes(path, b"two")
    assert path.read_bytes() == b"one"
    write_text(path, "three", force=True, mode=0o600)
    assert path.read_text() == "three" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["f.bin"]


def test_a_file_that_appears_while_writing_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with pytest.raises(BackmarkError, match="already exists"), atomic_file(path) as handle:
        handle.write(b"mine")
        path.write_bytes(b"someone else's")
    assert path.read_bytes() == b"someone else's" and os.listdir(tmp_path) == ["f"]


def test_an_exception_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(path, force=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_errors_name_the_given_path_and_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(BackmarkError) as info:
        write_bytes(tmp_path / "plain" / "random.bin", b"")
    message = str(info.value)
    assert message.endswith("plain is a file, not a folder; choose another path") and "exists" not in message
    with pytest.raises(BackmarkError, match=r"is a folder; give the name of a file"):
        write_bytes(tmp_path, b"", force=True)
    with pytest.raises(BackmarkError, match=r"^cannot write /proc/x\.onnx: [^;]+; .*choose") as info:
        write_bytes("/proc/x.onnx", b"")
    assert "tmp" not in str(info.value) and "\n" not in str(info.value)


def test_stale_temporaries_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "f.pt"
    dead = dead_pid()
    stale = [
        tmp_path / f".f.pt.{dead}-00000000.new.bmtmp",
        tmp_path / f".f.pt.{dead}.tmp",  # backmark 0.1's name
    ]
    (tmp_path / f".f.pt.{dead}-11111111.new.bmtmp").mkdir()
    stale.append(tmp_path / f".f.pt.{dead}-11111111.new.bmtmp")
    for path in stale[:2]:
        path.write_bytes(b"x")
    kept = [
        temp_name(target),  # this process: a write in progress
        tmp_path / f".f.pt.{os.getppid()}-22222222.new.bmtmp",  # another live process
        tmp_path / f".g.pt.{dead}-33333333.new.bmtmp",  # another file's
        tmp_path / "f.pt.bak",
    ]
    for path in kept:
        path.write_bytes(b"x")
    write_bytes(target, b"data")  # every write sweeps first
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


# --- folders --------------------------------------------------------------------------------------------


def refusal(out: str | Path, *, force: bool = False) -> str:
    """The error of opening ``out`` as an output folder (nothing is written)."""
    with (
        pytest.raises(BackmarkError) as info,
        atomic_folder(out, owned=OWNED, what="a test report", force=force),
    ):
        pass
    assert "\n" not in str(info.value)
    return str(info.value)


def fill(folder: Path, tag: str) -> None:
    (folder / "a.txt").write_text(tag)
    (folder / "sub").mkdir()
    (folder / "sub" / "b.txt").write_text(tag)


def test_folder_fresh_empty_and_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_folder(out, owned=OWNED, what="a test report") as build:
        assert not out.exists() and build.parent == tmp_path and build.name.startswith(".out.")
        fill(build, "1")
    assert listing(out) == {"a.txt": "1", "sub/b.txt": "1"}
    assert refusal(out).endswith(
        "out already holds a test report; pass force=True to replace it, or choose another folder"
    )
    with atomic_folder(out, owned=OWNED, what="a test report", force=True) as build:
        (build / "b.txt").write_text("2")
    assert listing(out) == {"b.txt": "2"}  # replaced as a whole: nothing of the old run is left
    assert os.listdir(tmp_path) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_folder(empty, owned=OWNED, what="a test report") as build:
        fill(build, "3")
    assert listing(empty) == {"a.txt": "3", "sub/b.txt": "3"}


def test_folder_with_other_files_is_refused_even_if_they_appear_late(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    fill(out, "old")
    (out / "notes.md").write_text("mine")
    for force in (False, True):
        assert "holds files other than a test report (notes.md); replacing it would delete" in refusal(
            out, force=force
        )
    (out / "notes.md").unlink()
    folder = atomic_folder(out, owned=OWNED, what="a test report", force=True)
    with pytest.raises(BackmarkError, match=r"notes\.md"), folder as build:
        fill(build, "new")
        (out / "notes.md").write_text("written while the run went on")
    assert listing(out) == {"a.txt": "old", "sub/b.txt": "old", "notes.md": "written while the run went on"}
    assert os.listdir(tmp_path) == ["out"]


def test_folder_exception_keeps_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    fill(out, "old")
    folder = atomic_folder(out, owned=OWNED, what="a test report", force=True)
    with pytest.raises(KeyboardInterrupt), folder as build:
        fill(build, "new")
        raise KeyboardInterrupt
    assert listing(out) == {"a.txt": "old", "sub/b.txt": "old"} and os.listdir(tmp_path) == ["out"]


def test_folder_refuses_files_links_are_followed_and_the_current_folder_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("x")
    assert refusal(tmp_path / "file").endswith("file is a file, not a folder; choose another folder")
    real = tmp_path / "real"
    real.mkdir()
    fill(real, "old")
    (tmp_path / "link").symlink_to(real)
    with atomic_folder(tmp_path / "link", owned=OWNED, what="a test report", force=True) as build:
        fill(build, "new")
    assert (tmp_path / "link").is_symlink() and listing(real) == {"a.txt": "new", "sub/b.txt": "new"}
    monkeypatch.chdir(real)
    assert "is the current folder" in refusal(".", force=True)
    assert listing(real) == {"a.txt": "new", "sub/b.txt": "new"}


@pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="no exchange call here")
def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "y").write_text("b")
    if not exchange(a, b):
        pytest.skip("this file system cannot exchange folders")
    assert os.listdir(a) == ["y"] and os.listdir(b) == ["x"]


@pytest.mark.parametrize("use_exchange", [True, False], ids=["exchange", "two-renames"])
def test_folder_killed_after_every_step_is_old_or_new(
    tmp_path: Path, crasher: Any, use_exchange: bool
) -> None:
    root = tmp_path / "work"
    out = root / "out"

    def old_run() -> None:
        out.mkdir(parents=True)
        fill(out, "old")

    def new_run() -> None:
        with atomic_folder(out, owned=OWNED, what="a test report", force=True) as build:
            fill(build, "new")

    old_run()
    steps = crasher.steps(new_run, exchange=use_exchange)
    assert steps[-1] == "folder-published#1"
    seen = set()
    for step in steps:
        shutil.rmtree(root)
        old_run()
        crasher.kill_after(new_run, step, exchange=use_exchange)
        sweep(out)
        content = listing(root)
        assert content in (
            {"out/a.txt": "old", "out/sub/b.txt": "old"},
            {"out/a.txt": "new", "out/sub/b.txt": "new"},
        ), step
        assert os.listdir(root) == ["out"], step
        seen.add(content["out/a.txt"])
    assert seen == {"old", "new"}
