"""``mlengine models``, ``versions``, ``predict`` and ``local predict``.

First in-process against a fake transport (flags, bodies, rendering, input files), then the
whole life of a model against one real server for the module: scikit-learn models trained
here are deployed, asked, switched and deleted, and ``local predict`` on the same folders
must print exactly what the server answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from mlengine.cli.errors import run_cli
from mlengine.cli.main import cli
from mlengine.cli.predict import MAX_INSTANCES, print_predictions, read_request
from mlengine.cli.versions import build_version, update_from_config
from mlengine.client.sdk import Client
from tests.client.test_sdk import fake_client, server_process

OP_NAME = "projects/p/operations/create_m_v1-1"
VERSION = {
    "name": "projects/p/models/m/versions/v1",
    "deploymentUri": "/srv/m",
    "state": "READY",
    "isDefault": True,
}


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """The CLI in-process through run_cli (the real exit-code mapping)."""
    with CliRunner().isolation(input=stdin) as (out, err, _):
        code = run_cli(cli, list(args))
    return code, out.getvalue().decode(), err.getvalue().decode()


def use_handler(monkeypatch: pytest.MonkeyPatch, handler: Any, url: str | None = None) -> None:
    """Every command talks to ``handler``; ``url`` (default a remote one) decides whether the
    server counts as being on this machine."""

    def client(_ctx: Any) -> Client:
        if url is None:
            return fake_client(handler)
        return Client(url, project="p", transport=httpx.MockTransport(handler))

    for module in ("models", "versions", "predict"):
        monkeypatch.setattr(f"mlengine.cli.{module}.open_client", client)


# -- input files ------------------------------------------------------------------------


def write(path: Path, data: str | bytes) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def test_instance_files_bom_crlf_stdin_and_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = write(tmp_path / "i.json", b'\xef\xbb\xbf[1, 2]\r\n{"x": "\xc3\xa9"}\n')
    assert read_request(lines, None, None) == {"instances": [[1, 2], {"x": "é"}]}
    text = write(tmp_path / "t.txt", "a b\r\n  padded  \nlast")
    assert read_request(None, None, text) == {"instances": ["a b", "  padded  ", "last"]}
    request = write(tmp_path / "r.json", '{"instances": [[1]], "probabilities": true}')
    assert read_request(None, request, None) == {"instances": [[1]], "probabilities": True}

    monkeypatch.setattr("sys.stdin", _stdin(b"[3]\n[4]\n"))
    assert read_request("-", None, None) == {"instances": [[3], [4]]}


def _stdin(data: bytes) -> Any:
    import io

    return io.TextIOWrapper(io.BytesIO(data))


@pytest.mark.parametrize(
    ("flag", "content", "message"),
    [
        ("--json-instances", "[1]\n\n[2]\n", "line 2 of"),
        ("--text-instances", "a\r\n\r\nb", "empty lines are not allowed"),
        ("--json-instances", "[1]\nnot json\n", "line 2 of"),
        ("--json-instances", "[NaN]\n", "NaN is not JSON"),
        ("--json-instances", "", "is empty"),
        ("--json-instances", "[1]\n" * (MAX_INSTANCES + 1), "at most 100 instances"),
        ("--json-request", "[1, 2]", '"instances"'),
        ("--json-request", '{"instances": {"a": 1}}', "must be a list"),
        ("--json-request", '{"instances": []}', "is empty"),
        ("--json-request", "{", "is not JSON"),
        ("--text-instances", b"caf\xe9\n", "not UTF-8"),
    ],
)
def test_bad_input_files_exit_2_naming_the_flag(
    tmp_path: Path, flag: str, content: str | bytes, message: str
) -> None:
    path = write(tmp_path / "input", content)
    for command in (
        ["predict", "--model", "m"],
        ["local", "predict", "--model-dir", str(tmp_path)],
    ):
        code, out, err = run(*command, flag, path)
        assert code == 2, err
        assert flag in err and message in err, err
        assert out == ""


def test_exactly_one_input_flag(tmp_path: Path) -> None:
    path = write(tmp_path / "i.json", "[1]\n")
    code, _, err = run("predict", "--model", "m")
    assert code == 2 and "exactly one of --json-instances" in err
    code, _, err = run(
        "predict", "--model", "m", "--json-instances", path, "--text-instances", path
    )
    assert code == 2 and "got --json-instances, --text-instances" in err
    code, _, err = run("predict", "--model", "m", "--json-instances", str(tmp_path / "nope"))
    assert code == 2 and "--json-instances" in err and "does not exist" in err


# -- printing predictions ---------------------------------------------------------------


def printed(response: dict[str, Any], fmt: str | None = None) -> str:
    from mlengine.cli.output import parse_format

    with CliRunner().isolation() as (out, _, _):
        print_predictions(response, None if fmt is None else parse_format(fmt))
    return out.getvalue().decode()


def test_predictions_print_as_gcloud_prints_them() -> None:
    objects = {"predictions": [{"scores": [0.2, 0.8], "label": "b"}, {"label": "a", "scores": 1}]}
    lines = printed(objects).splitlines()
    assert lines[0].split() == ["LABEL", "SCORES"]  # the first prediction's keys, sorted
    assert lines[1].split() == ["b", "[0.2,", "0.8]"]
    assert lines[2].split() == ["a", "1"]
    assert printed({"predictions": [1, "x", [0.5, 0.5], True]}) == "1\nx\n[0.5, 0.5]\nTrue\n"
    assert json.loads(printed({"predictions": {"odd": 1}})) == {"predictions": {"odd": 1}}
    assert json.loads(printed(objects, "json")) == objects
    assert yaml.safe_load(printed(objects, "yaml")) == objects
    assert printed(objects, "value(label)") == "b\na\n"


# -- models and versions against a fake transport ----------------------------------------


def test_models_create_list_update_and_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    model = {"name": "projects/p/models/m", "labels": {"a": "1", "b": "2"}}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET" and request.url.path.endswith("/models"):
            listed = {**model, "defaultVersion": {"name": "projects/p/models/m/versions/v3"}}
            return httpx.Response(200, json={"models": [listed]})
        if request.method in ("PATCH", "DELETE"):
            response = {**model, **json.loads(request.content or b"{}")}
            return httpx.Response(200, json={"name": OP_NAME, "done": True, "response": response})
        return httpx.Response(200, json=model)

    use_handler(monkeypatch, handler)
    code, out, err = run(
        "models", "create", "m", "--regions", "europe-west1", "--labels", "a=1,b=2",
        "--description", "d", "--enable-logging", "--enable-console-logging",
    )  # fmt: skip
    assert code == 0, err
    assert "Created model [projects/p/models/m]." in err
    assert json.loads(seen[-1].content) == {
        "name": "m",
        "regions": ["europe-west1"],
        "description": "d",
        "labels": {"a": "1", "b": "2"},
        "onlinePredictionLogging": True,
        "onlinePredictionConsoleLogging": True,
    }
    assert yaml.safe_load(out)["name"] == "projects/p/models/m"

    code, out, _ = run("models", "list")
    assert out.splitlines()[0].split() == ["NAME", "DEFAULT_VERSION_NAME"]
    assert out.splitlines()[1].split() == ["m", "v3"]

    code, out, err = run(
        "models", "update", "m", "--remove-labels", "a", "--update-labels", "c=3",
        "--description", "new",
    )  # fmt: skip
    assert code == 0, err
    patch = seen[-1]
    assert patch.method == "PATCH"
    assert patch.url.params["updateMask"] == "description,labels"
    assert json.loads(patch.content) == {"description": "new", "labels": {"b": "2", "c": "3"}}
    assert yaml.safe_load(out)["labels"] == {"b": "2", "c": "3"}

    count = len(seen)
    code, _, err = run("models", "update", "m", "--update-labels", "a=1")
    assert code == 0 and "No change" in err and len(seen) == count + 1  # read, no patch

    code, out, err = run("models", "delete", "m")
    assert code == 0 and out == "" and "Deleted model [projects/p/models/m]." in err
    code, out, _ = run("models", "delete", "m", "--async", "--format", "value(name)")
    assert code == 0 and out.strip() == OP_NAME


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["models", "create", "m", "--regions", "a,b"], "--regions"),
        (["models", "create", "m", "--labels", "Bad Key=1"], "--labels"),
        (["models", "update", "m"], "--description"),
        (["versions", "create", "v1", "--model", "m"], "--origin"),
        (["versions", "create", "v1", "--origin", "/x"], "--model"),
        (["versions", "create", "v1", "--model", "m", "--origin", "/x", "--framework", "caffe"],
         "--framework"),
        (["versions", "update", "v1", "--model", "m"], "--description"),
        (["local", "predict", "--model-dir", ".", "--framework", "caffe", "--json-instances",
          "-"], "--framework"),
        (["models", "list", "--format", "xml"], "--format"),
    ],
)  # fmt: skip
def test_bad_flags_exit_2_naming_the_flag(
    args: list[str], flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_handler(monkeypatch, lambda r: pytest.fail(f"no request expected: {r.url}"))
    code, _, err = run(*args)
    assert code == 2, err
    assert flag in err, err


def test_versions_create_builds_the_version_and_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "exported"
    model_dir.mkdir()
    config = tmp_path / "version.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "deployment_uri": "/elsewhere",
                "runtime_version": "2.11",
                "description": "from config",
                "labels": {"stage": "dev", "team_x": "a"},
                "manual_scaling": {"nodes": 1},
            }
        )
    )
    seen: list[httpx.Request] = []
    polls = iter([{"name": OP_NAME}, {"name": OP_NAME, "done": True, "response": VERSION}])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(200, json={"name": OP_NAME})
        return httpx.Response(200, json=next(polls))

    use_handler(monkeypatch, handler, url="http://127.0.0.1:1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("mlengine.cli.models.POLL_SECONDS", 0.0)
    code, out, err = run(
        "versions", "create", "v1", "--model", "m", "--origin", "exported", "--config",
        str(config), "--framework", "scikit-learn", "--labels", "stage=prod",
        "--python-version", "3.7",
    )  # fmt: skip
    assert code == 0, err
    body = json.loads(seen[0].content)
    assert seen[0].url.path == "/v1/projects/p/models/m/versions"
    assert body == {
        "name": "v1",
        "deploymentUri": str(model_dir),  # made absolute: the server is on this machine
        "runtimeVersion": "2.11",
        "pythonVersion": "3.7",
        "framework": "SCIKIT_LEARN",
        "description": "from config",
        "labels": {"stage": "prod", "team_x": "a"},
        "manualScaling": {"nodes": 1},
    }
    assert "Creating version [v1] of model [m]" in err and "Created version [v1]" in err
    assert yaml.safe_load(out) == VERSION  # the response, without its @type
    assert [r.url.path for r in seen[1:]] == ["/v1/projects/p/operations/create_m_v1-1"] * 2

    code, _, err = run("versions", "create", "v2", "--model", "m", "--origin", "missing")
    assert code == 2 and "--origin" in err and "no such folder" in err


def test_versions_create_failure_async_and_remote_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {
        "name": OP_NAME,
        "done": True,
        "error": {"code": 9, "message": "The model could not be loaded: bad pickle"},
    }
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            sent.append(json.loads(request.content))
            return httpx.Response(200, json={"name": OP_NAME})
        return httpx.Response(200, json=failed)

    use_handler(monkeypatch, handler)  # a remote server: the origin is passed on as it is
    code, out, err = run("versions", "create", "v1", "--model", "m", "--origin", "rel/dir")
    assert code == 6 and out == ""
    assert "ERROR: (FAILED_PRECONDITION)" in err and "bad pickle" in err
    assert sent[-1]["deploymentUri"] == "rel/dir"

    code, out, err = run(
        "versions", "create", "v1", "--model", "m", "--origin", "gs://b/m", "--async",
        "--format", "value(name)",
    )  # fmt: skip
    assert code == 0 and out.strip() == OP_NAME
    assert "mlengine operations wait create_m_v1-1" in err


def test_version_building_and_update_config() -> None:
    body = build_version(
        "v1",
        {"name": "ignored", "labels": {"a": "1"}, "framework": "XGBOOST"},
        {"labels": {"b": "2"}, "framework": "SCIKIT_LEARN", "description": None},
    )
    assert body == {"name": "v1", "labels": {"a": "1", "b": "2"}, "framework": "SCIKIT_LEARN"}
    patch, mask = update_from_config(
        {"description": "d", "autoScaling": {"minNodes": 2}, "requestLoggingConfig": {}}
    )
    assert mask == ["description", "autoScaling.minNodes", "requestLoggingConfig"]
    assert patch["autoScaling"] == {"minNodes": 2}


def test_versions_update_and_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={**VERSION, "labels": {"a": "1"}})
        response = {**VERSION, **json.loads(request.content)}
        return httpx.Response(200, json={"name": OP_NAME, "done": True, "response": response})

    use_handler(monkeypatch, handler)
    config = tmp_path / "update.json"
    config.write_text(json.dumps({"manualScaling": {"nodes": 3}}))
    code, out, err = run(
        "versions", "update", "v1", "--model", "m", "--config", str(config),
        "--update-labels", "b=2", "--description", "x",
    )  # fmt: skip
    assert code == 0, err
    patch = seen[-1]
    assert patch.url.params["updateMask"] == "manualScaling.nodes,description,labels"
    assert json.loads(patch.content) == {
        "manualScaling": {"nodes": 3},
        "description": "x",
        "labels": {"a": "1", "b": "2"},
    }
    assert "Updated version [v1] of model [m]." in err
    assert yaml.safe_load(out)["labels"] == {"a": "1", "b": "2"}

    config.write_text(json.dumps({"deploymentUri": "/x"}))
    code, _, err = run("versions", "update", "v1", "--model", "m", "--config", str(config))
    assert code == 2 and "--config" in err and "deploymentUri" in err

    both = tmp_path / "both.yaml"
    both.write_text(
        "deploymentUri: gs://b/m\nautoScaling: {minNodes: 1}\nmanualScaling: {nodes: 1}\n"
    )
    code, _, err = run("versions", "create", "v2", "--model", "m", "--config", str(both))
    assert code == 2 and "--config" in err and "only one" in err


# -- a real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("models-server") / "home") as url:
        yield url


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``numbers/``: a logistic regression on two features; ``words/``: a text classifier;
    ``corrupt/``: a model.joblib that is not a pickle."""
    root = tmp_path_factory.mktemp("exports")
    features = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 2], [3, 3]], dtype=float)
    numbers = LogisticRegression().fit(features, [0, 0, 0, 1, 1, 1])
    (root / "numbers").mkdir()
    joblib.dump(numbers, root / "numbers" / "model.joblib")
    texts = ["good day", "great fun", "bad day", "awful mess"]
    words = make_pipeline(HashingVectorizer(n_features=64), LogisticRegression())
    words.fit(texts, ["pos", "pos", "neg", "neg"])
    (root / "words").mkdir()
    joblib.dump(words, root / "words" / "model.joblib")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "model.joblib").write_bytes(b"not a pickle")
    (root / "numbers.json").write_text("[0, 0]\n[3, 3]\n[0.2, 0.1]\n")
    (root / "words.txt").write_text("good fun\r\nawful day\n")
    return root


