"""Settings: the one place that reads ``MLENGINE_*`` environment variables and the config file.

Nothing reads the environment at import time; callers build :class:`Settings` once (the CLI
at start-up, the server in its composition root) and pass it down.

Precedence, highest first: explicit overrides (command-line flags), environment variables,
the config file (``$MLENGINE_CONFIG``, else ``$MLENGINE_HOME/config.yaml`` if it exists; YAML
or JSON with the snake_case keys below), built-in defaults.

======================  ==========================  =========================================
setting                 environment variable        default
======================  ==========================  =========================================
home                    MLENGINE_HOME               ``~/.mlengine``
database_url            MLENGINE_DATABASE_URL       ``sqlite:///<home>/mlengine.db``
artifact_root           MLENGINE_ARTIFACT_ROOT      ``<home>/artifacts`` (or an fsspec URI)
server_url              MLENGINE_SERVER             unset: the CLI starts a local server
project                 MLENGINE_PROJECT            ``mlengine``
host                    MLENGINE_HOST               ``127.0.0.1``
port                    MLENGINE_PORT               ``8570``
auth_tokens_file        MLENGINE_AUTH_TOKENS_FILE   unset (one token per line)
auth_tokens             MLENGINE_AUTH_TOKENS        unset (comma-separated)
token                   MLENGINE_TOKEN              unset (what the CLI/SDK sends)
insecure                MLENGINE_INSECURE           false
strict_placement        MLENGINE_STRICT_PLACEMENT   false (CPU/memory requests are soft)
scheduler_interval      MLENGINE_SCHEDULER_INTERVAL ``0.5`` seconds between scheduler ticks
max_local_replicas      MLENGINE_MAX_LOCAL_REPLICAS replicas running at once on the local
                                                    executor (default ``max(4, 2 × CPUs)``)
max_request_bytes       MLENGINE_MAX_REQUEST_BYTES  ``10485760``: larger API bodies get 413
max_package_bytes       MLENGINE_MAX_PACKAGE_BYTES  ``104857600``: largest package upload
model_check             MLENGINE_MODEL_CHECK        ``load``: versions are validated by
                                                    loading them in a subprocess; ``files``
                                                    (TEST-ONLY) detects the framework from
                                                    file names without loading anything
max_predict_bytes       MLENGINE_MAX_PREDICT_BYTES  ``1572864`` (1.5 MB): larger predict bodies
                                                    get 413 before they are read
refuse_pickle           MLENGINE_REFUSE_PICKLE      false; true refuses pickle-based model
                                                    formats (they run code when loaded)
predict_threads         MLENGINE_PREDICT_THREADS    ``1``: threads one model call may use
predict_batch_rows      MLENGINE_PREDICT_BATCH_ROWS ``256``: most instances per model call
predict_batch_wait_ms   MLENGINE_PREDICT_BATCH_WAIT ``2``: longest wait for more requests
                        _MS                         under concurrency (0: never wait)
======================  ==========================  =========================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_HOME = "~/.mlengine"
DEFAULT_PROJECT = "mlengine"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8570
DEFAULT_SCHEDULER_INTERVAL = 0.5
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PACKAGE_BYTES = 100 * 1024 * 1024
#: The v1 service's payload limit for predict requests.
DEFAULT_MAX_PREDICT_BYTES = 1_572_864
#: How versions are validated before they become READY (see ``model_check`` above).
MODEL_CHECKS = ("load", "files")

_ENV = {
    "database_url": "MLENGINE_DATABASE_URL",
    "artifact_root": "MLENGINE_ARTIFACT_ROOT",
    "server_url": "MLENGINE_SERVER",
    "project": "MLENGINE_PROJECT",
    "host": "MLENGINE_HOST",
    "port": "MLENGINE_PORT",
    "auth_tokens_file": "MLENGINE_AUTH_TOKENS_FILE",
    "auth_tokens": "MLENGINE_AUTH_TOKENS",
    "token": "MLENGINE_TOKEN",
    "insecure": "MLENGINE_INSECURE",
    "strict_placement": "MLENGINE_STRICT_PLACEMENT",
    "scheduler_interval": "MLENGINE_SCHEDULER_INTERVAL",
    "max_local_replicas": "MLENGINE_MAX_LOCAL_REPLICAS",
    "max_request_bytes": "MLENGINE_MAX_REQUEST_BYTES",
    "max_package_bytes": "MLENGINE_MAX_PACKAGE_BYTES",
    "model_check": "MLENGINE_MODEL_CHECK",
    "max_predict_bytes": "MLENGINE_MAX_PREDICT_BYTES",
    "refuse_pickle": "MLENGINE_REFUSE_PICKLE",
    "predict_threads": "MLENGINE_PREDICT_THREADS",
    "predict_batch_rows": "MLENGINE_PREDICT_BATCH_ROWS",
    "predict_batch_wait_ms": "MLENGINE_PREDICT_BATCH_WAIT_MS",
}
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Where mlengine keeps its state and how its server is reached and protected."""

    home: Path
    database_url: str = ""
    artifact_root: str = ""
    server_url: str | None = None
    project: str = DEFAULT_PROJECT
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth_tokens_file: str | None = None
    auth_tokens: tuple[str, ...] = ()
    token: str | None = None
    insecure: bool = False
    strict_placement: bool = False
    scheduler_interval: float = DEFAULT_SCHEDULER_INTERVAL
    max_local_replicas: int | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES
    model_check: str = MODEL_CHECKS[0]
    max_predict_bytes: int = DEFAULT_MAX_PREDICT_BYTES
    refuse_pickle: bool = False
    predict_threads: int = 1
    predict_batch_rows: int = 256
    predict_batch_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.model_check not in MODEL_CHECKS:
            raise ValueError(
                f"model_check must be one of {', '.join(MODEL_CHECKS)}, not {self.model_check!r}"
            )
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'mlengine.db'}")
        if not self.artifact_root:
            object.__setattr__(self, "artifact_root", str(self.home / "artifacts"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment and config file; ``overrides`` (flags) win.

        Overrides whose value is None are ignored, so CLI options can be passed straight in.
        """
        env = os.environ if environ is None else environ
        home = Path(overrides.get("home") or env.get("MLENGINE_HOME") or DEFAULT_HOME)
        home = home.expanduser()
        values: dict[str, Any] = _config_file(env, home)
        values.update({k: env[v] for k, v in _ENV.items() if env.get(v)})
        values.update({k: v for k, v in overrides.items() if v is not None and k != "home"})
        return cls(home=home, **_coerce(values))

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def environments_dir(self) -> Path:
        """Cached per-run Python environments (see executors.runtime_env)."""
        return self.home / "envs"

    @property
    def local_runs_dir(self) -> Path:
        """Scratch space of ``local train`` runs: metric files per replica."""
        return self.home / "local-runs"

    @property
    def runs_dir(self) -> Path:
        """Working folders of the server's runs: replica logs, exit records, metric files."""
        return self.home / "runs"

    @property
    def server_state_file(self) -> Path:
        """Where a running server records its pid and URL (``mlengine server status``)."""
        return self.home / "server.json"

    @property
    def local_server_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _config_file(env: Mapping[str, str], home: Path) -> dict[str, Any]:
    explicit = env.get("MLENGINE_CONFIG")
    path = Path(explicit).expanduser() if explicit else home / "config.yaml"
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f"MLENGINE_CONFIG points at {path}, which does not exist")
        return {}
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of settings")
    known = {f.name for f in fields(Settings)} - {"home"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
    return dict(data)


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in ("insecure", "strict_placement", "refuse_pickle"):
        if isinstance(out.get(key), str):
            out[key] = out[key].strip().lower() in _TRUE
    for key in (
        "port",
        "max_local_replicas",
        "max_request_bytes",
        "max_package_bytes",
        "max_predict_bytes",
        "predict_threads",
        "predict_batch_rows",
    ):
        if key in out:
            out[key] = int(out[key])
    for key in ("scheduler_interval", "predict_batch_wait_ms"):
        if key in out:
            out[key] = float(out[key])
    if isinstance(out.get("auth_tokens"), str):
        out["auth_tokens"] = tuple(t.strip() for t in out["auth_tokens"].split(",") if t.strip())
    elif isinstance(out.get("auth_tokens"), list):
        out["auth_tokens"] = tuple(str(t) for t in out["auth_tokens"])
    if out.get("artifact_root"):
        out["artifact_root"] = str(out["artifact_root"])
    return out
