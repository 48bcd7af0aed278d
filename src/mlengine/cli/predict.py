"""``mlengine predict``: online prediction from a deployed model, as ``gcloud ml-engine predict``.

Also what ``mlengine local predict`` shares with it: reading the instances
(:func:`read_request`), predicting in-process (:func:`predict_locally`) and printing the
predictions the way gcloud does (:func:`print_predictions`).

Input files (spec §3.4), ``-`` meaning standard input, UTF-8 with or without a BOM:

* ``--json-instances F``: one JSON instance per line;
* ``--text-instances F``: one instance per line, the line itself as a string;
* ``--json-request F``: a whole request body ``{"instances": [...], ...}``, sent as it is.

An empty line is an error (it is not an instance), and like gcloud the CLI sends at most
:data:`MAX_INSTANCES` instances from a line file (use the SDK for more).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from mlengine.cli.jobs_submit import bad_flag
from mlengine.cli.output import (
    OutputFormat,
    connection_options,
    header_for,
    open_client,
    parse_format,
    print_table,
    render,
)

F = TypeVar("F", bound=Callable[..., Any])

#: Instances the CLI reads from one line file, as gcloud.
MAX_INSTANCES = 100
_INPUT_FLAGS = ("--json-instances", "--json-request", "--text-instances")


# -- options -----------------------------------------------------------------------------


def input_options(command: F) -> F:
    """``--json-instances``, ``--json-request`` and ``--text-instances`` (give exactly one)."""
    path = click.Path(dir_okay=False, allow_dash=True, exists=True)
    command = click.option(
        "--text-instances",
        type=path,
        metavar="FILE",
        help="One instance per line, sent as a string ('-' = stdin).",
    )(command)
    command = click.option(
        "--json-request",
        type=path,
        metavar="FILE",
        help="A whole request body: {\"instances\": [...]} ('-' = stdin).",
    )(command)
    return click.option(
        "--json-instances",
        type=path,
        metavar="FILE",
        help="One JSON instance per line, e.g. [1.0, 2.5] or {\"x\": 1} ('-' = stdin).",
    )(command)


def prediction_format_option(command: F) -> F:
    """``--format``; unset, predictions are printed as gcloud prints them."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
        return None if value is None else parse_format(value)

    return click.option(
        "--format",
        "output",
        default=None,
        metavar="FORMAT",
        callback=callback,
        help="json or yaml: the whole response; table(FIELD,…) or value(FIELD,…): fields "
        "of each prediction. Default: a table of the predictions' keys, or one per line.",
    )(command)


# -- reading instances ---------------------------------------------------------------------


def read_request(
    json_instances: str | None, json_request: str | None, text_instances: str | None
) -> dict[str, Any]:
    """The request body ``{"instances": [...], ...}`` from whichever input flag was given."""
    given = [
        (flag, path)
        for flag, path in zip(
            _INPUT_FLAGS, (json_instances, json_request, text_instances), strict=True
        )
        if path is not None
    ]
    if len(given) != 1:
        raise click.UsageError(
            "Give exactly one of --json-instances, --json-request or --text-instances"
            + (f" (got {', '.join(flag for flag, _ in given)})." if given else ".")
        )
    flag, path = given[0]
    name = "standard input" if path == "-" else path
    text = _read_text(flag, path, name)
    if flag == "--json-request":
        return _parse_request(flag, name, text)
    return {"instances": _parse_lines(flag, name, text, as_json=flag == "--json-instances")}


def _read_text(flag: str, path: str, name: str) -> str:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise bad_flag(flag, f"cannot read {name}: {exc.strerror or exc}.") from exc
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte order mark is tolerated
    except UnicodeDecodeError as exc:
        raise bad_flag(
            flag, f"{name} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8."
        ) from exc


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write null, or a number)")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constants)


def _parse_lines(flag: str, name: str, text: str, *, as_json: bool) -> list[Any]:
    lines = text.split("\n")
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    if not lines:
        raise bad_flag(flag, f"{name} is empty; give one instance per line.")
    if len(lines) > MAX_INSTANCES:
        raise bad_flag(
            flag,
            f"{name} has {len(lines)} lines; the CLI sends at most {MAX_INSTANCES} instances "
            "per file (as gcloud). Split the file, or send more at once with the SDK "
            "(mlengine.Client.predict).",
        )
    instances: list[Any] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line:
            raise bad_flag(
                flag,
                f"line {number} of {name} is empty; empty lines are not allowed (one instance "
                "per line).",
            )
        if not as_json:
            instances.append(line)
            continue
        try:
            instances.append(_loads(line))
        except ValueError as exc:
            raise bad_flag(
                flag,
                f"line {number} of {name} is not JSON ({exc}); each line must be one JSON "
                'instance, e.g. [1.0, 2.5] or {"x": 1}. For plain text lines use '
                "--text-instances.",
            ) from exc
    return instances


