"""Running the command line in-process from a test (exit status, stdout and stderr), and a registry to
register sibling records with."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backmark.cli.main import main
from backmark.identity import Identity, new_identity, save_identity
from backmark.infra.asgi import start_server
from backmark.infra.canonical_json import canonical_json
from backmark.ledger.app import create_app
from backmark.ledger.store import Store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``backmark ARGV...`` as a test runs it: the exit status and what it printed (stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@dataclass
class Registry:
    url: str
    store: Store
    server: Identity


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on a SQLite file, served in this process (the ledger tests cover PostgreSQL)."""
    server = new_identity()
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}", lock_timeout=5.0)
    store.init(server.public)
    running = start_server(create_app(store, server))
    try:
        yield Registry(running.url, store, server)
    finally:
        running.stop()
        store.close()


def register_receipt(
    capsys: pytest.CaptureFixture[str], registry: Registry, tmp_path: Path, name: str, *record: str
) -> Path:
    """Register a fresh key (with ``record``: --siblings ... or --siblings-digest ...) as a fresh owner."""
    ident = tmp_path / f"{name}-id"
    save_identity(new_identity(), ident)
    vk: dict[str, Any] = {"format": "backmark-verification-key", "name": name}
    vk["digest"] = hashlib.sha256(canonical_json(vk)).hexdigest()
    (tmp_path / f"{name}-vk.json").write_text(json.dumps(vk))
    out = tmp_path / f"{name}-receipt.json"
    argv = [
        "register",
        "--registry",
        registry.url,
        "--identity",
        str(ident),
        "--vk",
        str(tmp_path / f"{name}-vk.json"),
    ]
    code, _, err = run(capsys, *argv, *record, "--out", str(out), "-q")
    assert code == 0, err
    return out
