"""``backmark verify`` against servers whose answers are hostile: exit 2 and one line, never 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backmark.cli.main import main
from backmark.infra.asgi import start_server
from backmark.keys import generate_key, save_key_pair

DEEP = b"[" * 100_000 + b"]" * 100_000
META = (
    b'{"name": "m", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],'
    b' "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]}'
)


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "key"
    save_key_pair(generate_key(num_classes=10, input_shape=(1, 28, 28), size=10, seed=b"\x01" * 32), path)
    return path


def _server(meta: bytes, infer: bytes, ready_body: bytes = b'{"ready": true}') -> Starlette:
    async def model(request: Request) -> Response:
        return Response(meta, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(ready_body, media_type="application/json")

    async def run(request: Request) -> Response:
        return Response(infer, media_type="application/json")

    return Starlette(
        routes=[
            Route("/v2/models/m", model),
            Route("/v2/models/m/ready", ready),
            Route("/v2/models/m/infer", run, methods=["POST"]),
        ]
    )


@pytest.fixture
def hostile() -> Iterator[list[str]]:
    urls: list[str] = []
    servers = []
    for meta, infer, ready in [
        (DEEP, b"{}", b'{"ready": true}'),
        (META, DEEP, b'{"ready": true}'),
        (
            META,
            b'{"outputs": [{"name": "label", "datatype": "INT64", "shape": [10], "data": [NaN]}]}',
            b'{"ready": true}',
        ),
        (META, DEEP, DEEP),  # the readiness answer too deep to parse: taken as ready, as any non-JSON
    ]:
        server = start_server(_server(meta, infer, ready))
        servers.append(server)
        urls.append(f"{server.url}/v2/models/m")
    yield urls
    for server in servers:
        server.stop()


def test_hostile_answers_exit_2_with_one_line(
    key_dir: Path, hostile: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for url in hostile:
        argv = ["verify", "--key", str(key_dir), "--target", url, "--protocol", "v2", "--deadline", "20"]
        code = main([*argv, "--attempts", "1", "-q"])
        err = capsys.readouterr().err
        assert code == 2, (url, err)
        assert err.startswith("backmark: error:") and err.count("\n") == 1, err
