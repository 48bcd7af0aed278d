"""mlengine: a self-hosted machine-learning engine speaking the Cloud ML Engine v1 API."""

__version__ = "0.1.0"
