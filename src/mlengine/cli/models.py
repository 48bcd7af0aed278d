"""``mlengine models``: create, list, describe, update and delete models, as
``gcloud ml-engine models``.

A MODEL argument is a bare id (``census``) or a full name (``projects/p/models/census``,
whose project then wins over ``--project``). models.delete and models.patch answer a
long-running operation: the commands wait for it (the server finishes both at once) unless
``--async`` is given, in which case they print the operation.

:func:`wait_for_operation` and :func:`changed_labels` are shared with ``mlengine versions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from mlengine.cli.jobs_submit import parse_key_list, parse_labels
from mlengine.cli.output import (
    Column,
    OutputFormat,
    connection_options,
    format_option,
    open_client,
    render,
)

#: Seconds between polls while a command waits for an operation.
POLL_SECONDS = 0.5


def basename(name: Any) -> str:
    """The last segment of a resource name (``projects/p/models/m`` -> ``m``)."""
    return str(name).rsplit("/", 1)[-1]


LIST_COLUMNS = (
    Column("NAME", "name", basename),
    Column("DEFAULT_VERSION_NAME", "defaultVersion.name", basename),
)


# -- shared with `mlengine versions` -----------------------------------------------------


def wait_for_operation(ctx: click.Context, operation: Mapping[str, Any], doing: str) -> Any:
    """Wait until ``operation`` is done and return its ``response`` (``@type`` removed).

    Prints ``doing`` while waiting; a failed operation raises its error (the CLI prints
    ``ERROR: (CODE) message`` and exits with its code). Ctrl-C stops waiting, not the
    operation (exit 130).
    """
    from mlengine.client.sdk import error_from_status

    name = str(operation.get("name", ""))
    done: Mapping[str, Any] = operation
    if not operation.get("done"):
        click.echo(f"{doing}...", err=True)
        try:
            done = open_client(ctx).wait_operation(name, poll_interval=POLL_SECONDS)
        except KeyboardInterrupt:
            click.echo(
                f"\nStopped waiting; operation [{name}] goes on on the server. Wait for it "
                f"again with `mlengine operations wait {basename(name)}`.",
                err=True,
            )
            ctx.exit(130)
    if "error" in done:
        raise error_from_status(done["error"], subject=name)
    response = dict(done.get("response") or {})
    response.pop("@type", None)
    return response


def report_async(operation: Mapping[str, Any], what: str, output: OutputFormat) -> None:
    """``--async``: say what was started and print the operation (its name is what to keep)."""
    name = str(operation.get("name", ""))
    click.echo(
        f"Request to {what} issued: operation [{name}].\n"
        f"Follow it with `mlengine operations describe {basename(name)}` or "
        f"`mlengine operations wait {basename(name)}`.",
        err=True,
    )
    render(operation, output)


def changed_labels(
    current: Mapping[str, str] | None,
    update: Mapping[str, str] | None,
    remove: list[str] | None,
    clear: bool,
) -> dict[str, str] | None:
    """The labels after ``--clear-labels``, then ``--remove-labels``, then ``--update-labels``;
    None when they would not change."""
    old = dict(current or {})
    new = {} if clear else dict(old)
    for key in remove or ():
        new.pop(key, None)
    new.update(update or {})
    return None if new == old else new


def label_options(command: Any) -> Any:
    """``--update-labels``, ``--remove-labels`` and ``--clear-labels``."""
    command = click.option(
        "--clear-labels", is_flag=True, help="Remove every label (before --update-labels)."
    )(command)
    command = click.option(
        "--remove-labels",
        callback=parse_key_list,
        metavar="KEY,…",
        help="Remove these labels (missing keys are ignored).",
    )(command)
    return click.option(
        "--update-labels",
        callback=parse_labels,
        metavar="KEY=VALUE,…",
        help="Add or change these labels.",
    )(command)


def async_option(command: Any) -> Any:
    return click.option(
        "--async",
        "async_",
        is_flag=True,
        help="Do not wait for the operation: print it and return at once.",
    )(command)


# -- commands ----------------------------------------------------------------------------


@click.group()
@connection_options
def models() -> None:
    """Create, list, describe, update and delete models (containers of versions)."""


def _parse_regions(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> list[str] | None:
    if value is None:
        return None
    regions = [r.strip() for r in value.split(",") if r.strip()]
    if len(regions) != 1:
        raise click.BadParameter(
            f"exactly one region is supported, got {len(regions)} ({value!r}); e.g. "
            "--regions us-central1."
        )
    return regions


@models.command("create")
@click.argument("model")
@click.option(
    "--regions",
    callback=_parse_regions,
    metavar="REGION",
    help="The model's region (exactly one; default: the server's, 'local').",
)
@click.option("--description", help="A description of the model.")
@click.option("--labels", callback=parse_labels, metavar="KEY=VALUE,…", help="Labels.")
@click.option(
    "--enable-logging",
    is_flag=True,
    help="onlinePredictionLogging: log each prediction request (time, latency).",
)
@click.option(
    "--enable-console-logging",
    is_flag=True,
    help="onlinePredictionConsoleLogging: keep the model's stdout/stderr.",
)
@format_option("yaml")
@connection_options
@click.pass_context
def create(
    ctx: click.Context,
    model: str,
    regions: list[str] | None,
    description: str | None,
    labels: dict[str, str] | None,
    enable_logging: bool,
    enable_console_logging: bool,
    output: OutputFormat,
) -> None:
    """Create model MODEL (letters, digits and _; starting with a letter)."""
    body: dict[str, Any] = {"name": model}
    if regions is not None:
        body["regions"] = regions
    if description is not None:
        body["description"] = description
    if labels:
        body["labels"] = labels
    if enable_logging:
        body["onlinePredictionLogging"] = True
    if enable_console_logging:
        body["onlinePredictionConsoleLogging"] = True
    created = open_client(ctx).create_model(body)
    click.echo(f"Created model [{created.get('name', model)}].", err=True)
    render(created, output, columns=LIST_COLUMNS)


@models.command("list")
@click.option(
    "--filter",
    "filter_",
    metavar="EXPRESSION",
    help="Server-side filter, e.g. 'name:census*' or 'labels.team=vision'.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many models.")
@click.option("--page-size", type=click.IntRange(1, 100), help="Models fetched per request.")
@format_option("table")
@connection_options
@click.pass_context
def list_models(
    ctx: click.Context,
    filter_: str | None,
    limit: int | None,
    page_size: int | None,
    output: OutputFormat,
) -> None:
    """List the project's models, newest first: NAME, DEFAULT_VERSION_NAME."""
    shown: list[dict[str, Any]] = []
    for model in open_client(ctx).list_models(filter=filter_, page_size=page_size):
        if limit is not None and len(shown) >= limit:
            break
        shown.append(model)
    render(shown, output, columns=LIST_COLUMNS)


