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
from typing import TYPE_CHECKING, Any

from backmark.errors import BackmarkError
from backmark.keys import MarkingKey
from backmark.models import load_checkpoint
from backmark.targets import ClientConfig, OpenedTarget, TargetSpec, open_for_verify
from backmark.targets.spec import TARGET_FORMS

if TYPE_CHECKING:
    from backmark.export import Format

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DEFAULTS = ClientConfig()


def add_target_options(p: argparse.ArgumentParser) -> None:
    """The options of ``verify`` that choose and reach a target other than a checkpoint."""
    p.add_argument("--protocol", choices=("v2", "json"), help="what an http(s) --target speaks")
    p.add_argument("--adapter", metavar="FILE", help="request/answer shapes of a --protocol json API")
    p.add_argument("--output-name", metavar="NAME", help="the v2 output to read when there are several")
    p.add_argument(
        "--decoys", type=int, default=0, metavar="N", help="hide the triggers among N decoy images"
    )
    p.add_argument(
        "--decoy-data",
        metavar="SPEC",
        help="dataset whose test split gives the decoys (default by key shape)",
    )
    p.add_argument("--batch-size", type=int, metavar="N", help="images per request (remote: 64) or run (256)")
    remote = p.add_argument_group("remote targets")
    remote.add_argument(
        "--timeout", type=float, metavar="S", default=_DEFAULTS.timeout, help="seconds per request (30)"
    )
    remote.add_argument(
        "--attempts", type=int, metavar="N", default=_DEFAULTS.attempts, help="tries per request (5)"
    )
    remote.add_argument(
        "--backoff", type=float, metavar="S", default=_DEFAULTS.backoff, help="first retry pause, s (0.5)"
    )
    remote.add_argument(
        "--max-wait", type=float, metavar="S", default=_DEFAULTS.max_wait, help="longest pause, s (60)"
    )
    remote.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        default=_DEFAULTS.deadline,
        help=f"seconds for the whole verification, retries included ({_DEFAULTS.deadline:g})",
    )
    remote.add_argument("--rate", type=float, metavar="R", help="at most R requests per second")
    remote.add_argument(
        "--auth-env", metavar="VAR", help="environment variable holding the auth header value"
    )
    remote.add_argument(
        "--auth-header", default="Authorization", metavar="NAME", help="auth header name (Authorization)"
    )
    remote.add_argument("--ca-bundle", metavar="PEM", help="trust these certificate authorities instead")
    remote.add_argument("--insecure", action="store_true", help="skip TLS certificate checks (test servers)")


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The remote client's settings from ``args``, checked; retries are reported on stderr unless -q."""

    def on_retry(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    config = ClientConfig(
        timeout=args.timeout,
        attempts=args.attempts,
        backoff=args.backoff,
        max_wait=args.max_wait,
        batch_size=args.batch_size or _DEFAULTS.batch_size,
        rate=args.rate,
        auth_env=args.auth_env,
        auth_header=args.auth_header,
        verify_tls=not args.insecure,
        ca_bundle=args.ca_bundle,
        deadline=args.deadline,
        on_retry=None if args.quiet else on_retry,
    )
    config.check()
    return config


def open_suspect(args: argparse.Namespace, mk: MarkingKey, client: ClientConfig) -> OpenedTarget:
    """``--model CKPT`` or ``--target TARGET``, hidden among ``--decoys`` if asked: the library's
    :func:`~backmark.targets.open_for_verify` with the command line's arguments."""
    if args.model is not None and (args.protocol or args.adapter or args.output_name):
        raise BackmarkError("--protocol, --adapter and --output-name apply to --target, not to --model")
    return open_for_verify(
        TargetSpec("ckpt", args.model) if args.model is not None else args.target,
        protocol=args.protocol,
        input_shape=mk.input_shape,
        num_classes=mk.num_classes,
        client=client,
        adapter=args.adapter,
        output=args.output_name,
        batch_size=args.batch_size,
        decoys=args.decoys,
        decoy_data=args.decoy_data,
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

    model, info = load_checkpoint(args.model)
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


def serve(args: argparse.Namespace) -> int:
    from backmark.serve import create_app, run_server  # the web stack is imported only to serve

    name = args.name or re.sub(r"[^A-Za-z0-9_.-]", "-", Path(args.checkpoint).stem) or "model"
    if not _NAME.match(name):
        raise BackmarkError(
            f"--name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting alphanumeric"
        )
    model, info = load_checkpoint(args.checkpoint)
    app = create_app(
        model,
        name=name,
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        labels_only=args.labels_only,
    )

    def ready(url: str) -> None:
        print(f"serving {name} at {url}/v2/models/{name} (v2) and {url}/predict/{name} (JSON)", flush=True)
        if not args.quiet:
            print("press Ctrl-C to stop", file=sys.stderr, flush=True)

    if (args.tls_cert is None) != (args.tls_key is None):
        raise BackmarkError("--tls-cert and --tls-key go together")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    run_server(app, host=args.host, port=args.port, tls=tls, on_ready=ready)
    return 0


def register(sub: Any) -> None:
    """Add ``export`` and ``serve`` to the CLI's sub-parsers."""
    p = sub.add_parser(
        "export", help="write a checkpoint as ONNX or TorchScript (checked to answer the same)"
    )
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint to export")
    fmt = p.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--onnx", metavar="FILE", help="write an ONNX file (opset 17, any batch size)")
    fmt.add_argument("--torchscript", metavar="FILE", help="write a TorchScript file (torch.jit.trace)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=export)

    p = sub.add_parser("serve", help="serve a checkpoint over the Open Inference Protocol v2 (REST)")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint to serve")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--name", help="model name in the URLs (default: the checkpoint's file name)")
    p.add_argument("--labels-only", action="store_true", help="answer labels only, no logits (like an API)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the serving line")
    p.set_defaults(func=serve)


__all__ = [
    "TARGET_FORMS",
    "add_target_options",
    "client_config",
    "describe_queries",
    "open_suspect",
    "register",
]
