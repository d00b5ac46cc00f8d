"""The owner's query log: every altered answer the server gave, in a database (SQLite by default).

Same database layer as the registry (SQLAlchemy Core, :func:`backmark.registry.store.database_url`), two
tables: ``response_meta`` (the response key's public ``key_id``, the class count and the input shape the
log was made for; a log is never mixed across keys or models) and ``response_queries``, one row per
distinct altered image: its digest (unique: an image asked twice is one observation, which the test's
independence needs), its uint8 pixels, the model's own answer, the label given, the UTC time of the first
query and the caller when known (the client's address). The log holds query images: keep it private.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, Text, create_engine, exc, select
from sqlalchemy import insert as sql_insert

from backmark.errors import BackmarkError, first_line
from backmark.registry.store import database_url, shown
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

    def __init__(self, path_or_url: str | Path, *, create: bool) -> None:
        self.url = database_url(log_url(path_or_url))
        sqlite = self.url.get_backend_name() == "sqlite"
        if sqlite and not create and not Path(str(self.url.database)).is_file():
            raise BackmarkError(f"query log {self.url.database} does not exist")
        self.engine = create_engine(self.url)
        self._lock = threading.Lock()
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

    def record(self, altered: Sequence[Altered], *, caller: str | None = None) -> int:
        """Add the altered answers not logged before; return how many were new."""
        if not altered:
            return 0
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock, self.engine.begin() as conn:
            digests = list({a.digest for a in altered})
            seen = set(conn.execute(select(queries.c.digest).where(queries.c.digest.in_(digests))).scalars())
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
            if rows:
                conn.execute(sql_insert(queries), rows)
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
