"""An HTTP client that survives real inference servers: deadlines, bounded retries, pacing, auth, TLS.

Policy (docs/targets.md has the table):

- every request has a deadline of ``timeout`` seconds, from sending to the last byte of the answer;
- retried, with exponential backoff from ``backoff`` seconds: 429 and every 5xx (after their
  ``Retry-After``, seconds or an HTTP date, when it is longer), a request past its deadline, a connection
  dropped mid-answer;
- not retried (the same query would get the same answer): connection refused or unresolvable host, a TLS
  failure, any other 4xx, a redirect, an answer that is not JSON;
- at most ``attempts`` tries per request; a pause longer than ``max_wait`` is an error, not a wait;
- one ``deadline`` for everything the client sends, from its creation (when a target is opened) to its
  last answer: each request's timeout is clipped to the time left, and a retry that could not finish
  in time is not started.

So a run ends within ``deadline`` seconds (about ``attempts * (timeout + max_wait)`` per request without
one), and every failure is one BackmarkError line that says what the server did. ``on_retry`` hears one
line per retry (the CLI prints it to stderr). The auth header's value is read from the environment
variable ``auth_env`` and never appears in a message. The loop is ``backmark.infra.retry``'s, shared with
the ledger's client.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backmark.constants import (
    CLIENT_ATTEMPTS,
    CLIENT_BACKOFF,
    CLIENT_DEADLINE,
    CLIENT_MAX_WAIT,
    CLIENT_TIMEOUT,
    REMOTE_BATCH,
)
from backmark.constants import VERSION as __version__
from backmark.errors import BackmarkError
from backmark.infra.schema import SchemaError, parse_json

if TYPE_CHECKING:
    from backmark.infra.httpclient import Answer
    from backmark.infra.retry import GaveUp


@dataclass(frozen=True)
class ClientConfig:
    """How a remote target talks to its server. Times are in seconds."""

    timeout: float = CLIENT_TIMEOUT  # deadline of one request, from sending to the last byte of the answer
    attempts: int = CLIENT_ATTEMPTS  # tries per request, the first included
    backoff: float = CLIENT_BACKOFF  # pause before the first retry; doubles after each further failure
    max_wait: float = CLIENT_MAX_WAIT  # the longest pause accepted, Retry-After included
    batch_size: int = REMOTE_BATCH  # images per request
    rate: float | None = None  # at most this many requests per second (None: no limit)
    auth_env: str | None = None  # name of the environment variable that holds the auth header's value
    auth_header: str = "Authorization"  # e.g. "X-API-Key"; the value is sent as-is ("Bearer ...")
    verify_tls: bool = True  # False only for a test server with a self-signed certificate
    ca_bundle: str | None = None  # PEM file of the certificate authorities to trust, instead of the default
    max_answer_bytes: int = 64 * 2**20  # larger answers are refused, not buffered
    # The whole conversation with the server, from opening the target to its last answer, retries and
    # pauses included (None: no bound). 120 s is four default request timeouts, and far more than a
    # verification of a few hundred images takes on any server that works.
    deadline: float | None = CLIENT_DEADLINE
    # Told one line per retry ("... attempt 2/5 failed (...); retrying in 1.0 s, 87 s left"); None: silent.
    on_retry: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.check()  # a config that cannot work is never built

    def check(self) -> None:
        """Raise BackmarkError for values that cannot work (a zero timeout would never succeed)."""
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise BackmarkError(
                f"{{timeout}} must be a positive number of seconds, got {self.timeout}", params=["timeout"]
            )
        if self.attempts < 1:
            raise BackmarkError(f"{{attempts}} must be at least 1, got {self.attempts}", params=["attempts"])
        if not (self.backoff >= 0 and self.max_wait >= 0 and math.isfinite(self.backoff + self.max_wait)):
            raise BackmarkError(
                f"{{backoff}} and {{max_wait}} must be seconds, not negative; "
                f"got {self.backoff}, {self.max_wait}",
                params=["backoff", "max_wait"],
            )
        if self.batch_size < 1:
            raise BackmarkError(
                f"{{batch_size}} must be at least 1, got {self.batch_size}", params=["batch_size"]
            )
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise BackmarkError(
                f"{{rate}} must be a positive number of requests per second, got {self.rate}", params=["rate"]
            )
        if self.deadline is not None and not (self.deadline > 0 and math.isfinite(self.deadline)):
            raise BackmarkError(
                f"{{deadline}} must be a positive number of seconds, got {self.deadline}", params=["deadline"]
            )


def one_line(text: str, limit: int = 120) -> str:
    """``text`` squeezed onto one line and cut to ``limit`` characters, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# Retried answers: 429 and every 5xx (a server restarting or overloaded; the queries are idempotent)
