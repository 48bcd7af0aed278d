"""``mlengine server start|status|stop``: the local server's lifecycle.

``start`` runs the server in the background (output in ``$MLENGINE_HOME/server.log``) and
returns once ``/healthz`` answers; ``--foreground`` replaces this process with the server
(``python -m mlengine.server``), for containers and service managers. ``status`` exits 0
when a server answers and 3 otherwise. ``stop`` sends SIGTERM and waits.
"""

from __future__ import annotations

import os
import sys

import click

from mlengine.client.local_server import (
    is_healthy,
    read_state,
    running_server,
    server_log_path,
    start_server,
    stop_server,
)
from mlengine.config import Settings

#: ``status`` exit code when no server answers (LSB: "program is not running").
NOT_RUNNING = 3


@click.group()
def server() -> None:
    """Run the mlengine server (REST API and scheduler) on this machine."""


@server.command()
@click.option(
    "--foreground",
    is_flag=True,
    help="Run in this terminal until Ctrl-C instead of in the background.",
)
@click.option(
    "--host",
    default=None,
    help="Address to listen on (default 127.0.0.1, MLENGINE_HOST). Any other "
    "address needs auth tokens (MLENGINE_AUTH_TOKENS or "
    "MLENGINE_AUTH_TOKENS_FILE) or --insecure.",
)
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port to listen on (default 8570, MLENGINE_PORT; 0 picks a free one).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --host without auth tokens (trusted networks only).",
)
def start(foreground: bool, host: str | None, port: int | None, insecure: bool) -> None:
    """Start the server (in the background unless --foreground)."""
    if foreground:
        command = [sys.executable, "-m", "mlengine.server"]
        command += ["--host", host] if host else []
        command += ["--port", str(port)] if port is not None else []
        command += ["--insecure"] if insecure else []
        sys.stdout.flush()
        os.execv(sys.executable, command)  # the server keeps this pid
    settings = Settings.from_env(host=host, port=port, insecure=insecure or None)
    state, started = start_server(settings, insecure=insecure)
    if not started:
        click.echo(f"An mlengine server is already running at {state.url} (pid {state.pid}).")
        return
    click.echo(
        f"Started the mlengine server at {state.url} (pid {state.pid}).\n"
        f"Log: {server_log_path(settings)}\nStop it with: mlengine server stop"
    )


@server.command()
def status() -> None:
    """Say whether a server runs; exit 0 if it answers, 3 if not."""
    settings = Settings.from_env()
    recorded = read_state(settings.server_state_file)
    state = running_server(settings)
    if state is None:
        stale = f" (removed a stale state file of pid {recorded.pid})" if recorded else ""
        click.echo(f"mlengine server: not running{stale}")
        raise click.exceptions.Exit(NOT_RUNNING)
    healthy = is_healthy(state.url)
    click.echo(
        f"mlengine server: {'running' if healthy else 'not answering /healthz'}\n"
        f"  url:     {state.url}\n  pid:     {state.pid}\n"
        f"  version: {state.version}\n  started: {state.started}\n"
        f"  log:     {server_log_path(settings)}"
    )
    if not healthy:
        raise click.exceptions.Exit(NOT_RUNNING)


@server.command()
def stop() -> None:
    """Stop the server (SIGTERM; SIGKILL if it does not exit in 30 s).

    Running training jobs keep running; the next server picks them up again.
    """
    settings = Settings.from_env()
    state, killed = stop_server(settings)
    if state is None:
        click.echo("mlengine server: not running")
        return
    how = "killed (it did not exit after SIGTERM)" if killed else "stopped"
    click.echo(f"The mlengine server at {state.url} (pid {state.pid}) was {how}.")
