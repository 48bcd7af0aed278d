"""``mlengine jobs``: submit, follow and manage jobs on the server, as ``gcloud ml-engine jobs``.

Each command parses its flags, calls one method of :class:`mlengine.client.sdk.Client` and
renders the answer; errors travel to ``cli/errors.py``, which turns them into exit codes.
``submit training`` is the one command with more to do: it builds the Job from ``--config``
and the flags and uploads the packages it names (:mod:`mlengine.cli.jobs_submit`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from mlengine.cli.jobs_submit import (
    build_training_job,
    check_training_job,
    load_job_config,
    next_steps,
    parse_accelerator,
    parse_job_id,
    parse_key_list,
    parse_labels,
    parse_scale_tier,
    upload_packages,
)
from mlengine.cli.output import (
    Column,
    OutputFormat,
    connection_options,
    field_value,
    format_option,
    local_time,
    open_client,
    print_table,
    render,
)
from mlengine.executors.local_training import absolutize_path_args

LIST_COLUMNS = (
    Column("JOB_ID", "jobId"),
    Column("STATUS", "state"),
    Column("CREATED", "createTime", local_time),
)
#: Job fields printed after ``submit training``, as gcloud's ``yaml(jobId, state)``.
SUBMIT_FIELDS = ("jobId", "state")


@click.group()
@connection_options
def jobs() -> None:
    """Submit training jobs, follow their logs, describe, list, cancel and relabel them."""


@jobs.group()
def submit() -> None:
    """Submit a job to the server."""


# -- submit training -------------------------------------------------------------------


@submit.command("training")
@click.argument("job", callback=parse_job_id)
@click.option(
    "--module-name", help="Module to run, e.g. trainer.task (trainingInput.pythonModule)."
)
@click.option(
    "--package-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Local folder of the trainer package; built into an sdist and uploaded.",
)
@click.option("--packages", help="Comma list of package archives: local files (uploaded) or URIs.")
@click.option("--job-dir", help="trainingInput.jobDir; a local path is made absolute.")
@click.option("--region", help="trainingInput.region (default: local).")
@click.option(
    "--scale-tier",
    callback=parse_scale_tier,
    help="basic, standard-1, premium-1, basic-gpu, basic-tpu or custom (or BASIC, STANDARD_1 …).",
)
@click.option("--master-machine-type", "masterType", help="Machine type of the master (CUSTOM).")
@click.option(
    "--master-accelerator",
    callback=parse_accelerator,
    metavar="type=TYPE,count=N",
    help="Accelerators per master, e.g. type=nvidia-tesla-t4,count=1.",
)
@click.option("--worker-machine-type", "workerType", help="Machine type of the workers.")
@click.option("--worker-count", "workerCount", type=click.IntRange(min=0), help="Workers.")
@click.option(
    "--worker-accelerator",
    callback=parse_accelerator,
    metavar="type=TYPE,count=N",
    help="Accelerators per worker.",
)
@click.option(
    "--parameter-server-machine-type",
    "parameterServerType",
    help="Machine type of the parameter servers.",
)
@click.option(
    "--parameter-server-count",
    "parameterServerCount",
    type=click.IntRange(min=0),
    help="Parameter servers.",
)
@click.option(
    "--parameter-server-accelerator",
    callback=parse_accelerator,
    metavar="type=TYPE,count=N",
    help="Accelerators per parameter server.",
)
@click.option("--evaluator-machine-type", "evaluatorType", help="Machine type of the evaluators.")
@click.option("--evaluator-count", "evaluatorCount", type=click.IntRange(min=0), help="Evaluators.")
@click.option(
    "--use-chief-in-tf-config",
    "useChiefInTfConfig",
    type=click.BOOL,
    is_flag=False,
    flag_value=True,
    default=None,
    metavar="[BOOL]",
    help="Name the primary 'chief' instead of 'master' in TF_CONFIG.",
)
@click.option("--runtime-version", "runtimeVersion", help="trainingInput.runtimeVersion.")
@click.option("--python-version", "pythonVersion", help="trainingInput.pythonVersion.")
@click.option("--labels", callback=parse_labels, metavar="KEY=VALUE,…", help="Labels of the job.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML or JSON file holding a partial Job; flags override its values.",
)
@click.option(
    "--stream-logs",
    is_flag=True,
    help="Follow the job's logs until it ends; exit 0 if it SUCCEEDED, else 1.",
)
@click.option("--async", "async_", is_flag=True, hidden=True, help="The default; accepted.")
@click.option(
    "--polling-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between log polls with --stream-logs.",
)
@format_option("yaml")
@connection_options
@click.argument("user_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- USER_ARGS…]")
@click.pass_context
def training(
    ctx: click.Context,
    /,
    job: str,
    package_path: Path | None,
    packages: str | None,
    config_file: Path | None,
    stream_logs: bool,
    async_: bool,
    polling_interval: float,
    output: OutputFormat,
    user_args: tuple[str, ...],
    **flags: Any,
) -> int:
    """Submit training job JOB: python -m MODULE USER_ARGS… on the server's executor.

    The Job is built from --config (a partial Job), then the flags (which win), then the
    arguments after `--` (which replace trainingInput.args). --package-path is packed as an
    sdist and uploaded, as are local --packages archives.
    """
    config = load_job_config(config_file) if config_file else {}
    archives = [p.strip() for p in (packages or "").split(",") if p.strip()]
    body = build_training_job(job, config, flags, list(user_args))
    check_training_job(body, has_packages=bool(package_path or archives))
    client = open_client(ctx)
    _absolutize_for_local_server(body, client.url)
    uris = upload_packages(client, package_path, archives)
    if uris:
        body["trainingInput"]["packageUris"] = uris
    created = client.create_job(body)
    click.echo(f"Job [{job}] submitted successfully.", err=True)
    if not stream_logs:
        click.echo(next_steps(job), err=True)
        render({k: created[k] for k in SUBMIT_FIELDS if k in created}, output)
        return 0
    final = follow(ctx, job, task_name=None, interval=polling_interval, allow_multiline=False)
    return _report_end(final)


def _absolutize_for_local_server(body: dict[str, Any], url: str) -> None:
    """A server on this machine reads the same disk: relative paths typed here (``--train-files
    data/adult.data``) are made absolute, since the trainer runs in a folder of the server's."""
    host = (urlsplit(url).hostname or "").lower()
    if host not in ("127.0.0.1", "localhost", "::1"):
        return
    args = body.get("trainingInput", {}).get("args")
    if args:
        new, changed = absolutize_path_args(args, Path.cwd(), None)
        if changed:
            body["trainingInput"]["args"] = new
            click.echo(
                f"Made relative paths absolute for the trainer: {' '.join(changed)}", err=True
            )


