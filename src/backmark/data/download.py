"""Checked, atomic file download and the on-disk locations that datasets are looked up in.

A download goes to a temporary file next to its destination (:mod:`backmark.atomic`), is checked
against a SHA-256, and only then renamed into place, so an interrupted or corrupt download never
leaves a file that a later run would trust. For ``.gz`` files the checksum is of the *decompressed*
payload, because mirrors and recompressions change the gzip bytes but not the data.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

from backmark.atomic import atomic_path
from backmark.errors import BackmarkError

_CHUNK = 1 << 16


def data_root() -> Path | None:
    """The directory named by ``$BACKMARK_DATA``, or None when it is unset or empty."""
    value = os.environ.get("BACKMARK_DATA", "")
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/backmark``: where downloaded datasets are kept."""
    value = os.environ.get("XDG_CACHE_HOME", "")
    if value:
        return Path(value).expanduser() / "backmark"
    try:
        home = Path.home()
    except RuntimeError as exc:
        raise BackmarkError(
            f"cannot find the home directory for the download cache ({exc}); set XDG_CACHE_HOME"
        ) from exc
    return home / ".cache" / "backmark"


def payload_sha256(path: Path, *, gz: bool | None = None) -> str:
    """Hex SHA-256 of the file's content, gunzipped first if ``gz`` (default: name ends in .gz)."""
    digest = hashlib.sha256()
    if gz is None:
        gz = path.name.endswith(".gz")
    try:
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise BackmarkError(f"cannot read {path} to check it: {exc}; delete it and retry") from exc
    return digest.hexdigest()


def download(url: str, dest: Path, *, sha256: str, timeout: float = 60.0, progress: bool = False) -> Path:
    """Fetch ``url`` to ``dest`` if its payload's SHA-256 is ``sha256``; return ``dest``.

    ``url`` may be ``http(s)://`` or ``file://``. ``timeout`` is in seconds per network operation.
    With ``progress`` a one-line counter (MB received) is written to stderr. Any failure — network,
    disk, or checksum — raises :class:`BackmarkError` and leaves neither ``dest`` nor a partial
    file behind.
    """
    with atomic_path(dest, force=True) as tmp:  # a file there failed its check: it is replaced
        with open(tmp, "wb") as out:
            _fetch(url, out, timeout=timeout, progress=progress, label=dest.name)
        try:
            got = payload_sha256(tmp, gz=dest.name.endswith(".gz"))
        except BackmarkError:
            raise BackmarkError(
                f"download of {url} is not a readable gzip file; retry, or fetch it by hand into {dest}"
            ) from None
        if got != sha256:
            raise BackmarkError(
                f"checksum mismatch for {url}: payload sha256 {got}, expected {sha256}; "
                f"the download is corrupt or the file changed upstream, retry or fetch it manually"
            )
    return dest


def _fetch(url: str, out: BinaryIO, *, timeout: float, progress: bool, label: str) -> None:
    """Stream ``url`` into the binary file ``out``; raise BackmarkError on any failure."""
    received = 0
    total: int | None = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                if progress:
                    _report(label, received, total)
    except urllib.error.HTTPError as exc:
        raise BackmarkError(
            f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the URL or retry later"
        ) from exc
    except urllib.error.URLError as exc:
        raise BackmarkError(
            f"download of {url} failed: {exc.reason}; check the network connection or place the files by hand"
        ) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise BackmarkError(
            f"download of {url} failed: {exc!r}; check the network connection or retry"
        ) from exc
    finally:
        if progress and received:
            sys.stderr.write("\n")
    if total is not None and received != total:
        raise BackmarkError(
            f"download of {url} stopped after {received} of {total} bytes; retry the download"
        )


def _report(label: str, received: int, total: int | None) -> None:
    """Overwrite the current stderr line with the progress of one download (sizes in MB)."""
    done = received / 1e6
    text = f"{label}: {done:.1f}/{total / 1e6:.1f} MB" if total else f"{label}: {done:.1f} MB"
    sys.stderr.write(f"\r{text}")
    sys.stderr.flush()
