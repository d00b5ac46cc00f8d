"""Remote targets: a server speaking the Open Inference Protocol v2 over REST, or a plain JSON API.

:class:`V2Target` is the protocol of KServe, Triton and MLServer: it reads ``GET /v2/models/{name}``
once to learn the input's name, datatype and shape (NCHW, NHWC or flat; float or uint8), then sends
batches to ``POST /v2/models/{name}/infer`` as one named tensor and reads one output, whether logits,
probabilities or labels. :class:`JsonTarget` posts to any URL under an
:class:`~backmark.targets.adapter.Adapter` (backmark's JSON contract unless another is given).

Both send images in batches of ``config.batch_size`` through :class:`~backmark.targets.client.HttpClient`,
and refuse a whole batch whose answer does not have exactly one label per image.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch

from backmark.errors import BackmarkError
from backmark.targets.adapter import Adapter
from backmark.targets.client import ClientConfig, HttpClient
from backmark.targets.tensors import InputPlan, batches, labels_from_output, plan_input

# Open Inference Protocol datatypes that backmark can send (images) or read (answers), as numpy dtypes.
V2_INPUT_TYPES = {"FP32": "float32", "FP64": "float64", "FP16": "float16", "UINT8": "uint8"}
V2_INTEGER_TYPES = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
V2_FLOAT_TYPES = ("FP16", "FP32", "FP64")
V2_INPUT_NAMES = {v: k for k, v in V2_INPUT_TYPES.items()}


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host and no credentials in it, else a BackmarkError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackmarkError(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise BackmarkError(
            "the URL holds credentials; put the auth header's value in an environment variable and name "
            "it with {auth_env} instead",
            params=["auth_env"],
        )
    return url


def v2_model_url(url: str) -> str:
    """The model's base URL ``.../v2/models/NAME[/versions/V]`` from any URL under it."""
    parts = urlsplit(check_url(url))
    path = parts.path.rstrip("/")
    head, sep, tail = path.partition("/v2/models/")
    segments = tail.split("/") if sep else []
    if not segments or not segments[0]:
        raise BackmarkError(
            f"{url!r} names no model; a v2 target is http(s)://HOST[:PORT][/PREFIX]/v2/models/NAME"
            "[/versions/VERSION]"
        )
    keep = segments[:3] if len(segments) >= 3 and segments[1] == "versions" else segments[:1]
    return f"{parts.scheme}://{parts.netloc}{head}/v2/models/{'/'.join(keep)}"


def _pick_output(outputs: list[dict[str, Any]], wanted: str | None, what: str) -> str | None:
    names = [str(o.get("name")) for o in outputs]
    if wanted is not None:
        if names and wanted not in names:
            raise BackmarkError(f"{what} has no output {wanted!r}; its outputs: {', '.join(names)}")
        return wanted
    if len(names) <= 1:
        return names[0] if names else None
    for kinds in (V2_INTEGER_TYPES, V2_FLOAT_TYPES):  # labels are the smallest answer; then scores
        fitting = [str(o.get("name")) for o in outputs if o.get("datatype") in kinds]
        if len(fitting) == 1:
            return fitting[0]
    raise BackmarkError(f"{what} has outputs {', '.join(names)}; pick one with {{output}}", params=["output"])


