"""``mlengine local train`` and ``local predict``: train or predict here, without a server."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import click

from mlengine.config import Settings
from mlengine.domain.metrics import latest_by_tag, parse_metric_lines
from mlengine.domain.replicas import plan_for_local_train
from mlengine.executors.local_training import (
    LocalTrainRequest,
    absolutize_path_args,
    build_launches,
    check_package,
)
from mlengine.executors.process_group import ProcessGroup


@click.group()
def local() -> None:
    """Run training and prediction on this machine, without a server."""


def _tensorflow_2_installed() -> bool:
    import importlib.util

    # find_spec is ~1 ms; importing importlib.metadata alone costs ~50 ms of every start-up.
    if importlib.util.find_spec("tensorflow") is None:
        return False
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            return int(metadata.version(dist).split(".")[0]) >= 2
        except metadata.PackageNotFoundError:
            continue
    return False


class _PrefixedOutput:
    """Writes replica lines as ``[master-replica-0] text`` without interleaving them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, replica: str, stream: str, line: str, _when: float) -> None:
        out = sys.stderr if stream == "stderr" else sys.stdout
        with self._lock:
            out.write(f"[{replica}] {line}\n")
            out.flush()


@local.command(
    "train",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--module-name", required=True, help="Module to run, e.g. trainer.task.")
@click.option(
    "--package-path",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the trainer package; its parent is the working directory "
    "(default: the current directory).",
)
@click.option("--job-dir", default=None, help="Passed to the trainer as `--job-dir DIR`.")
@click.option(
    "--packages", default="", help="Comma-separated archives (sdist/wheel) to install for this run."
)
@click.option("--distributed", is_flag=True, help="Run master, workers and ps as a local cluster.")
@click.option("--worker-count", type=int, default=None, help="Workers (default 2 if distributed).")
@click.option(
    "--parameter-server-count",
    type=int,
    default=None,
    help="Parameter servers (default 2 if distributed).",
)
@click.option("--evaluator-count", type=int, default=None, help="Evaluators (default 0).")
@click.option(
    "--start-port",
    type=click.IntRange(1, 65535),
    default=27182,
    show_default=True,
    help="First port of the cluster's contiguous port block.",
)
@click.option(
    "--use-chief-in-tf-config/--use-master-in-tf-config",
    default=None,
    help="Name the primary `chief` in TF_CONFIG (default: chief only when TensorFlow "
    "2 is installed).",
)
@click.option(
    "--keep-relative-paths",
    is_flag=True,
    help="Pass relative path arguments unchanged instead of making them absolute.",
)
@click.argument("user_args", nargs=-1, type=click.UNPROCESSED)
def train(
    module_name: str,
    package_path: Path | None,
    job_dir: str | None,
    packages: str,
    distributed: bool,
    worker_count: int | None,
    parameter_server_count: int | None,
    evaluator_count: int | None,
    start_port: int,
    use_chief_in_tf_config: bool | None,
    keep_relative_paths: bool,
    user_args: tuple[str, ...],
) -> int:
    """Run a trainer locally: python -m MODULE USER_ARGS --job-dir DIR.

    Everything after `--` is passed to the trainer as it is. The primary replica runs in the
    foreground; the command exits with its status.
    """
    settings = Settings.from_env()
    invocation_dir = Path.cwd()
    package = (package_path or invocation_dir).expanduser().absolute()
    archives = [p for p in (x.strip() for x in packages.split(",")) if p]
    check_package(module_name, package, has_packages=bool(archives))
    counts = _replica_counts(distributed, worker_count, parameter_server_count, evaluator_count)
    use_chief = (
        _tensorflow_2_installed() if use_chief_in_tf_config is None else use_chief_in_tf_config
    )
    plan = plan_for_local_train(distributed=distributed, use_chief=use_chief, **counts)
    args = list(user_args)
    if not keep_relative_paths:
        args, changed = absolutize_path_args(args, invocation_dir, package.parent)
        if changed:
            click.echo(
                f"Made relative paths absolute for the trainer (it runs in "
                f"{package.parent}): {' '.join(changed)}",
                err=True,
            )
    job_id = time.strftime("local_train_%Y%m%d_%H%M%S")
    run_dir = settings.local_runs_dir / f"{job_id}_{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    request = LocalTrainRequest(
        module=module_name,
        package_path=package,
        plan=plan,
        job_id=job_id,
        run_dir=run_dir,
        python=_interpreter(archives, settings),
        user_args=args,
        job_dir=_absolute_job_dir(job_dir),
        start_port=start_port,
        base_env=dict(os.environ),
    )
    return _run(request)


def _replica_counts(
    distributed: bool, workers: int | None, ps: int | None, evaluators: int | None
) -> dict[str, int]:
    if not distributed:
        for flag, value in (
            ("--worker-count", workers),
            ("--parameter-server-count", ps),
            ("--evaluator-count", evaluators),
        ):
            if value is not None:
                click.echo(f"WARNING: {flag} is ignored without --distributed.", err=True)
    return {
        "worker_count": 2 if workers is None else workers,
        "parameter_server_count": 2 if ps is None else ps,
        "evaluator_count": evaluators or 0,
    }


