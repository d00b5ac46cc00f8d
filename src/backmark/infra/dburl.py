"""Database URLs for SQLAlchemy: ``sqlite:///PATH`` (a file) or ``postgresql://...`` (psycopg 3).

Shared by the registry (``--db``) and the model server's query log (``--query-log``); ``param`` names
the option in messages, so each command's error points at its own flag.
"""

from __future__ import annotations

from sqlalchemy import exc
from sqlalchemy.engine import URL, make_url

from backmark.errors import BackmarkError


def database_url(url: str, *, param: str = "db", what: str = "backmark's registry") -> URL:
    """``url`` as SQLAlchemy's URL: ``sqlite:///PATH`` or ``postgresql://...`` (driven by psycopg 3)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise BackmarkError(
            f"{{{param}}} {url!r} is not a database URL: sqlite:///PATH or postgresql://USER@HOST:PORT/NAME",
            params=[param],
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise BackmarkError(f"{{{param}}} must name a SQLite file: sqlite:///PATH", params=[param])
        return parsed
    raise BackmarkError(f"{{{param}}} {url!r}: {what} runs on SQLite or PostgreSQL", params=[param])


def shown(url: URL) -> str:
    """The URL without its password, for messages."""
    return url.render_as_string(hide_password=True)
