"""What ``verify`` (and ``prove``) need to query any suspect: ``--model CKPT`` or ``--target TARGET``.

``backmark verify --target TARGET`` (beside ``--model CKPT``) verifies an export or a remote server; the
client's settings, the suspect opened among decoys and the line that reports them are built here. So is
the architecture of a ``--model`` safetensors file of bare weights (``--arch``, ``--arch-args``,
``--classes``: :func:`bare_weights`), which every verb that opens a suspect here takes.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from backmark.constants import REMOTE_BATCH
from backmark.errors import BackmarkError, first_line
from backmark.log import console
from backmark.targets import ClientConfig, OpenedTarget, TargetSpec, open_for_verify

if TYPE_CHECKING:
    from backmark.models import ModelInfo


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


def parse_arch_args(text: str | None) -> dict[str, Any]:
    """``--arch-args``: a JSON object of the architecture's options (none: ``{}``); one-line errors."""
    if text is None:
        return {}
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackmarkError(f"--arch-args is not JSON ({exc.msg}): {text!r}") from None
    except RecursionError:
        raise BackmarkError("--arch-args is nested too deeply; give a flat JSON object") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise BackmarkError(f"--arch-args cannot be read as JSON ({first_line(exc)})") from None
    if not isinstance(given, dict):
        raise BackmarkError(f"--arch-args must be a JSON object such as '{{\"width\": 64}}', got {text!r}")
    return dict(given)


def bare_weights(args: argparse.Namespace, key: KeyShape) -> ModelInfo | None:
    """The architecture of ``--model``'s bare safetensors weights (no backmark metadata), or None.

    ``--arch`` (a registered name or MODULE:CALLABLE) and ``--arch-args`` build the model; its input shape
    is the key's (the suspect answers the key's images) and so is its class count unless ``--classes``
    says otherwise (a suspect with a new head, for the label-free test). Without ``--arch`` the file must
    describe itself, as backmark's checkpoints and safetensors files do.
    """
    from backmark.models import ModelInfo

    arch = getattr(args, "arch", None)
    arch_args, classes = getattr(args, "arch_args", None), getattr(args, "classes", None)
    if arch is None:
        if arch_args is not None or classes is not None:
            raise BackmarkError("--arch-args and --classes describe bare weights together with --arch")
        return None
    if getattr(args, "model", None) is None:
        raise BackmarkError("--arch describes a --model file of bare weights, not a --target")
    if classes is not None and classes < 2:
        raise BackmarkError(f"--classes must be at least 2, got {classes}")
    return ModelInfo(arch, parse_arch_args(arch_args), key.input_shape, classes or key.num_classes)


def open_suspect(
    args: argparse.Namespace, mk: KeyShape, client: ClientConfig, *, any_classes: bool = False
) -> OpenedTarget:
    """``--model CKPT`` or ``--target TARGET``, hidden among ``--decoys`` if asked: the library's
    :func:`~backmark.targets.open_for_verify` with the command line's arguments. ``any_classes``: a
    suspect of another class count than the key's is accepted (the label-free test). A ``--model`` of
    bare safetensors weights is built as ``--arch`` says (:func:`bare_weights`)."""
    if args.model is not None and (args.protocol or args.adapter or args.output_name):
        raise BackmarkError("--protocol, --adapter and --output-name apply to --target, not to --model")
    info = bare_weights(args, mk)
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
        info=info,
    )


def describe_queries(opened: OpenedTarget) -> str | None:
    """One line on the decoys for the text report, or None without decoys."""
    log = opened.queries
    if log is None:
        return None
    acc = "" if log.decoy_accuracy is None else f"; decoys answered correctly: {log.decoy_accuracy:.1%}"
    return f"  queries:       {log.images} triggers hidden among {log.decoys} decoys, in random order{acc}"


__all__ = [
    "bare_weights",
    "client_config",
    "describe_queries",
    "open_suspect",
    "parse_arch_args",
]
