"""Talk to a registry: register a verification key, look entries up, fetch the whole log. No torch.

Every call has a ``deadline`` (seconds, for the whole call, retries included) and each request a
``timeout``. Retried until the deadline: a connection refused or dropped, a request past its timeout,
502, 503 and 504 (a registry restarting, or its database briefly away). Not retried: any other
refusal, which is final (the registry's one-line reason becomes the BackmarkError).

:func:`register` is exactly-once across retries: it signs one submission and sends that same document
on every try. If a try was recorded but its answer lost, the next try is refused as a replay (409) with
the recorded entry in the body; that entry is checked to be this submission and its receipt returned.
Every receipt is checked against the server's identity before it is returned.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from backmark import __version__
from backmark.errors import BackmarkError, first_line
from backmark.identity import Identity, PublicIdentity, is_hex_digest
from backmark.registry.chain import Entry, check_receipt, make_submission

TIMEOUT = 10.0  # seconds per request
DEADLINE = 60.0  # seconds per call, retries included
_RETRY_STATUS = (502, 503, 504)
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
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BackmarkError(f"verification key {path} not found") from None
    except (ValueError, UnicodeDecodeError):
        raise BackmarkError(f"verification key {path} is not valid JSON") from None
    except OSError as exc:
        raise BackmarkError(f"cannot read verification key {path}: {exc.strerror or exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != VK_FORMAT:
        raise BackmarkError(f"{path} is not a backmark verification key")
    body = {k: v for k, v in doc.items() if k != "digest"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
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
        if timeout <= 0 or deadline <= 0:
            raise BackmarkError("{timeout} and {deadline} must be positive", params=["timeout", "deadline"])
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.deadline = deadline
        self.on_retry = on_retry
        self._http = httpx.Client(headers={"User-Agent": f"backmark/{__version__}"}, follow_redirects=False)
        self._server: PublicIdentity | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[int, Any, bool]:
        """(status, JSON answer, retried) of the first final answer; retries within the deadline."""
        end = time.monotonic() + self.deadline
        pause, retried = 0.1, False
        while True:
            left = end - time.monotonic()
            problem: str
            try:
                answer = self._http.request(
                    method,
                    self.url + path,
                    json=body,
                    params=params,
                    timeout=max(0.05, min(self.timeout, left)),
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {first_line(exc)}"
            else:
                if answer.status_code not in _RETRY_STATUS:
                    try:
                        data = answer.json()
                    except ValueError:
                        raise BackmarkError(
                            f"registry {self.url} answered {answer.status_code} without JSON"
                        ) from None
                    return answer.status_code, data, retried
                problem = f"{answer.status_code}: {_reason(answer)}"
            left = end - time.monotonic()
            if left <= pause:
                raise BackmarkError(
                    f"registry {self.url} did not answer {method} {path} within {self.deadline:g} s "
                    f"(last: {problem})"
                )
            if self.on_retry is not None:
                self.on_retry(f"registry {self.url}: {problem}; retrying in {pause:.1f} s")
            time.sleep(pause)
            pause, retried = min(pause * 2, 2.0), True

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        status, data, _ = self.request("GET", path, params=params)
        if status != 200:
            raise BackmarkError(f"registry {self.url} refused GET {path}: {_said(status, data)}")
        return data

    def server_identity(self) -> PublicIdentity:
        """The registry's public identity (fetched once)."""
        if self._server is None:
            self._server = PublicIdentity.from_json(self._get("/v1/identity"), what=f"registry {self.url}")
        return self._server

    def register(
        self, identity: Identity, *, vk_digest: str, model_digest: str | None = None
    ) -> dict[str, Any]:
        """Register ``vk_digest`` (and ``model_digest``) as ``identity``; the checked receipt."""
        server = self.server_identity()
        submission = make_submission(
            identity, registry=server.fingerprint, vk_digest=vk_digest, model_digest=model_digest
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
        if receipt.get("vk_digest") != vk_digest or receipt.get("owner") != identity.public.fingerprint:
            raise BackmarkError(f"registry {self.url} answered a receipt for another key or owner")
        return receipt

    def lookup(
        self,
        *,
        vk_digest: str | None = None,
        model_digest: str | None = None,
        owner: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every entry matching the filters, in order; each entry's receipt is checked."""
        params = {"vk_digest": vk_digest, "model_digest": model_digest, "owner": owner}
        return self.entries({k: v for k, v in params.items() if v is not None})

    def entries(self, params: dict[str, Any] | None = None, *, check: bool = True) -> list[dict[str, Any]]:
        """All entries (matching ``params``), following the pages; receipts checked unless ``check`` is
        False (an audit checks them itself, and names the first bad one)."""
        server = self.server_identity()
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            data = self._get("/v1/entries", {**(params or {}), "after": after})
            page = data.get("entries") if isinstance(data, dict) else None
            if not isinstance(page, list):
                raise BackmarkError(f"registry {self.url} answered a listing without entries")
            for doc in page:
                if check:
                    check_receipt(Entry.from_json(doc).receipt(server), server)
                found.append(doc)
            nxt = data.get("next_after")
            if not isinstance(nxt, int) or nxt <= after:
                return found
            after = nxt

    def head(self) -> tuple[int, str]:
        data = self._get("/v1/head")
        try:
            return int(data["entry"]), str(data["entry_hash"])
        except (KeyError, TypeError, ValueError):
            raise BackmarkError(f"registry {self.url} answered a malformed head") from None


def _reason(answer: httpx.Response) -> str:
    try:
        data = answer.json()
    except ValueError:
        return first_line(answer.text) or answer.reason_phrase
    return _said(answer.status_code, data)


def _said(status: int, data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"{status} {first_line(data['error'])}"
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
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
    on_retry: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Register the verification key ``vk`` (file, folder, digest, or VerificationKey) at ``url``.

    Returns the receipt, its server signature checked (see the module docstring for retries).
    """
    digest = resolve_vk_digest(vk)
    with RegistryClient(url, timeout=timeout, deadline=deadline, on_retry=on_retry) as client:
        return client.register(identity, vk_digest=digest, model_digest=model_digest)


def lookup(
    url: str,
    *,
    vk_digest: str | None = None,
    model_digest: str | None = None,
    owner: str | None = None,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
) -> list[dict[str, Any]]:
    """Every registration of ``vk_digest`` (or for ``model_digest``, or by ``owner``), in order."""
    if vk_digest is None and model_digest is None and owner is None:
        raise BackmarkError(
            "look up a {vk_digest}, a {model_digest} or an {owner}",
            params=["vk_digest", "model_digest", "owner"],
        )
    with RegistryClient(url, timeout=timeout, deadline=deadline) as client:
        return client.lookup(vk_digest=vk_digest, model_digest=model_digest, owner=owner)


def server_identity(url: str, *, timeout: float = TIMEOUT, deadline: float = DEADLINE) -> PublicIdentity:
    """The public identity of the registry at ``url``."""
    with RegistryClient(url, timeout=timeout, deadline=deadline) as client:
        return client.server_identity()
