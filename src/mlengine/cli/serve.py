"""``mlengine serve``: a prediction-only process for scaling out behind a load balancer.

It reads the registry of this installation (``MLENGINE_HOME``, or ``MLENGINE_DATABASE_URL``
and ``MLENGINE_ARTIFACT_ROOT`` for a shared PostgreSQL and object store) and answers
``:predict`` calls — nothing else. Run several on several machines; each follows
default-version changes by itself (``--cache-seconds``). The process is replaced by
``python -m mlengine.api.prediction_server`` (as ``server start --foreground`` does).
"""

from __future__ import annotations

import os
import sys

import click

DEFAULT_PORT = 8580


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port.")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes (each loads the versions it serves; about one per core).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Threads each model may use per call (OpenMP, ONNX Runtime, XGBoost …).",
)
@click.option(
    "--max-batch-rows",
    type=click.IntRange(1, 100_000),
    default=256,
    show_default=True,
    help="Most instances one model call may batch together.",
)
@click.option(
    "--max-batch-wait-ms",
    type=click.FloatRange(0, 1000),
    default=2.0,
    show_default=True,
    help="Longest wait for more requests when there is concurrency (0: never wait).",
)
@click.option(
    "--cache-seconds",
    type=click.FloatRange(0, 3600),
    default=1.0,
    show_default=True,
    help="How long a resolved model/version is trusted before the registry is read again.",
)
@click.option(
    "--refuse-pickle",
    is_flag=True,
    help="Refuse pickle-based model formats (they run code when loaded).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --host without auth tokens (trusted networks only).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    threads: int,
    max_batch_rows: int,
    max_batch_wait_ms: float,
    cache_seconds: float,
    refuse_pickle: bool,
    insecure: bool,
) -> None:
    """Serve online predictions from this installation's registry (no other API)."""
    argv = [
        sys.executable,
        "-m",
        "mlengine.api.prediction_server",
        f"--host={host}",
        f"--port={port}",
        f"--workers={workers}",
        f"--threads={threads}",
        f"--max-batch-rows={max_batch_rows}",
        f"--max-batch-wait-ms={max_batch_wait_ms}",
        f"--cache-seconds={cache_seconds}",
    ]
    argv += ["--refuse-pickle"] * refuse_pickle + ["--insecure"] * insecure
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # this process becomes the prediction server
