"""The Python SDK and what the CLI does on the user's machine before calling the server."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlengine.client.sdk import Client, JobView

__all__ = ["Client", "JobView"]


def __getattr__(name: str) -> object:
    # Lazy, so `mlengine.client.packaging` and friends do not pay for httpx.
    if name in __all__:
        from mlengine.client import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'mlengine.client' has no attribute {name!r}")
