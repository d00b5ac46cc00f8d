"""The ``export`` and ``serve`` verbs, and what ``verify`` needs to query any target.

``backmark export --model CKPT (--onnx FILE | --torchscript FILE)`` writes an export checked to answer as
the checkpoint does; ``backmark serve CKPT`` serves it over the Open Inference Protocol v2;
``backmark verify --target TARGET`` (beside ``--model CKPT``) verifies an export or a remote server.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from backmark.constants import REMOTE_BATCH
from backmark.errors import BackmarkError
from backmark.log import console
from backmark.models import load_checkpoint
from backmark.targets import ClientConfig, OpenedTarget, TargetSpec, open_for_verify

if TYPE_CHECKING:
    from backmark.export import Format

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The remote client's settings from ``args`` (checked when built); retries go to stderr unless -q."""
    return ClientConfig(
        timeout=args.timeout,
        attempts=args.attempts,
        backoff=args.backoff,
        max_wait=args.max_wait,
        batch_size=args.batch_size or REMOTE_BATCH,
        rate=args.rate,
        auth_env=args.auth_env,
        auth_header=args.auth_header,
        verify_tls=not args.insecure,
        ca_bundle=args.ca_bundle,
        deadline=args.deadline,
        on_retry=console(quiet=args.quiet),
    )


class KeyShape(Protocol):
    """What opening a suspect needs to know of a key: its input shape and class count."""

    @property
    def input_shape(self) -> tuple[int, int, int]: ...

    @property
    def num_classes(self) -> int: ...


class Shape(NamedTuple):
    """A :class:`KeyShape` given directly (e.g. a query log's)."""

    input_shape: tuple[int, int, int]
    num_classes: int


def open_suspect(
    args: argparse.Namespace, mk: KeyShape, client: ClientConfig, *, any_classes: bool = False
) -> OpenedTarget:
    """``--model CKPT`` or ``--target TARGET``, hidden among ``--decoys`` if asked: the library's
    :func:`~backmark.targets.open_for_verify` with the command line's arguments. ``any_classes``: a
    suspect of another class count than the key's is accepted (the label-free test)."""
    if args.model is not None and (args.protocol or args.adapter or args.output_name):
        raise BackmarkError("--protocol, --adapter and --output-name apply to --target, not to --model")
    return open_for_verify(
        TargetSpec("ckpt", args.model) if args.model is not None else args.target,
        protocol=args.protocol,
        input_shape=mk.input_shape,
        num_classes=None if any_classes else mk.num_classes,
        client=client,
        adapter=args.adapter,
        output=args.output_name,
        batch_size=args.batch_size,
        decoys=args.decoys,
        decoy_data=args.decoy_data,
        device=getattr(args, "device", None),
        allow_code=getattr(args, "trust_code", False),
    )


def describe_queries(opened: OpenedTarget) -> str | None:
    """One line on the decoys for the text report, or None without decoys."""
    log = opened.queries
    if log is None:
        return None
    acc = "" if log.decoy_accuracy is None else f"; decoys answered correctly: {log.decoy_accuracy:.1%}"
    return f"  queries:       {log.images} triggers hidden among {log.decoys} decoys, in random order{acc}"


def export(args: argparse.Namespace) -> int:
    from backmark.export import export_model  # torch.onnx is imported only to export

    model, info = load_checkpoint(args.model, allow_code=args.trust_code)
    if args.safetensors:
        return _export_safetensors(args, model, info)
    fmt: Format = "onnx" if args.onnx else "torchscript"
    path = args.onnx or args.torchscript
    result = export_model(model, path, format=fmt, input_shape=info.input_shape, force=args.force)
    if args.json:
        print(json.dumps({**result.to_dict(), "model": str(args.model)}, indent=2))
    elif not args.quiet:
        print(
            f"{result.path}: {result.format}, {result.bytes} bytes; labels match {args.model} on all "
            f"{result.probe_images} probe images. Verify it with --target {fmt}:{result.path}"
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
    if args.json:
        print(json.dumps(result, indent=2))
    elif not args.quiet:
        print(f"{path}: safetensors, {result['bytes']} bytes; reads back to the same weights. Verify it with "
              f"--model {path}")  # fmt: skip
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
    model, info = load_checkpoint(args.checkpoint)
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


__all__ = [
    "client_config",
    "describe_queries",
    "open_suspect",
]
