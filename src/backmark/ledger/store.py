"""The registry's database: SQLite (one file) or PostgreSQL, through SQLAlchemy Core.

SQLAlchemy Core (not its ORM) gives one set of typed table and query definitions for both databases,
bound parameters instead of SQL built from strings, a connection pool, and one family of exceptions to
map onto HTTP statuses; the two dialects differ only in how a writer takes the lock.

Three tables: ``registry_entries`` (the log; ``seq`` is the primary key, ``submission_hash`` is unique, and
so is the pair ``(vk_digest, owner)``; ``model_digest`` and ``siblings_digest`` are nullable and indexed,
and :meth:`Store.init` adds ``siblings_digest`` to a database made before it existed), ``registry_head``
(one row: the last entry's number, hash and time) and ``registry_meta`` (the server identity that signs the
receipts).

**Appending after the last entry is atomic.** A writer first takes an exclusive lock, then reads the
head, checks for replays and duplicates, inserts the entry and moves the head, and commits:

- SQLite: the transaction starts with ``BEGIN IMMEDIATE``, which takes the database's write lock at once
  (writers of other processes wait up to ``lock_timeout`` seconds: ``busy_timeout``; those of this
  process queue on a lock first, which SQLite's polling busy handler would not do fairly); readers are
  not blocked (WAL).
  ``synchronous=FULL``: a commit is on disk before the receipt is sent.
- PostgreSQL: ``SELECT ... FROM registry_head WHERE id = 1 FOR UPDATE`` locks the head row until the
  commit, so writers queue on it in READ COMMITTED; each then sees the previous writer's entry.
  ``lock_timeout`` and ``statement_timeout`` bound every wait.

The primary key on ``seq`` and the unique head row are the backstop: two writers that somehow read the
same head cannot both commit. Nothing is ever updated or deleted except the head row.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    exc,
    insert,
    inspect,
    select,
    update,
)

from backmark.errors import BackmarkError, first_line
from backmark.identity import Identity, PublicIdentity
from backmark.infra.dburl import database_url, shown
from backmark.ledger.chain import GENESIS, Entry, Refused, Submission, next_entry, utc_text

LOCK_TIMEOUT = 30.0  # seconds a writer waits for the lock before the request fails (503)
PAGE = 1000  # entries per page of a listing

metadata = MetaData()
entries = Table(
    "registry_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", String(32), nullable=False),
    Column("vk_digest", String(64), nullable=False, index=True),
    Column("model_digest", String(64), nullable=True, index=True),
    Column("siblings_digest", String(64), nullable=True, index=True),  # added later: see _add_columns
    Column("owner", String(64), nullable=False, index=True),
    Column("submission", Text, nullable=False),
    Column("submission_hash", String(64), nullable=False, unique=True),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("server_signature", String(128), nullable=False),
    UniqueConstraint("vk_digest", "owner", name="registry_vk_owner"),
)
# Columns added to registry_entries after its first release; Store.init adds them to an older database.
_LATER_COLUMNS = (entries.c.siblings_digest,)
head = Table(
    "registry_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("timestamp", String(32), nullable=False),
)
meta = Table(
    "registry_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def _unavailable(error: Exception, what: str) -> Refused:
    reason = first_line(getattr(error, "orig", None) or error)
    return Refused(f"the registry's database {what}: {reason}", status=503, code="database-unavailable")


class Store:
    """The log in one database; safe for many threads and for many server processes at once."""

    def __init__(self, url: str, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.url = database_url(url)
        self.lock_timeout = lock_timeout
        self.backend = self.url.get_backend_name()
        self._write_lock = threading.Lock()
        self._readable: tuple[Column[Any], ...] | None = None  # the entries' columns this database has
        if self.backend == "sqlite":
            self.engine = self._sqlite_engine()
        else:
            ms = int(lock_timeout * 1000)
            self.engine = create_engine(
                self.url,
                pool_pre_ping=True,
                pool_size=8,
                max_overflow=8,
                pool_timeout=lock_timeout,
                connect_args={
                    "connect_timeout": max(1, int(lock_timeout)),
                    "options": f"-c lock_timeout={ms} -c statement_timeout={2 * ms}",
                },
            )

    def _sqlite_engine(self) -> Engine:
        database = str(self.url.database)
        if not self.url.query.get("uri") and not database.startswith("file:"):
            with contextlib.suppress(OSError):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            self.url, pool_timeout=self.lock_timeout, connect_args={"timeout": self.lock_timeout}
        )
        busy = int(self.lock_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy's begin event emits BEGIN itself
            cursor = dbapi_connection.cursor()
            with contextlib.suppress(Exception):  # a read-only database keeps its journal mode
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={busy}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("registry_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _transaction(self, *, write: bool, what: str, queued: bool = False) -> Iterator[Connection]:
        if write and self.backend == "sqlite" and not queued:
            # Writers of this process queue on a lock: SQLite's own busy handler polls with growing
            # sleeps, which starves some writers for seconds under load (the p99 of docs/registry.md).
            if not self._write_lock.acquire(timeout=self.lock_timeout):
                raise Refused(
                    f"the registry's database {what}: busy for {self.lock_timeout:g} s",
                    status=503,
                    code="database-unavailable",
                )
            try:
                with self._transaction(write=True, what=what, queued=True) as conn:
                    yield conn
            finally:
                self._write_lock.release()
            return
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(registry_write=True)
                with conn.begin():
                    yield conn
        except (Refused, exc.IntegrityError):
            raise
        except (exc.DBAPIError, exc.TimeoutError) as error:
            raise _unavailable(error, what) from None

    def init(self, server: PublicIdentity) -> None:
        """Create the tables if missing; refuse a database whose receipts another server identity signed.

        A database that holds everything already is only read, so a read-only copy can be served.
        """
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except (exc.DBAPIError, exc.TimeoutError) as error:
            reason = first_line(getattr(error, "orig", None) or error)
            raise BackmarkError(f"cannot open {shown(self.url)}: {reason}") from None
        self._add_columns()
        self._readable = None
        try:
            with self._transaction(write=False, what="cannot be read") as conn:
                known = conn.execute(select(meta.c.value).where(meta.c.name == "server_identity")).scalar()
                has_head = conn.execute(select(head.c.id)).first() is not None
            if known is None or not has_head:
                with self._transaction(write=True, what="cannot be set up") as conn:
                    known = conn.execute(
                        select(meta.c.value).where(meta.c.name == "server_identity")
                    ).scalar()
                    if known is None:
                        known = json.dumps(server.to_json(), sort_keys=True)
                        conn.execute(insert(meta).values(name="server_identity", value=known))
                    if conn.execute(select(head.c.id)).first() is None:
                        conn.execute(insert(head).values(id=1, seq=0, entry_hash=GENESIS, timestamp=""))
        except Refused as refusal:
            raise BackmarkError(f"cannot set up {shown(self.url)}: {refusal}") from None
        stored = PublicIdentity.from_json(json.loads(known), what=f"the server identity in {shown(self.url)}")
        if stored != server:
            raise BackmarkError(
                f"{shown(self.url)} holds receipts signed by registry identity {stored.short}, not by "
                f"{server.short}; serve it with the identity that made it"
            )

    def _add_columns(self) -> None:
        """Add the columns a database made by an older backmark lacks (``create_all`` adds tables only).

        ``siblings_digest`` came after the first databases: its rows are null, which is what their
        submissions (without the field) mean, and no entry's hash or signature changes. Two servers
        adding it at once are fine (the loser finds it there); a read-only old database is refused
        with a line that says to open it writable once.
        """
        for column in _LATER_COLUMNS:
            if column.name in self._columns():
                continue
            name = self.engine.dialect.identifier_preparer.quote(column.name)
            kind = column.type.compile(dialect=self.engine.dialect)
            index = f"ix_{entries.name}_{column.name}"
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {entries.name} ADD COLUMN {name} {kind}")
                    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {entries.name} ({name})")
            except (exc.DBAPIError, exc.TimeoutError) as error:
                if column.name in self._columns():  # another server added it meanwhile
                    continue
                reason = first_line(getattr(error, "orig", None) or error)
                raise BackmarkError(
                    f"{shown(self.url)} was made by an older backmark and lacks the column {column.name}, "
                    f"which cannot be added ({reason}); open it once where it can be written"
                ) from None

    def _columns(self) -> set[str]:
        """The names of the entries' columns in the database (empty if it has no such table)."""
        try:
            return {str(c["name"]) for c in inspect(self.engine).get_columns(entries.name)}
        except exc.NoSuchTableError:
            return set()
        except (exc.DBAPIError, exc.TimeoutError) as error:
            reason = first_line(getattr(error, "orig", None) or error)
            raise BackmarkError(f"cannot open {shown(self.url)}: {reason}") from None

    def _read(self) -> tuple[Column[Any], ...]:
        """The entries' columns to read: all, less those added later that an older database lacks (an
        audit reads such a database as it is, without changing it; their values are null)."""
        if self._readable is None:
            present = self._columns()
            later = {c.name for c in _LATER_COLUMNS} - present if present else set()
            self._readable = tuple(c for c in entries.c if c.name not in later)
        return self._readable

    def server_identity(self) -> PublicIdentity | None:
        """The identity recorded in the database (None in an empty database)."""
        with self._transaction(write=False, what="cannot be read") as conn:
            known = conn.execute(select(meta.c.value).where(meta.c.name == "server_identity")).scalar()
        if known is None:
            return None
        try:
            return PublicIdentity.from_json(json.loads(known), what="the stored server identity")
        except ValueError:
            raise BackmarkError("the server identity stored in the database is not valid JSON") from None

    def append(self, submission: Submission, *, server: Identity, now: Callable[[], datetime]) -> Entry:
        """Append ``submission`` after the last entry, atomically; refuse a replay or a duplicate (409)."""
        try:
            with self._transaction(write=True, what="refused the write") as conn:
                last = conn.execute(select(head).where(head.c.id == 1).with_for_update()).one_or_none()
                if last is None:
                    raise Refused(
                        "the registry database has no head row", status=503, code="database-unavailable"
                    )
                seen = conn.execute(
                    select(*self._read()).where(entries.c.submission_hash == submission.hash)
                ).one_or_none()
                if seen is not None:
                    entry = _entry(seen._mapping)
                    raise Refused(
                        f"this submission was already recorded as entry {entry.seq} (a replay); sign a "
                        "fresh one to register again",
                        status=409,
                        code="replay",
                        detail=entry,
                    )
                twice = conn.execute(
                    select(entries.c.seq).where(
                        entries.c.vk_digest == submission.vk_digest,
                        entries.c.owner == submission.owner.fingerprint,
                    )
                ).scalar()
                if twice is not None:
                    raise Refused(
                        f"verification key {submission.vk_digest[:16]} is already registered by identity "
                        f"{submission.owner.short} as entry {twice}",
                        status=409,
                        code="duplicate",
                        detail=int(twice),
                    )
                timestamp = max(utc_text(now()), str(last.timestamp))  # never before the previous entry
                entry = next_entry(
                    submission,
                    seq=int(last.seq) + 1,
                    timestamp=timestamp,
                    prev_hash=last.entry_hash,
                    server=server,
                )
                conn.execute(insert(entries).values(**_row(entry)))
                conn.execute(
                    update(head)
                    .where(head.c.id == 1)
                    .values(seq=entry.seq, entry_hash=entry.entry_hash, timestamp=entry.timestamp)
                )
        except exc.IntegrityError as error:
            raise Refused(
                f"the entry conflicts with one recorded meanwhile ({first_line(error.orig or error)}); retry",
                status=409,
                code="conflict",
            ) from None
        return entry

    def head(self) -> tuple[int, str, str]:
        """(last entry's number, its hash, its time); (0, 64 zeros, "") for an empty log."""
        with self._transaction(write=False, what="cannot be read") as conn:
            row = conn.execute(select(head).where(head.c.id == 1)).one_or_none()
        return (0, GENESIS, "") if row is None else (int(row.seq), str(row.entry_hash), str(row.timestamp))

    def entries(
        self,
        *,
        vk_digest: str | None = None,
        model_digest: str | None = None,
        siblings_digest: str | None = None,
        owner: str | None = None,
        after: int = 0,
        limit: int = PAGE,
    ) -> list[Entry]:
        """Entries after number ``after`` that match every filter given, in order, at most ``limit``."""
        if siblings_digest is not None and entries.c.siblings_digest not in self._read():
            return []  # a database older than the column holds no sibling record
        query = select(*self._read()).where(entries.c.seq > after).order_by(entries.c.seq).limit(limit)
        if vk_digest is not None:
            query = query.where(entries.c.vk_digest == vk_digest)
        if model_digest is not None:
            query = query.where(entries.c.model_digest == model_digest)
        if siblings_digest is not None:
            query = query.where(entries.c.siblings_digest == siblings_digest)
        if owner is not None:
            query = query.where(entries.c.owner == owner)
        with self._transaction(write=False, what="cannot be read") as conn:
            return [_entry(row._mapping) for row in conn.execute(query)]

    def scan(self, *, page: int = PAGE) -> Iterator[Entry]:
        """Every row in order of ``seq``, page by page (an audit reads them as they come)."""
        after: int | None = None
        while True:
            query = select(*self._read()).order_by(entries.c.seq).limit(page)
            if after is not None:
                query = query.where(entries.c.seq > after)
            with self._transaction(write=False, what="cannot be read") as conn:
                rows = [row._mapping for row in conn.execute(query)]
            yield from (_entry(row) for row in rows)
            if len(rows) < page:
                return
            after = int(rows[-1]["seq"])


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "timestamp": entry.timestamp,
        "vk_digest": entry.vk_digest,
        "model_digest": entry.model_digest,
        "siblings_digest": entry.siblings_digest,
        "owner": entry.owner,
        "submission": entry.submission_json,
        "submission_hash": entry.submission_hash,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
        "server_signature": entry.server_signature,
    }


def _entry(row: Any) -> Entry:
    return Entry(
        seq=int(row["seq"]),
        timestamp=str(row["timestamp"]),
        vk_digest=str(row["vk_digest"]),
        model_digest=None if row["model_digest"] is None else str(row["model_digest"]),
        siblings_digest=None if row.get("siblings_digest") is None else str(row["siblings_digest"]),
        owner=str(row["owner"]),
        submission_json=str(row["submission"]),
        submission_hash=str(row["submission_hash"]),
        prev_hash=str(row["prev_hash"]),
        entry_hash=str(row["entry_hash"]),
        server_signature=str(row["server_signature"]),
    )