def _parse_request(flag: str, name: str, text: str) -> dict[str, Any]:
    try:
        body = _loads(text)
    except ValueError as exc:
        raise bad_flag(
            flag, f'{name} is not JSON ({exc}); it must hold a request: {{"instances": [...]}}.'
        ) from exc
    if not isinstance(body, dict) or "instances" not in body:
        raise bad_flag(
            flag, f'{name} must hold a JSON object with "instances": {{"instances": [...]}}.'
        )
    if not isinstance(body["instances"], list):
        kind = type(body["instances"]).__name__
        raise bad_flag(flag, f'"instances" in {name} must be a list, not {kind}.')
    if not body["instances"]:
        raise bad_flag(flag, f'"instances" in {name} is empty; give at least one instance.')
    return body


# -- printing ------------------------------------------------------------------------------


def print_predictions(response: Mapping[str, Any], output: OutputFormat | None) -> None:
    """Print a predict response as gcloud does.

    By default: when the predictions are objects, a table whose columns are the sorted keys
    of the first one; when they are anything else, one prediction per line; when the
    response holds no list of predictions, the response as JSON. ``json``/``yaml`` print the
    whole response; ``table(…)``/``value(…)`` the named fields of each prediction.
    """
    predictions = response.get("predictions")
    if output is not None and (output.kind in ("json", "yaml") or output.fields):
        if output.kind in ("json", "yaml") or not isinstance(predictions, list):
            render(response, output if output.kind in ("json", "yaml") else OutputFormat("json"))
        else:
            render([p for p in predictions if isinstance(p, Mapping)], output)
        return
    if output is not None and output.kind == "value":
        raise click.UsageError("--format value needs fields: value(FIELD,…).")
    if not isinstance(predictions, list):
        render(response, OutputFormat("json"))
        return
    if not predictions:
        click.echo("Listed 0 items.", err=True)
        return
    first = predictions[0]
    if isinstance(first, Mapping):
        keys = sorted(first)
        rows = [
            [_cell(p.get(k)) if isinstance(p, Mapping) else "" for k in keys] for p in predictions
        ]
        print_table([header_for(k) for k in keys], rows)
        return
    for prediction in predictions:
        click.echo(_cell(prediction))


def _cell(value: Any) -> str:
    """Strings as they are, everything else as JSON (``[0.1, 0.9]``, ``{"a": 1}``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# -- in-process prediction (local predict) -------------------------------------------------


def predict_locally(
    model_dir: Path, request: Mapping[str, Any], framework: str | None = None
) -> dict[str, Any]:
    """What the server would answer for ``request``, computed here: the model is loaded with
    :func:`mlengine.serving.predictor.load_predictor` (pickles allowed: they are your own
    files) and the predictions serialised as the server serialises them."""
    import orjson

    from mlengine.domain.errors import FailedPrecondition, InvalidArgument, MlEngineError
    from mlengine.serving.predictor import load_predictor

    try:
        predictor = load_predictor(Path(model_dir).absolute(), framework=framework)
    except MlEngineError:
        raise
    except Exception as exc:
        raise FailedPrecondition(
            f"Failed to load model: {type(exc).__name__}: {exc}", field="--model-dir"
        ) from exc
    instances = list(request["instances"])
    kwargs = {k: v for k, v in request.items() if k != "instances"}
    try:
        outputs = predictor.predict(instances, **kwargs)
    except Exception as exc:  # the same message the server's data plane sends
        raise InvalidArgument(f"Prediction failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(outputs, list) or len(outputs) != len(instances):
        count = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
        raise InvalidArgument(
            f"Prediction failed: the model returned {count} predictions for "
            f"{len(instances)} instances"
        )
    try:
        raw = orjson.dumps({"predictions": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise InvalidArgument(f"There was a problem processing the outputs: {exc}") from exc
    result: dict[str, Any] = orjson.loads(raw)
    return result


# -- the command -----------------------------------------------------------------------------


@click.command("predict")
@click.option("--model", required=True, metavar="MODEL", help="The model to ask.")
@click.option(
    "--version", metavar="VERSION", help="The version to ask (default: the model's default)."
)
@input_options
@click.option(
    "--signature-name",
    metavar="NAME",
    help="The SavedModel signature to use (TensorFlow; default: serving_default).",
)
@prediction_format_option
@connection_options
@click.pass_context
def predict(
    ctx: click.Context,
    model: str,
    version: str | None,
    json_instances: str | None,
    json_request: str | None,
    text_instances: str | None,
    signature_name: str | None,
    output: OutputFormat | None,
) -> None:
    """Send instances to a deployed model and print its predictions.

    Give exactly one of --json-instances, --json-request or --text-instances ('-' reads
    standard input); at most 100 instances per line file.
    """
    request = read_request(json_instances, json_request, text_instances)
    if signature_name is not None:
        request["signature_name"] = signature_name
    instances = request.pop("instances")
    response = open_client(ctx).predict(model, instances, version, **request)
    print_predictions(response, output)
