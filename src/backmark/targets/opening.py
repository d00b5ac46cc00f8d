"""Open the suspect a verification will query, after checking everything that can be checked locally.

:func:`open_for_verify` is what ``backmark verify`` calls with its arguments, and what a script calls to
do the same. In this order it checks the numbers (batch size, decoy count, the client's timeouts), parses
the target string, refuses options that do not apply to its kind, reads the adapter file and the decoy
data, and only then opens the target: it loads a file, or connects to a server and reads its metadata.
No image is sent before :func:`backmark.verify.verify` has also checked the key pair and the target's
declared shapes against the key, so a verification that is bound to fail reveals no trigger.

The result is a context manager that closes the connection::

    with open_for_verify("http://host:8000/v2/models/m", protocol="v2", input_shape=mk.input_shape,
                         num_classes=mk.num_classes, decoys=400) as opened:
        result = verify(opened.target, mk, vk)
        print(opened.queries)          # what was sent: triggers, decoys, decoy accuracy
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from backmark.constants import LOCAL_BATCH
from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.models import ModelInfo
from backmark.targets.adapter import Adapter, load_adapter
from backmark.targets.client import ClientConfig
from backmark.targets.hygiene import DecoyQueries, DecoyTarget, check_decoys, load_decoys
from backmark.targets.protocol import Target
from backmark.targets.spec import PROTOCOLS, TargetSpec, check_options, open_target, parse_target

LOCAL_BATCH_SIZE = LOCAL_BATCH  # images per run of a local model or export


@dataclass(frozen=True)
class OpenedTarget:
    """An opened suspect: ``target`` is what to query (the decoy wrapper when there are decoys)."""

    target: Target
    spec: TargetSpec
    decoys: DecoyTarget | None = None

    @property
    def queries(self) -> DecoyQueries | None:
        """What the last query sent (triggers, decoys, decoys answered correctly); None without decoys."""
        return self.decoys.last if self.decoys is not None else None

    def close(self) -> None:
        """Close the target's connection, if it has one; safe to call twice."""
        inner = self.decoys.target if self.decoys is not None else self.target
        close = getattr(inner, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> OpenedTarget:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _decoy_data(
    data: str | ImageDataset | None, count: int, input_shape: tuple[int, int, int]
) -> ImageDataset:
    if isinstance(data, ImageDataset):
        if data.input_shape != input_shape:
            raise BackmarkError(
                f"decoy data {data.name} has {'x'.join(map(str, data.input_shape))} images but the key has "
                f"{'x'.join(map(str, input_shape))} images"
            )
    else:
        data = load_decoys(data, input_shape=input_shape)
    check_decoys(count, data.test_x, data.test_y)
    return data


def open_for_verify(
    target: str | TargetSpec,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int | None,
    protocol: str | None = None,
    client: ClientConfig | None = None,
    adapter: Adapter | str | Path | None = None,
    output: str | None = None,
    batch_size: int | None = None,
    decoys: int = 0,
    decoy_data: str | ImageDataset | None = None,
    decoy_seed: int | None = None,
    device: str | None = None,
    allow_code: bool = False,
    info: ModelInfo | None = None,
) -> OpenedTarget:
    """Check every argument, then open ``target`` for a key of ``num_classes`` classes of ``input_shape``
    (``num_classes`` None: a suspect of any class count, for the label-free test).

    ``target`` is a target string (see :mod:`backmark.targets.spec`; ``protocol`` for URLs) or a parsed
    :class:`TargetSpec`. ``client`` configures a remote target; ``batch_size`` (default 64 remote, 256
    local) overrides its batch size. ``adapter`` (an :class:`Adapter` or its file) is for JSON targets,
    ``output`` for v2 ones. ``decoys`` > 0 hides the triggers among that many test images of
    ``decoy_data`` (a dataset spec or an :class:`ImageDataset`; default by the key's shape), drawn with
    ``decoy_seed`` (default: from the OS). A checkpoint answers on ``device`` (default: the CPU; see
    :func:`backmark.training.resolve_device`); one of the user's own architecture is rebuilt only with
    ``allow_code`` (it imports that code); ``info`` gives the architecture of a safetensors file of bare
    weights. Raises BackmarkError before anything is opened when an argument is wrong.
    """
    if batch_size is not None and batch_size < 1:
        raise BackmarkError(f"{{batch_size}} must be at least 1, got {batch_size}", params=["batch_size"])
    if decoys < 0:
        raise BackmarkError(f"{{decoys}} must not be negative, got {decoys}", params=["decoys"])
    if decoy_data is not None and decoys == 0:
        raise BackmarkError(
            "{decoy_data} applies with {decoys} N (how many decoys to draw from it)",
            params=["decoy_data", "decoys"],
        )
    if isinstance(target, TargetSpec):
        if protocol is not None:
            raise BackmarkError("give the protocol in the TargetSpec, not as protocol=")
        spec = target
    else:
        spec = parse_target(target, protocol=protocol)
    check_options(spec, adapter=adapter, output=output)
    if adapter is not None and not isinstance(adapter, Adapter):
        adapter = load_adapter(adapter)
    data = _decoy_data(decoy_data, decoys, input_shape) if decoys > 0 else None
    remote = client or ClientConfig()
    if batch_size is not None:
        remote = replace(remote, batch_size=batch_size)
    opened = open_target(
        spec,
        client=remote if spec.kind in PROTOCOLS else None,
        adapter=adapter,
        output=output,
        batch_size=batch_size or LOCAL_BATCH_SIZE,
        num_classes=num_classes,
        input_shape=input_shape,
        device=device,
        allow_code=allow_code,
        info=info,
    )
    if data is None:
        return OpenedTarget(target=opened, spec=spec)
    wrapper = DecoyTarget(opened, data.test_x, count=decoys, labels=data.test_y, seed=decoy_seed)
    return OpenedTarget(target=wrapper, spec=spec, decoys=wrapper)