def _report_end(job: Mapping[str, Any]) -> int:
    state = job.get("state")
    reason = f": {job['errorMessage']}" if job.get("errorMessage") else ""
    click.echo(f"Job [{job.get('jobId')}] ended {state}{reason}", err=True)
    return 0 if state == "SUCCEEDED" else 1


# -- logs ------------------------------------------------------------------------------


def log_lines(entry: Mapping[str, Any], *, allow_multiline: bool) -> list[str]:
    """``SEVERITY  TIMESTAMP  TASK_NAME  TRIAL_ID  MESSAGE``, one line per message line
    unless ``allow_multiline`` (an absent trial id is an empty field)."""
    prefix = "  ".join(str(entry.get(k) or "") for k in ("severity", "time", "taskName", "trialId"))
    message = str(entry.get("message", ""))
    parts = [message] if allow_multiline else (message.splitlines() or [""])
    return [f"{prefix}  {part}" for part in parts]


def follow(
    ctx: click.Context,
    job_id: str,
    *,
    task_name: str | None,
    interval: float,
    allow_multiline: bool,
) -> dict[str, Any]:
    """Print the job's log until it ends and return the ended job. Ctrl-C stops following
    (exit 130); the job goes on."""
    client = open_client(ctx)
    try:
        for entry in client.follow_logs(job_id, task_name=task_name, poll_interval=interval):
            for line in log_lines(entry, allow_multiline=allow_multiline):
                click.echo(line)
        return client.get_job(job_id)
    except KeyboardInterrupt:
        click.echo(
            f"\nStopped following the logs of job [{job_id}]; the job continues on the server.\n"
            f"Follow it again with `mlengine jobs stream-logs {job_id}`, or stop it with "
            f"`mlengine jobs cancel {job_id}`.",
            err=True,
        )
        ctx.exit(130)


