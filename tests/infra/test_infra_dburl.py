"""Database URLs: each command's error names its own option (the query log's is not the registry's --db)."""

from __future__ import annotations

import pytest

from backmark.cli.main import flag
from backmark.errors import BackmarkError
from backmark.infra.dburl import database_url
from backmark.response import ResponseLog


def test_the_query_log_names_its_own_option() -> None:
    with pytest.raises(BackmarkError) as info:
        ResponseLog("mysql://x/y", create=True)
    said = info.value.render(flag)
    assert "--query-log" in said and "--db" not in said and "the query log runs on SQLite" in said


def test_the_registry_keeps_its_wording() -> None:
    with pytest.raises(BackmarkError) as info:
        database_url("mysql://x/y")
    assert "--db" in info.value.render(flag)
    assert database_url("postgresql://u@h/n").drivername == "postgresql+psycopg"
