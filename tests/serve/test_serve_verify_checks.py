"""A verification that is going to fail reveals no trigger: checked against a server that records requests.

Every bad argument, a mismatched key pair, a missing key folder and a server whose metadata does not fit
the key must end ``backmark verify`` with exit status 2 and a one-line error before a single image is
posted. A server that accepts and never answers is given up on at ``--deadline``, with progress lines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from backmark.cli.main import main
from backmark.keys import VK_NAME, generate_key, save_key_pair
from backmark.serve import create_app, start_server

SHAPE = (1, 28, 28)


@dataclass
class Recording:
    """An ASGI app wrapped so that every HTTP request (method, path, body) is recorded before it is served."""

    app: Any
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.seen.append((scope["method"], scope["path"], body))
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def posts(self) -> list[tuple[str, str, bytes]]:
        return [r for r in self.seen if r[0] != "GET" or r[2]]


@dataclass
class Server:
    url: str  # the model's v2 URL
    recording: Recording


def _linear(shape: tuple[int, int, int], classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], classes))


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    """Recording v2 servers: ``fits`` the key (10 classes, 1x28x28), or ``shape`` 3x32x32, ``classes`` 100."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # light: the servers share two cores with the test itself
    specs = {"fits": (SHAPE, 10), "shape": ((3, 32, 32), 10), "classes": (SHAPE, 100)}
    running, out = [], {}
    try:
        for name, (shape, classes) in specs.items():
            recording = Recording(
                create_app(_linear(shape, classes), name="m", input_shape=shape, num_classes=classes)
            )
            running.append(start_server(recording))
            out[name] = Server(f"{running[-1].url}/v2/models/m", recording)
        yield out
    finally:
        for server in running:
            server.stop()
        torch.set_num_threads(threads)


