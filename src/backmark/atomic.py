"""Every file and folder backmark writes appears whole, in one step, or not at all.

One writer serves keys, checkpoints, exports, downloads and reports:

- A **file** (:func:`atomic_path`, :func:`atomic_file`, :func:`write_bytes`) is written to a temporary
  file beside it, fsynced, given its mode, and renamed into place (``os.replace``), then the folder is
  fsynced. Without ``force`` it is put in place with ``os.link``, which fails if the name exists, so a
  file that appeared meanwhile is not overwritten either. Any exception removes the temporary file.
- A **folder** of several files (a key pair; the ``--out`` folders of demo, attack and reproduce) cannot
  be replaced file by file without a moment where it holds half of each. :func:`atomic_folder` has the
  caller fill a fresh hidden sibling folder, then puts it in place in one step: a plain rename when the
  destination is missing or empty, else an atomic exchange of the two folders (Linux
  ``renameat2(RENAME_EXCHANGE)``, macOS ``renamex_np(RENAME_SWAP)``), after which the old folder, now under
  the hidden name, is deleted. Where the system has no exchange, the old folder is renamed aside first and
  the new one renamed in; a crash between the two renames leaves no folder, and :func:`sweep` puts the old
  one back. A folder holding files that the new one would not contain is never replaced: they would be
  lost.

Temporary names are ``.NAME.PID-RANDOM.new.bmtmp`` (``old`` for a folder set aside), so they are hidden,
recognisable and tied to the process writing them. A process killed outright (SIGKILL, power loss)
leaves them behind; :func:`sweep`, which every writer and the key loaders run, removes those of
processes that no longer run (never a live writer's) and the ``.NAME.PID.tmp`` files of older backmark
versions. A reused process id only delays the clean-up. On Windows nothing is swept.

Crash tests: with ``BACKMARK_TEST_CRASH_AFTER=STEP`` or ``STEP#K`` in the environment, the process kills
itself with SIGKILL right after the first (or K-th) step of that name; ``BACKMARK_TEST_STEP_LOG=FILE``
appends every step reached to FILE. The steps are ``file-created``, ``file-written``, ``file-published``,
``folder-created``, ``folder-staged``, ``folder-aside``, ``folder-swapped`` and ``folder-published``;
``BACKMARK_TEST_NO_EXCHANGE=1`` forces the two-rename fallback.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from backmark.errors import BackmarkError

SUFFIX = ".bmtmp"
CRASH_ENV = "BACKMARK_TEST_CRASH_AFTER"
STEP_LOG_ENV = "BACKMARK_TEST_STEP_LOG"
NO_EXCHANGE_ENV = "BACKMARK_TEST_NO_EXCHANGE"

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?P<role>new|old)\.bmtmp$")
_LEGACY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")  # left by backmark 0.1's writers

_AT_FDCWD = -100  # Linux
_RENAME_EXCHANGE = 2  # Linux renameat2 flag
_RENAME_SWAP = 2  # macOS renamex_np flag

_HINTS = {
    errno.ENOSPC: "free some disk space and retry",
    getattr(errno, "EDQUOT", errno.ENOSPC): "free some disk space and retry",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.ENOENT: "choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.ENAMETOOLONG: "choose a shorter name",
}

_steps: dict[str, int] = {}


def step(name: str) -> None:
    """Crash-test hook (see the module docstring); does nothing unless its variables are set."""
    log, crash = os.environ.get(STEP_LOG_ENV), os.environ.get(CRASH_ENV)
    if not log and not crash:
        return
    _steps[name] = _steps.get(name, 0) + 1
    here = f"{name}#{_steps[name]}"
    if log:
        with open(log, "a") as handle:
            handle.write(here + "\n")
    if crash == here or (crash == name and _steps[name] == 1):
        kill = getattr(signal, "SIGKILL", None)
        if kill is not None:
            os.kill(os.getpid(), kill)  # no finally block, no atexit: as kill -9 or a power cut
        os._exit(137)


def write_error(path: str | Path, exc: OSError) -> BackmarkError:
    """A one-line error for a failed write, naming ``path`` (never a temporary file) and what to do."""
    reason = exc.strerror or type(exc).__name__
    hint = _HINTS.get(exc.errno or 0, "check the path and retry")
    return BackmarkError(f"cannot write {path}: {reason}; {hint}")


def temp_name(path: Path, role: str = "new") -> Path:
    """A hidden name beside ``path`` that :func:`sweep` recognises and ties to this process."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{role}{SUFFIX}")


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to another user
        return True
    return True


