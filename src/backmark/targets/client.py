"""An HTTP client that survives real inference servers: deadlines, bounded retries, pacing, auth, TLS.

Policy (docs/targets.md has the table):

- every request has a deadline of ``timeout`` seconds, from sending to the last byte of the answer;
- retried, with exponential backoff from ``backoff`` seconds: 429 (after its ``Retry-After`` when given),
  every 5xx, a request past its deadline, a connection dropped mid-answer;
- not retried (the same query would get the same answer): connection refused or unresolvable host, a TLS
  failure, any other 4xx, a redirect, an answer that is not JSON;
- at most ``attempts`` tries per request; a pause longer than ``max_wait`` is an error, not a wait.

So a run ends within about ``attempts * (timeout + max_wait)`` seconds per request, and every failure is
one BackmarkError line that says what the server did. The auth header's value is read from the
environment variable ``auth_env`` and never appears in a message.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backmark import __version__
from backmark.errors import BackmarkError

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class ClientConfig:
    """How a remote target talks to its server. Times are in seconds."""

    timeout: float = 30.0  # deadline of one request, from sending to the last byte of the answer
    attempts: int = 5  # tries per request, the first included
    backoff: float = 0.5  # pause before the first retry; doubles after each further failure
    max_wait: float = 60.0  # the longest pause accepted, Retry-After included
    batch_size: int = 64  # images per request
    rate: float | None = None  # at most this many requests per second (None: no limit)
    auth_env: str | None = None  # name of the environment variable that holds the auth header's value
    auth_header: str = "Authorization"  # e.g. "X-API-Key"; the value is sent as-is ("Bearer ...")
    verify_tls: bool = True  # False only for a test server with a self-signed certificate
    ca_bundle: str | None = None  # PEM file of the certificate authorities to trust, instead of the default
    max_answer_bytes: int = 64 * 2**20  # larger answers are refused, not buffered

    def check(self) -> None:
        """Raise BackmarkError for values that cannot work (a zero timeout would never succeed)."""
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise BackmarkError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.attempts < 1:
            raise BackmarkError(f"--attempts must be at least 1, got {self.attempts}")
        if self.backoff < 0 or self.max_wait < 0:
            raise BackmarkError("--backoff and --max-wait must not be negative")
        if self.batch_size < 1:
            raise BackmarkError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.rate is not None and not self.rate > 0:
            raise BackmarkError(f"--rate must be a positive number of requests per second, got {self.rate}")


class _PastDeadline(Exception):
    """The answer did not arrive in full within the request's deadline."""


def one_line(text: str, limit: int = 120) -> str:
    """``text`` squeezed onto one line and cut to ``limit`` characters, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """Sends JSON requests and returns parsed JSON answers under the policy of this module.

    Use as a context manager, or call :meth:`close`. ``what`` names the server in every error message.
    """

    def __init__(self, config: ClientConfig, *, what: str) -> None:
        import httpx  # imported here so that `import backmark` stays fast for local-only use

        config.check()
        self.config = config
        self.what = what
        headers = {"Accept": "application/json", "User-Agent": f"backmark/{__version__}"}
        if config.auth_env:
            value = os.environ.get(config.auth_env, "")
            if not value:
                raise BackmarkError(
                    f"environment variable {config.auth_env} (named by --auth-env) is not set or empty"
                )
            headers[config.auth_header] = value
        verify: ssl.SSLContext | bool = config.verify_tls
        if config.verify_tls and config.ca_bundle:
            try:
                verify = ssl.create_default_context(cafile=config.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise BackmarkError(f"cannot read CA bundle {config.ca_bundle}: {exc}") from None
        self._client = httpx.Client(
            headers=headers, timeout=config.timeout, verify=verify, follow_redirects=False
        )
        self._last_start = -math.inf
        self.requests = 0  # requests sent, retries included (for reports)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _pace(self) -> None:
        if self.config.rate:
            wait = self._last_start + 1.0 / self.config.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_start = time.monotonic()

    def _once(self, method: str, url: str, body: bytes | None) -> tuple[httpx.Response, bytes]:
        """One request; the whole answer read under the deadline and the size limit."""
        deadline = time.monotonic() + self.config.timeout
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.requests += 1
        with self._client.stream(method, url, content=body, headers=headers) as response:
            parts: list[bytes] = []
            size = 0
            for part in response.iter_bytes():
                size += len(part)
                if size > self.config.max_answer_bytes:
                    raise BackmarkError(
                        f"{self.what} sent an answer larger than {self.config.max_answer_bytes} bytes"
                    )
                if time.monotonic() > deadline:
                    raise _PastDeadline
                parts.append(part)
            return response, b"".join(parts)

    def request(self, method: str, url: str, *, body: Any = None) -> Any:
        """Send ``body`` (JSON-serialisable, or None) to ``url``; return the parsed JSON of a 2xx answer."""
        import httpx

        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        cfg = self.config
        for attempt in range(1, cfg.attempts + 1):
            self._pace()
            wait = cfg.backoff * 2 ** (attempt - 1)
            try:
                response, content = self._once(method, url, payload)
            except (httpx.TimeoutException, _PastDeadline):
                failure = f"{self.what} did not answer within the {cfg.timeout:g} s timeout"
            except httpx.ConnectError as exc:
                raise BackmarkError(
                    f"cannot connect to {self.what}: {one_line(str(exc)) or 'refused'}"
                ) from None
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
                failure = f"{self.what} dropped the connection ({one_line(str(exc)) or type(exc).__name__})"
            except httpx.HTTPError as exc:
                raise BackmarkError(f"request to {self.what} failed: {one_line(str(exc))}") from None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        return json.loads(content)
                    except (ValueError, UnicodeDecodeError):
                        raise BackmarkError(
                            f"{self.what} answered {status} with malformed JSON: "
                            f"{one_line(content.decode('utf-8', 'replace'), 60)!r}"
                        ) from None
                said = one_line(content.decode("utf-8", "replace"), 100)
                failure = f"{self.what} answered {status} {response.reason_phrase}" + (
                    f": {said}" if said else ""
                )
                if status == 429:
                    asked = retry_after(response.headers.get("Retry-After"))
                    if asked is not None:
                        if asked > cfg.max_wait:
                            raise BackmarkError(
                                f"{failure} and asked to retry after {asked:g} s, more than the "
                                f"{cfg.max_wait:g} s allowed (--max-wait)"
                            )
                        wait = asked
                elif 300 <= status < 400:
                    where = response.headers.get("Location", "elsewhere")
                    raise BackmarkError(f"{failure} (a redirect to {where}; pass that URL if you trust it)")
                elif status < 500:
                    raise BackmarkError(failure)
            if attempt == cfg.attempts:
                raise BackmarkError(f"{failure}; gave up after {cfg.attempts} attempts")
            time.sleep(min(wait, cfg.max_wait))
        raise AssertionError("unreachable")  # the loop returns or raises