@jobs.command("stream-logs")
@click.argument("job")
@click.option("--task-name", help="Only this replica's lines, e.g. master-replica-0.")
@click.option(
    "--polling-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between polls for new lines.",
)
@click.option(
    "--allow-multiline-logs",
    is_flag=True,
    help="Print multi-line messages as they are instead of one line per line.",
)
@connection_options
@click.pass_context
def stream_logs(
    ctx: click.Context,
    job: str,
    task_name: str | None,
    polling_interval: float,
    allow_multiline_logs: bool,
) -> None:
    """Print JOB's log lines, then follow them until the job ends.

    Lines read SEVERITY  TIMESTAMP  TASK_NAME  TRIAL_ID  MESSAGE. Ctrl-C stops following,
    not the job.
    """
    follow(
        ctx,
        job,
        task_name=task_name,
        interval=polling_interval,
        allow_multiline=allow_multiline_logs,
    )


# -- describe, list, cancel, update ----------------------------------------------------


@jobs.command("describe")
@click.argument("job")
@click.option(
    "--summarize",
    is_flag=True,
    help="Tables: overview, training input, training output and trials.",
)
@format_option("yaml")
@connection_options
@click.pass_context
def describe(ctx: click.Context, job: str, summarize: bool, output: OutputFormat) -> None:
    """Show JOB: its input, state, times, output and trials."""
    resource = open_client(ctx).get_job(job)
    if summarize:
        print_summary(resource)
    else:
        render(resource, output, columns=LIST_COLUMNS)
    click.echo(f"\nView the job's logs with `mlengine jobs stream-logs {job}`.", err=True)


_SUMMARY_SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Job Overview", "", ("jobId", "state", "createTime", "startTime", "endTime", "errorMessage")),
    (
        "Training Input Summary",
        "trainingInput",
        (
            "region",
            "scaleTier",
            "pythonModule",
            "masterType",
            "workerType",
            "workerCount",
            "parameterServerType",
            "parameterServerCount",
            "evaluatorType",
            "evaluatorCount",
            "runtimeVersion",
            "pythonVersion",
            "jobDir",
        ),
    ),
    (
        "Training Output Summary",
        "trainingOutput",
        (
            "completedTrialCount",
            "consumedMLUnits",
            "isHyperparameterTuningJob",
            "hyperparameterMetricTag",
        ),
    ),
    (
        "Prediction Input Summary",
        "predictionInput",
        ("dataFormat", "inputPaths", "outputPath", "modelName", "versionName", "uri", "region"),
    ),
    (
        "Prediction Output Summary",
        "predictionOutput",
        ("predictionCount", "errorCount", "nodeHours", "outputPath"),
    ),
)


def print_summary(job: Mapping[str, Any]) -> None:
    """gcloud's ``describe --summarize``: one table per part of the job that is present."""
    from mlengine.cli.output import header_for

    first = True
    for title, section, fields in _SUMMARY_SECTIONS:
        part = job.get(section) if section else job
        if not isinstance(part, Mapping):
            continue
        present = [f for f in fields if part.get(f) not in (None, "", [])]
        if not present:
            continue
        if not first:
            click.echo()
        first = False
        columns = [Column(header_for(f), f) for f in present]
        print_table([c.header for c in columns], [[c.text(part) for c in columns]], title=title)
    trials = field_value(job, "trainingOutput.trials") or []
    if trials:
        click.echo()
        _print_trials(trials)


def _print_trials(trials: Sequence[Mapping[str, Any]]) -> None:
    """Trials in the API's order (best first), one column per hyperparameter."""
    params: dict[str, None] = {}
    for trial in trials:
        params.update(dict.fromkeys(trial.get("hyperparameters") or {}))
    headers = ["TRIAL", "STATE", "OBJECTIVE_VALUE", "STEP", *params]
    rows = [
        [
            str(t.get("trialId", "")),
            str(t.get("state", "")) + (" (stopped early)" if t.get("isTrialStoppedEarly") else ""),
            str(field_value(t, "finalMetric.objectiveValue") or ""),
            str(field_value(t, "finalMetric.trainingStep") or ""),
            *(str((t.get("hyperparameters") or {}).get(p, "")) for p in params),
        ]
        for t in trials
    ]
    print_table(headers, rows, title="Training Output Trials")