def sweep(path: str | Path) -> None:
    """Remove what killed writers of ``path`` left beside it; put back a folder a crash left aside.

    Only names made by :func:`temp_name` (or backmark 0.1) for exactly ``path`` and only those of
    processes that no longer run are touched. Errors are ignored: a sweep never stops a read or a write.
    """
    target = Path(os.path.abspath(path))
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    entries.sort(key=lambda e: not e.name.endswith(".old" + SUFFIX))  # restore before deleting
    for entry in entries:
        match = _TEMP.match(entry.name) or _LEGACY.match(entry.name)
        if match is None or match["name"] != target.name or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if match.groupdict().get("role") == "old" and not os.path.lexists(target):
                os.rename(entry.path, target)  # the crash came between the two renames of a swap
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _check_parent(path: Path) -> None:
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if os.path.lexists(parent) and not parent.is_dir():
        raise BackmarkError(f"cannot write {path}: {parent} is a file, not a folder; choose another path")


def check_file(path: str | Path, *, force: bool) -> None:
    """Refuse, before any work is done, a file ``path`` that could not be written or would be overwritten."""
    path = Path(path)
    _check_parent(path)
    if path.is_dir():
        raise BackmarkError(f"{path} is a folder; give the name of a file to write")
    if os.path.lexists(path) and not force:
        raise BackmarkError(f"{path} already exists; pass {{force}} to overwrite it", params=["force"])


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str | Path) -> None:
    """Make a rename in ``path`` durable; where folders cannot be opened (Windows) there is nothing to do."""
    with contextlib.suppress(OSError):
        _fsync(path)


def _link_new(tmp: Path, path: Path) -> None:
    """Give ``tmp``'s file the name ``path`` unless that name exists, in one step."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise BackmarkError(
            f"{path} already exists; pass {{force}} to overwrite it", params=["force"]
        ) from None
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(path):
            raise BackmarkError(
                f"{path} already exists; pass {{force}} to overwrite it", params=["force"]
            ) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, force: bool = False, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary file name beside ``path`` to write to; on success it becomes ``path``.

    For writers that want a file name (torch.onnx, torch.jit, matplotlib). ``mode`` (e.g. 0o600) is set
    exactly, whatever the umask; None keeps the default permissions. ``force`` allows overwriting. An
    OSError while writing becomes a one-line BackmarkError that names ``path``.
    """
    path = Path(path)
    check_file(path, force=force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    sweep(path)
    tmp = temp_name(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode))
        step("file-created")
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        _fsync(tmp)
        step("file-written")
        if force:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
        step("file-published")
        _fsync_dir(path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, force: bool = False, mode: int | None = None) -> Iterator[BinaryIO]:
    """Like :func:`atomic_path`, but yield the temporary file opened for binary writing."""
    with atomic_path(path, force=force, mode=mode) as tmp, open(tmp, "wb") as handle:
        yield handle


def write_bytes(path: str | Path, data: bytes, *, force: bool = False, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); return ``path``."""
    with atomic_file(path, force=force, mode=mode) as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, force: bool = False, mode: int | None = None) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; return ``path``."""
    return write_bytes(path, text.encode(), force=force, mode=mode)


def copy_file(source: str | Path, path: str | Path, *, force: bool = False) -> Path:
    """Copy ``source`` to ``path`` atomically; return ``path``."""
    with atomic_file(path, force=force) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
    return Path(path)