def _interpreter(archives: list[str], settings: Settings) -> str:
    if not archives:
        return sys.executable
    from mlengine.executors.runtime_env import layered_environment  # venv, pip: only when needed

    return layered_environment(archives, settings.environments_dir)


def _absolute_job_dir(job_dir: str | None) -> str | None:
    if job_dir is None or "://" in job_dir:
        return job_dir
    return str(Path(job_dir).expanduser().absolute())


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(request: LocalTrainRequest) -> int:
    group = ProcessGroup(
        build_launches(request),
        primary=request.plan.replicas()[0].name,
        sink=_PrefixedOutput(),
        primary_stdin=not request.plan.is_distributed,
    )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        group.start()
        outcome = group.wait()
    except KeyboardInterrupt:
        group.stop("interrupted", signal.SIGINT)
        click.echo("Interrupted: stopped every replica.", err=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if outcome.reason:
        click.echo(f"ERROR: {outcome.reason}", err=True)
    _print_summary(request)
    return outcome.exit_code


def _print_summary(request: LocalTrainRequest) -> None:
    primary = request.plan.replicas()[0].name
    metric_file = request.run_dir / f"{primary}.metrics"
    if metric_file.exists():
        latest = latest_by_tag(parse_metric_lines(metric_file.read_text()))
        if latest:
            shown = ", ".join(
                f"{tag}={rec.value:.4g} (step {rec.step})" for tag, rec in sorted(latest.items())
            )
            click.echo(f"Final metrics reported by {primary}: {shown}", err=True)
    if request.job_dir and "://" not in request.job_dir:
        model_dir = Path(request.job_dir, "model")
        if model_dir.is_dir():
            click.echo(f"Model exported to {model_dir}", err=True)


#: --framework spellings of `local predict` -> load_predictor's framework names.
_LOCAL_FRAMEWORKS = {
    "tensorflow": "TENSORFLOW",
    "scikit-learn": "SCIKIT_LEARN",
    "xgboost": "XGBOOST",
    "lightgbm": "LIGHTGBM",
    "onnx": "ONNX",
    "pytorch": "PYTORCH",
}


def _parse_local_framework(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    key = value.strip().lower().replace("_", "-")
    if key not in _LOCAL_FRAMEWORKS:
        raise click.BadParameter(
            f"{value!r} is not a framework; use {', '.join(_LOCAL_FRAMEWORKS)} (or leave it "
            "out to detect it from the model files)."
        )
    return _LOCAL_FRAMEWORKS[key]


def _parse_format(_ctx: click.Context, _param: click.Parameter, value: str | None) -> object:
    if value is None:
        return None
    from mlengine.cli.output import parse_format

    return parse_format(value)


# The options of `mlengine predict`, declared here again: importing mlengine.cli.predict at
# start-up would cost every `local train` tens of milliseconds.
_INPUT = click.Path(dir_okay=False, allow_dash=True, exists=True)


@local.command("predict")
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder holding the model files (model.joblib, model.bst, saved_model.pb …).",
)
@click.option(
    "--framework",
    callback=_parse_local_framework,
    metavar="FRAMEWORK",
    help="tensorflow, scikit-learn, xgboost, lightgbm, onnx or pytorch (default: detected "
    "from the model files).",
)
@click.option(
    "--signature-name",
    metavar="NAME",
    help="The SavedModel signature to use (TensorFlow; default: serving_default).",
)
@click.option(
    "--json-instances",
    type=_INPUT,
    metavar="FILE",
    help="One JSON instance per line, e.g. [1.0, 2.5] or {\"x\": 1} ('-' = stdin).",
)
@click.option(
    "--json-request",
    type=_INPUT,
    metavar="FILE",
    help="A whole request body: {\"instances\": [...]} ('-' = stdin).",
)
@click.option(
    "--text-instances",
    type=_INPUT,
    metavar="FILE",
    help="One instance per line, sent as a string ('-' = stdin).",
)
@click.option(
    "--format",
    "output",
    default=None,
    metavar="FORMAT",
    callback=_parse_format,
    help="json or yaml: the whole response; table(FIELD,…) or value(FIELD,…): fields "
    "of each prediction. Default: a table of the predictions' keys, or one per line.",
)
def predict(
    model_dir: Path,
    framework: str | None,
    signature_name: str | None,
    json_instances: str | None,
    json_request: str | None,
    text_instances: str | None,
    output: object,
) -> None:
    """Predict with the model in --model-dir here, without a server.

    Same inputs and output as `mlengine predict`: give exactly one of --json-instances,
    --json-request or --text-instances ('-' reads standard input). The model is loaded
    as the server loads it, so the predictions are the ones a version made from this folder
    would give.
    """
    from mlengine.cli.output import OutputFormat
    from mlengine.cli.predict import predict_locally, print_predictions, read_request

    request = read_request(json_instances, json_request, text_instances)
    if signature_name is not None:
        request["signature_name"] = signature_name
    response = predict_locally(model_dir, request, framework)
    print_predictions(response, output if isinstance(output, OutputFormat) else None)