_RETRIED = frozenset({429, *range(500, 1000)})


class HttpClient:
    """Sends JSON requests and returns parsed JSON answers under the policy of this module.

    Use as a context manager, or call :meth:`close`. ``what`` names the server in every error message.
    """

    def __init__(self, config: ClientConfig, *, what: str) -> None:
        import httpx  # imported here so that `import backmark` stays fast for local-only use

        self.config = config
        self.what = what
        headers = {"Accept": "application/json", "User-Agent": f"backmark/{__version__}"}
        if config.auth_env:
            value = os.environ.get(config.auth_env, "")
            if not value:
                raise BackmarkError(
                    f"environment variable {config.auth_env} (named by {{auth_env}}) is not set or empty",
                    params=["auth_env"],
                )
            headers[config.auth_header] = value
        verify: ssl.SSLContext | bool = config.verify_tls
        if config.verify_tls and config.ca_bundle:
            try:
                verify = ssl.create_default_context(cafile=config.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise BackmarkError(f"cannot read CA bundle {config.ca_bundle}: {exc}") from None
        from backmark.infra.httpclient import transport

        made, self._backend = transport(verify=verify)
        self._client = httpx.Client(
            headers=headers, timeout=config.timeout, transport=made, follow_redirects=False
        )
        self._last_start = -math.inf
        self._ends = None if config.deadline is None else time.monotonic() + config.deadline
        self.requests = 0  # requests sent, retries included (for reports)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def left(self) -> float:
        """Seconds left before the deadline (infinity without one)."""
        return math.inf if self._ends is None else self._ends - time.monotonic()

    def _past_deadline(self, failure: str, attempt: int) -> BackmarkError:
        tries = f"{attempt} attempt{'s' if attempt != 1 else ''}"
        return BackmarkError(
            f"{failure}; gave up after {tries}: the {self.config.deadline:g} s deadline of the whole "
            "verification has passed ({deadline})",
            params=["deadline"],
        )

    def _pace(self) -> None:
        if self.config.rate:
            wait = self._last_start + 1.0 / self.config.rate - time.monotonic()
            if wait >= self.left():
                raise BackmarkError(
                    f"no time left for the next request to {self.what} at {{rate}} {self.config.rate:g} "
                    f"before the {self.config.deadline:g} s deadline ({{deadline}})",
                    params=["rate", "deadline"],
                )
            if wait > 0:
                time.sleep(wait)
        self._last_start = time.monotonic()

    def _send(self, method: str, url: str, payload: bytes | None) -> Answer:
        """One try, the whole answer read within the request's timeout and the size limit: a final failure
        is a BackmarkError, one worth retrying a :class:`Retry`."""
        import httpx

        from backmark.infra.httpclient import fetch
        from backmark.infra.retry import Retry

        cfg = self.config
        self._pace()
        timeout = min(cfg.timeout, self.left())
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        self.requests += 1
        try:
            # one deadline over the whole request: connecting, sending, the headers and every body byte
            return fetch(
                self._client,
                self._backend,
                method,
                url,
                end=time.monotonic() + timeout,
                timeout=timeout,
                limit=cfg.max_answer_bytes,
                what=self.what,
                content=payload,
                headers=headers,
            )
        except httpx.TimeoutException:
            if timeout < cfg.timeout:  # clipped: the deadline, not the request's timeout, ran out
                raise Retry(
                    f"{self.what} did not answer in the {timeout:.3g} s left before the deadline"
                ) from None
            raise Retry(f"{self.what} did not answer within the {cfg.timeout:g} s timeout") from None
        except httpx.ConnectError as exc:
            raise BackmarkError(f"cannot connect to {self.what}: {one_line(str(exc)) or 'refused'}") from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise Retry(
                f"{self.what} dropped the connection ({one_line(str(exc)) or type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            raise BackmarkError(f"request to {self.what} failed: {one_line(str(exc))}") from None

    def _failure(self, answer: Answer) -> str:
        said = one_line(answer.content.decode("utf-8", "replace"), 100)
        return f"{self.what} answered {answer.status_code} {answer.reason_phrase}" + (
            f": {said}" if said else ""
        )

    def _announce(self, attempt: int, failure: str, wait: float, left: float) -> None:
        if self.config.on_retry is not None:
            reason = failure.removeprefix(f"{self.what} ")
            remaining = "" if math.isinf(left) else f", {left:.0f} s left"
            self.config.on_retry(
                f"{self.what}: attempt {attempt}/{self.config.attempts} failed ({reason}); "
                f"retrying in {wait:.1f} s{remaining}"
            )

    def _gave_up(self, stop: GaveUp) -> BackmarkError:
        cfg = self.config
        failure = stop.failure or ""
        if stop.why == "no time":
            return BackmarkError(
                f"no time left to ask {self.what}: the {cfg.deadline:g} s deadline of the whole "
                "verification has passed ({deadline})",
                params=["deadline"],
            )
        if stop.why == "too long":
            return BackmarkError(
                f"{failure} and asked to retry after {stop.asked:g} s, more than the "
                f"{cfg.max_wait:g} s allowed ({{max_wait}})",
                params=["max_wait"],
            )
        if stop.why == "attempts":
            return BackmarkError(f"{failure}; gave up after {cfg.attempts} attempts")
        return self._past_deadline(failure, stop.attempt)

    def request(
        self, method: str, url: str, *, body: Any = None, parse: bool = True, allow: tuple[int, ...] = ()
    ) -> Any:
        """Send ``body`` (JSON-serialisable, or None) to ``url``; return the parsed JSON of a 2xx answer.

        ``parse=False`` returns a 2xx answer's raw bytes instead. An answer whose status is in ``allow``
        is returned as None rather than raised (a server without an optional endpoint).
        """
        from backmark.infra.retry import GaveUp, RetryPolicy, with_retries

        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        cfg = self.config
        policy = RetryPolicy(
            statuses=_RETRIED.difference(allow),
            attempts=cfg.attempts,
            backoff=cfg.backoff,
            max_wait=cfg.max_wait,
        )
        try:
            answer = with_retries(
                lambda _: self._send(method, url, payload),
                policy,
                left=self.left,
                describe=self._failure,
                on_retry=self._announce,
            )
        except GaveUp as stop:
            raise self._gave_up(stop) from None
        status, content = answer.status_code, answer.content
        if status in allow:
            return None
        if 200 <= status < 300:
            if not parse:
                return content
            try:
                return parse_json(content, what="the answer")
            except SchemaError as exc:
                raise BackmarkError(
                    f"{self.what} answered {status} with malformed JSON ({exc}): "
                    f"{one_line(content.decode('utf-8', 'replace'), 60)!r}"
                ) from None
        if 300 <= status < 400:
            where = answer.headers.get("Location", "elsewhere")
            raise BackmarkError(
                f"{self._failure(answer)} (a redirect to {where}; pass that URL if you trust it)"
            )
        raise BackmarkError(self._failure(answer))
