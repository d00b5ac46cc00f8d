"""Target strings as typed on the command line, and the target each one opens.

Every string names its kind explicitly, because guessing is how a verification ends up querying the
wrong thing (a ``.pt`` file can be a backmark checkpoint or TorchScript; a URL can speak either protocol)::

    ckpt:PATH                         a backmark checkpoint or safetensors file (what --model takes)
    onnx:PATH                         an ONNX file, run with onnxruntime
    torchscript:PATH                  a TorchScript file
    http(s)://HOST[:PORT]/v2/models/NAME  --protocol v2     an Open Inference Protocol v2 server
    http(s)://URL                           --protocol json   a JSON API (backmark's contract or --adapter)

Anything else is refused with these forms and, where the file name suggests one, the likely fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backmark.constants import TARGET_FORMS
from backmark.errors import BackmarkError
from backmark.models import ModelInfo, load_checkpoint
from backmark.targets.adapter import Adapter
from backmark.targets.client import ClientConfig
from backmark.targets.exported import OnnxTarget, TorchScriptTarget
from backmark.targets.http import JsonTarget, V2Target
from backmark.targets.module import ModuleTarget
from backmark.targets.protocol import Target
from backmark.training.device import resolve_device

Kind = Literal["ckpt", "onnx", "torchscript", "v2", "json"]
PROTOCOLS = ("v2", "json")
_FILE_KINDS: tuple[Kind, ...] = ("ckpt", "onnx", "torchscript")
_SUFFIX_HINTS = {
    ".onnx": "onnx:{}",
    ".pt": "ckpt:{} (a backmark checkpoint) or torchscript:{}",
    ".pth": "ckpt:{} (a backmark checkpoint) or torchscript:{}",
    ".ts": "torchscript:{}",
    ".torchscript": "torchscript:{}",
}


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target string: its ``kind`` and ``location`` (a file path or a URL)."""

    kind: Kind
    location: str

    def __str__(self) -> str:
        return self.location if self.kind in PROTOCOLS else f"{self.kind}:{self.location}"


def _forms() -> str:
    return "accepted forms: " + "; ".join(TARGET_FORMS)


def parse_target(text: str, *, protocol: str | None = None) -> TargetSpec:
    """Parse ``text`` (see the module doc); ``protocol`` is required for URLs and refused for files."""
    text = text.strip()
    if protocol is not None and protocol not in PROTOCOLS:
        raise BackmarkError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    if text.lower().startswith(("http://", "https://")):
        if protocol is None:
            raise BackmarkError(
                f"target {text} is a URL: say which protocol it speaks, {{protocol}} v2 or json",
                params=["protocol"],
            )
        return TargetSpec(kind=protocol, location=text)  # type: ignore[arg-type]
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in _FILE_KINDS:
        if not rest:
            raise BackmarkError(f"target {text!r} has no path after '{kind}:'; {_forms()}")
        if protocol is not None:
            raise BackmarkError(
                f"{{protocol}} applies to http(s) targets, not to {kind}:PATH", params=["protocol"]
            )
        return TargetSpec(kind=kind.lower(), location=rest)  # type: ignore[arg-type]
    hint = _SUFFIX_HINTS.get(Path(text).suffix.lower())
    suggestion = f" (did you mean {hint.format(text, text)}?)" if hint else ""
    raise BackmarkError(f"target {text!r} does not say what it is{suggestion}; {_forms()}")


def check_options(spec: TargetSpec, *, adapter: object | None, output: str | None) -> None:
    """Refuse options that do not apply to ``spec``'s kind: ``adapter`` is for JSON, ``output`` for v2."""
    if adapter is not None and spec.kind != "json":
        raise BackmarkError(
            "{adapter} applies to {protocol} json targets only", params=["adapter", "protocol"]
        )
    if output is not None and spec.kind != "v2":
        raise BackmarkError("{output} applies to {protocol} v2 targets only", params=["output", "protocol"])


def open_target(
    spec: TargetSpec,
    *,
    client: ClientConfig | None = None,
    adapter: Adapter | None = None,
    output: str | None = None,
    batch_size: int = 256,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    device: str | None = None,
    allow_code: bool = False,
    info: ModelInfo | None = None,
) -> Target:
    """Open the target ``spec`` names: load the file, or connect and (v2) read the model's metadata.

    ``client`` configures remote targets (its ``batch_size`` is theirs); ``batch_size`` is for local
    ones; a checkpoint answers on ``device`` (default: the CPU). ``adapter`` applies to JSON targets,
    ``output`` to v2 ones. A checkpoint that declares another
    class count or input shape than ``num_classes`` / ``input_shape`` (the key's) is refused here, and
    one of the user's own architecture is rebuilt only with ``allow_code``. ``info`` is the architecture
    of a ``ckpt`` safetensors file of bare weights (see :func:`~backmark.models.load_checkpoint`).
    """
    check_options(spec, adapter=adapter, output=output)
    if info is not None and spec.kind != "ckpt":
        raise BackmarkError(
            f"{{info}} describes a model file of bare weights, not a {spec.kind} target", params=["info"]
        )
    if spec.kind == "ckpt":
        model, info = load_checkpoint(spec.location, allow_code=allow_code, info=info)
        if (num_classes is not None and info.num_classes != num_classes) or (
            input_shape is not None and info.input_shape != input_shape
        ):
            raise BackmarkError(
                f"{spec.location} is a {info.num_classes}-class model for {info.input_shape} inputs but "
                f"the key is for {num_classes} classes of {input_shape}"
            )
        if device is not None:
            model.to(resolve_device(device))
        return ModuleTarget(model, batch_size=batch_size)
    if spec.kind == "onnx":
        return OnnxTarget(spec.location, batch_size=batch_size)
    if spec.kind == "torchscript":
        return TorchScriptTarget(spec.location, batch_size=batch_size)
    if spec.kind == "v2":
        return V2Target(spec.location, config=client, output=output)
    return JsonTarget(spec.location, config=client, adapter=adapter)
