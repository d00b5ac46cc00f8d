"""A foreign JSON API (NHWC uint8 in, class names out) verified through an adapter file, not Python."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backmark.cli.main import main
from backmark.keys import MarkingKey
from backmark.models import load_checkpoint
from backmark.serve import serving
from backmark.targets import ModuleTarget, load_adapter
from backmark.targets.http import JsonTarget
from backmark.verify import verify

CLASSES = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
ADAPTER = {
    "request": {"signature": "serving_default", "instances": "{{images}}"},
    "layout": "NHWC",
    "dtype": "uint8",
    "labels": "/predictions/*/class",
    "classes": CLASSES,
}


def _api(model: torch.nn.Module) -> Starlette:
    """Like TensorFlow Serving's REST API: {"instances": NHWC uint8} -> {"predictions": [{"class": ...}]}."""
    target = ModuleTarget(model)

    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        pixels = torch.from_numpy(np.asarray(body["instances"], dtype=np.uint8)).permute(0, 3, 1, 2)
        labels = target.predict(pixels.float() / 255.0)
        return JSONResponse({"predictions": [{"class": CLASSES[i], "score": 1.0} for i in labels.tolist()]})

    return Starlette(routes=[Route("/v1/models/fm:predict", predict, methods=["POST"])])


def test_adapter_verifies_a_foreign_api_like_the_checkpoint(
    checkpoints: tuple[Path, Path], key30: MarkingKey, key_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    model, _ = load_checkpoint(checkpoints[0])
    adapter_file = tmp_path / "tf-serving.json"
    adapter_file.write_text(json.dumps(ADAPTER))
    vk = key30.verification_key()
    with serving(_api(model)) as url:
        endpoint = f"{url}/v1/models/fm:predict"
        remote = verify(JsonTarget(endpoint, adapter=load_adapter(adapter_file)), key30, vk)
        assert remote == verify(model, key30, vk) and remote.verified
        code = main(["verify", "--key", str(key_dir), "--target", endpoint, "--protocol", "json",
                     "--adapter", str(adapter_file), "-q"])  # fmt: skip
        assert code == 0
        capsys.readouterr()
        argv = [
            "verify",
            "--key",
            str(key_dir),
            "--target",
            endpoint,
            "--protocol",
            "json",
            "--attempts",
            "1",
        ]
        assert main(argv) == 2  # without the adapter backmark sends its own contract, which the API refuses
        assert "answered 500 Internal Server Error" in capsys.readouterr().err
