"""The demo's registry: the real server on 127.0.0.1, its files in the demo's folder, always stopped."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from backmark.identity import new_identity
from backmark.study.demo_registry import local_registry

DIGEST = "ab" * 32


def refused(url: str) -> bool:
    """Whether nothing listens at ``url`` any more."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.mark.timeout(120)
def test_the_registry_registers_looks_up_audits_and_stops(tmp_path: Path) -> None:
    owner, thief = new_identity(), new_identity()
    with local_registry(tmp_path / "registry") as registry:
        assert urlsplit(registry.url).hostname == "127.0.0.1"
        first = registry.register(owner, vk_digest=DIGEST, model_digest=None)
        second = registry.register(thief, vk_digest="cd" * 32, model_digest="ef" * 32)
        assert (first["entry"], second["entry"]) == (1, 2) and first["owner"] == owner.public.fingerprint
        assert [e["entry"] for e in registry.lookup(vk_digest=DIGEST)] == [1]
        audit = registry.audit([first, second])
        assert audit.ok and audit.entries == 2 and audit.server == registry.server
        url = registry.url
    assert refused(url)
    assert (tmp_path / "registry" / "registry.db").stat().st_size > 0
    assert (tmp_path / "registry" / "server-identity").is_dir()


@pytest.mark.timeout(120)
def test_the_registry_stops_when_the_demo_fails_inside(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the demo failed"), local_registry(tmp_path / "r") as registry:
        url = registry.url
        raise RuntimeError("the demo failed")
    assert refused(url)
