"""Many owners at once: 16 client processes register 25 keys each while the server is killed and restarted.

Each client is a separate torch-free process (ledger_worker.py) with its own identity. Midway the
server is killed with SIGKILL (no clean shutdown) and started again on the same port and database;
the clients retry through the gap. Afterwards every key is in the log exactly once, the entries are
numbered 1..400 without a gap, every receipt is valid, and the audit is clean, on both backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import ServerProcess, env

from backmark.identity import load_public_identity
from backmark.ledger.audit import audit
from backmark.ledger.chain import check_receipt
from backmark.ledger.store import Store

CLIENTS, KEYS = 16, 25
WORKER = str(Path(__file__).with_name("ledger_worker.py"))
DEADLINE = 150.0  # seconds for the whole run


def wait_for_entries(url: str, count: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        try:
            seen = int(httpx.get(f"{url}/v1/head", timeout=5).json()["entry"])
        except (httpx.HTTPError, ValueError, KeyError):
            seen = 0
        if seen >= count:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"the registry did not reach {count} entries in time")


def test_sixteen_clients_and_a_restart_lose_nothing(server_process: ServerProcess) -> None:
    server = server_process.start()
    end = time.monotonic() + DEADLINE
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, server.url, str(KEYS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for _ in range(CLIENTS)
    ]
    try:
        killed_at = wait_for_entries(server.url, CLIENTS * KEYS // 3, end)
        server.kill()  # SIGKILL: requests in flight die with it
        server.start()
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=max(1.0, end - time.monotonic()))
            assert worker.returncode == 0, err[-2000:]
            outputs.append(out)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    server.kill()

    receipts = [json.loads(line) for out in outputs for line in out.splitlines()]
    public = load_public_identity(server.identity)
    for receipt in receipts:
        check_receipt(receipt, public)
    total = CLIENTS * KEYS
    assert len(receipts) == total and 0 < killed_at < total
    assert sorted(r["entry"] for r in receipts) == list(range(1, total + 1))
    assert len({r["vk_digest"] for r in receipts}) == total
    store = Store(server.db)
    try:
        rows = list(store.scan())
        assert len(rows) == total
        by_seq = {row.seq: row for row in rows}
        for receipt in receipts:
            row = by_seq[receipt["entry"]]
            assert (row.entry_hash, row.vk_digest) == (receipt["entry_hash"], receipt["vk_digest"])
        seq, digest, _ = store.head()
        report = audit(rows, server=public, head=(seq, digest), receipts=receipts)
    finally:
        store.close()
    assert report.ok and report.entries == total, report.describe()