@models.command("describe")
@click.argument("model")
@format_option("yaml")
@connection_options
@click.pass_context
def describe(ctx: click.Context, model: str, output: OutputFormat) -> None:
    """Show model MODEL, with its default version."""
    render(open_client(ctx).get_model(model), output, columns=LIST_COLUMNS)


@models.command("delete")
@click.argument("model")
@async_option
@format_option("yaml")
@connection_options
@click.pass_context
def delete(ctx: click.Context, model: str, async_: bool, output: OutputFormat) -> None:
    """Delete model MODEL; it must have no versions left (delete them first)."""
    client = open_client(ctx)
    operation = client.delete_model(model)
    if async_:
        report_async(operation, f"delete model [{model}]", output)
        return
    wait_for_operation(ctx, operation, f"Deleting model [{model}]")
    click.echo(f"Deleted model [{client.model_name(model)}].", err=True)


@models.command("update")
@click.argument("model")
@click.option("--description", help="The new description ('' clears it).")
@label_options
@async_option
@format_option("yaml")
@connection_options
@click.pass_context
def update(
    ctx: click.Context,
    model: str,
    description: str | None,
    update_labels: dict[str, str] | None,
    remove_labels: list[str] | None,
    clear_labels: bool,
    async_: bool,
    output: OutputFormat,
) -> None:
    """Change MODEL's description and labels."""
    labels_given = update_labels is not None or remove_labels is not None or clear_labels
    if description is None and not labels_given:
        raise click.UsageError(
            "Nothing to update: give --description, --update-labels, --remove-labels or "
            "--clear-labels."
        )
    client = open_client(ctx)
    body: dict[str, Any] = {}
    current: dict[str, Any] | None = None
    if description is not None:
        body["description"] = description
    if labels_given:
        current = client.get_model(model)
        labels = changed_labels(current.get("labels"), update_labels, remove_labels, clear_labels)
        if labels is not None:
            body["labels"] = labels
    if not body:
        assert current is not None
        click.echo(f"No change to model [{current.get('name', model)}].", err=True)
        render(current, output, columns=LIST_COLUMNS)
        return
    operation = client.patch_model(model, body, list(body))
    if async_:
        report_async(operation, f"update model [{model}]", output)
        return
    updated = wait_for_operation(ctx, operation, f"Updating model [{model}]")
    click.echo(f"Updated model [{client.model_name(model)}].", err=True)
    render(updated, output, columns=LIST_COLUMNS)
