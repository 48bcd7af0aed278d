"""``mlengine versions``: deploy model versions and manage them, as ``gcloud ml-engine versions``.

``versions create`` builds the Version from ``--config`` (a partial Version in YAML or JSON)
and the flags (which win), then waits for the creation to finish — the server copies the
files and loads the model once — and prints the READY version, or exits with the reason it
FAILED. ``--async`` prints the operation instead.

``--origin`` is the model folder. The server reads it from its own disk, so with a server on
this machine a relative path is made absolute and a missing folder is refused here; against
a remote server the path (or URI) is passed on as it is. Local ``--package-uris`` archives
are uploaded first.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from mlengine.cli.config_files import bad_flag, load_resource_config
from mlengine.cli.jobs_submit import missing_flag, parse_labels
from mlengine.cli.models import (
    async_option,
    basename,
    changed_labels,
    label_options,
    report_async,
    wait_for_operation,
)
from mlengine.cli.output import (
    Column,
    OutputFormat,
    connection_options,
    format_option,
    open_client,
    render,
)

LIST_COLUMNS = (
    Column("NAME", "name", basename),
    Column("DEPLOYMENT_URI", "deploymentUri"),
    Column("STATE", "state"),
)
#: gcloud's --framework spellings -> Version.framework.
FRAMEWORKS = {"tensorflow": "TENSORFLOW", "scikit-learn": "SCIKIT_LEARN", "xgboost": "XGBOOST"}
#: versions.patch updateMask paths -> where their value sits in a Version.
UPDATABLE = ("description", "labels", "requestLoggingConfig")
UPDATABLE_NESTED = {"autoScaling": "minNodes", "manualScaling": "nodes"}

model_option = click.option(
    "--model", required=True, metavar="MODEL", help="The model the version belongs to."
)


@click.group()
@connection_options
def versions() -> None:
    """Deploy, list, describe, update, delete and pick the default version of a model."""


# -- flag parsing --------------------------------------------------------------------------


def parse_framework(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``scikit-learn`` -> ``SCIKIT_LEARN`` (the enum names are accepted too)."""
    if value is None:
        return None
    key = value.strip().lower().replace("_", "-")
    if key not in FRAMEWORKS:
        raise click.BadParameter(
            f"{value!r} is not a framework; use {', '.join(FRAMEWORKS)} (or leave it out to "
            "detect it from the model files)."
        )
    return FRAMEWORKS[key]


