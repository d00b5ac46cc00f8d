"""The owner's query log: every altered answer the server gave, in a database (SQLite by default).

Same database layer as the registry (SQLAlchemy Core, :func:`backmark.infra.dburl.database_url`), two
tables: ``response_meta`` (the response key's public ``key_id``, the class count and the input shape the
log was made for; a log is never mixed across keys or models) and ``response_queries``, one row per
distinct altered image: its digest (unique: an image asked twice is one observation, which the test's
independence needs), its uint8 pixels, the model's own answer, the label given, the UTC time of the first
query and the caller when known (``token:`` and the first 16 hex digits of the SHA-256 of the bearer
token it sent, else the client's address). The log holds query images: keep it private.

**Bounds.** A server facing strangers must not let them fill its disk. :meth:`ResponseLog.record`
takes a ``quota``: the rows one client may add, where a client is one bearer token, and every caller
without a token (any address) is one client, ``anonymous``, since addresses are cheap to change. A
request whose new rows would pass its client's quota is refused (:class:`LogRefused`, HTTP 429) before
anything is answered or logged: an altered answer the owner cannot later show in the log is never given.
A log the database cannot write within ``lock_timeout`` seconds (locked by another process, read-only,
unreachable) is refused the same way with status 503.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    exc,
    func,
    or_,
    select,
)
from sqlalchemy import insert as sql_insert

from backmark.errors import BackmarkError, first_line
from backmark.infra.dburl import database_url, shown
from backmark.response.mark import Altered

metadata = MetaData()
meta = Table(
    "response_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
queries = Table(
    "response_queries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("pixels", LargeBinary, nullable=False),
    Column("served", Integer, nullable=False),
    Column("label", Integer, nullable=False),
    Column("time", String(32), nullable=False),
    Column("caller", String(256), nullable=True),
)


LOCK_TIMEOUT = 2.0  # seconds a write waits for a locked log before the request is refused (503)
ANONYMOUS = "anonymous"
TOKEN_PREFIX = "token:"


class LogRefused(BackmarkError):
    """The log cannot take a request's rows: ``status`` 429 (its client's quota) or 503 (unavailable)."""

    def __init__(self, message: str, *, status: int, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def client_of(caller: str | None) -> str:
    """The client a caller counts against: its token (``token:...``) or, for any other, ``anonymous``."""
    return caller if caller is not None and caller.startswith(TOKEN_PREFIX) else ANONYMOUS


@dataclass(frozen=True)
class LoggedQuery:
    """One logged altered answer: uint8 (C, H, W) ``pixels`` and the ``label`` the server gave."""

    digest: str
    pixels: np.ndarray
    served: int
    label: int
    time: str
    caller: str | None


def log_url(path_or_url: str | Path) -> str:
    """A plain path means a SQLite file; a URL (``sqlite:///...``, ``postgresql://...``) is kept."""
    text = str(path_or_url)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


class ResponseLog:
    """The query log for a key ``key_id`` and a model of ``num_classes`` classes of ``input_shape``."""

    def __init__(self, path_or_url: str | Path, *, create: bool, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.url = database_url(log_url(path_or_url), param="query_log", what="the query log")
        sqlite = self.url.get_backend_name() == "sqlite"
        if sqlite and not create and not Path(str(self.url.database)).is_file():
            raise BackmarkError(f"query log {self.url.database} does not exist")
        connect_args = {"timeout": lock_timeout} if sqlite else {"connect_timeout": max(1, int(lock_timeout))}
        self.engine = create_engine(self.url, pool_timeout=lock_timeout, connect_args=connect_args)
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}  # rows per client, counted once, then kept up to date
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except (exc.DBAPIError, exc.TimeoutError) as error:
            raise BackmarkError(f"cannot open query log {shown(self.url)}: {first_line(error)}") from None

    def close(self) -> None:
        self.engine.dispose()

    def bind(self, *, key_id: str, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        """Record what this log is for, or refuse a log made for another key, class count or shape."""
        want = {"key_id": key_id, "num_classes": str(num_classes), "input_shape": json.dumps(input_shape)}
        with self._lock, self.engine.begin() as conn:
            have = {r.name: r.value for r in conn.execute(select(meta))}
            for name, value in want.items():
                if name not in have:
                    conn.execute(sql_insert(meta).values(name=name, value=value))
                elif have[name] != value:
                    raise BackmarkError(
                        f"query log {shown(self.url)} is for {name} {have[name]}, not {value}; "
                        "use one log per response key and model"
                    )

    def info(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.name: r.value for r in conn.execute(select(meta))}

    def _count(self, conn: Any, client: str) -> int:
        if client not in self._used:
            if client == ANONYMOUS:
                where = or_(queries.c.caller.is_(None), ~queries.c.caller.startswith(TOKEN_PREFIX))
            else:
                where = queries.c.caller == client
            self._used[client] = int(conn.execute(select(func.count()).where(where)).scalar_one())
        return self._used[client]

    def record(
        self, altered: Sequence[Altered], *, caller: str | None = None, quota: int | None = None
    ) -> int:
        """Add the altered answers not logged before; return how many were new.

        ``quota``: the most rows ``caller``'s client (:func:`client_of`) may have in the log; a request
        that would pass it adds nothing and raises :class:`LogRefused` (429). A locked or unavailable
        database raises it with 503.
        """
        if not altered:
            return 0
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        client = client_of(caller)
        try:
            with self._lock, self.engine.begin() as conn:
                digests = list({a.digest for a in altered})
                seen = set(
                    conn.execute(select(queries.c.digest).where(queries.c.digest.in_(digests))).scalars()
                )
                rows = []
                for a in altered:
                    if a.digest in seen:
                        continue
                    seen.add(a.digest)
                    rows.append(
                        {
                            "digest": a.digest,
                            "pixels": np.ascontiguousarray(a.pixels).tobytes(),
                            "served": a.served,
                            "label": a.label,
                            "time": now,
                            "caller": caller,
                        }
                    )
                if rows and quota is not None:
                    used = self._count(conn, client)
                    if used + len(rows) > quota:
                        raise LogRefused(
                            f"the query log's quota for {client} ({quota} rows) is reached; "
                            "nothing was answered or logged",
                            status=429,
                        )
                if rows:
                    conn.execute(sql_insert(queries), rows)
                    if client in self._used:
                        self._used[client] += len(rows)
        except (exc.DBAPIError, exc.TimeoutError) as error:
            self._used.pop(client, None)
            raise LogRefused(
                f"the query log is unavailable ({first_line(getattr(error, 'orig', None) or error)}); "
                "nothing was answered or logged",
                status=503,
                retry_after=1,
            ) from None
        return len(rows)

    def read(self) -> list[LoggedQuery]:
        """Every logged altered answer, oldest first."""
        info = self.info()
        if "input_shape" not in info:
            return []
        shape = tuple(json.loads(info["input_shape"]))
        with self.engine.connect() as conn:
            rows = conn.execute(select(queries).order_by(queries.c.id)).all()
        return [
            LoggedQuery(
                digest=r.digest,
                pixels=np.frombuffer(r.pixels, dtype=np.uint8).reshape(shape),
                served=r.served,
                label=r.label,
                time=r.time,
                caller=r.caller,
            )
            for r in rows
        ]