@jobs.command("list")
@click.option(
    "--filter",
    "filter_",
    metavar="EXPRESSION",
    help="Server-side filter, e.g. 'jobId:census*' or 'state=FAILED'.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many jobs.")
@click.option("--page-size", type=click.IntRange(1, 100), help="Jobs fetched per request.")
@click.option(
    "--sort-by",
    metavar="FIELD,…",
    help="Sort by these fields (a leading ~ sorts descending), e.g. ~createTime.",
)
@format_option("table")
@connection_options
@click.pass_context
def list_jobs(
    ctx: click.Context,
    filter_: str | None,
    limit: int | None,
    page_size: int | None,
    sort_by: str | None,
    output: OutputFormat,
) -> None:
    """List the project's jobs, newest first: JOB_ID, STATUS, CREATED."""
    found: Iterable[Mapping[str, Any]] = open_client(ctx).list_jobs(
        filter=filter_, page_size=page_size
    )
    if sort_by:
        found = sort_resources(list(found), sort_by)
    render(_take(found, limit), output, columns=LIST_COLUMNS)


def _take(items: Iterable[Mapping[str, Any]], limit: int | None) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for item in items:
        if limit is not None and len(out) >= limit:
            break
        out.append(item)
    return out


def sort_resources(items: list[Mapping[str, Any]], sort_by: str) -> list[Mapping[str, Any]]:
    """Stable sort by each key of ``a,~b`` (``~`` = descending); missing values sort first."""
    for key in reversed([k.strip() for k in sort_by.split(",") if k.strip()]):
        descending = key.startswith("~")
        path = key.lstrip("~")
        items.sort(key=functools.partial(_sort_key_of, path), reverse=descending)
    return items


def _sort_key_of(path: str, resource: Mapping[str, Any]) -> tuple[int, Any]:
    return _sort_key(field_value(resource, path))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value)
    text = str(value)
    return (1, float(text)) if re.fullmatch(r"-?\d+(\.\d+)?", text) else (2, text)


@jobs.command("cancel")
@click.argument("job")
@connection_options
@click.pass_context
def cancel(ctx: click.Context, job: str) -> None:
    """Cancel JOB: a queued job ends at once; a running one stops its replicas first."""
    client = open_client(ctx)
    client.cancel_job(job)
    state = client.get_job(job).get("state")
    if state == "CANCELLED":
        click.echo(f"Cancelled job [{job}].", err=True)
    else:
        click.echo(
            f"Cancellation of job [{job}] requested; it is {state} and ends CANCELLED once its "
            f"replicas have stopped (`mlengine jobs describe {job}`).",
            err=True,
        )


@jobs.command("update")
@click.argument("job")
@click.option(
    "--update-labels",
    callback=parse_labels,
    metavar="KEY=VALUE,…",
    help="Add or change these labels.",
)
@click.option(
    "--remove-labels",
    callback=parse_key_list,
    metavar="KEY,…",
    help="Remove these labels (missing keys are ignored).",
)
@click.option("--clear-labels", is_flag=True, help="Remove every label (before --update-labels).")
@format_option("yaml")
@connection_options
@click.pass_context
def update(
    ctx: click.Context,
    job: str,
    update_labels: dict[str, str] | None,
    remove_labels: list[str] | None,
    clear_labels: bool,
    output: OutputFormat,
) -> None:
    """Change JOB's labels (the only field of a job that can change)."""
    if update_labels is None and remove_labels is None and not clear_labels:
        raise click.UsageError("Give --update-labels, --remove-labels or --clear-labels.")
    updated, changed = open_client(ctx).relabel_job(
        job, update=update_labels, remove=remove_labels or (), clear=clear_labels
    )
    click.echo(
        f"Updated job [{job}]." if changed else f"No change to the labels of job [{job}].", err=True
    )
    render({"jobId": updated.get("jobId", job), "labels": updated.get("labels") or {}}, output)
