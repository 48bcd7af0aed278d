"""How ``mlengine jobs submit training`` builds a Job from ``--config`` and flags, and uploads
its packages.

The click commands live in :mod:`mlengine.cli.jobs`; this module holds what they call:

- flag callbacks that parse and check one value (``--scale-tier``, ``--*-accelerator``,
  ``--labels``, ``--remove-labels``, the JOB argument) and raise click usage errors naming it;
- :func:`load_job_config` (a partial Job from YAML or JSON, keys camelCased);
- :func:`build_training_job` (config, then flags, then user arguments) and
  :func:`check_training_job` (what the server would refuse, reported against the flag);
- :func:`upload_packages` (``--package-path`` built into an sdist, local archives uploaded).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from mlengine.cli.config_files import bad_flag as bad_flag
from mlengine.cli.config_files import camel, load_resource_config

#: Flags that describe a CUSTOM cluster; giving one without --scale-tier implies CUSTOM.
_MACHINE_FLAGS = ("masterType", "workerType", "parameterServerType", "evaluatorType")
_REPLICA_GROUPS = (
    ("workerType", "workerCount", "--worker-machine-type", "--worker-count"),
    (
        "parameterServerType",
        "parameterServerCount",
        "--parameter-server-machine-type",
        "--parameter-server-count",
    ),
    ("evaluatorType", "evaluatorCount", "--evaluator-machine-type", "--evaluator-count"),
)


def missing_flag(flag: str, why: str) -> click.UsageError:
    """A usage error for a flag that must be given (exit code 2)."""
    return click.UsageError(f"Missing option '{flag}': {why}")


# -- flag parsers ----------------------------------------------------------------------


def parse_scale_tier(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from mlengine.domain.resources import ScaleTier

    name = value.strip().upper().replace("-", "_")
    if name not in ScaleTier.__members__:
        spellings = ", ".join(t.value.lower().replace("_", "-") for t in ScaleTier)
        raise click.BadParameter(f"{value!r} is not a scale tier; use one of {spellings}.")
    return name


def parse_accelerator(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> dict[str, str] | None:
    """``type=nvidia-tesla-t4,count=2`` -> an AcceleratorConfig (count defaults to 1)."""
    if value is None:
        return None
    from mlengine.domain.resources import AcceleratorType

    parts = _key_values(value, param)
    unknown = sorted(set(parts) - {"type", "count"})
    if unknown or "type" not in parts:
        raise click.BadParameter(f"expected type=TYPE[,count=N], got {value!r}.")
    kind = parts["type"].upper().replace("-", "_")
    if kind not in AcceleratorType.__members__ or kind == "ACCELERATOR_TYPE_UNSPECIFIED":
        spellings = ", ".join(
            t.value.lower().replace("_", "-") for t in AcceleratorType if "UNSPECIFIED" not in t
        )
        raise click.BadParameter(f"{parts['type']!r} is not an accelerator type; use {spellings}.")
    count = parts.get("count", "1")
    if not count.isdigit() or int(count) < 1:
        raise click.BadParameter(f"count must be a positive integer, got {count!r}.")
    return {"type": kind, "count": count}


def parse_labels(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> dict[str, str] | None:
    if value is None:
        return None
    from mlengine.domain.errors import InvalidArgument
    from mlengine.domain.names import validate_labels

    labels = _key_values(value, param)
    try:
        validate_labels(labels, field=param.opts[0] if param.opts else "labels")
    except InvalidArgument as exc:
        raise click.BadParameter(exc.message) from exc
    return labels


def _key_values(value: str, param: click.Parameter) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE[,KEY=VALUE…], got {item!r}.", param=param)
        out[key.strip()] = val.strip()
    return out


def parse_key_list(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> list[str] | None:
    return None if value is None else [k.strip() for k in value.split(",") if k.strip()]


def parse_job_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from mlengine.domain.errors import InvalidArgument
    from mlengine.domain.names import validate_resource_id

    try:
        return validate_resource_id(value, field="JOB", kind="job")
    except InvalidArgument as exc:
        raise click.BadParameter(exc.message) from exc


def load_job_config(path: Path) -> dict[str, Any]:
    """A partial Job from YAML or JSON, keys camelCased (snake_case is accepted as in the API)."""
    return load_resource_config(path, "Job")


def build_training_job(
    job_id: str, config: Mapping[str, Any], flags: Mapping[str, Any], user_args: Sequence[str]
) -> dict[str, Any]:
    """The Job to submit: ``config`` (a partial Job), then the flags, then ``user_args``.

    ``flags`` holds the TrainingInput fields given on the command line under their API names
    (``masterType``, ``workerCount`` …) plus ``module_name``, ``job_dir``, ``region``,
    ``scale_tier``, ``labels`` and the three ``*_accelerator`` values; None means not given.
    Packages are not handled here (they need uploading first).
    """
    body = copy.deepcopy(dict(config))
    body["jobId"] = job_id
    training_input: dict[str, Any] = body.setdefault("trainingInput", {})
    for key, value in _training_input_flags(flags).items():
        if isinstance(value, dict) and isinstance(training_input.get(key), dict):
            training_input[key] = {**training_input[key], **value}
        else:
            training_input[key] = value
    if flags.get("labels") is not None:
        body["labels"] = {**(body.get("labels") or {}), **flags["labels"]}
    if user_args:
        training_input["args"] = list(user_args)
    training_input.setdefault("region", "local")
    if "scaleTier" not in training_input and any(k in training_input for k in _MACHINE_FLAGS):
        training_input["scaleTier"] = "CUSTOM"
    return body


def _training_input_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pythonModule": flags.get("module_name"),
        "jobDir": _absolute_job_dir(flags.get("job_dir")),
        "region": flags.get("region"),
        "scaleTier": flags.get("scale_tier"),
    }
    for key in (
        "masterType",
        "workerType",
        "parameterServerType",
        "evaluatorType",
        "runtimeVersion",
        "pythonVersion",
        "useChiefInTfConfig",
    ):
        out[key] = flags.get(key)
    for key in ("workerCount", "parameterServerCount", "evaluatorCount"):
        out[key] = None if flags.get(key) is None else str(flags[key])  # int64 on the wire
    for role in ("master", "worker", "parameter_server"):
        accelerator = flags.get(f"{role}_accelerator")
        if accelerator is not None:
            out[f"{camel(role)}Config"] = {"acceleratorConfig": accelerator}
    return {k: v for k, v in out.items() if v is not None}


def _absolute_job_dir(job_dir: str | None) -> str | None:
    if job_dir is None or "://" in job_dir:
        return job_dir
    return str(Path(job_dir).expanduser().absolute())


def check_training_job(body: Mapping[str, Any], *, has_packages: bool) -> None:
    """Refuse, naming the flag, what the server would refuse anyway (cheaper, clearer)."""
    ti = body["trainingInput"]
    if not ti.get("pythonModule") and not (ti.get("masterConfig") or {}).get("imageUri"):
        raise missing_flag(
            "--module-name", "the module to run (or trainingInput.pythonModule in --config)."
        )
    if not has_packages and not ti.get("packageUris"):
        raise missing_flag(
            "--package-path",
            "give the trainer package's folder (or archives with --packages, or "
            "trainingInput.packageUris in --config).",
        )
    tier = ti.get("scaleTier")
    if tier not in (None, "CUSTOM") and any(k in ti for k in _MACHINE_FLAGS):
        raise bad_flag("--scale-tier", f"machine types need --scale-tier custom, not {tier}.")
    for type_key, count_key, type_flag, count_flag in _REPLICA_GROUPS:
        count = int(ti.get(count_key) or 0)
        if count > 0 and not ti.get(type_key):
            raise missing_flag(type_flag, f"{count_flag} {count} needs a machine type.")
        if ti.get(type_key) and count_key not in ti:
            raise missing_flag(count_flag, f"{type_flag} needs a count.")


def upload_packages(client: Any, package_path: Path | None, archives: Sequence[str]) -> list[str]:
    """Upload the built package and the local archives; URIs pass through. Returns URIs."""
    local = [Path(a).expanduser() for a in archives if "://" not in a]
    missing = [str(p) for p in local if not p.is_file()]
    if missing:
        raise bad_flag("--packages", f"no such file: {', '.join(missing)}.")
    uris: list[str] = []
    if package_path is not None:
        from mlengine.client.packaging import build_package

        with tempfile.TemporaryDirectory(prefix="mlengine-package-") as tmp:
            archive = build_package(package_path.absolute(), out_dir=Path(tmp))
            uris.append(client.upload_package(archive))
        click.echo(f"Uploaded the package built from {package_path} as {uris[-1]}", err=True)
    for archive_name in archives:
        if "://" in archive_name:
            uris.append(archive_name)
        else:
            uris.append(client.upload_package(Path(archive_name).expanduser()))
            click.echo(f"Uploaded {archive_name} as {uris[-1]}", err=True)
    return uris


def next_steps(job: str) -> str:
    return (
        "Your job is queued. View its status with\n\n"
        f"  $ mlengine jobs describe {job}\n\n"
        "follow its logs with\n\n"
        f"  $ mlengine jobs stream-logs {job}\n\n"
        "or cancel it with\n\n"
        f"  $ mlengine jobs cancel {job}\n"
    )
