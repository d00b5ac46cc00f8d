"""Both servers under abuse: throughput and p99 with idle and slow connections open, health, peak RSS.

    python benchmarks/server_abuse.py [--clients 50] [--idle 1000] [--slow 5] [--seconds 10] [--repeat 3]
                                      [--out FILE]

Each server (``backmark registry serve`` on a fresh SQLite file; ``backmark serve`` with the demo's
CNN, untrained: latency does not depend on the weights) runs in its own process on 127.0.0.1. This
process then, with asyncio and raw HTTP/1.1 keep-alive connections (light on the CPU it shares with the
server):

1. **baseline**: ``--clients`` clients send normal requests back to back for ``--seconds`` (registry:
   ``GET /v1/entries/1``; model: ``POST .../infer`` with one 1x28x28 image), while a prober opens a
   fresh connection every 50 ms for the health check (registry: ``GET /v1/identity``; model:
   ``GET /v2/health/live``);
2. **abuse**: the same, while ``--idle`` connections that never send a byte and ``--slow`` slowloris
   clients (a header byte a second) are held open by a child process: each is reopened as soon as the
   server closes it.

Baseline and abuse alternate for ``--repeat`` rounds (the machine's load changes under a run); each
figure is the median over the rounds. It reports requests/s, p50 and p99 of the normal requests, the
health check's p99 and worst wait, and failures; then the peak RSS (``VmHWM``) of a fresh model server
(and of its parsing processes) after the largest request it accepts (1024 images near the body limit)
and after a body of ``[],`` as large as the limit, with the health check's wait meanwhile. The
registry's largest request is 64 KiB; its peak RSS is taken after the runs. The open-file limit is
raised to its hard maximum. Results go to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SHAPE = (1, 28, 28)


def _start(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    address = line.split("http://")[1].split()[0].split("/")[0]
    port = int(address.rsplit(":", 1)[1])
    return proc, port


def _rss_peak_mb(pid: int) -> float:
    """VmHWM (peak resident set) of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


async def _client(port: int, request: bytes, end: float, out: list[float], failed: list[int]) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
            status = await asyncio.wait_for(_exchange(*conn, request), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            failed.append(1)
            if conn is not None:
                conn[1].close()
            conn = None
            await asyncio.sleep(0.05)
            continue
        out.append(time.monotonic() - start)
        if status >= 400:
            failed.append(status)
    if conn is not None:
        conn[1].close()


async def _prober(port: int, request: bytes, end: float, out: list[float], failed: list[int]) -> None:
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
            status = await asyncio.wait_for(_exchange(reader, writer, request), 10)
            writer.close()
            if status != 200:
                failed.append(status)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            failed.append(1)
        out.append(time.monotonic() - start)
        await asyncio.sleep(0.05)


async def _idle(port: int, stop: asyncio.Event, opened: list[int]) -> None:
    """Hold a connection that sends nothing; reopen it whenever the server closes it."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened.append(1)
        done = asyncio.ensure_future(stop.wait())
        closed = asyncio.ensure_future(reader.read())
        await asyncio.wait([done, closed], return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        closed.cancel()
        writer.close()


async def _slow(port: int, stop: asyncio.Event, opened: list[int]) -> None:
    """A slowloris client: a request's headers, one byte a second, reopened when the server closes it."""
    trickle = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100_000
    while not stop.is_set():
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened.append(1)
        try:
            for byte in trickle:
                if stop.is_set():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
        except OSError:
            pass
        writer.close()


def _summary(latencies: list[float], failed: list[int], seconds: float) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 1) if ms else None  # noqa: E731
    return {
        "requests": len(ms),
        "requests_per_s": round(len(ms) / seconds, 1),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": round(ms[-1], 1) if ms else None,
        "failed": len(failed),
    }


def _abuse(port: int, idle: int, slow: int, seconds: float, ready: Any) -> None:
    """In a child process (so the abusers' work does not delay the measuring clients' event loop):
    hold ``idle`` idle and ``slow`` slowloris connections open for ``seconds``; report how many were
    opened in all (each is reopened when the server closes it)."""

    async def run() -> tuple[int, int]:
        stop = asyncio.Event()
        idle_opened: list[int] = []
        slow_opened: list[int] = []
        tasks = [asyncio.ensure_future(_idle(port, stop, idle_opened)) for _ in range(idle)]
        tasks += [asyncio.ensure_future(_slow(port, stop, slow_opened)) for _ in range(slow)]
        await asyncio.sleep(3.0)  # all of them open before the measured run
        ready.send(("open", len(idle_opened), len(slow_opened)))
        await asyncio.sleep(seconds)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(idle_opened), len(slow_opened)

    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    ready.send(("done", *asyncio.run(run())))