def _parse_list(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def load_version_config(path: Path) -> dict[str, Any]:
    """A partial Version from YAML or JSON; snake_case keys are camelCased (labels kept)."""
    return load_resource_config(path, "Version")


def is_local_server(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in ("127.0.0.1", "localhost", "::1")


def resolve_origin(origin: str, *, local_server: bool, flag: str = "--origin") -> str:
    """The deploymentUri for ``origin``: URIs are kept; with a server on this machine a
    local path must be an existing folder and is made absolute."""
    if "://" in origin and not origin.startswith("file://"):
        return origin
    if not local_server:
        return origin
    path = Path(os.path.abspath(Path(origin.removeprefix("file://")).expanduser()))
    if not path.exists():
        raise bad_flag(flag, f"no such folder: {origin} (looked for {path}).")
    if not path.is_dir():
        raise bad_flag(
            flag, f"{origin} is a file; give the folder that holds it (e.g. {path.parent})."
        )
    return str(path)


def build_version(
    version: str, config: Mapping[str, Any], flags: Mapping[str, Any]
) -> dict[str, Any]:
    """The Version to create: ``config`` (a partial Version), then the flags that were given
    (``flags`` holds wire names; None = not given; labels merge key by key)."""
    body = copy.deepcopy(dict(config))
    body["name"] = version
    for key, value in flags.items():
        if value is None:
            continue
        if key == "labels":
            body["labels"] = {**(body.get("labels") or {}), **value}
        else:
            body[key] = value
    return body


def check_version(body: Mapping[str, Any]) -> None:
    """Refuse, naming the flag, what the server would refuse anyway."""
    if not body.get("deploymentUri") and not body.get("container"):
        raise missing_flag(
            "--origin", "give the folder holding the model (or deploymentUri in --config)."
        )
    if body.get("autoScaling") and body.get("manualScaling"):
        raise bad_flag(
            "--config", "it holds both autoScaling and manualScaling; keep only one of them."
        )


def upload_package_uris(client: Any, uris: list[str]) -> list[str]:
    """Local archives are uploaded (their URI replaces them); URIs are kept."""
    out: list[str] = []
    for uri in uris:
        if "://" in uri:
            out.append(uri)
            continue
        path = Path(uri).expanduser()
        if not path.is_file():
            raise bad_flag("--package-uris", f"no such file: {uri}.")
        out.append(client.upload_package(path))
        click.echo(f"Uploaded {uri} as {out[-1]}", err=True)
    return out


# -- create ----------------------------------------------------------------------------------


@versions.command("create")
@click.argument("version")
@model_option
@click.option(
    "--origin",
    metavar="DIR|URI",
    help="The folder of the model files (deploymentUri); a local path is made absolute.",
)
@click.option(
    "--framework",
    callback=parse_framework,
    metavar="FRAMEWORK",
    help="tensorflow, scikit-learn or xgboost (default: detected from the model files).",
)
@click.option("--runtime-version", "runtimeVersion", help="runtimeVersion, e.g. 2.11.")
@click.option("--python-version", "pythonVersion", help="pythonVersion, e.g. 3.7.")
@click.option("--machine-type", "machineType", help="machineType, e.g. mls1-c1-m2.")
@click.option("--description", help="A description of the version.")
@click.option("--labels", callback=parse_labels, metavar="KEY=VALUE,…", help="Labels.")
@click.option(
    "--prediction-class",
    "predictionClass",
    metavar="MODULE.CLASS",
    help="A custom prediction routine (needs --package-uris).",
)
@click.option(
    "--package-uris",
    callback=_parse_list,
    metavar="URI,…",
    help="Packages for the version's code: local archives are uploaded, URIs kept.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML or JSON file holding a partial Version; flags override its values.",
)
@async_option
@format_option("yaml")
@connection_options
@click.pass_context
def create(
    ctx: click.Context,
    /,
    version: str,
    model: str,
    origin: str | None,
    package_uris: list[str] | None,
    config_file: Path | None,
    async_: bool,
    output: OutputFormat,
    **flags: Any,
) -> None:
    """Create version VERSION of MODEL from the model files in --origin.

    Waits until the version is READY and prints it; if it FAILED, prints why and exits
    non-zero. The first version of a model becomes its default.
    """
    config = load_version_config(config_file) if config_file else {}
    client = open_client(ctx)
    local = is_local_server(client.url)
    if origin is not None:
        flags["deploymentUri"] = resolve_origin(origin, local_server=local)
    elif isinstance(config.get("deploymentUri"), str):
        config["deploymentUri"] = resolve_origin(
            config["deploymentUri"], local_server=local, flag="--config"
        )
    body = build_version(version, config, flags)
    check_version(body)
    if package_uris is not None:
        body["packageUris"] = upload_package_uris(client, package_uris)
    operation = client.create_version(model, body)
    what = f"version [{version}] of model [{basename(model)}]"
    if async_:
        report_async(operation, f"create {what}", output)
        return
    created = wait_for_operation(ctx, operation, f"Creating {what} (this might take a few minutes)")
    click.echo(f"Created {what}.", err=True)
    render(created, output, columns=LIST_COLUMNS)


# -- list, describe, delete, set-default --------------------------------------------------------


@versions.command("list")
@model_option
@click.option(
    "--filter",
    "filter_",
    metavar="EXPRESSION",
    help="Server-side filter, e.g. 'state=READY' or 'name:v*'.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many versions.")
@click.option("--page-size", type=click.IntRange(1, 100), help="Versions fetched per request.")
@format_option("table")
@connection_options
@click.pass_context
def list_versions(
    ctx: click.Context,
    model: str,
    filter_: str | None,
    limit: int | None,
    page_size: int | None,
    output: OutputFormat,
) -> None:
    """List MODEL's versions, newest first: NAME, DEPLOYMENT_URI, STATE."""
    shown: list[dict[str, Any]] = []
    for found in open_client(ctx).list_versions(model, filter=filter_, page_size=page_size):
        if limit is not None and len(shown) >= limit:
            break
        shown.append(found)
    render(shown, output, columns=LIST_COLUMNS)


@versions.command("describe")
@click.argument("version")
@model_option
@format_option("yaml")
@connection_options
@click.pass_context
def describe(ctx: click.Context, version: str, model: str, output: OutputFormat) -> None:
    """Show VERSION of MODEL: its state, files, framework and whether it is the default."""
    render(open_client(ctx).get_version(model, version), output, columns=LIST_COLUMNS)


@versions.command("delete")
@click.argument("version")
@model_option
@async_option
@format_option("yaml")
@connection_options
@click.pass_context
def delete(
    ctx: click.Context, version: str, model: str, async_: bool, output: OutputFormat
) -> None:
    """Delete VERSION of MODEL and its files.

    The default version can be deleted only when it is the last one: make another version
    the default first (`mlengine versions set-default`).
    """
    client = open_client(ctx)
    operation = client.delete_version(model, version)
    what = f"version [{version}] of model [{basename(model)}]"
    if async_:
        report_async(operation, f"delete {what}", output)
        return
    wait_for_operation(ctx, operation, f"Deleting {what}")
    click.echo(f"Deleted {what}.", err=True)


@versions.command("set-default")
@click.argument("version")
@model_option
@format_option("yaml")
@connection_options
@click.pass_context
def set_default(ctx: click.Context, version: str, model: str, output: OutputFormat) -> None:
    """Make VERSION (READY) the default of MODEL: predictions naming only the model go to it."""
    chosen = open_client(ctx).set_default_version(model, version)
    click.echo(f"Version [{version}] is now the default of model [{basename(model)}].", err=True)
    render(chosen, output, columns=LIST_COLUMNS)


# -- update ------------------------------------------------------------------------------------


def update_from_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The patch body and updateMask paths a --config file asks for; other fields are an
    error naming --config."""
    body: dict[str, Any] = {}
    mask: list[str] = []
    unknown: list[str] = []
    for key, value in config.items():
        if key in UPDATABLE:
            body[key] = value
            mask.append(key)
        elif key in UPDATABLE_NESTED and isinstance(value, Mapping):
            inner = UPDATABLE_NESTED[key]
            extra = sorted(set(value) - {inner})
            unknown += [f"{key}.{k}" for k in extra]
            if inner in value:
                body[key] = {inner: value[inner]}
                mask.append(f"{key}.{inner}")
        elif key != "name":
            unknown.append(key)
    if unknown:
        allowed = [*UPDATABLE, *(f"{k}.{v}" for k, v in UPDATABLE_NESTED.items())]
        raise bad_flag(
            "--config",
            f"versions update cannot change {', '.join(unknown)}; it changes only "
            f"{', '.join(allowed)}.",
        )
    return body, mask


@versions.command("update")
@click.argument("version")
@model_option
@click.option("--description", help="The new description ('' clears it).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML or JSON file with the fields to change: description, labels, "
    "requestLoggingConfig, autoScaling.minNodes, manualScaling.nodes. Flags win.",
)
@label_options
@async_option
@format_option("yaml")
@connection_options
@click.pass_context
def update(
    ctx: click.Context,
    version: str,
    model: str,
    description: str | None,
    config_file: Path | None,
    update_labels: dict[str, str] | None,
    remove_labels: list[str] | None,
    clear_labels: bool,
    async_: bool,
    output: OutputFormat,
) -> None:
    """Change VERSION's description, labels, request logging or node counts."""
    body, mask = update_from_config(load_version_config(config_file)) if config_file else ({}, [])
    labels_given = update_labels is not None or remove_labels is not None or clear_labels
    if description is None and not labels_given and not mask:
        raise click.UsageError(
            "Nothing to update: give --description, --config, --update-labels, "
            "--remove-labels or --clear-labels."
        )
    client = open_client(ctx)
    if description is not None:
        body["description"] = description
        if "description" not in mask:
            mask.append("description")
    current: dict[str, Any] | None = None
    if labels_given:
        current = client.get_version(model, version)
        # Labels from --config replace the version's; the label flags then apply to them.
        base = body["labels"] if "labels" in body else current.get("labels")
        labels = changed_labels(base, update_labels, remove_labels, clear_labels)
        if labels is not None:
            body["labels"] = labels
            if "labels" not in mask:
                mask.append("labels")
    what = f"version [{version}] of model [{basename(model)}]"
    if not mask:
        assert current is not None
        click.echo(f"No change to {what}.", err=True)
        render(current, output, columns=LIST_COLUMNS)
        return
    operation = client.patch_version(model, version, body, mask)
    if async_:
        report_async(operation, f"update {what}", output)
        return
    updated = wait_for_operation(ctx, operation, f"Updating {what}")
    click.echo(f"Updated {what}.", err=True)
    render(updated, output, columns=LIST_COLUMNS)
