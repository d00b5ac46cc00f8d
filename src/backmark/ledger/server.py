"""Open a registry (database + server identity) and serve it with uvicorn (:mod:`backmark.infra.asgi`).

Defaults live in the user's data folder (``$XDG_DATA_HOME/backmark/registry``, else
``~/.local/share/backmark/registry``; ``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on
Windows): the database ``registry.db`` and the server identity ``server-identity/``, which is made on
first use. A database remembers the identity that signed its receipts and refuses any other, so a
restarted server signs with the same key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from backmark.errors import BackmarkError
from backmark.identity import PRIVATE_NAME, Identity, load_identity, new_identity, save_identity
from backmark.infra.asgi import GuardLimits
from backmark.infra.dburl import shown
from backmark.ledger.app import RateLimits, create_app
from backmark.ledger.store import Store


def data_dir() -> Path:
    """backmark's folder in the user's data directory."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "backmark"


def default_db_url() -> str:
    return f"sqlite:///{data_dir() / 'registry' / 'registry.db'}"


def default_identity_dir() -> Path:
    return data_dir() / "registry" / "server-identity"


def server_identity(directory: str | Path | None, *, log: Callable[[str], None] | None = None) -> Identity:
    """The identity in ``directory``; the default folder gets a new identity the first time."""
    if directory is not None:
        return load_identity(directory)
    path = default_identity_dir()
    if not (path / PRIVATE_NAME).exists():
        save_identity(new_identity(), path)
        if log is not None:
            log(f"made a new registry identity in {path}")
    return load_identity(path)


def open_registry(
    db: str | None, identity: str | Path | None, *, log: Callable[[str], None] | None = None
) -> tuple[Store, Identity]:
    """The store (tables created, identity checked) and the server identity, ready to serve."""
    server = server_identity(identity, log=log)
    store = Store(db or default_db_url())
    try:
        store.init(server.public)
    except BackmarkError:
        store.close()
        raise
    return store, server


def serve_registry(
    db: str | None,
    identity: str | Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8100,
    on_ready: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    rates: RateLimits | None = None,
    guard: GuardLimits | None = None,
) -> None:
    """Serve the registry in the foreground until interrupted (Ctrl-C or SIGTERM end it gracefully).

    ``rates``: each client address's request rates (default :class:`RateLimits`); ``guard``: the
    connection deadlines and bound (:class:`~backmark.infra.asgi.GuardLimits`)."""
    from backmark.infra.asgi import run_server  # uvicorn is imported only to serve

    store, server = open_registry(db, identity, log=log)
    if log is not None:
        log(f"registry database {shown(store.url)}; receipts signed by {server.public.fingerprint}")
    try:
        app = create_app(store, server, limits=rates or RateLimits())
        run_server(app, host=host, port=port, limits=guard, on_ready=on_ready)
    finally:
        store.close()