async def _phase(
    port: int, request: bytes, health: bytes, args: argparse.Namespace, *, abuse: bool
) -> dict[str, Any]:
    import multiprocessing

    abuser = None
    if abuse:
        mine, theirs = multiprocessing.Pipe()
        abuser = multiprocessing.get_context("fork").Process(
            target=_abuse, args=(port, args.idle, args.slow, args.seconds + 1.0, theirs), daemon=True
        )
        abuser.start()
        opened = await asyncio.get_running_loop().run_in_executor(None, mine.recv)
    end = time.monotonic() + args.seconds
    lat: list[float] = []
    failed: list[int] = []
    probe: list[float] = []
    probe_failed: list[int] = []
    await asyncio.gather(
        *(_client(port, request, end, lat, failed) for _ in range(args.clients)),
        _prober(port, health, end, probe, probe_failed),
    )
    row = _summary(lat, failed, args.seconds)
    hp = sorted(x * 1000 for x in probe)
    row["health_p99_ms"] = round(hp[min(len(hp) - 1, int(0.99 * len(hp)))], 1) if hp else None
    row["health_max_ms"] = round(hp[-1], 1) if hp else None
    row["health_failed"] = len(probe_failed)
    if abuser is not None:
        done = await asyncio.get_running_loop().run_in_executor(None, mine.recv)
        abuser.join(30)
        row["abusers_open_at_start"] = {"idle": opened[1], "slow": opened[2]}
        row["abuser_connections_opened_in_all"] = {"idle": done[1], "slow": done[2]}
    return row


def _alternate(port: int, request: bytes, health: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """``--repeat`` rounds of baseline then abuse, alternated so that the shared machine's changing load
    falls on both alike; each figure is the median over the rounds (every round is kept too)."""
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "abuse": []}
    for _ in range(args.repeat):
        runs["baseline"].append(asyncio.run(_phase(port, request, health, args, abuse=False)))
        runs["abuse"].append(asyncio.run(_phase(port, request, health, args, abuse=True)))
    out: dict[str, Any] = {"rounds": runs}
    for phase, rows in runs.items():
        keys = ("requests_per_s", "p50_ms", "p99_ms", "health_p99_ms", "health_max_ms")
        out[phase] = {k: statistics.median(r[k] for r in rows) for k in keys}
        out[phase]["failed"] = sum(r["failed"] for r in rows)
        out[phase]["health_failed"] = sum(r["health_failed"] for r in rows)
    out["p99_ratio"] = round(out["abuse"]["p99_ms"] / out["baseline"]["p99_ms"], 2)
    return out


