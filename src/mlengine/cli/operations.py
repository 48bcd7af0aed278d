"""``mlengine operations``: the long-running operations of version and model changes.

An OP argument is a bare id (``create_census_v1-20240101T000000``) or a full name
(``projects/p/operations/<id>``, whose project then wins over ``--project``).
"""

from __future__ import annotations

from typing import Any

import click

from mlengine.cli.output import (
    Column,
    OutputFormat,
    connection_options,
    format_option,
    local_time,
    open_client,
    render,
)


def _basename(name: Any) -> str:
    return str(name).rsplit("/", 1)[-1]


LIST_COLUMNS = (
    Column("NAME", "name", _basename),
    Column("DONE", "done", missing="False"),  # the API leaves `done` out while running
    Column("TYPE", "metadata.operationType"),
    Column("CREATED", "metadata.createTime", local_time),
)


@click.group()
@connection_options
def operations() -> None:
    """List, describe, cancel and wait for long-running operations."""


@operations.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many operations.")
@click.option("--page-size", type=click.IntRange(1, 100), help="Operations fetched per request.")
@format_option("table")
@connection_options
@click.pass_context
def list_operations(
    ctx: click.Context, limit: int | None, page_size: int | None, output: OutputFormat
) -> None:
    """List the project's operations: NAME, DONE, TYPE, CREATED."""
    shown: list[dict[str, Any]] = []
    for operation in open_client(ctx).list_operations(page_size=page_size):
        if limit is not None and len(shown) >= limit:
            break
        shown.append(operation)
    render(shown, output, columns=LIST_COLUMNS)


@operations.command("describe")
@click.argument("op")
@format_option("yaml")
@connection_options
@click.pass_context
def describe(ctx: click.Context, op: str, output: OutputFormat) -> None:
    """Show operation OP: done, metadata, and its response or error."""
    render(open_client(ctx).get_operation(op), output, columns=LIST_COLUMNS)


@operations.command("cancel")
@click.argument("op")
@connection_options
@click.pass_context
def cancel(ctx: click.Context, op: str) -> None:
    """Ask operation OP to stop; it ends done, with error CANCELLED."""
    client = open_client(ctx)
    client.cancel_operation(op)
    click.echo(f"Requested cancellation of operation [{client.operation_name(op)}].", err=True)


@operations.command("wait")
@click.argument("op")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after this many seconds (exit 9); the operation goes on.",
)
@format_option("yaml")
@connection_options
@click.pass_context
def wait(ctx: click.Context, op: str, timeout: float | None, output: OutputFormat) -> None:
    """Wait for operation OP to finish and print its response.

    Exits non-zero with the operation's error if it failed (130 if it was cancelled).
    """
    client = open_client(ctx)
    name = client.operation_name(op)
    click.echo(f"Waiting for operation [{name}] to complete...", err=True)
    done = client.wait_operation(name, timeout=timeout)
    click.echo("Done.", err=True)
    render(done.get("response") or {}, output)
