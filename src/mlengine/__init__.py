"""mlengine: a self-hosted machine-learning engine speaking the Cloud ML Engine v1 API."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mlengine.client.sdk import Client

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> object:
    # `from mlengine import Client` imports httpx only when asked for: `import mlengine`
    # stays cheap for the CLI and for trainer processes (mlengine.trainer).
    if name == "Client":
        from mlengine.client.sdk import Client

        return Client
    raise AttributeError(f"module 'mlengine' has no attribute {name!r}")