def _http(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
    head += "Content-Type: application/json\r\n\r\n" if body else "\r\n"
    return head.encode() + body


def _post_sync(port: int, path: str, body: bytes) -> int:
    import httpx

    return httpx.post(f"http://{HOST}:{port}{path}", content=body, timeout=120).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of baseline and abuse, alternated")
    parser.add_argument("--out", default="docs/server-abuse.json")
    args = parser.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    import torch

    from backmark.identity import new_identity, save_identity
    from backmark.ledger.client import register
    from backmark.models import ModelInfo, create_model, save_checkpoint

    results: dict[str, Any] = {
        "command": "python benchmarks/server_abuse.py " + " ".join(sys.argv[1:]),
        "settings": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "open_file_limit": hard,
        },
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # --- the registry
        save_identity(new_identity(), folder / "server-id")
        argv = [sys.executable, "-m", "backmark", "registry", "serve", "--db", f"sqlite:///{folder / 'r.db'}"]
        argv += ["--identity", str(folder / "server-id"), "--port", "0", "-q"]
        argv += ["--rate", "1000000", "--write-rate", "1000000"]  # one address here stands for many
        proc, port = _start(argv, env)
        try:
            register(f"http://{HOST}:{port}", new_identity(), "a" * 64)
            request, health = _http("GET", "/v1/entries/1"), _http("GET", "/v1/identity")
            results["registry"] = _alternate(port, request, health, args)
            results["registry"]["peak_rss_mb"] = round(_rss_peak_mb(proc.pid), 1)
        finally:
            proc.terminate()
            proc.wait(30)
        # --- the model server
        ckpt = folder / "m.pt"
        save_checkpoint(
            ckpt, create_model("cnn", num_classes=10, input_shape=SHAPE), ModelInfo("cnn", {}, SHAPE, 10)
        )
        argv = [sys.executable, "-m", "backmark", "serve", str(ckpt), "--port", "0", "--name", "m", "-q"]
        proc, port = _start(argv, env)
        try:
            one = json.dumps(
                {
                    "inputs": [
                        {"name": "images", "shape": [1, *SHAPE], "datatype": "FP32", "data": [0.5] * 784}
                    ]
                }
            ).encode()
            _post_sync(port, "/v2/models/m/infer", one)
            request, health = _http("POST", "/v2/models/m/infer", one), _http("GET", "/v2/health/live")
            results["model"] = _alternate(port, request, health, args)
        finally:
            proc.terminate()
            proc.wait(30)
        # --- peak RSS of a fresh model server under its largest requests
        from backmark.serve import body_limit

        proc, port = _start(argv, env)
        try:
            limit = body_limit(SHAPE)
            before = _rss_peak_mb(proc.pid)
            value = "0.123456789012345678901234"  # 26 characters, so the body comes near the limit
            data = ",".join([value] * (1024 * 784))
            big = (
                '{"inputs": [{"name": "images", "shape": [1024, 1, 28, 28], "datatype": "FP32", "data": ['
                + data
                + "]}]}"
            ).encode()
            probe: list[float] = []
            sending = threading.Event()
            sending.set()

            def health_meanwhile() -> None:
                """A fresh connection per probe, as a load balancer makes; raw, so the probe costs
                this process almost nothing (httpx.get builds a client and a TLS context each time)."""
                import socket

                request = _http("GET", "/v2/health/live")
                while sending.is_set():
                    start = time.monotonic()
                    with socket.create_connection((HOST, port), timeout=30) as sock:
                        sock.sendall(request)
                        answer = b""
                        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                            chunk = sock.recv(4096)
                            if not chunk:
                                break
                            answer += chunk
                    probe.append((time.monotonic() - start) * 1000)
                    time.sleep(0.02)

            prober = threading.Thread(target=health_meanwhile, daemon=True)
            prober.start()
            statuses = [_post_sync(port, "/v2/models/m/infer", big) for _ in range(3)]
            sending.clear()
            prober.join(30)
            lists = b'{"inputs": [' + b"[]," * ((limit - 64) // 3) + b"[]]}"
            statuses.append(_post_sync(port, "/v2/models/m/infer", lists))
            workers = {str(c): round(_rss_peak_mb(c), 1) for c in _children(proc.pid)}
            results["model"]["largest_request"] = {
                "body_limit_bytes": limit,
                "largest_body_bytes": len(big),
                "lists_body_bytes": len(lists),
                "statuses": statuses,
                "health_during_largest_ms": {
                    "probes": len(probe),
                    "p50": round(sorted(probe)[len(probe) // 2], 1),
                    "max": round(max(probe), 1),
                },
                "server_peak_rss_mb_before": round(before, 1),
                "server_peak_rss_mb": round(_rss_peak_mb(proc.pid), 1),
                "parser_processes_peak_rss_mb": workers,
            }
        finally:
            proc.terminate()
            proc.wait(30)
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["torch"] = torch.__version__
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    for server in ("registry", "model"):
        for phase in ("baseline", "abuse"):
            row = results[server][phase]
            print(
                f"{server:8} {phase:8} {row['requests_per_s']:>8} req/s  p50 {row['p50_ms']} ms  "
                f"p99 {row['p99_ms']} ms  health p99 {row['health_p99_ms']} ms (max {row['health_max_ms']})"
                f"  failed {row['failed']}/{row['health_failed']}"
            )
    print(json.dumps(results["model"]["largest_request"], indent=1))
    print(f"registry peak RSS {results['registry']['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
