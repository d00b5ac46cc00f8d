"""Serve a model over the Open Inference Protocol v2, so it can be verified (and attacked) where it lives.

``create_app(model, name=..., input_shape=..., num_classes=...)`` builds the Starlette app for any
``nn.Module`` or :class:`~backmark.targets.Target`; :func:`run_server` runs it in the foreground
(``backmark serve``), :func:`start_server` / :func:`serving` on a background thread (tests, benchmarks),
both guarded against slow and idle connections (:mod:`backmark.infra.asgi`)::

    with serving(create_app(model, name="m", input_shape=(1, 28, 28), num_classes=10)) as url:
        result = verify(V2Target(f"{url}/v2/models/m"), mk, vk)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backmark.infra.asgi import GuardLimits, RunningServer, run_server, serving, start_server

if TYPE_CHECKING:
    from backmark.serve.app import MAX_BATCH, ServeLimits, body_limit, create_app

_APP_NAMES = ("MAX_BATCH", "ServeLimits", "body_limit", "create_app")


def __getattr__(name: str) -> Any:
    # The model app imports torch; the runner alone does not (the registry serves through it).
    if name in _APP_NAMES:
        from backmark.serve import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_BATCH",
    "GuardLimits",
    "RunningServer",
    "ServeLimits",
    "body_limit",
    "create_app",
    "run_server",
    "serving",
    "start_server",
]
