"""Fixtures for the registry tests: a real SQLite file and a real PostgreSQL server, and a live registry.

PostgreSQL is Debian's package (``./run.sh test`` installs it as root); the session starts one
throwaway server (:class:`backmark.registry.tempdb.TempPostgres`) on a free port, gives each test a
fresh database, and stops the server at the end, even after a failure. Without PostgreSQL the
PostgreSQL variants are skipped with the reason printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backmark.errors import BackmarkError
from backmark.identity import Identity, new_identity, save_identity
from backmark.registry.app import create_app
from backmark.registry.store import Store
from backmark.registry.tempdb import TempPostgres, find_pg_bin
from backmark.serve.runner import start_server

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (no initdb): apt-get install postgresql")
    server = TempPostgres(durable=False)
    try:
        server.start()
    except BackmarkError as exc:
        pytest.skip(f"PostgreSQL could not be started here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    pg: TempPostgres = request.getfixturevalue("postgres")
    return pg.create_database()


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
