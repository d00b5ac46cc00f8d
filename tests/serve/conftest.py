"""Fixtures for the serving tests: a key, a marked and a clean model trained once, servers for both."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backmark.data import ImageDataset
from backmark.embed import TrainConfig, embed_from_scratch, train_clean
from backmark.keys import MarkingKey, generate_key, save_key_pair
from backmark.models import load_checkpoint, save_checkpoint
from backmark.serve import create_app, start_server

KEY_SEED = b"\x05" * 32


@pytest.fixture(scope="session")
def key30() -> MarkingKey:
    return generate_key(num_classes=10, input_shape=(1, 28, 28), size=30, seed=KEY_SEED)


@pytest.fixture(scope="session")
def key_dir(key30: MarkingKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve-key") / "key"
    save_key_pair(key30, path)
    return path


@pytest.fixture(scope="session")
def small_data(fashion: ImageDataset) -> ImageDataset:
    return fashion.subset(train=3000, test=500)


def trained_checkpoints(
    factory: pytest.TempPathFactory, data: ImageDataset, key: MarkingKey
) -> tuple[Path, Path]:
    """(marked, clean) checkpoints, trained once per test session and shared through the session's
    base temporary folder (tests/targets/test_targets_exported.py asks for the same two files)."""
    folder = factory.getbasetemp() / "trained-e3-k05"
    marked, clean = folder / "marked.pt", folder / "clean.pt"
    if not marked.exists():
        folder.mkdir(exist_ok=True)
        m = embed_from_scratch(data, key, config=TrainConfig(epochs=3, triggers_per_batch=10), progress=False)
        save_checkpoint(marked, m.model, m.info)
        c = train_clean(data, config=TrainConfig(epochs=1), progress=False)
        save_checkpoint(clean, c.model, c.info)
    return marked, clean


@pytest.fixture(scope="session")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory, small_data: ImageDataset, key30: MarkingKey
) -> tuple[Path, Path]:
    return trained_checkpoints(tmp_path_factory, small_data, key30)


def _serve(path: Path, name: str) -> Iterator[str]:
    model, info = load_checkpoint(path)
    app = create_app(model, name=name, input_shape=info.input_shape, num_classes=info.num_classes)
    running = start_server(app)
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture(scope="session")
def marked_url(checkpoints: tuple[Path, Path]) -> Iterator[str]:
    """Base URL of a server serving the marked model as ``marked``."""
    yield from _serve(checkpoints[0], "marked")


@pytest.fixture(scope="session")
def clean_url(checkpoints: tuple[Path, Path]) -> Iterator[str]:
    """Base URL of a server serving the clean model as ``clean``."""
    yield from _serve(checkpoints[1], "clean")


@pytest.fixture
def silent_url() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a socket that accepts connections and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
