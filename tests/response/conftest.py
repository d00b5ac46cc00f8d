"""Fixtures for the response mark: a fixed key, an untrained CNN served with it (response_helpers)."""

from response_helpers import checkpoint, model, rkey

__all__ = ["checkpoint", "model", "rkey"]