class V2Target:
    """A model behind an Open Inference Protocol v2 REST server; metadata is read on construction.

    ``url`` is the model's URL (``http://HOST:PORT/v2/models/NAME``); ``output`` names the output to
    read when the model has several (default: its only output, else its only integer output).
    """

    def __init__(self, url: str, *, config: ClientConfig | None = None, output: str | None = None) -> None:
        self.url = v2_model_url(url)
        self.config = config or ClientConfig()
        self.what = f"v2 server {self.url}"
        self.client = HttpClient(self.config, what=self.what)
        try:
            self._read_metadata(self.client.request("GET", self.url), output)
        except BackmarkError:
            self.client.close()
            raise

    def _read_metadata(self, meta: Any, output: str | None) -> None:
        inputs = meta.get("inputs") if isinstance(meta, dict) else None
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
            raise BackmarkError(f"{self.what} answered metadata without a list of inputs")
        if len(inputs) != 1:
            names = ", ".join(str(i.get("name")) for i in inputs)
            raise BackmarkError(f"{self.what} takes {len(inputs)} inputs ({names}); backmark sends one")
        spec = inputs[0]
        self.input_name = str(spec.get("name", ""))
        self.datatype = str(spec.get("datatype", ""))
        shape = spec.get("shape")
        if not self.input_name or not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise BackmarkError(f"{self.what} answered input metadata without a name and integer shape")
        if self.datatype not in V2_INPUT_TYPES:
            raise BackmarkError(
                f"{self.what} takes {self.datatype} inputs; backmark sends {', '.join(V2_INPUT_TYPES)}"
            )
        self.input_shape: list[int] = shape
        outputs = meta.get("outputs") if isinstance(meta.get("outputs"), list) else []
        self._outputs = [o for o in outputs if isinstance(o, dict)]
        self.output = _pick_output(self._outputs, output, self.what)

    def _declared_classes(self) -> tuple[str, int] | None:
        """(name, K) of the output that declares K class scores per image, if the metadata says so."""
        scores = [
            o
            for o in self._outputs
            if o.get("datatype") in V2_FLOAT_TYPES
            and isinstance(o.get("shape"), list)
            and len(o["shape"]) == 2
            and isinstance(o["shape"][1], int)
            and o["shape"][1] >= 2
        ]
        chosen = [o for o in scores if o.get("name") == self.output]
        pick = chosen or (scores if len(scores) == 1 else [])  # a label output's scores, if unambiguous
        return (str(pick[0].get("name")), int(pick[0]["shape"][1])) if pick else None

    def check_fits(self, *, input_shape: tuple[int, int, int], num_classes: int | None) -> None:
        """Check the metadata against the key, then ask ``.../ready``; no image is sent.

        A server without the readiness endpoint (404, 405) is taken as ready, since it answered metadata.
        """
        plan_input(self.input_shape, input_shape, dtype=V2_INPUT_TYPES[self.datatype], what=self.what)
        declared = self._declared_classes()
        if num_classes is not None and declared is not None and declared[1] != num_classes:
            name, classes = declared
            raise BackmarkError(
                f"{self.what} declares output {name!r} with {classes} class scores per image but the key "
                f"has {num_classes} classes; check the URL names the model marked with this key"
            )
        answer = self.client.request("GET", f"{self.url}/ready", parse=False, allow=(404, 405))
        try:
            said = json.loads(answer) if answer else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            said = None  # a 2xx without JSON (Triton answers an empty body) means ready
        if isinstance(said, dict) and said.get("ready") is False:
            raise BackmarkError(f"{self.what} says the model is not ready (GET {self.url}/ready); try later")

    def close(self) -> None:
        self.client.close()

    def _body(self, batch: np.ndarray) -> dict[str, Any]:
        body: dict[str, Any] = {
            "inputs": [
                {
                    "name": self.input_name,
                    "shape": list(batch.shape),
                    "datatype": V2_INPUT_NAMES[str(batch.dtype)],
                    "data": batch.ravel().tolist(),
                }
            ]
        }
        if self.output is not None:
            body["outputs"] = [{"name": self.output}]
        return body

    def _read(self, answer: Any, count: int) -> torch.Tensor:
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise BackmarkError(f"{self.what} answered JSON without a list of outputs")
        chosen = [o for o in outputs if self.output is None or o.get("name") == self.output]
        if len(chosen) != 1:
            names = ", ".join(str(o.get("name")) for o in outputs) or "none"
            raise BackmarkError(f"{self.what} answered outputs {names}; expected {self.output or 'one'}")
        out = chosen[0]
        datatype, shape = out.get("datatype"), out.get("shape")
        if datatype not in V2_INTEGER_TYPES + V2_FLOAT_TYPES:
            raise BackmarkError(
                f"{self.what} answered a {datatype} output; expected scores or integer labels"
            )
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BackmarkError(f"{self.what} answered an output without a valid shape")
        try:
            data = np.asarray(out.get("data"), dtype=np.float64).ravel()
        except (ValueError, TypeError, OverflowError):
            raise BackmarkError(f"{self.what} answered output data that are not numbers") from None
        if data.size != math.prod(shape):
            raise BackmarkError(f"{self.what} answered {data.size} values for an output of shape {shape}")
        array = data.reshape(shape)
        if datatype in V2_INTEGER_TYPES:
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise BackmarkError(f"{self.what} answered non-integer values in a {datatype} output")
            array = array.astype(np.int64)
        return labels_from_output(array, batch=count, what=self.what)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        c, h, w = (int(v) for v in images.shape[1:])
        dtype = V2_INPUT_TYPES[self.datatype]
        plan: InputPlan = plan_input(self.input_shape, (c, h, w), dtype=dtype, what=self.what)
        out: list[torch.Tensor] = []
        for batch, count in batches(images, plan, self.config.batch_size):
            answer = self.client.request("POST", f"{self.url}/infer", body=self._body(batch))
            out.append(self._read(answer, len(batch))[:count])
        return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


class JsonTarget:
    """Any JSON API: ``adapter`` says how to lay out the request and where the labels are in the answer."""

    def __init__(
        self, url: str, *, config: ClientConfig | None = None, adapter: Adapter | None = None
    ) -> None:
        self.url = check_url(url)
        self.config = config or ClientConfig()
        self.adapter = adapter or Adapter()
        self.what = f"JSON server {self.url}"
        self.client = HttpClient(self.config, what=self.what)

    def check_fits(self, *, input_shape: tuple[int, int, int], num_classes: int | None) -> None:
        """The adapter's class names against the key's class count; the API itself has no metadata."""
        classes = self.adapter.classes
        if num_classes is not None and classes is not None and len(classes) != num_classes:
            raise BackmarkError(
                f"the adapter for {self.what} names {len(classes)} classes but the key has {num_classes}"
            )

    def close(self) -> None:
        self.client.close()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        plan = InputPlan(layout=self.adapter.layout, dtype=self.adapter.dtype)
        out: list[torch.Tensor] = []
        for batch, count in batches(images, plan, self.config.batch_size):
            answer = self.client.request("POST", self.url, body=self.adapter.body(batch))
            out.append(self.adapter.read(answer, batch=count, what=self.what))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)
