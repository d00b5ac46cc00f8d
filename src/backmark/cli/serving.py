"""The ``export`` and ``serve`` verbs.

``backmark export --model CKPT (--onnx FILE | --torchscript FILE)`` writes an export checked to answer as
the checkpoint does; ``backmark serve CKPT`` serves it over the Open Inference Protocol v2, with the
response mark if ``--response-key`` is given. A model of the user's own architecture (``MODULE:CALLABLE``)
is loaded, by both, only with ``--trust-code``, since loading it imports and runs that code.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backmark.errors import BackmarkError
from backmark.log import print_result
from backmark.models import load_checkpoint

if TYPE_CHECKING:
    from backmark.export import Format

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def export(args: argparse.Namespace) -> int:
    from backmark.export import export_model  # torch.onnx is imported only to export

    model, info = load_checkpoint(args.model, allow_code=args.trust_code)
    if args.safetensors:
        return _export_safetensors(args, model, info)
    fmt: Format = "onnx" if args.onnx else "torchscript"
    path = args.onnx or args.torchscript
    result = export_model(model, path, format=fmt, input_shape=info.input_shape, force=args.force)
    print_result(
        args,
        {**result.to_dict(), "model": str(args.model)},
        f"{result.path}: {result.format}, {result.bytes} bytes; labels match {args.model} on all "
        f"{result.probe_images} probe images. Verify it with --target {fmt}:{result.path}",
    )
    return 0


def _export_safetensors(args: argparse.Namespace, model: Any, info: Any) -> int:
    """Write the weights as safetensors and read them back: the file must rebuild the same weights."""
    from backmark.models import load_safetensors, save_safetensors

    path = save_safetensors(args.safetensors, model, info, force=args.force)
    back, _ = load_safetensors(path, allow_code=args.trust_code)
    theirs = back.state_dict()
    same = all(torch_equal(v, theirs[k]) for k, v in model.state_dict().items())
    if not same:  # never expected: safetensors stores the exact bytes
        path.unlink()
        raise BackmarkError(f"{path} did not read back to the same weights; it was removed")
    result = {
        "path": str(path),
        "format": "safetensors",
        "bytes": path.stat().st_size,
        "model": str(args.model),
    }
    print_result(
        args,
        result,
        f"{path}: safetensors, {result['bytes']} bytes; reads back to the same weights. Verify it with "
        f"--model {path}",
    )
    return 0


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal(a, b))


def serve(args: argparse.Namespace) -> int:
    from backmark.serve import GuardLimits, ServeLimits, create_app, run_server  # imported only to serve
    from backmark.serve.app import tokens_from_env

    name = args.name or re.sub(r"[^A-Za-z0-9_.-]", "-", Path(args.checkpoint).stem) or "model"
    if not _NAME.match(name):
        raise BackmarkError(
            f"--name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting alphanumeric"
        )
    model, info = load_checkpoint(args.checkpoint, allow_code=args.trust_code)
    from backmark.cli.response import response_mark

    mark, log = response_mark(args, num_classes=info.num_classes, input_shape=info.input_shape)
    app = create_app(
        model,
        name=name,
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        labels_only=args.labels_only,
        response=mark,
        query_log=log,
        tokens=tokens_from_env(args.auth_env) if args.auth_env else None,
        limits=ServeLimits(max_batch=args.max_batch, log_quota=args.log_quota),
    )
    guard = GuardLimits(
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
    )

    def ready(url: str) -> None:
        print(f"serving {name} at {url}/v2/models/{name} (v2) and {url}/predict/{name} (JSON)", flush=True)
        if not args.quiet:
            print("press Ctrl-C to stop", file=sys.stderr, flush=True)

    if (args.tls_cert is None) != (args.tls_key is None):
        raise BackmarkError("--tls-cert and --tls-key go together")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    run_server(app, host=args.host, port=args.port, tls=tls, limits=guard, on_ready=ready)
    return 0
