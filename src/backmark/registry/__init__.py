"""The ownership registry: an append-only, hash-chained, signed log of verification keys.

Owners sign a *submission* (a verification key's digest, optionally a model's, a nonce and a time) with
their identity (:mod:`backmark.identity`); the server appends it after the last entry, chaining each
entry to the previous one by hash, and returns a *receipt* signed by its own identity. Anyone can
re-check the chain and every signature (:mod:`backmark.registry.audit`), from the database or over HTTP.

- :mod:`~backmark.registry.chain`: the documents (submission, entry, receipt) and their hashes; no I/O.
- :mod:`~backmark.registry.store`: the database (SQLite or PostgreSQL, through SQLAlchemy Core).
- :mod:`~backmark.registry.app`: the HTTP API (Starlette, as ``backmark serve``).
- :mod:`~backmark.registry.client`: register, look up, fetch (httpx, with deadlines).
- :mod:`~backmark.registry.audit`: recompute the chain and the signatures; name the first bad entry.

None of these imports torch. docs/registry.md describes the formats, the API and its statuses.
"""
