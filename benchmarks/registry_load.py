"""Registry load: registrations per second and latency with N concurrent clients, SQLite and PostgreSQL.

    python benchmarks/registry_load.py [--clients 1,4,16] [--keys 100] [--backends sqlite,postgresql]
                                       [--no-doc]

For each backend a fresh database (a SQLite file in a temporary folder; a throwaway PostgreSQL server
with its default, durable settings, :class:`backmark.ledger.tempdb.TempPostgres`) is served by
``backmark registry serve`` in its own process. N client processes (for each N of ``--clients``), each
with its own identity, then register ``--keys`` keys each, all starting at the same instant. A
registration's latency is the wall time of one :meth:`RegistryClient.register` call (sign, POST,
commit, check the receipt); throughput is all registrations divided by the time from the common start
to the last one's end. The log is audited afterwards. The table, with the settings and the machine's
load, replaces the section between the markers in docs/registry.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "registry.md"
START, END = "<!-- registry-load:start -->", "<!-- registry-load:end -->"
SERVER_START = 60.0
RUN_DEADLINE = 600.0


def worker(url: str, keys: int, start_at: float) -> None:
    """One client process: register ``keys`` random keys from ``start_at`` (epoch seconds); print JSON."""
    from backmark.identity import new_identity
    from backmark.ledger.client import RegistryClient

    owner = new_identity()
    latencies = []
    with RegistryClient(url, timeout=30.0, deadline=120.0) as client:
        client.server_identity()
        time.sleep(max(0.0, start_at - time.time()))
        for _ in range(keys):
            began = time.perf_counter()
            client.register(owner, vk_digest=secrets.token_hex(32))
            latencies.append(time.perf_counter() - began)
    print(json.dumps({"latencies": latencies, "end": time.time()}))


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + (os.pathsep + path if path else "")}


def _serve(db: str, identity: Path) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "backmark", "registry", "serve", "--db", db, "--identity", str(identity)]
    argv += ["--rate", "100000", "--write-rate", "100000"]  # every client is on this machine's address
    proc = subprocess.Popen(
        [*argv, "--port", "0", "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
    )
    deadline = time.monotonic() + SERVER_START
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()  # the server prints whole lines; a dead server ends the stream
        if "registry serving at" in line:
            return proc, line.split("registry serving at ", 1)[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the registry server did not start")


def run_backend(db: str, folder: Path, clients: int, keys: int) -> dict[str, float]:
    from backmark.identity import new_identity, save_identity
    from backmark.ledger.audit import audit
    from backmark.ledger.store import Store

    save_identity(new_identity(), folder / "server-identity")
    server, url = _serve(db, folder / "server-identity")
    try:
        start_at = time.time() + 3.0 + 0.2 * clients  # after every client has imported and connected
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", url, str(keys), repr(start_at)],
                stdout=subprocess.PIPE,
                text=True,
                env=_env(),
            )
            for _ in range(clients)
        ]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=RUN_DEADLINE)
            if proc.returncode != 0:
                raise SystemExit("a client failed")
            results.append(json.loads(out))
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = max(r["end"] for r in results) - start_at
    store = Store(db)
    try:
        seq, digest, _ = store.head()
        public = store.server_identity()
        assert public is not None
        report = audit(store.scan(), server=public, head=(seq, digest))
    finally:
        store.close()
    if not report.ok or report.entries != clients * keys:
        raise SystemExit(f"the audit failed: {report.describe()}")
    return {
        "registrations": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": 1000 * latencies[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16", help="numbers of concurrent clients, one run each")
    parser.add_argument("--keys", type=int, default=100, help="registrations per client")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-doc", action="store_true", help="print the table only; leave docs/registry.md")
    args = parser.parse_args()
    from backmark.atomic import write_text
    from backmark.ledger.tempdb import TempPostgres

    load_before = os.getloadavg()[0]
    rows = []
    for backend in args.backends.split(","):
        for clients in (int(n) for n in args.clients.split(",")):
            with tempfile.TemporaryDirectory(prefix="backmark-bench-") as tmp:
                if backend == "sqlite":
                    figures = run_backend(f"sqlite:///{tmp}/registry.db", Path(tmp), clients, args.keys)
                else:
                    with TempPostgres(durable=True) as pg:
                        figures = run_backend(pg.create_database("bench"), Path(tmp), clients, args.keys)
            rows.append(
                f"| {backend} | {clients} | {figures['registrations']:.0f} | {figures['per_second']:.0f} | "
                f"{figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} | {figures['max_ms']:.1f} |"
            )
            print(rows[-1], flush=True)
    table = "\n".join(
        [
            START,
            "| database | clients | registrations | registrations/s | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"`python benchmarks/registry_load.py --clients {args.clients} --keys {args.keys} "
            f"--backends {args.backends}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores "
            f"({platform.machine()}), Python {platform.python_version()}, load average "
            f"{load_before:.2f} before the run; server, clients and PostgreSQL on the same machine.",
            END,
        ]
    )
    print(table)
    if not args.no_doc:
        text = DOC.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        write_text(DOC, head + table + tail, force=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
