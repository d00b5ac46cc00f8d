"""Fixtures for the registry tests: a real SQLite file and a real PostgreSQL server, and a live registry.

PostgreSQL is Debian's package (``./run.sh test`` installs it as root); the session starts one
throwaway server (:class:`backmark.ledger.tempdb.TempPostgres`) on a free port, gives each test an
empty database (emptied again after it), and stops the server at the end, even after a failure. Only
where PostgreSQL is not installed are the PostgreSQL variants skipped, with the reason printed; one that
fails to start fails.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backmark.identity import Identity, new_identity, save_identity
from backmark.infra.asgi import start_server
from backmark.ledger.app import create_app
from backmark.ledger.store import Store
from backmark.ledger.tempdb import TempPostgres, find_pg_bin

BACKENDS = ["sqlite", "postgresql"]
SHARED_DB = "registry_tests"


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb): apt-get install postgresql")
    server = TempPostgres(durable=False)
    server.start()  # installed but failing to start is a failure, not a skip
    try:
        server.create_database(SHARED_DB)
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend (PostgreSQL: one database, emptied after each test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    pg: TempPostgres = request.getfixturevalue("postgres")
    try:
        yield pg.url(SHARED_DB)
    finally:
        pg.empty_database(SHARED_DB)


@pytest.fixture
def server_id() -> Identity:
    return new_identity()


@dataclass
class Live:
    """A registry served on a background thread of the test process."""

    url: str
    store: Store
    server: Identity
    db_url: str


@pytest.fixture
def live(db_url: str, server_id: Identity) -> Iterator[Live]:
    store = Store(db_url, lock_timeout=5.0)
    store.init(server_id.public)
    running = start_server(create_app(store, server_id))
    try:
        yield Live(running.url, store, server_id, db_url)
    finally:
        running.stop()
        store.close()


@pytest.fixture
def owner() -> Identity:
    return new_identity()


@pytest.fixture
def identity_dir(tmp_path: Path) -> Callable[[str], Path]:
    """Make an identity folder under tmp_path by name."""

    def make(name: str) -> Path:
        path = tmp_path / name
        save_identity(new_identity(), path)
        return path

    return make


SRC = str(Path(__file__).resolve().parents[2] / "src")
SERVER_START = 60.0  # seconds a server process may take to listen


def env() -> dict[str, str]:
    """The environment for child processes: this checkout's backmark first on the path."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": SRC + (os.pathsep + path if path else "")}


@dataclass
class ServerProcess:
    """``backmark registry serve`` in a child process, on a fixed port so that it can be restarted."""

    db: str
    identity: Path
    port: int
    proc: subprocess.Popen[str] | None = None
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        argv = [sys.executable, "-m", "backmark", "registry", "serve", "--db", self.db]
        argv += ["--identity", str(self.identity), "--port", str(self.port), "-q"]
        # 16 client processes on one address: the per-address rate limit is not what these tests test
        argv += ["--rate", "100000", "--write-rate", "100000"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env()
        )
        proc, lines = self.proc, self.lines
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
        seen = []
        while True:
            try:
                line = lines.get(timeout=SERVER_START)
            except queue.Empty:
                self.kill()
                raise AssertionError(
                    f"the registry did not start within {SERVER_START:g} s: {seen}"
                ) from None
            seen.append(line)
            if "registry serving at" in line:
                return self
            if proc.poll() is not None and lines.empty():
                raise AssertionError(f"the registry exited: {''.join(seen)}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def server_process(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A registry server process on this test's database (started by the test)."""
    from backmark.ledger.tempdb import free_port

    save_identity(new_identity(), tmp_path / "server-identity")
    server = ServerProcess(db_url, tmp_path / "server-identity", free_port())
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)
