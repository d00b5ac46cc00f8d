"""The ownership ledger: an append-only, hash-chained, signed log of verification keys.

The command line and the documents call the service it runs "the registry" (``backmark registry
serve|register|lookup|audit``, docs/registry.md); the package is named ``ledger`` so that ``registry``
names only the plugin tables (``attacks/registry.py`` and its kin).

Owners sign a *submission* (a verification key's digest, optionally a model's, a nonce and a time) with
their identity (:mod:`backmark.identity`); the server appends it after the last entry, chaining each
entry to the previous one by hash, and returns a *receipt* signed by its own identity. Anyone can
re-check the chain and every signature (:mod:`backmark.ledger.audit`), from the database or over HTTP.

- :mod:`~backmark.ledger.chain`: the documents (submission, entry, receipt) and their hashes; no I/O.
- :mod:`~backmark.ledger.store`: the database (SQLite or PostgreSQL, through SQLAlchemy Core).
- :mod:`~backmark.ledger.app`: the HTTP API (Starlette, as ``backmark serve``).
- :mod:`~backmark.ledger.client`: register, look up, fetch (httpx, with deadlines).
- :mod:`~backmark.ledger.audit`: recompute the chain and the signatures; name the first bad entry.

None of these imports torch. docs/registry.md describes the formats, the API and its statuses.
"""