@pytest.fixture
def on_server(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLENGINE_SERVER", server)
    monkeypatch.setattr("mlengine.cli.models.POLL_SECONDS", 0.2)
    return server


def ok(*args: str, stdin: bytes | None = None) -> str:
    code, out, err = run(*args, stdin=stdin)
    assert code == 0, (args, err)
    return out


@pytest.mark.timeout(240)
def test_a_model_from_creation_to_deletion(
    on_server: str, exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(exports)
    numbers, words = exports / "numbers.json", exports / "words.txt"
    created = yaml.safe_load(
        ok("models", "create", "flow", "--labels", "team=a", "--description", "the flow")
    )
    assert created["name"].endswith("/models/flow") and created["labels"] == {"team": "a"}

    # v1 is created and waited for; it becomes the default. v2 deploys in the background.
    v1 = yaml.safe_load(ok("versions", "create", "v1", "--model", "flow", "--origin", "numbers"))
    assert v1["state"] == "READY" and v1["isDefault"] is True
    assert v1["deploymentUri"] == str(exports / "numbers")  # relative --origin made absolute
    operation = ok(
        "versions", "create", "v2", "--model", "flow", "--origin", "words", "--async",
        "--format", "value(name)",
    ).strip()  # fmt: skip
    assert "/operations/create_flow_v2" in operation

    # Predictions from the default version (v1), and the same from local predict.
    served = ok("predict", "--model", "flow", "--json-instances", str(numbers))
    assert served == "0\n1\n0\n"
    assert ok("local", "predict", "--model-dir", "numbers", "--json-instances", "numbers.json") == (
        served
    )
    raw = ok("predict", "--model", "flow", "--json-instances", str(numbers), "--format", "json")
    assert json.loads(raw) == {"predictions": [0, 1, 0]}
    request = b'{"instances": [[0, 0], [3, 3], [0.2, 0.1]]}'
    local_raw = ok(
        "local", "predict", "--model-dir", "numbers", "--json-request", "-", "--format", "json",
        stdin=request,
    )  # fmt: skip
    assert local_raw == raw

    # A model failure: same message and exit code from the server and from local predict.
    remote = run("predict", "--model", "flow", "--version", "v1", "--text-instances", str(words))
    local = run("local", "predict", "--model-dir", "numbers", "--text-instances", str(words))
    assert remote[0] == local[0] == 2
    assert "ERROR: (INVALID_ARGUMENT) Prediction failed:" in remote[2]
    assert remote[2] == local[2]

    done = yaml.safe_load(ok("operations", "wait", operation))
    assert done["state"] == "READY" and not done.get("isDefault")
    served = ok("predict", "--model", "flow", "--version", "v2", "--text-instances", str(words))
    assert served == "pos\nneg\n"
    with_bom = b"\xef\xbb\xbfgood fun\nawful day\n"
    local_out = ok(
        "local", "predict", "--model-dir", "words", "--text-instances", "-", stdin=with_bom
    )
    assert local_out == served

    # Switch the default; the model alone now answers with v2.
    chosen = json.loads(ok("versions", "set-default", "v2", "--model", "flow", "--format", "json"))
    assert chosen["isDefault"] is True
    assert ok("predict", "--model", "flow", "--text-instances", str(words)) == served
    model = json.loads(ok("models", "describe", "flow", "--format", "json"))
    assert model["defaultVersion"]["name"].endswith("/models/flow/versions/v2")
    listed = json.loads(ok("models", "list", "--format", "json"))
    assert [m["name"].rsplit("/", 1)[-1] for m in listed] == ["flow"]
    assert "flow  v2" in ok("models", "list")
    versions = json.loads(ok("versions", "list", "--model", "flow", "--format", "json"))
    assert sorted((v["name"].rsplit("/", 1)[-1], v["state"]) for v in versions) == [
        ("v1", "READY"),
        ("v2", "READY"),
    ]
    table = ok("versions", "list", "--model", "flow").splitlines()
    assert table[0].split() == ["NAME", "DEPLOYMENT_URI", "STATE"]
    described = json.loads(ok("versions", "describe", "v1", "--model", "flow", "--format", "json"))
    assert described["framework"] == "SCIKIT_LEARN" and not described.get("isDefault")

    updated = yaml.safe_load(
        ok("models", "update", "flow", "--update-labels", "stage=dev", "--remove-labels", "team")
    )
    assert updated["labels"] == {"stage": "dev"}
    relabelled = yaml.safe_load(
        ok("versions", "update", "v1", "--model", "flow", "--description", "numbers")
    )
    assert relabelled["description"] == "numbers"

    # The registry's rules come back as errors with their exit codes.
    code, _, err = run("models", "delete", "flow")
    assert code == 6 and "still has versions" in err
    code, _, err = run("versions", "delete", "v2", "--model", "flow")
    assert code == 6 and "default" in err

    ok("versions", "delete", "v1", "--model", "flow")
    ok("versions", "delete", "v2", "--model", "flow")
    assert ok("versions", "list", "--model", "flow", "--format", "json") == "[]\n"
    ok("models", "delete", "flow")
    code, _, err = run("models", "describe", "flow")
    assert code == 4 and "flow" in err


@pytest.mark.timeout(120)
def test_failures_against_a_real_server(on_server: str, exports: Path) -> None:
    ok("models", "create", "broken")
    code, out, err = run(
        "versions", "create", "v1", "--model", "broken", "--origin", str(exports / "corrupt")
    )
    assert code == 6 and out == ""
    assert "ERROR: (FAILED_PRECONDITION)" in err and "could not be loaded" in err
    failed = json.loads(ok("versions", "describe", "v1", "--model", "broken", "--format", "json"))
    assert failed["state"] == "FAILED" and failed["errorMessage"]

    code, _, err = run(
        "predict", "--model", "broken", "--json-instances", str(exports / "numbers.json")
    )
    assert code == 6 and "no default version" in err, err
    code, _, err = run(
        "predict", "--model", "nosuch", "--json-instances", str(exports / "numbers.json")
    )
    assert code == 4 and "nosuch" in err
    code, _, err = run("models", "create", "broken")
    assert code == 5 and "ERROR: (ALREADY_EXISTS)" in err
    code, _, err = run("models", "create", "bad-name")
    assert code == 2 and "bad_name" in err

    ok("versions", "delete", "v1", "--model", "broken")
    ok("models", "delete", "broken")


def test_ctrl_c_while_waiting_leaves_the_operation_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"name": OP_NAME})
        raise KeyboardInterrupt

    use_handler(monkeypatch, handler)
    code, out, err = run("versions", "create", "v1", "--model", "m", "--origin", "gs://b/m")
    assert code == 130 and out == ""
    assert "goes on on the server" in err and "mlengine operations wait create_m_v1-1" in err


def test_commands_are_registered_and_local_train_stays_light() -> None:
    import subprocess
    import sys

    code, out, _ = run("--help")
    assert code == 0 and all(name in out for name in ("models", "versions", "predict"))
    code, out, _ = run("local", "--help")
    assert code == 0 and "predict" in out
    probe = "import sys, mlengine.cli.local; assert 'mlengine.cli.predict' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
