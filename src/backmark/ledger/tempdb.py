"""A throwaway PostgreSQL server for tests and benchmarks: a temporary data folder, a free local port.

:class:`TempPostgres` finds PostgreSQL's ``initdb`` and ``pg_ctl`` (on the PATH, else in
``/usr/lib/postgresql/VERSION/bin``, the newest first), makes a cluster in a fresh temporary folder, and
starts it on a free port of 127.0.0.1 with its socket in that folder and ``trust`` authentication for
the user ``backmark``; :meth:`~TempPostgres.stop` stops it (``pg_ctl stop -m fast``, then SIGKILL if
that fails) and deletes the folder. PostgreSQL refuses to run as root, so under root the server runs as
the ``postgres`` system user where there is one, else as ``nobody``. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from backmark.errors import BackmarkError, first_line

START_TIMEOUT = 60  # seconds for initdb, and again for the server to accept connections
STOP_TIMEOUT = 30


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None where PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in [*versions, Path("/usr/local/pgsql/bin")]:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise BackmarkError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


class TempPostgres:
    """A PostgreSQL server of its own; use as a context manager or call :meth:`start` and :meth:`stop`.

    ``durable=False`` turns fsync off (tests); benchmarks keep PostgreSQL's defaults.
    """

    def __init__(self, *, durable: bool = True, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise BackmarkError("PostgreSQL is not installed (no initdb); apt-get install postgresql")
        self.bin = found
        self.durable = durable
        self.user = _run_as()
        self.base: Path | None = None
        self.port = 0

    @property
    def data(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "HOME": str(self.base)}
        try:
            return subprocess.run(
                list(args),
                cwd=self.base,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
                **extra,
            )
        except subprocess.CalledProcessError as exc:
            raise BackmarkError(
                f"{Path(args[0]).name} failed: {first_line(exc.stderr or exc.stdout or exc)}"
            ) from None
        except subprocess.TimeoutExpired:
            raise BackmarkError(f"{Path(args[0]).name} did not finish within {timeout:g} s") from None

    def start(self) -> TempPostgres:
        parent = "/tmp" if self.user is not None and os.path.isdir("/tmp") else None  # reachable by the user
        self.base = Path(tempfile.mkdtemp(prefix="backmark-pg-", dir=parent))
        try:
            if self.user is not None:
                os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "backmark",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                timeout=START_TIMEOUT,
            )
            for attempt in range(3):  # a port taken between choosing it and binding it: choose again
                self.port = free_port()
                options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
                if not self.durable:
                    options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                try:
                    self._run(
                        str(self.bin / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.base / "server.log"),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        str(START_TIMEOUT),
                        "start",
                        timeout=START_TIMEOUT + 10,
                    )
                    break
                except BackmarkError:
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://backmark@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str, database: str = "postgres") -> None:
        """Run statements as the superuser in ``database`` (autocommit), each waiting at most 20 s."""
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} user=backmark dbname={database} connect_timeout=10"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute("SET default_transaction_read_only = off")
            for sql in statements:
                conn.execute(sql)  # names made here, never user input

    def empty_database(self, name: str) -> None:
        """Empty database ``name`` for the next user: end its other sessions, drop everything in it.

        Cheaper than a new database per test: a database is a 7.5 MB copy of its template, and a test
        session's worth of them keeps the disk busy writing back long after (and then deleting the data
        folder waits for it).
        """
        self.admin(
            f'ALTER DATABASE "{name}" RESET default_transaction_read_only',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            "DROP SCHEMA public CASCADE",
            "CREATE SCHEMA public",
            database=name,
        )

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; its URL."""
        name = name or f"t_{secrets.token_hex(6)}"
        if not name.replace("_", "").isalnum():
            raise BackmarkError(f"database name {name!r} must be letters, digits and _")
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server and delete its folder; safe to call twice, and after a failed start."""
        if self.base is None:
            return
        if (self.data / "postmaster.pid").exists():
            try:
                self._run(
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(STOP_TIMEOUT),
                    "stop",
                    timeout=STOP_TIMEOUT + 10,
                )
            except BackmarkError:
                self._kill()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def _kill(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
