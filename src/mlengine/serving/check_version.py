"""Validate a model version's files by loading them once, in a process of its own.

``python -m mlengine.serving.check_version MODEL_DIR [--framework F] [--prediction-class C]
[--package PATH]... [--allow-pickle]`` loads the model with
``mlengine.serving.predictor.load_predictor``, runs the predictor's own probe instances
through ``predict`` when it has any (``probe_instances()`` not None), and prints one JSON
line::

    {"framework": "SCIKIT_LEARN", "probe": "ok"}        (or "probe": "skipped")

With ``--compile-to DIR`` a scikit-learn, XGBoost or LightGBM model is also compiled to
ONNX there when ``serving/compiled/`` verifies it equal on a probe set (``"compiled":
"yes"``, ``"compileReason"``); :class:`SubprocessModelChecker` publishes such a folder to
``compiled/<digest>/`` in the artifact store, where the data plane looks for it.

On failure it prints the reason on stderr and exits non-zero (1: the model does not load or
predict; 2: bad arguments; 3: the predictor module is not installed).

A custom prediction routine (``--prediction-class module.Class``) is loaded the way the data
plane loads it: its ``--package`` files are made importable (``serving/user_code.py``: pip
installs archives into a private folder, here inside the checker's scratch folder, removed
afterwards), the class imported and ``from_path`` called on the copy; ``predict`` then runs
on the routine's probe instances when it has any.  A version with packages is never
compiled (its pickles may need the packages' code).

Why a subprocess: loading a model runs its code (pickles, custom layers) and may crash the
interpreter or leak memory; the server must survive a bad version.  The deployer calls
:class:`SubprocessModelChecker`, which runs this module with a timeout and turns a failure
into :class:`FailedPrecondition` carrying the reason.

:func:`check_by_file_names` is a stand-in that only detects the framework from file names
(no load); it exists for tests of the registry while the predictor is not available and is
selected only by the test-only setting ``MLENGINE_MODEL_CHECK=files``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlengine.artifacts.store import ArtifactStore
from mlengine.domain.errors import FailedPrecondition

#: How long a load + probe may take before the version fails.
DEFAULT_TIMEOUT_SECONDS = 300.0
#: Lines of the checker's stderr kept in the failure reason.
REASON_LINES = 20
#: File names -> framework, for the file-name stand-in (spec §3.6 and PRODUCT §4.4; the same
#: names ``mlengine.serving.predictor.detect_framework`` knows).
FILE_FRAMEWORKS = (
    ("saved_model.pb", "TENSORFLOW"),
    ("saved_model.pbtxt", "TENSORFLOW"),
    ("model.bst", "XGBOOST"),
    ("model.json", "XGBOOST"),
    ("model.ubj", "XGBOOST"),
    ("model.joblib", "SCIKIT_LEARN"),
    ("model.pkl", "SCIKIT_LEARN"),
    ("model.pt", "PYTORCH"),
    ("model.pt2", "PYTORCH"),
    ("model.onnx", "ONNX"),
    ("model.txt", "LIGHTGBM"),
)
EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
#: Frameworks whose models may be compiled to ONNX at deployment (``serving/compiled/``);
#: all of them load through pickles or native boosters, so only with pickles allowed.
COMPILABLE = frozenset({"SCIKIT_LEARN", "XGBOOST", "LIGHTGBM"})
#: Where compiled models are kept in the artifact store: ``compiled/<version digest>/``.
COMPILED_PREFIX = "compiled"


def compiled_prefix(model_dir: Path) -> str:
    """The artifact prefix of the compiled form of the version published at ``model_dir``
    (its last path part is the copy's content digest)."""
    return f"{COMPILED_PREFIX}/{model_dir.name}"


class SubprocessModelChecker:
    """``check(model_dir, framework, prediction_class=…, package_paths=…) -> detected
    framework``, by running this module.

    ``python`` is the interpreter (default: the server's); ``allow_pickle`` lets pickled
    models load (only authenticated writers may create versions, see docs/models.md).
    """

    def __init__(
        self,
        *,
        python: str = sys.executable,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        allow_pickle: bool = True,
        env: dict[str, str] | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self._python = python
        self._timeout = timeout
        self._allow_pickle = allow_pickle
        self._env = env
        self._artifacts = artifacts

    def __call__(
        self,
        model_dir: Path,
        framework: str | None,
        *,
        prediction_class: str | None = None,
        package_paths: Sequence[Path] = (),
    ) -> str:
        with tempfile.TemporaryDirectory(prefix="mlengine-compile-") as scratch:
            compile_to = Path(scratch) / "compiled"
            argv = [self._python, "-m", "mlengine.serving.check_version", str(model_dir)]
            if framework:
                argv += ["--framework", framework]
            if prediction_class:
                argv += ["--prediction-class", prediction_class]
            for path in package_paths:
                argv += ["--package", str(path)]
            if self._allow_pickle:
                argv.append("--allow-pickle")
            if self._artifacts is not None and not package_paths and not prediction_class:
                argv += ["--compile-to", str(compile_to)]
            stdout = self._run(argv, Path(scratch), routine=bool(prediction_class))
            result = _result_of(stdout)
            if self._artifacts is not None and result.get("compiled") == "yes":
                self._artifacts.put_tree(compiled_prefix(model_dir), compile_to)
        return str(result["framework"])

    def _run(self, argv: list[str], scratch: Path, *, routine: bool) -> str:
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault("OMP_NUM_THREADS", "1")
        # Packages are pip-installed into temporary folders: keep them in the scratch folder.
        env["TMPDIR"] = str(scratch)
        what, field = (
            ("The custom prediction routine", "predictionClass")
            if routine
            else ("The model", "deploymentUri")
        )
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self._timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            raise FailedPrecondition(
                f"Loading {what[0].lower()}{what[1:]} did not finish within {self._timeout:g} s.",
                field=field,
            ) from None
        if done.returncode != 0:
            raise FailedPrecondition(
                f"{what} could not be loaded: {_reason(done.stderr, done.returncode)}",
                field=field,
            )
        return done.stdout


def check_by_file_names(
    model_dir: Path,
    framework: str | None,
    *,
    prediction_class: str | None = None,
    package_paths: Sequence[Path] = (),
) -> str:
    """Stand-in checker (tests only): the framework from file names, nothing loaded.

    A custom prediction routine is not imported either: it is ``CUSTOM`` when every package
    file is there.
    """
    if prediction_class:
        missing = [str(path) for path in package_paths if not Path(path).is_file()]
        if missing:
            raise FailedPrecondition(
                f"The packages of {prediction_class} are missing: {', '.join(missing)}.",
                field="packageUris",
            )
        return "CUSTOM"
    names = {path.name for path in model_dir.iterdir()} if model_dir.is_dir() else set()
    for name, detected in FILE_FRAMEWORKS:
        if name in names:
            if framework and framework != detected:
                raise FailedPrecondition(
                    f"framework is {framework} but the files hold a {detected} model ({name}).",
                    field="framework",
                )
            return detected
    known = ", ".join(name for name, _ in FILE_FRAMEWORKS)
    raise FailedPrecondition(
        f"No model file found in the version's folder; expected one of {known}.",
        field="deploymentUri",
    )


def _reason(stderr: str, code: int) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-REASON_LINES:]) or f"the checker exited with status {code}"