def _verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_good_run_posts_the_triggers(
    servers: dict[str, Server], key_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: the recorder does see images when nothing is wrong, so the tests below can fail."""
    server = servers["fits"]
    server.recording.seen.clear()
    code, out, _ = _verify(capsys, "--key", str(key_dir), "--target", server.url, "--protocol", "v2")
    assert code in (0, 1) and "commitments:   all 30" in out
    assert [(m, p) for m, p, _ in server.recording.seen] == [
        ("GET", "/v2/models/m"),
        ("GET", "/v2/models/m/ready"),
        ("POST", "/v2/models/m/infer"),
    ]
    assert len(server.recording.posts()[0][2]) > 30 * 784  # every trigger pixel went out


@pytest.fixture(scope="module")
def other_vk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    other = generate_key(num_classes=10, input_shape=SHAPE, size=30, seed=b"\x06" * 32)
    folder = tmp_path_factory.mktemp("other-key") / "key"
    save_key_pair(other, folder)
    return folder / VK_NAME


# (extra arguments, words the one-line error must hold, whether the server may have been asked anything)
BAD: list[tuple[list[str], str, bool]] = [
    (["--alpha", "2"], "alpha must lie strictly between 0 and 1, got 2.0", False),
    (["--alpha", "nan"], "alpha must lie strictly between 0 and 1, got nan", False),
    (["--alpha", "1e-40"], "at alpha 1e-40 (each of 2 pieces of evidence at alpha/2) no model can be", False),
    (["--eps", "5"], "eps must lie in [0, 1), got 5.0", False),
    (["--eps", "nan"], "eps must lie in [0, 1), got nan", False),
    (["--decoys", "-3"], "--decoys must not be negative, got -3", False),
    (["--decoy-data", "fashion-mnist"], "--decoy-data applies with --decoys N", False),
    (["--decoys", "5", "--decoy-data", "nosuch"], "unknown dataset", False),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0", False),
    (["--timeout", "0"], "--timeout must be a positive number", False),
    (["--attempts", "0"], "--attempts must be at least 1", False),
    (["--deadline", "0"], "--deadline must be a positive number of seconds, got 0.0", False),
    (["--deadline", "nan"], "--deadline must be a positive number of seconds, got nan", False),
    (["--rate", "0"], "--rate must be a positive number", False),
    (["--backoff", "-1"], "--backoff and --max-wait must be seconds", False),
    (["--auth-env", "BM_UNSET_FOR_TEST"], "BM_UNSET_FOR_TEST (named by --auth-env) is not set", False),
    (["--adapter", "a.json"], "--adapter applies to --protocol json targets only", False),
    (["--output-name", "scores"], "has no output 'scores'; its outputs: logits, label", True),
]


@pytest.mark.parametrize(("extra", "needle", "may_ask"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_arguments_send_no_image(
    extra: list[str],
    needle: str,
    may_ask: bool,
    servers: dict[str, Server],
    key_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BM_UNSET_FOR_TEST", raising=False)
    server = servers["fits"]
    server.recording.seen.clear()
    target = ["--target", server.url, "--protocol", "v2"]
    code, out, err = _verify(capsys, "--key", str(key_dir), *target, *extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("backmark: error: ") and needle in err, err
    assert server.recording.posts() == []  # not one image
    if not may_ask:
        assert server.recording.seen == []  # not even a connection: the arguments were wrong


def test_a_mismatched_key_pair_or_a_missing_key_sends_nothing(
    servers: dict[str, Server],
    key_dir: Path,
    other_vk: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = servers["fits"]
    server.recording.seen.clear()
    target = ["--target", server.url, "--protocol", "v2"]
    code, _, err = _verify(capsys, "--key", str(key_dir), "--vk", str(other_vk), *target)
    assert code == 2 and "commitment to trigger image 0 does not open" in err
    missing = tmp_path / "no-such-key"
    code, _, err = _verify(capsys, "--key", str(missing), *target)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"key {missing} not found" in err and "marking-key.bmk" in err and "verification-key.json" in err
    assert server.recording.seen == []


@pytest.mark.parametrize(
    ("server_name", "needle"),
    [
        ("shape", "takes input shape [-1, 3, 32, 32], which fits none of"),
        ("classes", "declares output 'logits' with 100 class scores per image but the key has 10 classes"),
    ],
)
def test_a_server_that_does_not_fit_the_key_gets_no_image(
    server_name: str,
    needle: str,
    servers: dict[str, Server],
    key_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = servers[server_name]
    server.recording.seen.clear()
    # the labels test needs the key's class count; the default decision (either) takes any (a new head)
    test = ["--test", "labels"] if server_name == "classes" else []
    code, _, err = _verify(capsys, "--key", str(key_dir), "--target", server.url, "--protocol", "v2", *test)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert server.recording.seen and server.recording.posts() == []  # metadata read, nothing posted


def test_decoys_are_checked_before_the_server_is_asked(
    servers: dict[str, Server], key_dir: Path, capsys: pytest.CaptureFixture[str], fashion: object
) -> None:
    server = servers["fits"]
    server.recording.seen.clear()
    code, _, err = _verify(
        capsys, "--key", str(key_dir), "--target", server.url, "--protocol", "v2", "--decoys", "100000"
    )
    assert code == 2 and "asked for 100000 decoys but the decoy data has only 10000 images" in err
    assert server.recording.seen == []


def test_a_silent_server_is_given_up_on_at_the_deadline_with_progress(
    silent_url: str, key_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{silent_url}/v2/models/m"
    argv = ["--key", str(key_dir), "--target", url, "--protocol", "v2", "--deadline", "1.5"]
    start = time.monotonic()
    code, out, err = _verify(capsys, *argv, "--timeout", "0.4", "--backoff", "0.1")
    seconds = time.monotonic() - start
    assert code == 2 and out == "" and seconds < 1.5 + 1.5, seconds
    *progress, last = err.strip().splitlines()
    assert last.startswith(f"backmark: error: v2 server {url} did not answer")
    assert last.endswith("the 1.5 s deadline of the whole verification has passed (--deadline)")
    assert progress and all(line.startswith(f"v2 server {url}: attempt ") for line in progress), progress
    assert "failed (did not answer within the 0.4 s timeout); retrying in 0.1 s, 1 s left" in progress[0]
    code, _, err = _verify(capsys, *argv, "--timeout", "0.4", "--backoff", "0.1", "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1  # -q: the error only
