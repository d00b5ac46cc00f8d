"""Talk to a registry: register a verification key, look entries up, fetch the whole log. No torch.

Every call has a ``deadline`` (seconds, for the whole call: every request, its headers and body, every
page of a listing, retries and pauses included) and each request a ``timeout``. Retried until the
deadline: a connection refused or dropped, a request past its timeout, 429 (after its
``Retry-After``, seconds or an HTTP date), 502, 503 and 504 (a registry restarting, or its database
briefly away); the loop is ``backmark.infra.retry``'s. Not retried: any other refusal, which is final
(the registry's one-line reason becomes the BackmarkError). An answer over ``MAX_ANSWER`` bytes, a
listing of more than ``MAX_PAGES`` pages or whose pages do not advance, and an answer that is not the
JSON it should be are errors (exit status 2 on the command line), never a verdict.

:func:`register` is exactly-once across retries: it signs one submission and sends that same document
on every try. If a try was recorded but its answer lost, the next try is refused as a replay (409) with
the recorded entry in the body; that entry is checked to be this submission and its receipt returned.
Every receipt is checked against the server's identity before it is returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx

from backmark.constants import VERSION as __version__
from backmark.errors import BackmarkError, first_line
from backmark.identity import Identity, PublicIdentity, is_hex_digest
from backmark.infra.canonical_json import canonical_digest
from backmark.infra.httpclient import Answer, fetch, transport
from backmark.infra.json_files import read_json
from backmark.infra.retry import GaveUp, Retry, RetryPolicy, with_retries
from backmark.infra.schema import HEX64, Integer, Nullable, Record, SchemaError, Text, parse_json
from backmark.ledger.chain import RECEIPT_SCHEMA, Entry, check_receipt, make_submission

TIMEOUT = 10.0  # seconds per request
DEADLINE = 60.0  # seconds per call, retries and pages included
MAX_ANSWER = 16 * 2**20  # bytes of one answer (a full page of 1000 entries is about 4 MB)
MAX_PAGES = 10_000  # pages of one listing (10 million entries)
# Retried until the call's deadline (no bound on attempts), pausing 0.1 s doubled up to 2 s, or the
# answer's Retry-After when longer: 429, and 502/503/504 (a registry restarting, or its database briefly
# away). Not a plain 500: the registry's unexpected error, which asking again for the whole deadline would
# not cure, so its one-line reason is reported at once. (Resending a registration would be safe: the
# same signed submission is refused as a replay once recorded.)
_RETRY = RetryPolicy(statuses=frozenset({429, 502, 503, 504}), backoff=0.1, max_backoff=2.0)
HEAD_SCHEMA = Record(
    {"entry": Integer(0, 2**62), "entry_hash": HEX64, "timestamp": Nullable(Text(max_len=64))}
)
VK_FORMAT = "backmark-verification-key"


class HasDigest(Protocol):
    @property
    def digest(self) -> str: ...


def read_vk_digest(path: str | Path) -> str:
    """The digest of the verification key file ``path`` (or folder holding ``verification-key.json``).

    The digest is recomputed (SHA-256 of the canonical JSON of every other field, as
    :class:`backmark.keys.VerificationKey` does) and must match the file's, so a changed byte is refused.
    Read here without the key loaders, which import torch.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "verification-key.json"
    doc = read_json(path, "verification key")
    if not isinstance(doc, dict) or doc.get("format") != VK_FORMAT:
        raise BackmarkError(f"{path} is not a backmark verification key")
    body = {k: v for k, v in doc.items() if k != "digest"}
    digest = canonical_digest(body)
    if digest != doc.get("digest"):
        raise BackmarkError(f"verification key {path} was changed: its digest does not match")
    return digest


def model_digest_of(path: str | Path) -> str:
    """SHA-256 of a model file's bytes (what ``--model FILE`` registers and looks up)."""
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                sha.update(block)
    except OSError as exc:
        raise BackmarkError(f"cannot read model {path}: {exc.strerror or exc}") from None
    return sha.hexdigest()