def _result_of(stdout: str) -> dict[str, str]:
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
        if not isinstance(result, dict) or "framework" not in result:
            raise ValueError("no framework")
        return {str(k): str(v) for k, v in result.items()}
    except (IndexError, ValueError, TypeError):
        raise FailedPrecondition(
            f"The model checker printed no result: {stdout.strip()[-500:]!r}.",
            field="deploymentUri",
        ) from None


# -- the command line (runs in the child process) ----------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlengine.serving.check_version",
        description="Load a model version once and run its probe instances.",
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--framework", default=None)
    parser.add_argument("--prediction-class", default=None)
    parser.add_argument("--package", action="append", default=[], type=Path)
    parser.add_argument("--allow-pickle", action="store_true")
    parser.add_argument(
        "--compile-to",
        type=Path,
        default=None,
        help="also compile the model to ONNX here when that is verified safe",
    )
    return parser


def check(args: argparse.Namespace) -> dict[str, str]:
    """Load, probe and describe the model named by ``args`` (raises what loading raises)."""
    predictor_module: Any = importlib.import_module("mlengine.serving.predictor")
    predictor = predictor_module.load_predictor(
        args.model_dir,
        framework=args.framework,
        prediction_class=args.prediction_class,
        package_paths=list(args.package),
        allow_pickle=args.allow_pickle,
    )
    # What actually serves the model (a pickled XGBoost Booster reports XGBOOST), else the
    # framework asked for, else what the file names say.
    framework = (
        getattr(predictor, "framework", None)
        or args.framework
        or predictor_module.detect_framework(args.model_dir)
    )
    instances = predictor.probe_instances()
    probe = "skipped"
    if instances is not None:
        predictor.predict(instances)
        probe = "ok"
    name = str(getattr(framework, "value", framework))
    result = {"framework": name, "probe": probe}
    if args.compile_to is not None and name in COMPILABLE and args.allow_pickle:
        compiled: Any = importlib.import_module("mlengine.serving.compiled")
        outcome = compiled.compile_model(args.model_dir, args.compile_to, framework=name)
        result["compiled"] = "yes" if outcome.path is not None else "no"
        result["compileReason"] = outcome.reason
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.model_dir.is_dir():
        print(f"{args.model_dir} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = check(args)
    except ModuleNotFoundError as error:
        if error.name != "mlengine.serving.predictor":
            print(f"{type(error).__name__}: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(
            "mlengine.serving.predictor is not installed in this environment, so the model "
            "cannot be loaded to validate it.",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except Exception as error:
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        print(f"{type(error).__name__}: {message}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
