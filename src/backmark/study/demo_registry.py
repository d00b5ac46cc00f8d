"""The demo's registry: ``backmark registry serve`` on 127.0.0.1, its SQLite file in the demo's folder.

:func:`local_registry` opens the registry as ``backmark registry serve`` does
(:func:`backmark.ledger.server.open_registry`: a SQLite database, the default backend, and a server
identity made for it), serves its HTTP API with uvicorn on a free port of 127.0.0.1 on a background
thread (:func:`backmark.infra.asgi.start_server`, which waits at most its startup deadline), and stops
the server and closes the database when the block ends, however it ends. Every call to it goes through
the registry's own HTTP client, each with a deadline, so the demo never waits on the server for longer.

This is the only module of the demo that imports :mod:`backmark.ledger`, so that the package can move
or be renamed with one file to change here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backmark.identity import Identity, new_identity, save_identity
from backmark.infra.asgi import start_server
from backmark.ledger.app import RateLimits, create_app
from backmark.ledger.audit import AuditReport, audit
from backmark.ledger.chain import Entry
from backmark.ledger.client import RegistryClient, model_digest_of
from backmark.ledger.server import open_registry

DB_NAME = "registry.db"
IDENTITY_NAME = "server-identity"
TIMEOUT = 10.0  # seconds per request
DEADLINE = 30.0  # seconds per call to the registry, retries included
STOP_TIMEOUT = 10.0  # seconds the server may take to finish its connections when stopped


@dataclass(frozen=True)
class LocalRegistry:
    """A registry being served for the demo: its URL, its database file and its receipts' signer."""

    url: str
    db: Path
    server: str  # fingerprint of the server identity that signs receipts
    deadline: float = DEADLINE

    def _client(self) -> RegistryClient:
        return RegistryClient(self.url, timeout=TIMEOUT, deadline=self.deadline)

    def register(self, identity: Identity, *, vk_digest: str, model_digest: str | None) -> dict[str, Any]:
        """Register a verification key's digest as ``identity`` (``backmark register``); the receipt."""
        with self._client() as client:
            return client.register(identity, vk_digest=vk_digest, model_digest=model_digest)

    def lookup(self, *, vk_digest: str) -> list[dict[str, Any]]:
        """Every registration of ``vk_digest``, in the log's order (``backmark registry lookup``)."""
        with self._client() as client:
            return client.lookup(vk_digest=vk_digest)

    def audit(self, receipts: list[dict[str, Any]]) -> AuditReport:
        """Re-check the whole log over HTTP, and that each receipt is in it (``backmark registry audit``)."""
        with self._client() as client, client.call():  # one deadline for identity, head and every page
            server = client.server_identity()
            head = client.head()
            entries = [Entry.from_json(doc) for doc in client.entries(check=False)]
        return audit(entries, server=server, head=head, receipts=receipts)


@contextlib.contextmanager
def local_registry(folder: Path, *, deadline: float = DEADLINE) -> Iterator[LocalRegistry]:
    """Serve a new registry whose files (``registry.db``, ``server-identity/``) are made in ``folder``.

    The server listens on 127.0.0.1 only, on a port the OS picks; it is stopped, and the database
    closed, when the block ends, also on an error or an interrupt.
    """
    folder.mkdir(parents=True, exist_ok=True)
    save_identity(new_identity(), folder / IDENTITY_NAME)
    db = folder / DB_NAME
    store, server = open_registry(f"sqlite:///{db}", folder / IDENTITY_NAME)
    try:
        running = start_server(create_app(store, server, limits=RateLimits()), host="127.0.0.1", port=0)
        try:
            yield LocalRegistry(running.url, db, server.public.fingerprint, deadline)
        finally:
            running.stop(timeout=STOP_TIMEOUT)
    finally:
        store.close()


__all__ = ["LocalRegistry", "local_registry", "model_digest_of"]