class RegistryClient:
    """HTTP calls to one registry at ``url`` with per-request ``timeout`` and per-call ``deadline``."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = TIMEOUT,
        deadline: float = DEADLINE,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise BackmarkError(
                f"{{registry}} {url!r} is not an http:// or https:// URL", params=["registry"]
            )
        if not (0 < timeout < math.inf and 0 < deadline < math.inf):  # NaN fails too
            raise BackmarkError(
                "{timeout} and {deadline} must be positive and finite", params=["timeout", "deadline"]
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.deadline = deadline
        self.on_retry = on_retry
        made, self._backend = transport()
        self._http = httpx.Client(
            headers={"User-Agent": f"backmark/{__version__}"}, transport=made, follow_redirects=False
        )
        self._server: PublicIdentity | None = None
        self._end: float | None = None  # the deadline of the call in progress

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """One call: everything inside (requests, pages, retries) shares one ``deadline``."""
        if self._end is not None:  # already inside a call
            yield
            return
        self._end = time.monotonic() + self.deadline
        try:
            yield
        finally:
            self._end = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[int, Any, bool]:
        """(status, JSON answer, retried) of the first final answer; retries within the call's deadline."""
        with self.call():
            return self._request(method, path, body, params)

    def _request(
        self, method: str, path: str, body: Any, params: dict[str, Any] | None
    ) -> tuple[int, Any, bool]:
        end = self._end if self._end is not None else time.monotonic() + self.deadline
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        tries = 0

        def send(attempt: int) -> Answer:
            nonlocal tries
            tries = attempt
            try:
                return fetch(
                    self._http,
                    self._backend,
                    method,
                    self.url + path,
                    end=end,
                    timeout=max(0.05, min(self.timeout, end - time.monotonic())),
                    limit=MAX_ANSWER,
                    what=f"registry {self.url}",
                    content=payload,
                    headers=headers,
                    params=params,
                )
            except httpx.TransportError as exc:
                raise Retry(f"{type(exc).__name__}: {first_line(exc)}") from None
            except httpx.HTTPError as exc:  # an answer httpx cannot decode, for one: not worth a retry
                raise BackmarkError(f"registry {self.url}: {first_line(exc)}") from None

        def announce(attempt: int, problem: str, wait: float, left: float) -> None:
            if self.on_retry is not None:
                self.on_retry(f"registry {self.url}: {problem}; retrying in {wait:.1f} s")

        try:
            answer = with_retries(
                send,
                _RETRY,
                left=lambda: end - time.monotonic(),
                describe=lambda a: f"{a.status_code}: {_reason(a.content, a.status_code, a.reason_phrase)}",
                on_retry=announce,
            )
        except GaveUp as stop:  # the deadline: the policy bounds neither attempts nor waits
            last = f"; last: {stop.failure}" if stop.failure is not None and stop.why != "no time" else ""
            raise BackmarkError(
                f"registry {self.url} did not answer {method} {path} within the {self.deadline:g} s "
                f"deadline of the call ({{deadline}}{last})",
                params=["deadline"],
            ) from None
        status = answer.status_code
        try:
            data = parse_json(answer.content, what=f"the answer to {method} {path}")
        except SchemaError as exc:
            raise BackmarkError(f"registry {self.url} answered {status}, but {exc}") from None
        return status, data, tries > 1

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        status, data, _ = self.request("GET", path, params=params)
        if status != 200:
            raise BackmarkError(f"registry {self.url} refused GET {path}: {_said(status, data)}")
        return data

    def server_identity(self) -> PublicIdentity:
        """The registry's public identity (fetched once)."""
        if self._server is None:
            with self.call():
                doc = self._get("/v1/identity")
            self._server = PublicIdentity.from_json(doc, what=f"registry {self.url}")
        return self._server

    def register(
        self,
        identity: Identity,
        *,
        vk_digest: str,
        model_digest: str | None = None,
        siblings_digest: str | None = None,
    ) -> dict[str, Any]:
        """Register ``vk_digest`` (and ``model_digest``, ``siblings_digest``) as ``identity``; the checked
        receipt."""
        with self.call():
            return self._register(
                identity, vk_digest=vk_digest, model_digest=model_digest, siblings_digest=siblings_digest
            )

    def _register(
        self, identity: Identity, *, vk_digest: str, model_digest: str | None, siblings_digest: str | None
    ) -> dict[str, Any]:
        server = self.server_identity()
        submission = make_submission(
            identity,
            registry=server.fingerprint,
            vk_digest=vk_digest,
            model_digest=model_digest,
            siblings_digest=siblings_digest,
        )
        status, data, retried = self.request("POST", "/v1/entries", body=submission)
        if status == 201 and isinstance(data, dict):
            receipt = check_receipt(data.get("receipt"), server)
        elif status == 409 and retried and isinstance(data, dict) and data.get("code") == "replay":
            entry = Entry.from_json(data.get("entry"))  # our earlier try was recorded; its answer was lost
            if entry.submission != submission:
                raise BackmarkError(f"registry {self.url} answered a replay of another submission")
            receipt = check_receipt(entry.receipt(server), server)
        else:
            raise BackmarkError(f"registry {self.url} refused the registration: {_said(status, data)}")
        if (
            receipt.get("vk_digest") != vk_digest
            or receipt.get("owner") != identity.public.fingerprint
            or receipt.get("model_digest") != model_digest
            or receipt.get("siblings_digest") != siblings_digest
        ):
            raise BackmarkError(f"registry {self.url} answered a receipt for another key, owner or digest")
        return receipt

    def confirm(self, receipt: Any, *, what: str = "the receipt") -> dict[str, Any]:
        """``receipt`` if this registry signed it and its entry is still in the log, unchanged.

        Otherwise a one-line BackmarkError that names ``what``: not a receipt, not signed by this
        registry's identity, or an entry that the log no longer holds as receipted (cut or rewritten).
        """
        with self.call():
            server = self.server_identity()
            try:
                RECEIPT_SCHEMA.check(receipt, "receipt")
                check_receipt(receipt, server)
            except BackmarkError as exc:
                raise BackmarkError(f"{what} is not a receipt of registry {self.url}: {exc}") from None
            seq = int(receipt["entry"])
            status, data, _ = self.request("GET", f"/v1/entries/{seq}")
            if status == 404:
                raise BackmarkError(f"{what}: registry {self.url} no longer holds its entry {seq}")
            if status != 200:
                raise BackmarkError(
                    f"registry {self.url} refused GET /v1/entries/{seq}: {_said(status, data)}"
                )
            entry = Entry.from_json(data)
            if entry.seq != seq or entry.receipt(server) != receipt:
                raise BackmarkError(
                    f"{what}: entry {seq} of registry {self.url} is not the entry it receipts (the log was "
                    "rewritten)"
                )
        return dict(receipt)

    def lookup(
        self,
        *,
        vk_digest: str | None = None,
        model_digest: str | None = None,
        siblings_digest: str | None = None,
        owner: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every entry matching the filters, in order; each entry's receipt is checked."""
        params = {
            "vk_digest": vk_digest,
            "model_digest": model_digest,
            "siblings_digest": siblings_digest,
            "owner": owner,
        }
        return self.entries({k: v for k, v in params.items() if v is not None})

    def entries(self, params: dict[str, Any] | None = None, *, check: bool = True) -> list[dict[str, Any]]:
        """All entries (matching ``params``), following the pages; receipts checked unless ``check`` is
        False (an audit checks them itself, and names the first bad one).

        Every page must advance: its entries numbered above the last page's, and ``next_after`` (when
        there is more) the number of its last entry. At most ``MAX_PAGES`` pages, all within the call's
        deadline.
        """
        with self.call():
            server = self.server_identity()
            found: list[dict[str, Any]] = []
            after = 0
            for _ in range(MAX_PAGES):
                data = self._get("/v1/entries", {**(params or {}), "after": after})
                page = data.get("entries") if isinstance(data, dict) else None
                nxt = data.get("next_after") if isinstance(data, dict) else None
                if not isinstance(page, list) or not (nxt is None or type(nxt) is int):
                    raise BackmarkError(f"registry {self.url} answered a malformed listing page")
                last = after
                for doc in page:
                    entry = Entry.from_json(doc)
                    if entry.seq <= last:
                        raise BackmarkError(
                            f"registry {self.url} listed entry {entry.seq} after entry {last}: out of order"
                        )
                    last = entry.seq
                    if check:
                        check_receipt(entry.receipt(server), server)
                    found.append(doc)
                if nxt is None:
                    return found
                if not page or nxt != last:
                    raise BackmarkError(
                        f"registry {self.url} says there is more after entry {nxt}, but its page ended "
                        f"at entry {last}"
                    )
                after = nxt
            raise BackmarkError(f"registry {self.url} listed more than {MAX_PAGES} pages; stopped")

    def head(self) -> tuple[int, str]:
        data = self._get("/v1/head")
        try:
            HEAD_SCHEMA.check(data, "head")
        except SchemaError as exc:
            raise BackmarkError(f"registry {self.url} answered a malformed head ({exc})") from None
        return int(data["entry"]), str(data["entry_hash"])


def _reason(content: bytes, status: int, phrase: str) -> str:
    try:
        data = parse_json(content[:65536])
    except SchemaError:
        return first_line(content[:200].decode("utf-8", "replace")) or phrase
    return _said(status, data)


def _said(status: int, data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"{status} {first_line(data['error'])[:300]}"
    return str(status)


def resolve_vk_digest(vk: str | Path | HasDigest) -> str:
    """The digest of a verification key given as a file, a folder, a digest, or an object with ``.digest``."""
    if isinstance(vk, str) and is_hex_digest(vk) and not Path(vk).exists():
        return vk
    if isinstance(vk, str | Path):
        return read_vk_digest(vk)
    return str(vk.digest)


def register(
    url: str,
    identity: Identity,
    vk: str | Path | HasDigest,
    *,
    model_digest: str | None = None,
    siblings_digest: str | None = None,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
    on_retry: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Register the verification key ``vk`` (file, folder, digest, or VerificationKey) at ``url``, with
    a model's digest and a sibling record's (``SiblingRecord.digest``) if given.

    Returns the receipt, its server signature checked (see the module docstring for retries).
    """
    digest = resolve_vk_digest(vk)
    with RegistryClient(url, timeout=timeout, deadline=deadline, on_retry=on_retry) as client:
        return client.register(
            identity, vk_digest=digest, model_digest=model_digest, siblings_digest=siblings_digest
        )


def lookup(
    url: str,
    *,
    vk_digest: str | None = None,
    model_digest: str | None = None,
    siblings_digest: str | None = None,
    owner: str | None = None,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
) -> list[dict[str, Any]]:
    """Every registration of ``vk_digest`` (or for ``model_digest``, or of ``siblings_digest``, or by
    ``owner``), in order."""
    if vk_digest is None and model_digest is None and siblings_digest is None and owner is None:
        raise BackmarkError(
            "look up a {vk_digest}, a {model_digest}, a {siblings_digest} or an {owner}",
            params=["vk_digest", "model_digest", "siblings_digest", "owner"],
        )
    with RegistryClient(url, timeout=timeout, deadline=deadline) as client:
        return client.lookup(
            vk_digest=vk_digest, model_digest=model_digest, siblings_digest=siblings_digest, owner=owner
        )


def server_identity(url: str, *, timeout: float = TIMEOUT, deadline: float = DEADLINE) -> PublicIdentity:
    """The public identity of the registry at ``url``."""
    with RegistryClient(url, timeout=timeout, deadline=deadline) as client:
        return client.server_identity()
