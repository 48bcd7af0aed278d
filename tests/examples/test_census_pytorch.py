"""The PyTorch census example: UCI loader, training, metrics, DDP, ONNX export and serving."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
fsspec = pytest.importorskip("fsspec")

from mlengine.serving.onnx_model import OnnxModel  # noqa: E402
from tests.examples.census_files import (  # noqa: E402
    ADULT_DATA,
    ADULT_TEST,
    EXAMPLES,
    census_instances,
    hide_mlengine,
    metric_entries,
    requires_census,
    run_trainer,
    start_trainer,
    trainer_env,
    write_slice,
)

PACKAGE = EXAMPLES / "pytorch"
DIGEST = re.compile(r"^parameter digest: ([0-9a-f]{64})$", re.MULTILINE)
FEATURES = (
    "workclass", "education", "marital_status", "gender", "relationship", "race",
    "occupation", "native_country", "age", "education_num", "capital_gain", "capital_loss",
    "hours_per_week",
)  # fmt: skip


def _load_data_module() -> ModuleType:
    """``trainer/data.py`` under a private name: both census examples call their package
    ``trainer``, so importing it as such would clash with the scikit-learn tests."""
    spec = importlib.util.spec_from_file_location(
        "census_pytorch_data", PACKAGE / "trainer/data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


data = _load_data_module()

TRAIN_ROWS = (
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, "
    "Male, 2174, 0, 40, United-States, <=50K\n"
    "50, ?, 83311, Bachelors, 13, Married-civ-spouse, ?, Husband, White, Male, 0, 0, 13, ?, >50K\n"
)
TEST_ROWS = (
    "|1x3 Cross validator\n"
    "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, "
    "0, 0, 40, United-States, <=50K.\n"
    "\n"
    "44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, "
    "Black, Male, 7688, 0, 40, United-States, >50K.\n"
)


# --- the UCI loader ---------------------------------------------------------------------


def test_loader_reads_the_uci_quirks_across_files(tmp_path: Path) -> None:
    train = tmp_path / "adult.data"
    test = tmp_path / "adult.test"
    train.write_text(TRAIN_ROWS)
    test.write_text(TEST_ROWS)
    table = data.load([str(train), str(test)])
    assert len(table) == 4
    assert table.labels.tolist() == [0, 1, 0, 1]
    assert table.categorical["workclass"].tolist() == ["State-gov", None, "Private", "Private"]
    assert table.categorical["native_country"][1] is None
    assert table.numeric["capital_gain"].tolist() == [2174.0, 0.0, 0.0, 7688.0]
    ids = table.category_ids()
    assert ids.shape == (4, 8)
    workclass = data.CATEGORICAL_COLUMNS.index("workclass")
    assert ids[1, workclass] == data.UNKNOWN_INDEX
    assert ids[0, workclass] == data.VOCABULARIES["workclass"].index("state-gov") + 1


def test_loader_reads_fsspec_uris(tmp_path: Path) -> None:
    with fsspec.open("memory://census-test/adult.test", "w") as stream:
        stream.write(TEST_ROWS)
    local = tmp_path / "adult.data"
    local.write_text(TRAIN_ROWS)
    table = data.load(["memory://census-test/adult.test", local.as_uri()])
    assert table.labels.tolist() == [0, 1, 0, 1]


def test_loader_names_the_file_and_line_of_a_bad_row(tmp_path: Path) -> None:
    broken = tmp_path / "broken.data"
    broken.write_text(TRAIN_ROWS + "1, 2, 3\n")
    with pytest.raises(ValueError, match=r"broken\.data:3"):
        data.load([str(broken)])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Male", "male"), ("FEMALE  ", "female"), ("", ""), (None, ""), ("two words", "")],
)
def test_normalise_matches_the_serving_graph(raw: str | None, expected: str) -> None:
    assert data.normalise(raw) == expected


def test_unknown_and_missing_categories_encode_as_zero() -> None:
    ids = data.encode("occupation", ["machine-op-inspector", None, " Machine-op-inspct"])
    assert ids.tolist() == [0, 0, data.VOCABULARIES["occupation"].index("machine-op-inspct") + 1]


# --- training, metrics and export on a slice ---------------------------------------------


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("census-slices")
    return (
        write_slice(ADULT_DATA, folder / "adult.data", 3000),
        write_slice(ADULT_TEST, folder / "adult.test", 1000),
    )


@pytest.fixture(scope="module")
def trained(
    slices: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, str]:
    """(job dir, metric file, log) of a 300-step run on the slices."""
    folder = tmp_path_factory.mktemp("census-pytorch")
    job_dir, metrics = folder / "job", folder / "hypertune" / "output.metrics"
    args = ["--train-files", str(slices[0]), "--eval-files", str(slices[1]),
            f"--job-dir={job_dir}", "--train-steps", "300", "--eval-frequency=100",
            "--first-layer-size=64", "--num-layers", "3", "--unused-hyperparameter=1"]  # fmt: skip
    result = run_trainer("pytorch", args, trainer_env(metrics))
    return job_dir, metrics, result.stdout


@requires_census
def test_reports_metrics_in_the_hypertune_format(trained: tuple[Path, Path, str]) -> None:
    _, metrics, log = trained
    accuracy = metric_entries(metrics, "accuracy")
    assert [entry["global_step"] for entry in accuracy] == ["100", "200", "300"]
    for entry in accuracy:
        assert isinstance(entry["timestamp"], float) and entry["trial"] == "0"
        assert 0.5 < float(str(entry["accuracy"])) <= 1.0
    assert len(metric_entries(metrics, "loss")) == 3 and len(metric_entries(metrics, "auc")) == 3
    assert "step 300: accuracy=" in log
    assert "ignoring unknown arguments: --unused-hyperparameter=1" in log


@requires_census
def test_exported_model_has_the_documented_contract(trained: tuple[Path, Path, str]) -> None:
    onnx = pytest.importorskip("onnx")
    job_dir, _, _ = trained
    model = onnx.load(str(job_dir / "model" / "model.onnx"))
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == list(FEATURES)
    for name, tensor in inputs.items():
        expected = onnx.TensorProto.STRING if name in FEATURES[:8] else onnx.TensorProto.FLOAT
        assert tensor.elem_type == expected and len(tensor.shape.dim) == 1
    assert [o.name for o in model.graph.output] == ["probabilities", "classes"]
    props = {p.key: p.value for p in model.metadata_props}
    defaults = json.loads(props["mlengine.input_defaults"])
    assert defaults == {name: ("" if name in FEATURES[:8] else None) for name in FEATURES}
    metadata = json.loads((job_dir / "model" / "metadata.json").read_text())
    assert metadata["verification_max_abs_diff"] <= 1e-4
    assert metadata["flags"]["train_steps"] == 300


@requires_census
def test_onnx_model_serves_the_census_instances(trained: tuple[Path, Path, str]) -> None:
    job_dir, _, _ = trained
    model = OnnxModel.from_path(str(job_dir / "model"))
    predictions = model.predict(census_instances())
    assert len(predictions) == 3
    for prediction in predictions:
        assert math.isclose(sum(prediction["probabilities"]), 1.0, abs_tol=1e-5)
        assert prediction["classes"] in ("<=50K", ">50K")
    # The talk's lower-case, space-padded spelling means the same person as test.json.
    first, _, sample = predictions
    assert first["probabilities"] == pytest.approx(sample["probabilities"], abs=1e-6)


@requires_census
def test_export_fails_loudly_when_onnx_and_torch_disagree(
    trained: tuple[Path, Path, str], tmp_path: Path, slices: tuple[Path, Path]
) -> None:
    script = (
        "import sys, torch\n"
        "from trainer import data, export, model\n"
        "net = model.CensusDNN([8])\n"
        "table = data.load([sys.argv[1]])\n"
        "net.scaler.fit(table.numeric_matrix())\n"
        "export.verify(sys.argv[2], net, table)\n"  # a different network than the file's
    )
    model_file = trained[0] / "model" / "model.onnx"
    result = subprocess.run(
        [sys.executable, "-c", script, str(slices[1]), str(model_file)],
        cwd=PACKAGE, env=trainer_env(tmp_path / "m"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "exported ONNX model disagrees with the torch model" in result.stderr


# --- replicas and distribution -----------------------------------------------------------


def _tf_config(task_type: str) -> str:
    cluster = {"master": ["127.0.0.1:2222"], "worker": ["127.0.0.1:2223"], "ps": ["127.0.0.1:2224"]}
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}})


@pytest.mark.parametrize(
    ("task_type", "message"),
    [("ps", "uses no parameter servers"), ("evaluator", "Evaluation runs on the chief")],
)
def test_ps_and_evaluator_replicas_exit_cleanly(
    task_type: str, message: str, tmp_path: Path
) -> None:
    env = trainer_env(tmp_path / "metrics", TF_CONFIG=_tf_config(task_type))
    args = ["--train-files", "unused", "--eval-files", "unused", "--job-dir", str(tmp_path)]
    assert message in run_trainer("pytorch", args, env, timeout=120).stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@requires_census
@pytest.mark.slow
def test_two_ddp_ranks_end_with_identical_parameters(
    slices: tuple[Path, Path], tmp_path: Path
) -> None:
    args = ["--train-files", str(slices[0]), "--eval-files", str(slices[1]),
            "--job-dir", str(tmp_path / "job"), "--train-steps", "150",
            "--eval-frequency", "1000"]  # fmt: skip
    group = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    ranks = [
        start_trainer("pytorch", args, trainer_env(
            tmp_path / f"metrics-{rank}", RANK=str(rank), LOCAL_RANK="0",
            TF_CONFIG=_tf_config(role), **group))
        for rank, role in enumerate(("master", "worker"))
    ]  # fmt: skip
    logs = [rank.communicate(timeout=300)[0] for rank in ranks]
    for rank, log in zip(ranks, logs, strict=True):
        assert rank.returncode == 0, log[-5000:]
    digests = [DIGEST.findall(log) for log in logs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    assert "rank 1/2" in logs[1] and "shard of about 1500" in logs[1]
    assert (tmp_path / "job" / "model" / "model.onnx").exists()
    assert metric_entries(tmp_path / "metrics-0", "accuracy")
    assert not (tmp_path / "metrics-1").exists()  # only the chief reports


# --- without the SDK, and with the default flags -----------------------------------------


@requires_census
def test_runs_without_mlengine_using_hypertune(slices: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("hypertune")
    env = trainer_env(tmp_path / "metrics", PYTHONPATH=hide_mlengine(tmp_path / "shadow"))
    args = ["--train-files", str(slices[0]), "--eval-files", str(slices[1]),
            "--job-dir", str(tmp_path / "job"), "--train-steps", "20"]  # fmt: skip
    run_trainer("pytorch", args, env)
    (entry,) = metric_entries(tmp_path / "metrics", "accuracy")
    assert entry["global_step"] == "20"
    assert (tmp_path / "job" / "model" / "model.onnx").exists()


@requires_census
@pytest.mark.slow
def test_default_flags_reach_084_on_the_full_test_set(tmp_path: Path) -> None:
    args = ["--train-files", str(ADULT_DATA), "--eval-files", str(ADULT_TEST),
            "--job-dir", str(tmp_path / "job")]  # fmt: skip
    started = time.monotonic()
    run_trainer("pytorch", args, trainer_env(tmp_path / "metrics"), timeout=400)
    elapsed = time.monotonic() - started
    final = metric_entries(tmp_path / "metrics", "accuracy")[-1]
    assert float(str(final["accuracy"])) >= 0.84
    assert elapsed < 180, f"default training took {elapsed:.0f} s"