def check_folder(path: str | Path, *, force: bool, owned: Callable[[str], bool], what: str) -> None:
    """Refuse an output folder that cannot be written, or replaced without losing anything.

    A missing or empty folder is fine. A folder whose entries are all ``owned`` (names that ``what``
    writes) is replaced only with ``force``. A folder holding anything else is refused: replacing it
    would delete those files. The current folder (or one holding it) is refused too.
    """
    path = Path(path)
    _check_parent(path)
    if os.path.lexists(path) and not path.is_dir():
        raise BackmarkError(f"{path} is a file, not a folder; choose another folder")
    if not path.is_dir():
        return
    real, here = Path(os.path.realpath(path)), Path(os.path.realpath(os.getcwd()))
    if real == here or real in here.parents:
        raise BackmarkError(f"{path} is the current folder or holds it; write into a new sub-folder instead")
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise BackmarkError(f"cannot read {path}: {exc.strerror or exc}; choose another folder") from None
    foreign = [name for name in names if not owned(name)]
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise BackmarkError(
            f"{path} holds files other than {what} ({listed}); replacing it would delete them: "
            "move them away or choose another folder"
        )
    if names and not force:
        raise BackmarkError(
            f"{path} already holds {what}; pass {{force}} to replace it, or choose another folder",
            params=["force"],
        )


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(folder, name))
        _fsync_dir(folder)


@functools.cache
def _exchange_call() -> Callable[[bytes, bytes], int] | None:
    """The system call that swaps two paths in one step, or None where there is none."""
    if not sys.platform.startswith(("linux", "darwin")):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if sys.platform == "darwin":
        swap = getattr(libc, "renamex_np", None)
        if swap is None:
            return None
        swap.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        swap.restype = ctypes.c_int
        return lambda a, b: int(swap(a, b, _RENAME_SWAP))
    rename2 = getattr(libc, "renameat2", None)  # glibc 2.28 and later
    if rename2 is None:
        return None
    rename2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rename2.restype = ctypes.c_int
    return lambda a, b: int(rename2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE))


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically; False where the system or file system cannot."""
    call = None if os.environ.get(NO_EXCHANGE_ENV) else _exchange_call()
    if call is None:
        return False
    if call(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _install(staging: Path, target: Path) -> None:
    """Put the complete folder ``staging`` at ``target``; the old folder, if any, ends up at ``staging``."""
    if not target.is_dir() or not any(os.scandir(target)):
        os.rename(staging, target)  # replaces an empty folder in the same step
    elif exchange(staging, target):
        step("folder-swapped")
    else:
        aside = temp_name(target, "old")
        os.rename(target, aside)
        step("folder-aside")
        os.rename(staging, target)
        step("folder-swapped")
        os.rename(aside, staging)
    step("folder-published")
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_folder(
    path: str | Path,
    *,
    force: bool = False,
    owned: Callable[[str], bool],
    what: str,
    mode: int | None = None,
) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``path`` to fill; on success it takes ``path``'s place whole.

    ``path`` is checked first with :func:`check_folder` (``owned`` names the entries the caller writes,
    ``what`` describes them in errors) and again just before the swap, since a long run may have given
    someone time to add a file. A symbolic link is followed: the folder it points to is replaced. On any
    exception the new folder is deleted and ``path`` is left as it was.
    """
    shown = Path(path)
    target = Path(os.path.realpath(shown))
    sweep(target)
    check_folder(shown, force=force, owned=owned, what=what)
    staging = temp_name(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(staging, 0o777 if mode is None else mode)
        if mode is not None:
            os.chmod(staging, mode)
    except OSError as exc:
        raise write_error(shown, exc) from None
    try:
        step("folder-created")
        yield staging
        _fsync_tree(staging)
        step("folder-staged")
        check_folder(shown, force=force, owned=owned, what=what)
        _install(staging, target)
    except OSError as exc:
        raise write_error(shown, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the new folder if it failed, else the old one


__all__ = [
    "CRASH_ENV",
    "NO_EXCHANGE_ENV",
    "STEP_LOG_ENV",
    "atomic_file",
    "atomic_folder",
    "atomic_path",
    "check_file",
    "check_folder",
    "copy_file",
    "exchange",
    "step",
    "sweep",
    "temp_name",
    "write_bytes",
    "write_error",
    "write_text",
]
